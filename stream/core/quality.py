"""Model-quality metrics over a window of joined (prediction, label) pairs.

Once a label arrives and is joined to its prediction, the pairs of one window give the
model's quality. The numbers here are the ones scikit-learn gives on the same pairs (to
1e-9, checked in ``tests/core/test_quality.py``), computed with numpy alone so that the
pure core stays free of scikit-learn. Three choices are worth knowing:

**ROC AUC by ranks.** AUC is the Mann-Whitney statistic: the probability that a random
positive scores above a random negative, a tie counting one half. With average ranks for
tied scores this is exactly the area under scikit-learn's trapezoidal ROC curve, whose
diagonal segments are what a block of tied scores draws. It is computed from per-score
counts of positives and negatives (one sort, no curve), with an integer numerator, so heavy
ties (scores rounded to one decimal, or all equal: AUC 0.5) cost nothing and lose nothing.
With a single class in the window AUC is undefined (scikit-learn 1.9 warns and returns
``NaN``; older versions raise): ``None``.

**Log loss clipping.** scikit-learn (1.9) turns a score ``s`` into the two columns
``[1 - s, s]`` and clips *each* to ``[eps, 1 - eps]`` with ``eps`` the float64 machine
epsilon (about 2.2e-16); it no longer renormalises the rows. The same is done here, so a
confidently wrong score of exactly 0 or 1 costs ``-log(eps)`` (about 36.04), not infinity.
Scores are widened to float64 first, so a float32 score is clipped at the float64 epsilon
(scikit-learn would use float32's).

**Undefined is None.** A metric that has no value on the window (anything on an empty
window, AUC with one class, R² with fewer than two pairs or a constant target) is
``None``, never ``NaN``, so the result serialises to JSON as ``null`` and no threshold
comparison is silently false. Precision, recall and F1 with a zero denominator are 0.0,
like scikit-learn's default ``zero_division``. ``n`` is the number of pairs, an ``int``.

>>> m = binary_metrics([0, 0, 1, 1], score=[0.1, 0.4, 0.35, 0.8])
>>> m["roc_auc"], m["accuracy"], m["n"]
(0.75, 0.75, 4)
>>> binary_metrics([0, 1, 0, 1], score=[0.5, 0.5, 0.2, 0.9])["roc_auc"]    # a tie: half
0.875
>>> binary_metrics([1, 1], score=[0.2, 0.9])["roc_auc"] is None            # one class
True
>>> round(binary_metrics([1], score=[0.0])["log_loss"], 4)                # clipped
36.0437
>>> w = QualityWindow(max_pairs=3)
>>> w.add(["cat", "dog"], y_pred=["cat", "cat"], latency_seconds=[4.0, 6.0])
2
>>> w.add(["dog", "dog"], y_pred=["dog", "dog"])
1
>>> w.n, w.overflow, w.metrics("multiclass")["accuracy"]
(3, 1, 0.6666666666666666)
>>> QualityWindow.restore(w.snapshot()).snapshot() == w.snapshot()
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from stream.errors import SnapshotError

__all__ = [
    "QualityWindow",
    "Task",
    "binary_metrics",
    "multiclass_metrics",
    "prediction_errors",
    "regression_metrics",
    "window_metrics",
]

Task = Literal["binary", "multiclass", "regression"]
#: Labels: a list or array of hashables (ints, bools, strings, ...).
Labels = Sequence[Any] | npt.NDArray[Any]

_TASKS: tuple[str, ...] = get_args(Task)
_SNAPSHOT_KIND = "driftstream.quality_window"
_SNAPSHOT_VERSION = 1
_EPS = float(np.finfo(np.float64).eps)
_NUMERIC = "biuf"
_JSON_SCALARS = (str, int, float, bool)


# -- input checking ---------------------------------------------------------------------


def _vector(x: Any, name: str) -> npt.NDArray[Any]:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}")
    return arr


def _labels(x: Labels, name: str) -> npt.NDArray[Any]:
    """A 1-D array of labels. A list mixing types becomes an object array, so the int 1
    never turns into the string ``"1"`` (what ``np.asarray([1, "a"])`` would do)."""
    if isinstance(x, np.ndarray):
        return _vector(x, name)
    try:
        arr: npt.NDArray[Any] | None = np.asarray(x)
    except ValueError:  # ragged, e.g. tuples mixed with strings
        arr = None
    if arr is None or arr.ndim != 1 or arr.dtype.kind not in _NUMERIC:
        seq = list(x)
        arr = np.fromiter(seq, dtype=object, count=len(seq))
    return _vector(arr, name)


def _floats(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    arr = _vector(x, name)
    if arr.dtype.kind == "O" and arr.size:
        arr = np.asarray(arr.tolist())
    if arr.size and arr.dtype.kind not in _NUMERIC:
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return out


def _scores(x: npt.ArrayLike, name: str = "score") -> npt.NDArray[np.float64]:
    out = _floats(x, name)
    if out.size and (out.min() < 0.0 or out.max() > 1.0):
        raise ValueError(f"{name} must be probabilities in [0, 1]; got [{out.min()}, {out.max()}]")
    return out


def _binary(x: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    arr = _vector(x, name)
    if arr.dtype.kind == "O" and arr.size:
        arr = np.asarray(arr.tolist())
    if arr.size == 0:
        return np.zeros(0, dtype=np.bool_)
    if arr.dtype.kind not in _NUMERIC or not ((arr == 0) | (arr == 1)).all():
        raise ValueError(f"{name} must hold 0/1 labels (class 1 is the positive class)")
    return np.asarray(arr == 1, dtype=np.bool_)


def _same_length(**arrays: npt.NDArray[Any] | None) -> int:
    sizes = {k: a.size for k, a in arrays.items() if a is not None}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"lengths differ: {sizes}")
    return next(iter(sizes.values()), 0)


def _task(task: str) -> None:
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}; got {task!r}")


def _finite(value: float) -> float | None:
    """Never NaN (or an overflowed infinity) in a result: ``None`` instead."""
    return value if math.isfinite(value) else None


def _factorize(a: npt.NDArray[Any], b: npt.NDArray[Any]
               ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], int]:
    """Integer codes of two label arrays over their union, and the union's size."""
    if a.dtype.kind != b.dtype.kind and not (a.dtype.kind in _NUMERIC and b.dtype.kind in _NUMERIC):
        a, b = a.astype(object), b.astype(object)  # never coerce 1 to "1"
    both = np.concatenate([a, b])
    try:
        uniq, codes = np.unique(both, return_inverse=True)
        k = int(uniq.size)
    except TypeError:  # labels that do not sort together (e.g. str and None): one pass
        index: dict[Any, int] = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in both.tolist()),
                            dtype=np.intp, count=both.size)
        k = len(index)
    codes = np.asarray(codes, dtype=np.intp).ravel()
    return codes[:a.size], codes[a.size:], k


def _roc_auc(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64]) -> float | None:
    """Mann-Whitney AUC with ties counting one half (average ranks), from per-score counts."""
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    starts = np.empty(s.size, dtype=np.bool_)
    starts[0] = True
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=starts[1:])
    group = np.cumsum(starts) - 1
    n_groups = int(group[-1]) + 1
    pos = np.bincount(group[y_sorted], minlength=n_groups).astype(np.int64)
    neg = np.bincount(group, minlength=n_groups).astype(np.int64) - pos
    neg_below = np.cumsum(neg) - neg
    # twice the U statistic, exact in integers; one correctly rounded division
    twice_u = 2 * int(np.dot(pos, neg_below)) + int(np.dot(pos, neg))
    return twice_u / (2 * n_pos * n_neg)


# -- metrics ----------------------------------------------------------------------------


def binary_metrics(
    y_true: npt.ArrayLike,
    *,
    y_pred: npt.ArrayLike | None = None,
    score: npt.ArrayLike | None = None,
    threshold: float = 0.5,
) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 (class 1 positive), ROC AUC, log loss and Brier
    score of 0/1 labels. The predicted label is ``y_pred``, or ``score >= threshold``
    without it; ``score`` is the probability of class 1, and the last three metrics are
    ``None`` without it.

    >>> m = binary_metrics([1, 0, 1, 1], y_pred=[1, 1, 0, 1])
    >>> m["precision"], m["recall"], m["roc_auc"]
    (0.6666666666666666, 0.6666666666666666, None)
    >>> binary_metrics([0, 1], score=[0.3, 0.6], threshold=0.7)["recall"]
    0.0
    """
    yt = _binary(y_true, "y_true")
    s = None if score is None else _scores(score)
    if y_pred is not None:
        yp = _binary(y_pred, "y_pred")
    elif s is not None:
        yp = s >= threshold
    else:
        raise ValueError("binary metrics need y_pred, score or both")
    n = _same_length(y_true=yt, y_pred=yp, score=s)
    out: dict[str, float | None] = dict.fromkeys(
        ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"))
    out["n"] = n
    if n == 0:
        return out
    tp = int(np.count_nonzero(yt & yp))
    fp = int(np.count_nonzero(~yt & yp))
    fn = int(np.count_nonzero(yt & ~yp))
    out["accuracy"] = (n - fp - fn) / n
    out["precision"] = tp / (tp + fp) if tp + fp else 0.0
    out["recall"] = tp / (tp + fn) if tp + fn else 0.0
    out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    if s is not None:
        out["roc_auc"] = _roc_auc(yt, s)
        # scikit-learn's columns [1 - s, s], each clipped to [eps, 1 - eps]
        p = np.where(yt, np.clip(s, _EPS, 1.0 - _EPS), np.clip(1.0 - s, _EPS, 1.0 - _EPS))
        out["log_loss"] = _finite(float(-np.mean(np.log(p))))
        out["brier"] = float(np.mean((s - yt) ** 2))
    return out


def multiclass_metrics(y_true: Labels, y_pred: Labels) -> dict[str, float | None]:
    """Accuracy and macro F1 over the sorted union of the labels in ``y_true`` and
    ``y_pred`` (a class seen only in predictions counts, with F1 0), for any hashable
    labels.

    >>> m = multiclass_metrics(["a", "b", "b", "c"], ["a", "b", "c", "d"])
    >>> m["accuracy"], round(m["macro_f1"], 4)
    (0.5, 0.4167)
    """
    yt, yp = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    n = _same_length(y_true=yt, y_pred=yp)
    if n == 0:
        return {"accuracy": None, "macro_f1": None, "n": 0}
    ct, cp, k = _factorize(yt, yp)
    hit = ct == cp
    tp = np.bincount(ct[hit], minlength=k)
    # 2 tp + fp + fn of each class = its true count + its predicted count (>= 1 in the union)
    support = np.bincount(ct, minlength=k) + np.bincount(cp, minlength=k)
    return {
        "accuracy": int(np.count_nonzero(hit)) / n,
        "macro_f1": float(np.mean(2.0 * tp / support)),
        "n": n,
    }


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float | None]:
    """Mean absolute error, root mean squared error and R² (``None`` with fewer than two
    pairs or a constant ``y_true``, where scikit-learn warns or forces a value).

    >>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
    {'mae': 0.5, 'rmse': 0.6454972243679028, 'r2': 0.375, 'n': 3}
    >>> regression_metrics([2.0, 2.0], [2.0, 2.1])["r2"] is None
    True
    """
    yt, yp = _floats(y_true, "y_true"), _floats(y_pred, "y_pred")
    n = _same_length(y_true=yt, y_pred=yp)
    if n == 0:
        return {"mae": None, "rmse": None, "r2": None, "n": 0}
    err = yt - yp
    sq = err * err
    r2: float | None = None
    if n >= 2 and not (yt == yt[0]).all():
        ss_tot = float(np.sum((yt - np.mean(yt)) ** 2))
        if ss_tot > 0.0:
            r2 = _finite(1.0 - float(np.sum(sq)) / ss_tot)
    return {
        "mae": _finite(float(np.mean(np.abs(err)))),
        "rmse": _finite(math.sqrt(float(np.mean(sq)))),
        "r2": r2,
        "n": n,
    }


def prediction_errors(
    task: Task,
    y_true: Labels,
    *,
    y_pred: Labels | None = None,
    score: npt.ArrayLike | None = None,
    threshold: float = 0.5,
) -> npt.NDArray[np.float64]:
    """Per-pair error, the series ADWIN watches: 0/1 loss for ``"binary"`` (predicted
    label ``y_pred``, else ``score >= threshold``) and ``"multiclass"``, absolute error
    for ``"regression"``.

    >>> prediction_errors("binary", [0, 1, 1], score=[0.7, 0.9, 0.2]).tolist()
    [1.0, 0.0, 1.0]
    >>> prediction_errors("regression", [1.0, 2.0], y_pred=[1.5, 1.0]).tolist()
    [0.5, 1.0]
    """
    _task(task)
    if task == "binary":
        yt = _binary(y_true, "y_true")
        if y_pred is not None:
            yp = _binary(y_pred, "y_pred")
        elif score is not None:
            yp = _scores(score) >= threshold
        else:
            raise ValueError("binary errors need y_pred or score")
        _same_length(y_true=yt, y_pred=yp)
        return np.asarray(yt != yp, dtype=np.float64)
    if y_pred is None:
        raise ValueError(f"{task} errors need y_pred")
    if task == "multiclass":
        lt, lp = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
        _same_length(y_true=lt, y_pred=lp)
        ct, cp, _ = _factorize(lt, lp)
        return np.asarray(ct != cp, dtype=np.float64)
    ft, fp = _floats(y_true, "y_true"), _floats(y_pred, "y_pred")
    _same_length(y_true=ft, y_pred=fp)
    return np.abs(ft - fp)


def window_metrics(
    task: Task,
    y_true: Labels,
    *,
    y_pred: Labels | None = None,
    score: npt.ArrayLike | None = None,
    threshold: float = 0.5,
) -> dict[str, float | None]:
    """The metrics of ``task``: :func:`binary_metrics`, :func:`multiclass_metrics` or
    :func:`regression_metrics` (``score`` and ``threshold`` are for ``"binary"`` only).

    >>> window_metrics("regression", [1.0, 3.0], y_pred=[2.0, 3.0])["mae"]
    0.5
    """
    _task(task)
    if task == "binary":
        return binary_metrics(y_true, y_pred=y_pred, score=score, threshold=threshold)
    if score is not None:
        raise ValueError(f"score applies to binary tasks only, not {task!r}")
    if y_pred is None:
        raise ValueError(f"{task} metrics need y_pred")
    if task == "multiclass":
        return multiclass_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


# -- the window accumulator -------------------------------------------------------------


def _storable(x: Labels, name: str) -> npt.NDArray[Any]:
    """Labels a snapshot can carry through JSON unchanged: str, int, bool or finite float."""
    arr = _labels(x, name)
    kind = arr.dtype.kind
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite (no NaN or infinity)")
    elif kind == "O":
        values = [v.item() if isinstance(v, np.generic) else v for v in arr.tolist()]
        for v in values:
            if not isinstance(v, _JSON_SCALARS) or (isinstance(v, float) and not math.isfinite(v)):
                raise ValueError(f"{name}: labels must be str, int, bool or finite float; got {v!r}")
        arr = np.fromiter(values, dtype=object, count=len(values))
    elif kind not in "biuU":
        raise ValueError(f"{name}: labels must be str, int, bool or finite float; got dtype {arr.dtype}")
    return arr


def _concat(chunks: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    kinds = {c.dtype.kind for c in chunks}
    if len(kinds) > 1 and not kinds <= set(_NUMERIC):
        chunks = [c.astype(object) for c in chunks]  # e.g. int and str batches
    return np.concatenate(chunks)


class QualityWindow:
    """The joined pairs of one window, at most ``max_pairs`` of them: pairs beyond that
    are counted in :attr:`overflow` and left out of the metrics (the first ``max_pairs``
    pairs are kept).

    ``y_pred`` and ``score`` are columns: the first non-empty :meth:`add` decides which
    are present, and later batches must bring the same. ``latency_seconds`` (label time
    minus prediction time) is optional per batch and only feeds :meth:`latency_quantiles`.
    Labels must be str, int, bool or finite floats so that :meth:`snapshot` is JSON-safe.

    >>> w = QualityWindow(max_pairs=10)
    >>> w.add([0, 1, 1], score=[0.2, 0.4, 0.9], latency_seconds=[1.0, 2.0, 30.0])
    3
    >>> w.metrics("binary")["recall"], w.latency_quantiles()["p50"]
    (0.5, 2.0)
    """

    def __init__(self, max_pairs: int = 100_000) -> None:
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1; got {max_pairs}")
        self.max_pairs = max_pairs
        #: Pairs offered beyond ``max_pairs``, not in the metrics.
        self.overflow = 0
        self._n = 0
        self._y_true: list[npt.NDArray[Any]] = []
        self._y_pred: list[npt.NDArray[Any]] | None = None
        self._score: list[npt.NDArray[np.float64]] | None = None
        self._latency: list[npt.NDArray[np.float64]] = []

    @property
    def n(self) -> int:
        """Pairs held (at most ``max_pairs``)."""
        return self._n

    def add(
        self,
        y_true: Labels,
        y_pred: Labels | None = None,
        score: npt.ArrayLike | None = None,
        latency_seconds: npt.ArrayLike | None = None,
    ) -> int:
        """Add a batch of joined pairs; returns how many were kept (the rest, beyond
        ``max_pairs``, are counted in :attr:`overflow`)."""
        yt = _storable(y_true, "y_true")
        yp = None if y_pred is None else _storable(y_pred, "y_pred")
        s = None if score is None else _scores(score)
        lat = None if latency_seconds is None else _floats(latency_seconds, "latency_seconds")
        size = _same_length(y_true=yt, y_pred=yp, score=s, latency_seconds=lat)
        if size == 0:
            return 0
        if self._n == 0 and not self._y_true:
            self._y_pred = None if yp is None else []
            self._score = None if s is None else []
        elif (yp is None) != (self._y_pred is None) or (s is None) != (self._score is None):
            raise ValueError(
                "every batch of a window must bring the same columns: this window has "
                f"y_pred={'yes' if self._y_pred is not None else 'no'}, "
                f"score={'yes' if self._score is not None else 'no'}")
        keep = min(size, self.max_pairs - self._n)
        self.overflow += size - keep
        if keep:
            self._y_true.append(yt[:keep].copy())
            if self._y_pred is not None and yp is not None:
                self._y_pred.append(yp[:keep].copy())
            if self._score is not None and s is not None:
                self._score.append(s[:keep])
            if lat is not None:
                self._latency.append(lat[:keep])
            self._n += keep
        return keep

    def _column(self, chunks: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
        if len(chunks) > 1:
            chunks[:] = [_concat(chunks)]  # consolidate once
        return chunks[0] if chunks else np.empty(0)

    def metrics(self, task: Task, threshold: float = 0.5) -> dict[str, float | None]:
        """:func:`window_metrics` of the pairs held (all ``None`` but ``n`` when empty)."""
        _task(task)
        if self._n == 0:
            empty = np.empty(0)
            return window_metrics(task, empty, y_pred=empty,
                                  score=empty if task == "binary" else None)
        return window_metrics(
            task,
            self._column(self._y_true),
            y_pred=None if self._y_pred is None else self._column(self._y_pred),
            score=None if self._score is None else self._column(self._score),
            threshold=threshold,
        )

    def latency_quantiles(self) -> dict[str, float | None]:
        """Median and 95th percentile of label latency in seconds (numpy's linear
        interpolation), ``None`` without latencies."""
        lat = self._column(self._latency)
        if lat.size == 0:
            return {"p50": None, "p95": None}
        p50, p95 = np.percentile(lat, [50.0, 95.0]).tolist()
        return {"p50": float(p50), "p95": float(p95)}

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state; floats are kept as JSON numbers, which round-trip exactly."""
        return {
            "kind": _SNAPSHOT_KIND,
            "version": _SNAPSHOT_VERSION,
            "max_pairs": self.max_pairs,
            "overflow": self.overflow,
            "y_true": self._column(self._y_true).tolist(),
            "y_pred": None if self._y_pred is None else self._column(self._y_pred).tolist(),
            "score": None if self._score is None else self._column(self._score).tolist(),
            "latency_seconds": self._column(self._latency).tolist(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> QualityWindow:
        """Rebuild a window from :meth:`snapshot` output."""
        if data.get("kind") != _SNAPSHOT_KIND or data.get("version") != _SNAPSHOT_VERSION:
            raise SnapshotError(
                f"not a quality window snapshot of version {_SNAPSHOT_VERSION}: "
                f"kind={data.get('kind')!r} version={data.get('version')!r}"
            )
        try:
            win = cls(int(data["max_pairs"]))
            y_true = _storable(data["y_true"], "y_true")
            y_pred = None if data["y_pred"] is None else _storable(data["y_pred"], "y_pred")
            score = None if data["score"] is None else _scores(data["score"])
            latency = _floats(data["latency_seconds"], "latency_seconds")
            n = _same_length(y_true=y_true, y_pred=y_pred, score=score)
            if n > win.max_pairs or latency.size > n:
                raise ValueError(f"{n} pairs and {latency.size} latencies for max_pairs={win.max_pairs}")
            win.overflow = int(data["overflow"])
            win._n = n
            win._y_true = [y_true] if n else []
            win._y_pred = None if y_pred is None else ([y_pred] if n else [])
            win._score = None if score is None else ([score] if n else [])
            win._latency = [latency] if latency.size else []
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt quality window snapshot: {exc!r}") from None
        return win
