"""The drift monitor of one (model, model_version): windows, PSI, ADWIN and alerts.

:class:`ModelMonitor` is the unit of state the Kafka worker keeps in a changelog-backed
table and ``replay`` keeps in a dict. Both call :meth:`ModelMonitor.process` with batches
of normalised events in arrival order and publish what it returns: window reports and
alert transitions.

**Batch invariance.** The outputs depend only on the sequence of events, not on how it is
cut into batches: count windows are split at exact event counts, event-time windows at
the exact event that moves the watermark past their end, ADWIN's chunks by count (see
``stream/core/adwin.py``). That is what lets ``replay`` reproduce the live path, and what
the tests check by feeding the same events in different batch sizes.

**Windows.**

- ``count``: a window is the last ``window_size`` events, evaluated every ``window_step``
  events (kept as ``window_size / window_step`` sub-window histograms, summed at
  evaluation). ``window_step == window_size`` gives tumbling windows.
- ``time``: event-time tumbling windows ``[k T, (k+1) T)``. The watermark is the largest
  event time seen minus ``allowed_lateness_seconds``; a window closes (and is evaluated)
  when the watermark reaches its end. An event whose window has closed is *late*: it is
  counted in the next report's ``late_events``, not binned.

**Unknown features** (not in the reference) are counted per window when they carry a
value (a null is indistinguishable from an absent field once events are columnar).

**Data integrity**, per series and window, against the reference: the missing rate (and
``new_missing`` when the reference never missed it), values of the wrong type, numeric
values out of the reference's range (widened by ``range_margin`` of it), categorical
values the reference never had (with the most frequent ones named), and schema drift
(features the reference does not know, reference features that stopped arriving).
Alerts are ``kind: data_quality`` with detectors ``missing`` (the missing rate's increase
over the reference's, when significant at 3 standard errors), ``type_mismatch``,
``out_of_range``, ``unseen_categories`` (shares, with the same hysteresis as PSI) and
``schema`` (a detection that resolves after ``schema_quiet_evaluations`` clean windows).

**Feature attributions** (``attributions`` of prediction events): per window, the sum of
the absolute attribution of every feature and the number of events carrying attributions
give the window's feature importance (mean absolute attribution), which is compared with
the reference's (``stream/core/attribution.py``): the NDCG of its ranking and the largest
change of one feature's share of the total. Features are tracked by name when the
reference has them, plus the first ``_MAX_NEW_ATTRIBUTIONS`` others to appear (in event
order); the rest are pooled under ``(other)``. Sums are accumulated in event order
(``numpy.cumsum`` is sequential), so they do not depend on batching either. Alerts are
``kind: attribution_drift`` with detectors ``ndcg`` (below
``attribution_ndcg_warning`` / ``_critical``) and ``share`` (one condition per model
version; its ``feature`` names the feature whose share moved most when it fired, for the
whole episode), judged only on windows with at least ``min_window_values`` events with
attributions.

**Warm-up.** Without a reference, the first ``warmup_events`` events of the version become
its reference (``source: warmup``); windows start after them, so the first window is not
compared with itself.

>>> from stream.config import MonitorConfig
>>> cfg = MonitorConfig(window_size=100, warmup_events=200, min_window_values=50)
>>> mon = ModelMonitor("fraud", "v1", cfg)
>>> ev = lambda i, x: {"event_id": str(i), "model": "fraud", "model_version": "v1",
...                    "ts": float(i), "features": {"x": x}, "prediction": None}
>>> out = mon.process([ev(i, float(i % 10)) for i in range(300)])
>>> [r["window"]["index"] for r in out.reports], out.alerts
([0], [])
>>> out = mon.process([ev(i, 50.0) for i in range(300, 400)])
>>> sorted((a["kind"], a["detector"], a["severity"], a["feature"]) for a in out.alerts)
[('data_quality', 'out_of_range', 'critical', 'x'), ('feature_drift', 'psi', 'critical', 'x')]
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.config import MonitorConfig
from stream.core.adwin import AdwinDetector
from stream.core.alerts import (
    AlertState,
    Transition,
    alert_event,
    alert_id,
    slice_id,
    step_detection,
    step_threshold,
)
from stream.core.attribution import OTHER, absolute_matrix, max_share_change, ndcg, shares
from stream.core.columns import (
    SeriesKey,
    append_columns,
    column,
    columns_from_events,
    numeric_column,
    select_columns,
    series_name,
)
from stream.core.histogram import NumericBinnings, count_index
from stream.core.psi import psi, psi_noise_floor
from stream.core.reference import ReferenceProfile
from stream.core.slices import SliceSelector, slice_label
from stream.errors import SnapshotError

__all__ = ["ModelMonitor", "MonitorOutput"]

_SNAPSHOT_KIND = "driftstream.monitor"
_SNAPSHOT_VERSION = 1
#: Distinct unknown feature names tracked per window; more are pooled under ``(other)``.
_MAX_UNKNOWN_NAMES = 50
#: Distinct unseen categories named per series and window; more are pooled as ``(other)``.
_MAX_OFFENDERS = 10
#: Unseen values looked at per series and batch to name offenders (all are counted).
_MAX_OFFENDER_ROWS = 1000
#: Attribution features tracked by name beyond the reference's; later ones are pooled.
_MAX_NEW_ATTRIBUTIONS = 50
#: Integrity detectors per series: (report field, config prefix).
_INTEGRITY = (("missing", "missing"), ("type_mismatch", "type_mismatch"),
              ("out_of_range", "out_of_range"), ("unseen_categories", "unseen"))

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
#: The absolute attributions of a batch: tracked features (and ``(other)``), a (features x
#: events) matrix, 0 where an event has none, and the mask of the events that carry some.
_AttrBatch = tuple[list[str], FloatArray, npt.NDArray[np.bool_]]
#: the numeric series of a batch, their bucket indices (one row each) and their binnings
_Stacked = tuple[tuple[SeriesKey, ...], IntArray, NumericBinnings]


@dataclass
class MonitorOutput:
    """What one :meth:`ModelMonitor.process` call produced, in order."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: Events binned into windows (warm-up and late events excluded).
    windowed: int = 0
    warmup: int = 0
    late: int = 0
    #: ADWIN detections per series name during this call.
    adwin_detections: dict[str, int] = field(default_factory=dict)

    def extend(self, other: MonitorOutput) -> None:
        self.reports += other.reports
        self.alerts += other.alerts
        self.windowed += other.windowed
        self.warmup += other.warmup
        self.late += other.late
        for k, v in other.adwin_detections.items():
            self.adwin_detections[k] = self.adwin_detections.get(k, 0) + v


class _Acc:
    """Counts of one (sub-)window: per series bucket counts and type mismatches."""

    __slots__ = ("attr_n", "attr_sum", "counts", "flagged", "mismatch", "n", "offenders", "ts_max",
                 "ts_min")

    def __init__(self, sizes: dict[SeriesKey, int]) -> None:
        self.counts: dict[SeriesKey, IntArray] = {k: np.zeros(s, np.int64) for k, s in sizes.items()}
        self.mismatch: dict[SeriesKey, int] = dict.fromkeys(sizes, 0)
        #: Out-of-range (numeric) or unseen (categorical) values per series.
        self.flagged: dict[SeriesKey, int] = dict.fromkeys(sizes, 0)
        #: The most frequent unseen categories per series (bounded).
        self.offenders: dict[SeriesKey, Counter[str]] = {}
        self.n = 0
        self.ts_min = float("inf")
        self.ts_max = float("-inf")
        #: Events with attributions, and the sum of absolute attributions per feature
        #: (features with a non-zero sum only).
        self.attr_n = 0
        self.attr_sum: dict[str, float] = {}

    def add_attributions(self, attr: _AttrBatch, sel: slice | npt.NDArray[np.bool_]) -> None:
        """Add the attributions of the selected rows, in row order: a sequential sum
        (``cumsum``), the same whatever the batches were."""
        names, matrix, has = attr
        k = int(np.count_nonzero(has[sel]))
        if not k:
            return
        self.attr_n += k
        rows = matrix[:, sel]
        prev = np.array([self.attr_sum.get(name, 0.0) for name in names])
        # cumsum accumulates along each row in order: prev + v1 + v2 + ... (never pairwise)
        sums = np.cumsum(np.concatenate([prev[:, None], rows], axis=1), axis=1)[:, -1]
        seen_rows: list[bool] = np.asarray(rows.any(axis=1), dtype=bool).tolist()
        for name, total, seen in zip(names, sums.tolist(), seen_rows, strict=True):
            if seen or name in self.attr_sum:
                self.attr_sum[name] = total

    def add(self, idx: dict[SeriesKey, IntArray], sel: slice | npt.NDArray[np.bool_],
            ts: npt.NDArray[np.float64], flags: dict[SeriesKey, npt.NDArray[np.bool_]],
            raw: dict[SeriesKey, list[Any]], numeric: _Stacked | None = None) -> None:
        """Count the selected rows of every series: the numeric ones from ``numeric``,
        their indices as one matrix (``NumericBinnings``) counted in one call, the others
        from ``idx``."""
        t = ts[sel]
        if t.size == 0:
            return
        self.n += int(t.size)
        self.ts_min = min(self.ts_min, float(t.min()))
        self.ts_max = max(self.ts_max, float(t.max()))
        if numeric is not None:
            keys, matrix, binnings = numeric
            stacked = binnings.count_index(matrix[:, sel])
            for key, row in zip(keys, stacked, strict=True):
                counts = self.counts[key]
                counts += row[:counts.size]
                self.mismatch[key] += int(row[counts.size])
        for key, ix in idx.items():
            counts = self.counts[key]
            c, mm = count_index(ix[sel], counts.size)
            counts += c
            self.mismatch[key] += mm
        for key, mask in flags.items():
            hit = mask[sel]
            k = int(np.count_nonzero(hit))
            if not k:
                continue
            self.flagged[key] += k
            if key in raw:  # categorical: remember which values were unseen
                rows = (np.arange(ts.size)[sel])[hit]
                values = raw[key]
                top = self.offenders.setdefault(key, Counter())
                for r in rows[:_MAX_OFFENDER_ROWS].tolist():
                    v = values[r]
                    name = v if type(v) is str else ("true" if v else "false")
                    if name in top or len(top) < _MAX_OFFENDERS:
                        top[name] += 1
                    else:
                        top["(other)"] += 1

    def merged(self, others: list[_Acc]) -> _Acc:
        out = _Acc({k: v.size for k, v in self.counts.items()})
        for acc in others:
            out.n += acc.n
            out.ts_min = min(out.ts_min, acc.ts_min)
            out.ts_max = max(out.ts_max, acc.ts_max)
            for key in out.counts:
                out.counts[key] += acc.counts[key]
                out.mismatch[key] += acc.mismatch[key]
                out.flagged[key] += acc.flagged[key]
            for key, top in acc.offenders.items():
                out.offenders.setdefault(key, Counter()).update(top)
            out.attr_n += acc.attr_n
            for name, v in acc.attr_sum.items():
                out.attr_sum[name] = out.attr_sum.get(name, 0.0) + v
        return out

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n": self.n,
            "ts_min": self.ts_min if self.n else None,
            "ts_max": self.ts_max if self.n else None,
            "series": [[k[0], k[1], c.tolist(), self.mismatch[k], self.flagged[k],
                        dict(self.offenders.get(k, {}))] for k, c in self.counts.items()],
        }
        if self.attr_n:
            out["attributions"] = [self.attr_n, dict(sorted(self.attr_sum.items()))]
        return out

    @classmethod
    def restore(cls, data: dict[str, Any], sizes: dict[SeriesKey, int]) -> _Acc:
        acc = cls(sizes)
        acc.n = int(data["n"])
        if acc.n:
            acc.ts_min, acc.ts_max = float(data["ts_min"]), float(data["ts_max"])
        for src, name, counts, mismatch, *integrity in data["series"]:
            key = (src, name)
            if key in acc.counts and len(counts) == acc.counts[key].size:
                acc.counts[key] = np.asarray(counts, dtype=np.int64)
                acc.mismatch[key] = int(mismatch)
                if integrity:  # absent from snapshots written before integrity checks
                    acc.flagged[key] = int(integrity[0])
                    if integrity[1]:
                        acc.offenders[key] = Counter(integrity[1])
        if "attributions" in data:  # absent from older snapshots and without attributions
            n, sums = data["attributions"]
            acc.attr_n = int(n)
            acc.attr_sum = {str(k): float(v) for k, v in sums.items()}
        return acc


@dataclass
class _Series:
    psi_alert: AlertState = field(default_factory=AlertState)
    adwin_alert: AlertState = field(default_factory=AlertState)
    adwin: AdwinDetector | None = None
    adwin_pending: int = 0  # detections since the last evaluation
    #: Data-integrity alert states by detector (missing, type_mismatch, ...).
    integrity: dict[str, AlertState] = field(default_factory=dict)


class ModelMonitor:
    """Drift state and logic of one (model, model_version)."""

    def __init__(
        self,
        model: str,
        model_version: str | None,
        config: MonitorConfig,
        reference: ReferenceProfile | None = None,
        *,
        slice_: tuple[str, str] | None = None,
    ) -> None:
        self.model = model
        self.model_version = model_version
        #: The (slice key, value) this monitor watches (``None``: all the version's events).
        self.slice_ = slice_
        #: Slice selectors by slice key (``stream/core/slices.py``), kept by the monitor of
        #: the whole version, which routes the events of its tracked slices.
        self.slices: dict[str, SliceSelector] = {}
        self.config = config
        self.reference: ReferenceProfile | None = None
        self.series: dict[SeriesKey, _Series] = {}
        #: Warm-up buffer (columnar, see ``append_columns``) until the reference exists.
        self.warmup: dict[str, Any] | None = None
        self.events_total = 0
        self.evaluations = 0
        self._late = 0
        self._unknown: Counter[str] = Counter()
        self.schema_alert = AlertState()
        #: Attribution alert states by detector (ndcg, share).
        self.attribution_alerts: dict[str, AlertState] = {}
        #: Attribution features tracked by name beyond the reference's, in order of
        #: first appearance (at most ``_MAX_NEW_ATTRIBUTIONS``).
        self._attr_new: list[str] = []
        #: The feature a firing share alert named when it fired: the whole episode keeps
        #: it, so its events carry one label set from firing to resolved.
        self._share_feature: str | None = None
        self._attr: _AttrBatch | None = None  # the batch being processed
        #: the reference whose numeric binnings are stacked, and the stack
        self._stacked_binnings: tuple[ReferenceProfile, NumericBinnings] | None = None
        self._numeric: _Stacked | None = None  # the batch's numeric indices, stacked
        # count windows
        self._sub: _Acc | None = None
        self._subs: deque[_Acc] = deque()
        # time windows
        self._open: dict[int, _Acc] = {}
        self._closed_upto: int | None = None
        self._watermark = float("-inf")
        if reference is not None:
            self.set_reference(reference)

    @property
    def who(self) -> str:
        """How messages name this monitor: ``model fraud v2``, ``... (region=eu)``."""
        who = f"model {self.model}" + (f" {self.model_version}" if self.model_version else "")
        return who + (f" (slice {self.slice_[0]}={self.slice_[1]})" if self.slice_ else "")

    # -- reference ---------------------------------------------------------------------

    def set_reference(self, reference: ReferenceProfile) -> None:
        """Install a reference (or replace it): windows restart, alert states are kept for
        series that still exist."""
        old = self.series
        self.reference = reference
        self.series = {}
        cfg = self.config
        for key, prof in reference.series.items():
            s = old.get(key) or _Series()
            if prof.kind == "numeric":
                s.adwin = s.adwin or AdwinDetector(cfg.adwin_delta, cfg.adwin_chunk, cfg.adwin_history)
            self.series[key] = s
        self.warmup = None
        self._attr_new = []
        self._reset_windows()

    def rebaseline(self, ts: float) -> list[dict[str, Any]]:
        """Drop the reference on purpose (``driftstream promote``): the version warms up a
        new one from its next ``warmup_events`` events, and every alert that was firing
        against the old reference resolves (the returned events). ``ts`` stamps them."""
        out: list[dict[str, Any]] = []
        who = self.who
        message = f"{who} was re-baselined: a new reference is being built from its next events"

        def resolve(state: AlertState, kind: str, feature: str | None, detector: str) -> None:
            if state.status == "firing":
                done = AlertState("ok", state.severity, state.episode, None, 0)
                out.append(alert_event(slice_=self.slice_, state=done, transition="resolved", kind=kind,
                                       model=self.model, model_version=self.model_version,
                                       feature=feature, detector=detector, value=None,
                                       threshold=None, window=None, ts=ts, message=message))

        for key, s in self.series.items():
            name = series_name(key)
            kind = "feature_drift" if key[0] == "feature" else "prediction_drift"
            resolve(s.psi_alert, kind, name, "psi")
            resolve(s.adwin_alert, kind, name, "adwin")
            for detector, state in sorted(s.integrity.items()):
                resolve(state, "data_quality", name, detector)
        resolve(self.schema_alert, "data_quality", None, "schema")
        for detector, state in sorted(self.attribution_alerts.items()):
            resolve(state, "attribution_drift", None, detector)
        # Keep each series with its alert states reset but their episode counts, so that a
        # condition firing against the new reference starts a new episode (consumers
        # dedupe on alert_id and episode).
        for s in self.series.values():
            s.psi_alert = AlertState(episode=s.psi_alert.episode)
            s.adwin_alert = AlertState(episode=s.adwin_alert.episode)
            s.integrity = {d: AlertState(episode=a.episode) for d, a in s.integrity.items()}
            s.adwin, s.adwin_pending = None, 0
        self.reference = None
        self.warmup = None
        self._attr_new = []
        self.schema_alert = AlertState(episode=self.schema_alert.episode)
        self.attribution_alerts = {d: AlertState(episode=a.episode)
                                   for d, a in self.attribution_alerts.items()}
        self._unknown.clear()
        self._late = 0
        self._reset_windows()
        return out

    def _sizes(self) -> dict[SeriesKey, int]:
        assert self.reference is not None
        return {k: p.binning.size for k, p in self.reference.series.items()}

    def _reset_windows(self) -> None:
        self._sub = _Acc(self._sizes()) if self.reference else None
        self._subs = deque()
        self._open = {}
        self._closed_upto = None
        self._watermark = float("-inf")

    # -- processing --------------------------------------------------------------------

    def process(self, events: list[dict[str, Any]]) -> MonitorOutput:
        """Process normalised events of this (model, model_version), in order."""
        return self.process_columns(columns_from_events(events))

    def process_columns(self, cols: dict[str, Any]) -> MonitorOutput:
        """Process a columnar batch (``stream.core.columns``) of this (model, version)."""
        out = MonitorOutput()
        n = cols["n"]
        if not n:
            return out
        self.events_total += n
        if self.reference is None:
            need = self.config.warmup_events - (self.warmup["n"] if self.warmup else 0)
            self.warmup = append_columns(
                self.warmup, cols if need >= n else select_columns(cols, slice(0, need)))
            out.warmup = min(need, n)
            if self.warmup["n"] < self.config.warmup_events:
                return out
            self.set_reference(
                ReferenceProfile.from_columns(
                    self.warmup,
                    self.model,
                    self.model_version,
                    numeric_bins=self.config.numeric_bins,
                    max_categories=self.config.max_categories,
                    max_features=self.config.max_features,
                    source="warmup",
                )
            )
            if need >= n:
                return out
            cols = select_columns(cols, slice(need, None))
        ref = self.reference
        assert ref is not None
        ts = np.asarray(cols["ts"], dtype=np.float64)
        idx: dict[SeriesKey, IntArray] = {}
        values: dict[SeriesKey, npt.NDArray[np.float64]] = {}
        # out of range (numeric) / unseen (categorical) masks, and the raw categorical
        # values behind an unseen flag (to name the offenders)
        self._flags: dict[SeriesKey, npt.NDArray[np.bool_]] = {}
        self._raw: dict[SeriesKey, list[Any]] = {}
        margin = self.config.range_margin
        for key, prof in ref.series.items():
            raw = column(cols, key)
            if prof.kind == "numeric":
                arr = numeric_column(raw)
                values[key] = arr  # binned below, all numeric series at once
                if prof.min is not None and prof.max is not None:
                    pad = margin * (prof.max - prof.min)
                    with np.errstate(invalid="ignore"):
                        self._flags[key] = np.isfinite(arr) & (
                            (arr < prof.min - pad) | (arr > prof.max + pad))
            else:
                ix = prof.binning.index(raw)  # type: ignore[arg-type]
                idx[key] = ix
                if prof.known is not None:
                    other = prof.binning.size - 2
                    cand = ix == other
                    if cand.any():
                        known = prof.known
                        for r in np.flatnonzero(cand).tolist():
                            v = raw[r]
                            if (v if type(v) is str else "true" if v else "false") in known:
                                cand[r] = False
                        self._raw[key] = raw
                    self._flags[key] = cand
        self._numeric = None
        if values:
            binnings = self._numeric_binnings(ref)
            matrix = binnings.index(np.stack(list(values.values())))
            self._numeric = (tuple(values), matrix, binnings)
        self._attr = self._attribution_batch(cols)
        if self.config.window_kind == "count":
            self._process_count(cols, ts, idx, values, out)
        else:
            self._process_time(cols, ts, idx, values, out)
        self._flags, self._raw, self._attr, self._numeric = {}, {}, None, None
        return out

    def _numeric_binnings(self, ref: ReferenceProfile) -> NumericBinnings:
        """The binnings of ``ref``'s numeric series, in its order, stacked (cached)."""
        cached = self._stacked_binnings
        if cached is None or cached[0] is not ref:
            cached = self._stacked_binnings = (ref, NumericBinnings(
                [p.binning for p in ref.series.values()  # type: ignore[misc]
                 if p.kind == "numeric"]))
        return cached[1]

    def _attribution_batch(self, cols: dict[str, Any]) -> _AttrBatch | None:
        """The batch's absolute attributions per tracked feature, pooling the others under
        ``(other)``. Features the reference does not know are tracked by name in the order
        they first appear in (by event, then name), up to ``_MAX_NEW_ATTRIBUTIONS``."""
        raw = cols.get("attributions")
        if not raw:
            return None
        names, matrix, has = absolute_matrix(raw, cols["n"])
        ref = self.reference
        assert ref is not None
        tracked = {n for n in ref.attributions or () if n != OTHER}
        tracked.update(self._attr_new)
        room = _MAX_NEW_ATTRIBUTIONS - len(self._attr_new)
        if room > 0:
            firsts = []
            for name, row in zip(names, matrix, strict=True):
                if name not in tracked and name != OTHER and (nz := np.flatnonzero(row)).size:
                    firsts.append((int(nz[0]), name))
            for _, name in sorted(firsts)[:room]:
                self._attr_new.append(name)
                tracked.add(name)
        keep = [i for i, name in enumerate(names) if name in tracked]
        if len(keep) == len(names):
            return names, matrix, has
        # the others pooled, row by row in name order: a row's sum is the same in any batch
        pooled = sorted((name, i) for i, name in enumerate(names) if name not in tracked)
        other = matrix[pooled[0][1]].copy()
        for _, i in pooled[1:]:
            other += matrix[i]
        return ([names[i] for i in keep] + [OTHER],
                np.vstack([matrix[keep], other[None, :]]), has)

    def _adwin(self, values: dict[SeriesKey, npt.NDArray[np.float64]], sel: slice,
               out: MonitorOutput) -> None:
        for key, arr in values.items():
            s = self.series[key]
            if s.adwin is None:
                continue
            v = arr[sel]
            v = v[np.isfinite(v)]
            if v.size:
                d = s.adwin.update(v)
                if d:
                    s.adwin_pending += d
                    name = series_name(key)
                    out.adwin_detections[name] = out.adwin_detections.get(name, 0) + d

    def _process_count(self, cols: dict[str, Any], ts: FloatArray, idx: dict[SeriesKey, IntArray],
                       values: dict[SeriesKey, FloatArray], out: MonitorOutput) -> None:
        step, n = self.config.step, ts.size
        keep = self.config.window_size // step
        a = 0
        while a < n:
            assert self._sub is not None
            b = min(n, a + step - self._sub.n)
            sel = slice(a, b)
            self._sub.add(idx, sel, ts, self._flags, self._raw, self._numeric)
            if self._attr is not None:
                self._sub.add_attributions(self._attr, sel)
            self._track_unknown(cols, a, b)
            self._adwin(values, sel, out)
            out.windowed += b - a
            if self._sub.n == step:
                self._subs.append(self._sub)
                if len(self._subs) > keep:
                    self._subs.popleft()
                self._sub = _Acc(self._sizes())
                if len(self._subs) == keep:
                    acc = self._subs[0].merged(list(self._subs)) if keep > 1 else self._subs[0]
                    window = {"kind": "count", "index": self.evaluations, "start": acc.ts_min,
                              "end": acc.ts_max, "count": acc.n}
                    self._evaluate(acc, window, out)
            a = b

    def _process_time(self, cols: dict[str, Any], ts: FloatArray, idx: dict[SeriesKey, IntArray],
                      values: dict[SeriesKey, FloatArray], out: MonitorOutput) -> None:
        T, lateness = self.config.window_seconds, self.config.allowed_lateness_seconds
        win = np.floor(ts / T).astype(np.int64)
        wm = np.maximum.accumulate(np.maximum(ts - lateness, self._watermark))
        closed = np.floor(wm / T).astype(np.int64)  # windows < closed[i] are closed at i
        if self._closed_upto is not None:
            closed = np.maximum(closed, self._closed_upto)
        late = win < closed
        # closures happen *before* the event that moved the watermark is added
        cuts = np.flatnonzero(np.diff(closed)) + 1
        bounds = [0, *cuts.tolist(), ts.size]
        for i in range(len(bounds) - 1):
            a, b = bounds[i], bounds[i + 1]
            if self._closed_upto is None or closed[a] > self._closed_upto:
                self._close_time_windows(int(closed[a]), out)
            self._track_unknown(cols, a, b)
            sel = slice(a, b)
            ok = ~late[a:b]
            seg_win = win[a:b]
            for w in np.unique(seg_win[ok]).tolist():
                mask = np.zeros(ts.size, dtype=bool)
                mask[a:b] = ok & (seg_win == w)
                acc = self._open.get(w)
                if acc is None:
                    acc = self._open[w] = _Acc(self._sizes())
                acc.add(idx, mask, ts, self._flags, self._raw, self._numeric)
                if self._attr is not None:
                    acc.add_attributions(self._attr, mask)
            n_late = int((~ok).sum())
            self._late += n_late
            out.late += n_late
            out.windowed += (b - a) - n_late
            self._adwin(values, sel, out)
        self._watermark = float(wm[-1])

    def _close_time_windows(self, closed_upto: int, out: MonitorOutput) -> None:
        T = self.config.window_seconds
        for w in sorted(k for k in self._open if k < closed_upto):
            acc = self._open.pop(w)
            window = {"kind": "time", "index": w, "start": w * T, "end": (w + 1) * T, "count": acc.n}
            self._evaluate(acc, window, out)
        self._closed_upto = closed_upto

    # -- evaluation --------------------------------------------------------------------

    def _evaluate(self, acc: _Acc, window: dict[str, Any], out: MonitorOutput) -> None:
        ref = self.reference
        assert ref is not None
        cfg = self.config
        self.evaluations += 1
        ts = float(window["end"])
        features: dict[str, Any] = {}
        prediction: dict[str, Any] = {}
        adwin: dict[str, Any] = {}
        for key, prof in ref.series.items():
            s = self.series[key]
            counts = acc.counts[key]
            n_cur = int(counts.sum())
            name = series_name(key)
            warn, crit = cfg.thresholds(name)
            value = psi(prof.counts, counts, cfg.psi_smoothing) if n_cur and prof.total else None
            severity = "ok"
            if value is not None:
                severity = "critical" if value >= crit else "warning" if value >= warn else "ok"
            stats = {
                "type": prof.kind,
                "psi": value,
                "count": n_cur,
                "missing": int(counts[-1]),
                "type_mismatch": acc.mismatch[key],
                "noise_floor": psi_noise_floor(prof.total, n_cur, prof.binning.size) if n_cur else None,
                "severity": severity,
                **self._integrity_stats(key, acc),
            }
            self._integrity_alerts(key, name, stats, acc, window, ts, out)
            if key[0] == "feature":
                features[name] = stats
            else:
                prediction[key[1]] = stats
            kind = "feature_drift" if key[0] == "feature" else "prediction_drift"
            if value is not None and n_cur >= cfg.min_window_values:
                s.psi_alert, t = step_threshold(s.psi_alert, value, warn, crit,
                                                hysteresis=cfg.hysteresis, ts=ts)
                if t:
                    out.alerts.append(self._alert(s.psi_alert, t, kind, name, "psi", value,
                                                  crit if s.psi_alert.severity == "critical" else warn,
                                                  window, ts))
            if s.adwin is not None:
                adwin[name] = {"detections": s.adwin_pending, "estimation": s.adwin.estimation}
                if n_cur >= cfg.min_window_values:
                    s.adwin_alert, t = step_detection(s.adwin_alert, s.adwin_pending,
                                                      quiet=cfg.adwin_quiet_evaluations, ts=ts)
                    if t:
                        out.alerts.append(self._alert(s.adwin_alert, t, kind, name, "adwin",
                                                      s.adwin.estimation, None, window, ts))
                s.adwin_pending = 0
        unknown = dict(sorted(self._unknown.items()))
        self._unknown.clear()
        absent = sorted(n for n, f in features.items() if f["count"] and f["missing"] == f["count"]
                        and f["reference_missing_rate"] < 1.0)
        self._schema_alert(unknown, absent, acc.n, window, ts, out)
        attribution = self._attribution(acc, window, ts, out)
        late, self._late = self._late, 0
        out.reports.append({
            "schema_version": 1,
            "type": "window_report",
            "model": self.model,
            "model_version": self.model_version,
            "slice": slice_label(*self.slice_) if self.slice_ else None,
            "window": window,
            "reference": {"source": ref.source, "events": ref.events,
                          "features_over_cap": ref.features_over_cap},
            "features": features,
            "prediction": prediction,
            "adwin": adwin,
            "attribution": attribution,
            "unknown_features": unknown,
            "absent_features": absent,
            "late_events": late,
            "alerts_firing": self.alerts_firing(),
        })

    def alerts_firing(self) -> int:
        """How many alert conditions of this monitor are firing now."""
        return sum((s.psi_alert.status == "firing") + (s.adwin_alert.status == "firing")
                   + sum(a.status == "firing" for a in s.integrity.values())
                   for s in self.series.values()) + (self.schema_alert.status == "firing") + sum(
            a.status == "firing" for a in self.attribution_alerts.values())

    # -- data integrity ----------------------------------------------------------------

    def _integrity_stats(self, key: SeriesKey, acc: _Acc) -> dict[str, Any]:
        """Missing, type, range and unseen-category figures of one series in a window."""
        ref = self.reference
        assert ref is not None
        prof = ref.series[key]
        counts = acc.counts[key]
        seen = int(counts.sum()) + acc.mismatch[key]  # every value looked at
        missing = int(counts[-1])
        ref_missing = float(prof.counts[-1] / prof.total) if prof.total else 0.0
        present = int(counts.sum()) - missing  # values of the right type
        rate = missing / seen if seen else None
        out: dict[str, Any] = {
            "missing_rate": rate,
            "reference_missing_rate": ref_missing,
            "new_missing": bool(missing and prof.counts[-1] == 0),
            "type_mismatch_rate": acc.mismatch[key] / seen if seen else None,
        }
        if prof.kind == "numeric":
            out["out_of_range"] = acc.flagged[key]
            out["out_of_range_rate"] = acc.flagged[key] / present if present else None
        elif prof.known is not None:
            out["unseen_categories"] = acc.flagged[key]
            out["unseen_categories_rate"] = acc.flagged[key] / present if present else None
            top = acc.offenders.get(key)
            out["unseen_top"] = dict(top.most_common(5)) if top else {}
        return out

    def _integrity_alerts(self, key: SeriesKey, name: str, stats: dict[str, Any], acc: _Acc,
                          window: dict[str, Any], ts: float, out: MonitorOutput) -> None:
        cfg = self.config
        seen = stats["count"] + stats["type_mismatch"]
        if seen < cfg.min_window_values:
            return
        s = self.series[key]
        for field_, prefix in _INTEGRITY:
            value: float | None
            if field_ == "missing":
                value = self._missing_increase(key, stats, seen)
            else:
                value = stats.get(f"{field_}_rate")
            if value is None:
                continue
            warn, crit = getattr(cfg, f"{prefix}_warning"), getattr(cfg, f"{prefix}_critical")
            state, t = step_threshold(s.integrity.get(field_, AlertState()), value, warn, crit,
                                      hysteresis=cfg.hysteresis, ts=ts)
            s.integrity[field_] = state
            if t:
                threshold = crit if state.severity == "critical" else warn
                out.alerts.append(self._integrity_alert(state, t, name, field_, value, threshold,
                                                        stats, window, ts))

    def _missing_increase(self, key: SeriesKey, stats: dict[str, Any], n: int) -> float:
        """The missing rate's increase over the reference's when it is significant (more
        than 3 standard errors of the difference of two proportions, pooled), else 0: a
        feature missing 15 % of the time in the reference is missing 17 % in some window
        of 500 by chance alone."""
        ref = self.reference
        assert ref is not None
        prof = ref.series[key]
        m = prof.total
        increase = stats["missing_rate"] - stats["reference_missing_rate"]
        if increase <= 0:
            return 0.0
        pooled = (stats["missing"] + float(prof.counts[-1])) / (n + m)
        se = (pooled * (1 - pooled) * (1 / n + 1 / m)) ** 0.5
        return increase if increase > 3 * se else 0.0

    def _integrity_alert(self, state: AlertState, transition: Transition, name: str, detector: str,
                         value: float, threshold: float, stats: dict[str, Any],
                         window: dict[str, Any], ts: float) -> dict[str, Any]:
        who = self.who
        what = {"missing": "missing rate (above the reference's)",
                "type_mismatch": "share of values of the wrong type",
                "out_of_range": "share of values outside the reference range",
                "unseen_categories": "share of categories never seen in the reference"}[detector]
        if transition == "resolved":
            message = f"the {what} of {name!r} of {who} is back to {value:.3f}"
        else:
            message = (f"the {what} of {name!r} of {who} is {value:.3f} over {window['count']} "
                       f"events (threshold {threshold:g}, {state.severity})")
            if detector == "missing" and stats.get("new_missing"):
                message += "; it was never missing in the reference"
            if detector == "unseen_categories" and stats.get("unseen_top"):
                message += f"; most frequent: {', '.join(map(repr, stats['unseen_top']))}"
        return alert_event(slice_=self.slice_, state=state, transition=transition, kind="data_quality",
                           model=self.model, model_version=self.model_version, feature=name,
                           detector=detector, value=value, threshold=threshold, window=window,
                           ts=ts, message=message)

    def _schema_alert(self, unknown: dict[str, int], absent: list[str], n: int,
                      window: dict[str, Any], ts: float, out: MonitorOutput) -> None:
        if n < self.config.min_window_values:
            return
        changed = bool(unknown) or bool(absent)
        state, t = step_detection(self.schema_alert, int(changed),
                                  quiet=self.config.schema_quiet_evaluations, ts=ts)
        self.schema_alert = state
        if not t:
            return
        who = self.who
        if t == "resolved":
            message = f"the features of {who} match its reference again"
        else:
            parts = []
            if unknown:
                parts.append(f"features not in the reference: {', '.join(sorted(unknown))}")
            if absent:
                parts.append(f"reference features that stopped arriving: {', '.join(absent)}")
            message = f"schema drift of {who}: " + "; ".join(parts)
        out.alerts.append(alert_event(slice_=self.slice_,
            state=state, transition=t, kind="data_quality", model=self.model,
            model_version=self.model_version, feature=None, detector="schema",
            value=float(len(unknown) + len(absent)), threshold=None, window=window, ts=ts,
            message=message))

    # -- feature attributions ----------------------------------------------------------

    def _attribution(self, acc: _Acc, window: dict[str, Any], ts: float,
                     out: MonitorOutput) -> dict[str, Any] | None:
        """The window's attribution figures (``None`` when neither the reference nor the
        window has attributions), and the alert transitions they cause."""
        ref = self.reference
        assert ref is not None
        ref_imp = ref.attributions
        n = acc.attr_n
        if ref_imp is None and not n:
            return None
        importance: dict[str, float] = {}
        if n:
            names = sorted(set(acc.attr_sum) | set(ref_imp or ()))
            importance = {name: acc.attr_sum.get(name, 0.0) / n for name in names}
        value = ndcg(ref_imp, importance) if ref_imp and n else None
        moved = max_share_change(ref_imp, importance) if ref_imp and n else None
        report = {"events": n, "ndcg": value,
                  "max_share_change": moved[1] if moved else None,
                  "max_share_feature": moved[0] if moved else None,
                  "importance": importance}
        if n < self.config.min_window_values or ref_imp is None:
            return report
        cfg = self.config
        if value is not None:
            # step_threshold judges "higher is worse": feed it the distance from a perfect
            # ranking. nextafter makes it fire strictly below the NDCG thresholds (1 - x is
            # exact for x in [0.5, 1]).
            state, t = step_threshold(
                self.attribution_alerts.get("ndcg", AlertState()), 1.0 - value,
                np.nextafter(1.0 - cfg.attribution_ndcg_warning, 1.0),
                np.nextafter(1.0 - cfg.attribution_ndcg_critical, 1.0),
                hysteresis=cfg.hysteresis, ts=ts)
            self.attribution_alerts["ndcg"] = state
            if t:
                threshold = (cfg.attribution_ndcg_critical if state.severity == "critical"
                             else cfg.attribution_ndcg_warning)
                out.alerts.append(self._attribution_alert(state, t, "ndcg", None, value,
                                                          threshold, ref_imp, importance, n,
                                                          window, ts))
        if moved is not None:
            feature, change = moved
            state, t = step_threshold(
                self.attribution_alerts.get("share", AlertState()), change,
                cfg.attribution_share_warning, cfg.attribution_share_critical,
                hysteresis=cfg.hysteresis, ts=ts)
            self.attribution_alerts["share"] = state
            if t == "firing":
                self._share_feature = feature
            if t:
                threshold = (cfg.attribution_share_critical if state.severity == "critical"
                             else cfg.attribution_share_warning)
                out.alerts.append(self._attribution_alert(
                    state, t, "share", self._share_feature or feature, change, threshold,
                    ref_imp, importance, n, window, ts, moved=feature))
            if t == "resolved":
                self._share_feature = None
        return report

    def _attribution_alert(self, state: AlertState, transition: Transition, detector: str,
                           feature: str | None, value: float, threshold: float,
                           ref_imp: dict[str, float], importance: dict[str, float], events: int,
                           window: dict[str, Any], ts: float, moved: str | None = None
                           ) -> dict[str, Any]:
        who = self.who
        if detector == "ndcg":
            def top(imp: dict[str, float]) -> str:
                return ", ".join(sorted(imp, key=lambda k: (-imp[k], k))[:3])

            if transition == "resolved":
                message = (f"the feature-importance ranking of {who} agrees with its reference "
                           f"again: NDCG {value:.3f}")
            else:
                message = (f"the feature-importance ranking of {who} changed: NDCG {value:.3f} "
                           f"over {events} events with attributions (below {threshold:g}, "
                           f"{state.severity}); most important now: {top(importance)} "
                           f"(reference: {top(ref_imp)})")
        else:
            # ``feature`` is the one the episode fired for, ``moved`` the one that moved most now
            ref_share = shares(ref_imp).get(moved or "", 0.0)
            now_share = shares(importance).get(moved or "", 0.0)
            if transition == "resolved":
                message = (f"the shares of attribution of the features of {who} are back "
                           f"near the reference's: the largest change is {value:.3f}, "
                           f"of {moved!r}")
            else:
                message = (f"the share of attribution of feature {moved!r} of {who} moved "
                           f"from {ref_share:.3f} to {now_share:.3f} over {events} events with "
                           f"attributions (change {value:.3f}, threshold {threshold:g}, "
                           f"{state.severity})")
                if moved != feature:
                    message += f"; the alert fired for {feature!r}"
        event = alert_event(slice_=self.slice_, state=state, transition=transition, kind="attribution_drift",
                            model=self.model, model_version=self.model_version, feature=feature,
                            detector=detector, value=value, threshold=threshold, window=window,
                            ts=ts, message=message)
        # one condition per model version: the id must not follow the feature that moved most
        event["alert_id"] = alert_id("attribution_drift", self.model, self.model_version, None,
                                     detector, slice_id(self.slice_))
        return event

    def _alert(self, state: AlertState, transition: Transition, kind: str, name: str,
               detector: str, value: float | None, threshold: float | None,
               window: dict[str, Any], ts: float) -> dict[str, Any]:
        who = self.who
        what = f"{'feature' if kind == 'feature_drift' else 'prediction'} {name!r} of {who}"
        if detector == "psi":
            verb = {"firing": "is", "escalated": "rose to", "deescalated": "fell to",
                    "resolved": "is back to"}[transition]
            message = (f"PSI of {what} {verb} {value:.3f} over {window['count']} events"
                       + (f" (threshold {threshold:g}, {state.severity})" if transition != "resolved"
                          else f", below {threshold:g} with hysteresis"))
        elif transition == "resolved":
            message = f"ADWIN saw no further change in the mean of {what}"
        else:
            message = f"ADWIN detected a change in the mean of {what}" + (
                f"; the mean is now about {value:.4g}" if value is not None else "")
        return alert_event(slice_=self.slice_, state=state, transition=transition, kind=kind,
                           model=self.model,
                           model_version=self.model_version, feature=name, detector=detector,
                           value=value, threshold=threshold, window=window, ts=ts, message=message)

    def _track_unknown(self, cols: dict[str, Any], a: int, b: int) -> None:
        """Count non-null values of features the reference does not know, rows a:b."""
        ref = self.reference
        assert ref is not None
        unknown = [n for n in cols["features"] if ("feature", n) not in ref.series]
        if not unknown:
            return
        for name in unknown:
            c = sum(1 for v in cols["features"][name][a:b] if v is not None)
            if not c:
                continue
            if name in self._unknown or len(self._unknown) < _MAX_UNKNOWN_NAMES:
                self._unknown[name] += c
            else:
                self._unknown["(other)"] += c

    # -- state -------------------------------------------------------------------------

    def _window_config(self) -> list[Any]:
        c = self.config
        return [c.window_kind, c.window_size, c.step, c.window_seconds, c.allowed_lateness_seconds]

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe, versioned state (the value of the model-state table)."""
        return {
            "kind": _SNAPSHOT_KIND,
            "version": _SNAPSHOT_VERSION,
            "model": self.model,
            "model_version": self.model_version,
            "slice": list(self.slice_) if self.slice_ else None,
            "slices": {k: sel.snapshot() for k, sel in sorted(self.slices.items())},
            "window_config": self._window_config(),
            "reference": self.reference.snapshot() if self.reference else None,
            "warmup": self.warmup,
            "events_total": self.events_total,
            "evaluations": self.evaluations,
            "late": self._late,
            "unknown": dict(self._unknown),
            "series": [
                [k[0], k[1], s.psi_alert.snapshot(), s.adwin_alert.snapshot(),
                 s.adwin.snapshot() if s.adwin else None, s.adwin_pending,
                 {d: a.snapshot() for d, a in sorted(s.integrity.items())}]
                for k, s in self.series.items()
            ],
            "schema_alert": self.schema_alert.snapshot(),
            "attribution": {
                "new": list(self._attr_new),
                "alerts": {d: a.snapshot() for d, a in sorted(self.attribution_alerts.items())},
                "share_feature": self._share_feature,
            },
            "sub": self._sub.snapshot() if self._sub else None,
            "subs": [a.snapshot() for a in self._subs],
            "open": [[w, a.snapshot()] for w, a in sorted(self._open.items())],
            "closed_upto": self._closed_upto,
            "watermark": self._watermark if np.isfinite(self._watermark) else None,
        }

    @classmethod
    def restore(cls, data: dict[str, Any], config: MonitorConfig) -> ModelMonitor:
        """Rebuild a monitor from :meth:`snapshot` output under ``config``.

        If the window settings changed since the snapshot, the open windows are dropped
        (the reference, detectors and alert states are kept).
        """
        if data.get("kind") != _SNAPSHOT_KIND or data.get("version") != _SNAPSHOT_VERSION:
            raise SnapshotError(
                f"not a monitor snapshot of version {_SNAPSHOT_VERSION}: kind={data.get('kind')!r}"
                f" version={data.get('version')!r}; upgrade the worker or change app.id"
            )
        try:
            ref = ReferenceProfile.restore(data["reference"]) if data["reference"] else None
            sl = data.get("slice")  # absent from older snapshots
            mon = cls(data["model"], data["model_version"], config, ref,
                      slice_=(str(sl[0]), str(sl[1])) if sl else None)
            mon.slices = {
                str(k): SliceSelector.restore(v, max_values=config.max_slice_values,
                                              min_events=config.slice_min_events)
                for k, v in data.get("slices", {}).items()}
            mon.warmup = data["warmup"]
            mon.events_total = int(data["events_total"])
            mon.evaluations = int(data["evaluations"])
            mon._late = int(data["late"])
            mon._unknown = Counter(data["unknown"])
            for src, name, psi_a, adwin_a, adwin, pending, *rest in data["series"]:
                s = mon.series.get((src, name))
                if s is None and ref is None:  # re-baselined: warming up, episodes kept
                    s = mon.series[(src, name)] = _Series()
                if s is None:
                    continue
                s.psi_alert = AlertState.restore(psi_a)
                s.adwin_alert = AlertState.restore(adwin_a)
                if adwin is not None and s.adwin is not None:
                    s.adwin = AdwinDetector.restore(adwin)
                s.adwin_pending = int(pending)
                if rest:  # integrity alert states (absent from older snapshots)
                    s.integrity = {d: AlertState.restore(a) for d, a in rest[0].items()}
            if "schema_alert" in data:
                mon.schema_alert = AlertState.restore(data["schema_alert"])
            if "attribution" in data:  # absent from older snapshots
                attribution = data["attribution"]
                mon.attribution_alerts = {str(d): AlertState.restore(a)
                                          for d, a in attribution["alerts"].items()}
                mon._share_feature = attribution.get("share_feature")
                if ref is not None:
                    mon._attr_new = [str(n) for n in attribution["new"]][:_MAX_NEW_ATTRIBUTIONS]
            if ref is not None and data["window_config"] == mon._window_config():
                sizes = mon._sizes()
                mon._sub = _Acc.restore(data["sub"], sizes) if data["sub"] else _Acc(sizes)
                mon._subs = deque(_Acc.restore(a, sizes) for a in data["subs"])
                mon._open = {int(w): _Acc.restore(a, sizes) for w, a in data["open"]}
                mon._closed_upto = data["closed_upto"]
                wm = data["watermark"]
                mon._watermark = float(wm) if wm is not None else float("-inf")
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt monitor snapshot: {exc!r}") from None
        return mon

