"""Feature-attribution drift: how much each feature drives the predictions, against the
reference.

Prediction events may carry per-feature attributions (SHAP values, integrated gradients,
...: ``stream.core.events``). The **importance** of a feature over a set of events is its
mean absolute attribution over the events that carry attributions, a feature absent from
an event's attributions counting as 0 there (the ``mean_abs`` aggregate of SageMaker
Clarify's global SHAP values). Two figures compare the importance of a window with the
reference's:

- :func:`ndcg`, the normalised discounted cumulative gain of the current importance
  *ranking*, graded by the reference importance. This is the attribution-drift measure of
  Amazon SageMaker Model Monitor (SageMaker Clarify feature attribution drift): it flags a
  violation when the NDCG of the live ranking against the baseline ranking falls below
  0.9, which is also driftstream's default (``monitor.attribution_ndcg_warning``). NDCG
  is sensitive to *rank order*, and more sensitive to the features that mattered most:
  two minor features swapping places barely move it, the top feature falling to the
  bottom does.
- :func:`max_share_change`, the largest absolute change of one feature's share of the
  total importance. Ranks ignore magnitudes: a feature that goes from 20 % to 70 % of the
  total while staying first leaves the NDCG at 1.0. Vertex AI Model Monitoring judges
  feature-attribution skew and drift per feature, on the change of each feature's
  attribution score; a share is that score made independent of the scale of the model's
  output, so one threshold suits every feature and every model.

Why both. NDCG is the measure a managed service already alerts on, with a documented
threshold and semantics SREs can look up; it ignores a feature gaining or losing weight
while keeping its rank, which the share change catches, and the share change alone would
miss a reordering among features of similar weight, which NDCG catches. References:

- SageMaker, "Feature attribution drift for models in production":
  https://docs.aws.amazon.com/sagemaker/latest/dg/clarify-model-monitor-feature-attribution-drift.html
  and "Model Feature Attribution Drift Violations" (NDCG below 0.9 is a violation):
  https://docs.aws.amazon.com/sagemaker/latest/dg/clarify-model-monitor-model-attribution-drift-violations.html
- Vertex AI, "Monitor feature attribution skew and drift":
  https://cloud.google.com/vertex-ai/docs/model-monitoring/monitor-explainable-ai

Everything here is pure and takes plain mappings; the monitor accumulates the sums
(``stream/core/monitor.py``).

>>> ref = {"sat_score": 0.70, "gpa": 0.50, "class_rank": 0.05}    # SageMaker's example
>>> live = {"sat_score": 0.10, "gpa": 0.20, "class_rank": 0.70}   # the ranking reversed
>>> round(ndcg(ref, ref), 6), round(ndcg(ref, live), 3)
(1.0, 0.688)
>>> max_share_change(ref, live)   # from 0.05 / 1.25 of the total to 0.70 / 1.0
('class_rank', 0.66...)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.core.columns import numeric_column

__all__ = [
    "OTHER",
    "absolute_matrix",
    "cap_importance",
    "max_share_change",
    "ndcg",
    "shares",
]

#: The pooled importance of the features beyond a cap (in a reference, or features a
#: monitor does not track by name).
OTHER = "(other)"

FloatArray = npt.NDArray[np.float64]


def _vector(importance: Mapping[str, float], names: list[str], what: str) -> FloatArray:
    v = np.array([importance.get(n, 0.0) for n in names], dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f"{what} importance must be finite and non-negative")
    return v


def ndcg(
    reference_importance: Mapping[str, float],
    current_importance: Mapping[str, float],
    k: int | None = None,
) -> float | None:
    """NDCG of the current importance ranking, graded by the reference importance.

    Definition (SageMaker Model Monitor's, with the tie rule of scikit-learn's
    ``ndcg_score``, which it cites). Over the union of the features of both mappings (a
    feature missing from one has importance 0 there):

    - rank the features by **current** importance, most important first;
    - the *gain* of a feature is its **reference** importance ``r(f)`` (0 for a feature the
      reference does not know);
    - ``DCG@k = sum_{i=1..k} r(f_i) / log2(i + 1)`` over that ranking; features tied in
      current importance share the mean of their gains (the expected DCG over every order
      of the tie, McSherry and Najork 2008), so a tie is neither rewarded nor punished;
    - ``IDCG@k`` is the same sum over the *ideal* ranking, by reference importance;
    - ``NDCG@k = DCG@k / IDCG@k``, in [0, 1]: 1.0 when the current ranking orders the
      features as the reference does (ties among equally important reference features do
      not matter), lower the more the important features fell down the ranking.

    ``k`` (``None``: every feature) keeps only the first ``k`` positions.

    ``None`` when it is undefined: no reference importance (no feature, or all 0: nothing
    to rank against), or no current importance (no events with attributions, or all 0:
    no ranking to judge).

    >>> ref = {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.05}
    >>> ndcg(ref, {"a": 5.0, "b": 3.0, "c": 1.0, "d": 0.5})   # same ranking, other scale
    1.0
    >>> round(ndcg(ref, {"a": 0.05, "b": 0.1, "c": 0.3, "d": 0.5}), 3)   # reversed
    0.629
    >>> round(ndcg(ref, {"a": 0.5, "b": 0.3, "c": 0.05, "d": 0.1}), 3)   # minor swap
    0.995
    >>> ndcg(ref, {"a": 0.5, "b": 0.3, "c": 0.05, "d": 0.1}, k=2)   # not in the top 2
    1.0
    >>> round(ndcg(ref, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}), 3)   # no ranking at all
    0.8
    >>> ndcg({}, {"a": 1.0}) is None, ndcg(ref, {}) is None, ndcg(ref, {"a": 0.0}) is None
    (True, True, True)
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    names = sorted(set(reference_importance) | set(current_importance))
    rel = _vector(reference_importance, names, "reference")
    score = _vector(current_importance, names, "current")
    if not rel.any() or not score.any():
        return None
    discount = 1.0 / np.log2(np.arange(len(names), dtype=np.float64) + 2.0)
    if k is not None:
        discount[k:] = 0.0
    # fsum: exactly rounded, so a ranking identical to the reference's gives exactly 1.0
    ideal = math.fsum((np.sort(rel)[::-1] * discount).tolist())
    # groups of equal current importance, most important first
    _, inverse, counts = np.unique(-score, return_inverse=True, return_counts=True)
    gains = np.zeros(counts.size)
    np.add.at(gains, inverse, rel)
    starts = np.cumsum(counts) - counts
    tied = counts > 1
    gains[tied] /= counts[tied]  # the mean gain of a tie (singletons stay exact)
    dcg = math.fsum((gains * np.add.reduceat(discount, starts)).tolist())
    return min(1.0, dcg / ideal)


def shares(importance: Mapping[str, float]) -> dict[str, float]:
    """Each feature's share of the total importance (summing to 1); ``{}`` when the total
    is 0 (no importance to share).

    >>> shares({"a": 3.0, "b": 1.0, "c": 0.0})
    {'a': 0.75, 'b': 0.25, 'c': 0.0}
    >>> shares({"a": 0.0})
    {}
    """
    names = list(importance)
    v = _vector(importance, names, "the")
    total = math.fsum(v.tolist())
    if total <= 0.0:
        return {}
    return {n: float(x) / total for n, x in zip(names, v.tolist(), strict=True)}


def max_share_change(
    reference_importance: Mapping[str, float], current_importance: Mapping[str, float]
) -> tuple[str, float] | None:
    """The feature whose share of the total importance changed most, and by how much:
    ``max_f |share_now(f) - share_ref(f)|`` over the features of both (a share of 0 where a
    feature is missing). Ties go to the first name in sorted order. ``None`` when either
    side has no importance at all. The change is in [0, 1].

    >>> max_share_change({"a": 0.5, "b": 0.5}, {"a": 0.25, "b": 0.75})
    ('a', 0.25)
    >>> max_share_change({"a": 1.0}, {"a": 0.5, "new": 0.5})
    ('a', 0.5)
    >>> max_share_change({"a": 1.0}, {}) is None
    True
    """
    ref, cur = shares(reference_importance), shares(current_importance)
    if not ref or not cur:
        return None
    best: tuple[str, float] | None = None
    for name in sorted(set(ref) | set(cur)):
        change = abs(cur.get(name, 0.0) - ref.get(name, 0.0))
        if best is None or change > best[1]:
            best = (name, change)
    return best


def cap_importance(importance: Mapping[str, float], cap: int) -> dict[str, float]:
    """The ``cap`` most important features (ties by name), the others pooled under
    :data:`OTHER` (their sum, left out when 0); sorted by name.

    >>> cap_importance({"a": 0.1, "b": 0.5, "c": 0.2, "d": 0.05}, 2)
    {'(other)': 0.15000000000000002, 'b': 0.5, 'c': 0.2}
    """
    ranked = sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:cap])
    rest = math.fsum(v for _, v in ranked[cap:])
    if rest > 0.0:
        kept[OTHER] = kept.get(OTHER, 0.0) + rest
    return dict(sorted(kept.items()))


def absolute_matrix(
    attributions: Mapping[str, list[Any]], n: int
) -> tuple[list[str], FloatArray, npt.NDArray[np.bool_]]:
    """The absolute attributions of a columnar batch (``stream.core.columns``): the
    feature names, a (features x events) matrix, 0 where an event has no attribution for
    a feature, and the mask of the events that carry attributions at all.

    >>> names, m, has = absolute_matrix({"a": [-0.5, None, 2], "b": [None, None, 0.25]}, 3)
    >>> names, m.tolist(), has.tolist()
    (['a', 'b'], [[0.5, 0.0, 2.0], [0.0, 0.0, 0.25]], [True, False, True])
    """
    names = list(attributions)
    if not names:
        return names, np.zeros((0, n)), np.zeros(n, dtype=bool)
    columns = list(attributions.values())
    try:  # validated events carry numbers or None (-> NaN) only: C-level conversions
        raw = np.vstack([np.array(c, dtype=np.float64) for c in columns]).reshape(len(names), n)
    except (TypeError, ValueError):  # anything else counts as absent
        raw = np.vstack([numeric_column(c) for c in columns])
    present = np.isfinite(raw)
    has: npt.NDArray[np.bool_] = np.asarray(present.any(axis=0), dtype=bool)
    absolute: FloatArray = np.where(present, np.abs(raw), 0.0)
    return names, absolute, has
