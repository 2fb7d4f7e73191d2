"""Reference profiles: what "normal" looks like for one (model, model_version).

A profile freezes, per series (feature or prediction part), the binning and the
reference counts per bucket. It is built once, from a file of events
(``driftstream reference``) or from the first events of a model version (warm-up), and
never changes afterwards: current windows are counted into the same buckets, which is
what makes PSI incremental.

Series types are inferred from the reference values: a series is numeric when numbers
are at least as common as strings and booleans, categorical otherwise.

When reference events carry feature attributions, the profile also keeps the reference
feature importance, ``attributions``: the mean absolute attribution per feature over
those events (``stream/core/attribution.py``), for the ``max_features`` most important
features, the rest pooled under ``(other)``; ``attribution_events`` counts the events
it was computed from.

>>> events = [{"features": {"x": float(i), "c": "ab"[i % 2]}, "ts": float(i),
...            "prediction": {"label": None, "score": i / 100, "value": None, "scores": None}}
...           for i in range(100)]
>>> ref = ReferenceProfile.build(events, "fraud", "v1", numeric_bins=4, max_categories=5)
>>> sorted(ref.series), ref.series[("feature", "x")].counts.tolist()
([('feature', 'c'), ('feature', 'x'), ('prediction', 'score')], [25, 25, 25, 25, 0])
>>> ReferenceProfile.restore(ref.snapshot()).snapshot() == ref.snapshot()
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.core.attribution import absolute_matrix, cap_importance
from stream.core.columns import (
    PREDICTION_PARTS,
    SeriesKey,
    column,
    columns_from_events,
    numeric_column,
)
from stream.core.histogram import (
    Binning,
    CategoricalBinning,
    NumericBinning,
    binning_from_snapshot,
    count_index,
)
from stream.errors import ProfileError, SnapshotError

__all__ = ["MAX_KNOWN_CATEGORIES", "REFERENCE_KIND", "ReferenceProfile", "SeriesProfile",
           "reference_key"]

REFERENCE_KIND = "driftstream.reference"
REFERENCE_VERSION = 1


def reference_key(model: str, model_version: str | None) -> str:
    """The Kafka key and table key of a (model, model_version): joined by U+001F.

    >>> reference_key("fraud", "v2"), reference_key("fraud", None)
    ('fraud\\x1fv2', 'fraud\\x1f')
    """
    return f"{model}\x1f{model_version or ''}"


#: Distinct categories a categorical profile remembers to tell unseen values from rare
#: ones; a series with more keeps none (``known`` is ``None``: no unseen-value check).
MAX_KNOWN_CATEGORIES = 1000


@dataclass
class SeriesProfile:
    """The frozen binning of one series and its reference counts per bucket; ``known``:
    every category of a categorical reference (when at most ``MAX_KNOWN_CATEGORIES``)."""

    binning: Binning
    counts: npt.NDArray[np.int64]
    min: float | None = None
    max: float | None = None
    known: frozenset[str] | None = None

    @property
    def kind(self) -> str:
        return self.binning.kind

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def snapshot(self) -> dict[str, Any]:
        out = self.binning.snapshot()
        out["counts"] = self.counts.tolist()
        if self.kind == "numeric":
            out["min"], out["max"] = self.min, self.max
        elif self.known is not None:
            out["known"] = sorted(self.known)
        return out

    @classmethod
    def restore(cls, data: dict[str, Any]) -> SeriesProfile:
        binning = binning_from_snapshot(data)
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != (binning.size,):
            raise SnapshotError(
                f"reference counts have {counts.size} buckets, the binning {binning.size}"
            )
        known = data.get("known")
        return cls(binning, counts, data.get("min"), data.get("max"),
                   frozenset(known) if known is not None else None)


class ReferenceProfile:
    """The reference of one (model, model_version): a :class:`SeriesProfile` per series."""

    def __init__(
        self,
        model: str,
        model_version: str | None,
        series: dict[SeriesKey, SeriesProfile],
        *,
        source: str,
        events: int,
        ts_min: float | None = None,
        ts_max: float | None = None,
        features_over_cap: int = 0,
        quality: dict[str, Any] | None = None,
        attributions: dict[str, float] | None = None,
        attribution_events: int = 0,
    ) -> None:
        #: Reference feature importance (mean absolute attribution per feature, sorted by
        #: name) when reference events carried attributions, else ``None``.
        self.attributions = attributions
        self.attribution_events = attribution_events if attributions is not None else 0
        #: Reference quality ``{"task", "pairs", "metrics"}`` when the reference events
        #: came with labels (``driftstream reference --labels``), else ``None``.
        self.quality = quality
        self.model = model
        self.model_version = model_version
        self.series = series
        self.source = source
        self.events = events
        self.ts_min = ts_min
        self.ts_max = ts_max
        self.features_over_cap = features_over_cap

    @classmethod
    def build(
        cls,
        events: list[dict[str, Any]],
        model: str,
        model_version: str | None,
        *,
        numeric_bins: int = 10,
        max_categories: int = 20,
        max_features: int = 200,
        source: str = "file",
    ) -> ReferenceProfile:
        """Build a profile from normalised events of one model version.

        Keeps the ``max_features`` features with the most non-null values (ties by name);
        the number left out is recorded in ``features_over_cap``. Features that never carry
        a value are left out.
        """
        return cls.from_columns(
            columns_from_events(events), model, model_version, numeric_bins=numeric_bins,
            max_categories=max_categories, max_features=max_features, source=source)

    @classmethod
    def from_columns(
        cls,
        cols: dict[str, Any],
        model: str,
        model_version: str | None,
        *,
        numeric_bins: int = 10,
        max_categories: int = 20,
        max_features: int = 200,
        source: str = "file",
    ) -> ReferenceProfile:
        """:meth:`build` from a columnar batch (``stream.core.columns``), such as a
        warm-up buffer."""
        n = cols["n"]
        if not n:
            raise ProfileError(
                f"no events for model {model!r} version {model_version!r}: a reference "
                "needs at least one event (check the --model / --model-version filters)"
            )
        # A column without a single value carries nothing to compare with; once events
        # are columnar, it cannot be told from a feature that was never sent.
        present = Counter({name: c for name, values in cols["features"].items()
                           if (c := sum(v is not None for v in values))})
        ranked = sorted(present.items(), key=lambda kv: (-kv[1], kv[0]))
        keys: list[SeriesKey] = [("feature", name) for name, _ in ranked[:max_features]]
        if cols["prediction"]:
            keys += [("prediction", part) for part in PREDICTION_PARTS]
        series: dict[SeriesKey, SeriesProfile] = {}
        for key in keys:
            values = column(cols, key)
            if key[0] == "prediction" and all(v is None for v in values):
                continue
            series[key] = _profile(values, numeric_bins, max_categories)
        ts = np.asarray(cols["ts"], dtype=np.float64)
        attributions, attribution_events = _importance(cols.get("attributions"), n, max_features)
        return cls(
            model,
            model_version,
            series,
            source=source,
            events=n,
            ts_min=float(ts.min()),
            ts_max=float(ts.max()),
            features_over_cap=max(0, len(ranked) - max_features),
            attributions=attributions,
            attribution_events=attribution_events,
        )

    def snapshot(self) -> dict[str, Any]:
        """The JSON-safe, versioned form published on the references topic."""
        return {
            "kind": REFERENCE_KIND,
            "version": REFERENCE_VERSION,
            "model": self.model,
            "model_version": self.model_version,
            "source": self.source,
            "events": self.events,
            "ts_min": self.ts_min,
            "ts_max": self.ts_max,
            "features_over_cap": self.features_over_cap,
            **({"quality": self.quality} if self.quality is not None else {}),
            **({"attributions": self.attributions, "attribution_events": self.attribution_events}
               if self.attributions is not None else {}),
            "features": {n: s.snapshot() for (src, n), s in self.series.items() if src == "feature"},
            "prediction": {
                n: s.snapshot() for (src, n), s in self.series.items() if src == "prediction"
            },
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> ReferenceProfile:
        """Rebuild a profile from :meth:`snapshot` output; refuses unknown versions."""
        if data.get("kind") != REFERENCE_KIND:
            raise SnapshotError(f"not a reference profile (kind={data.get('kind')!r})")
        if data.get("version") != REFERENCE_VERSION:
            raise SnapshotError(
                f"reference profile version {data.get('version')!r} is not supported "
                f"(this driftstream reads version {REFERENCE_VERSION}); upgrade the worker"
            )
        try:
            series: dict[SeriesKey, SeriesProfile] = {}
            for name, s in data["features"].items():
                series[("feature", name)] = SeriesProfile.restore(s)
            for part, s in data["prediction"].items():
                series[("prediction", part)] = SeriesProfile.restore(s)
            return cls(
                data["model"],
                data["model_version"],
                series,
                source=data["source"],
                events=int(data["events"]),
                ts_min=data.get("ts_min"),
                ts_max=data.get("ts_max"),
                features_over_cap=int(data.get("features_over_cap", 0)),
                quality=data.get("quality"),
                attributions=_restore_importance(data.get("attributions")),
                attribution_events=int(data.get("attribution_events", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt reference profile: {exc!r}") from None


def _importance(
    attributions: Mapping[str, list[Any]] | None, n: int, max_features: int
) -> tuple[dict[str, float] | None, int]:
    """The reference importance of the attribution columns of ``n`` events, and how many
    events carried attributions; ``(None, 0)`` when none did.

    >>> _importance({"a": [1.0, -3.0, None], "b": [None, 0.5, None], "c": [None] * 3}, 3, 200)
    ({'a': 2.0, 'b': 0.25}, 2)
    """
    # a column without a single value (all-None rows of a batch) is no feature of these
    # events: once columnar, it cannot be told from one that was never sent
    attributions = {k: v for k, v in (attributions or {}).items()
                    if any(x is not None for x in v)}
    if not attributions:
        return None, 0
    names, matrix, has = absolute_matrix(attributions, n)
    events = int(np.count_nonzero(has))
    if not events:
        return None, 0
    means = {name: math.fsum(row) / events for name, row in zip(names, matrix.tolist(),
                                                                 strict=True)}
    return cap_importance(means, max_features), events


def _restore_importance(data: Any) -> dict[str, float] | None:
    if data is None:
        return None
    out = {str(k): float(v) for k, v in dict(data).items()}
    if not all(math.isfinite(v) and v >= 0 for v in out.values()):
        raise ValueError("reference attributions must be finite and non-negative")
    return out


def _profile(values: list[Any], numeric_bins: int, max_categories: int) -> SeriesProfile:
    n_num = sum(1 for v in values if (t := type(v)) is float or t is int)
    n_cat = sum(1 for v in values if (t := type(v)) is str or t is bool)
    if n_num and n_num >= n_cat:
        arr = numeric_column(values)
        finite = arr[np.isfinite(arr)]
        numeric = NumericBinning.from_values(finite, numeric_bins)
        counts, _ = count_index(numeric.index(arr), numeric.size)
        return SeriesProfile(numeric, counts, float(finite.min()), float(finite.max()))
    cats = [
        v if type(v) is str else ("true" if v else "false") if type(v) is bool else None
        for v in values
    ]
    categorical = CategoricalBinning.from_values(cats, max_categories)
    counts, _ = count_index(categorical.index(values), categorical.size)
    known = {c for c in cats if c is not None}
    return SeriesProfile(categorical, counts,
                         known=frozenset(known) if len(known) <= MAX_KNOWN_CATEGORIES else None)


def profiles_by_version(
    events: Iterable[dict[str, Any]],
) -> dict[tuple[str, str | None], list[dict[str, Any]]]:
    """Group events by (model, model_version), keeping their order."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for e in events:
        groups.setdefault((e["model"], e["model_version"]), []).append(e)
    return groups
