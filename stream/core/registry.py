"""The monitors of many models: routing envelopes to them, caps, and dirty tracking.

Both the Kafka worker and ``replay`` drive the core through a :class:`MonitorRegistry`, by
handing it *envelopes* (what the ingest stage publishes on the by-model topic):

- ``{"type": "columns", "model": m, "columns": {...}}``: a columnar batch of one model's
  events, in order (``stream.core.columns``), as the ingest stage publishes them;
- ``{"type": "events", "model": m, "events": [...]}``: the same as normalised events;
- ``{"type": "reference", "profile": {...}}``: a reference profile snapshot;
- ``{"type": "rebaseline", "model": m, "model_version": v, "ts": t}``: drop the version's
  reference; it warms up a new one (``driftstream promote``);
- ``{"type": "labels", "model": m, "labels": {"event_id": [...], "label": [...],
  "ts": [...]}}``: delayed ground truth of one model, joined to its predictions by the
  model's :class:`~stream.core.quality_monitor.QualityMonitor`.

Predictions feed both the drift monitor of their (model, version) and the label join of
their model: from the model's first label on (``label_join_start = "first_label"``, so
that models without labels cost nothing), or from its first prediction (``"always"``).
Labels of a model with no predictions yet wait in its join like any label that came
first; if the grace period passes and the model has still had no prediction at all, they
are counted ``unknown_model`` (rather than ``labels_without_prediction``).
Label batches beyond ``max_models`` models are returned in ``rejected_labels``.

Where state lives is the caller's business: the registry asks ``load_state`` for a
snapshot the first time it meets a (model, version) and ``load_reference`` for a
published reference, and reports which monitors changed (:meth:`take_dirty`) so the caller
can persist them in one write each.

Memory is bounded by ``max_models`` (per registry, i.e. per worker): events of a
(model, version) beyond the cap are returned as rejections, never dropped silently.

>>> from stream.config import MonitorConfig
>>> reg = MonitorRegistry(lambda model: MonitorConfig(warmup_events=2), max_models=1)
>>> ev = lambda m: {"event_id": "e", "model": m, "model_version": None, "ts": 1.0,
...                 "features": {"x": 1.0}}
>>> out = reg.handle({"type": "events", "model": "a", "events": [ev("a")]})
>>> out.rejected, reg.handle({"type": "events", "model": "b", "events": [ev("b")]}).rejected
(0, 1)
>>> sorted(key for key, _ in reg.take_dirty())
['a\\x1f']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.config import MonitorConfig
from stream.core.columns import columns_from_events, events_from_columns, select_columns
from stream.core.monitor import ModelMonitor, MonitorOutput
from stream.core.quality_monitor import BASELINE_METRICS, QualityMonitor, QualityOutput
from stream.core.reference import ReferenceProfile, reference_key
from stream.core.shadow import ShadowComparator, ShadowOutput
from stream.core.slices import SliceSelector
from stream.core.volume import VolumePolicy, VolumeTracker
from stream.errors import SnapshotError

__all__ = ["HandleResult", "MonitorRegistry", "join_chunk_key", "quality_key", "shadow_key",
           "slice_key", "volume_key", "volume_policy"]


@dataclass
class HandleResult:
    """Outputs of one envelope, and the events refused by the model cap."""

    output: MonitorOutput = field(default_factory=MonitorOutput)
    rejected: int = 0
    rejected_events: list[dict[str, Any]] = field(default_factory=list)
    #: Keys of (model, version) whose monitor is new in this registry.
    created: list[str] = field(default_factory=list)
    quality: QualityOutput = field(default_factory=QualityOutput)
    #: Label events of a model this registry does not know.
    rejected_labels: list[dict[str, Any]] = field(default_factory=list)
    #: How the label join's counters moved (joined, expired_predictions, ...).
    label_join: dict[str, int] = field(default_factory=dict)
    #: Volume alert transitions (too_big, too_small, deadman).
    volume_alerts: list[dict[str, Any]] = field(default_factory=list)
    #: Keys of (model, version) re-baselined by this envelope (their published reference
    #: is obsolete).
    rebaselined: list[str] = field(default_factory=list)
    #: Events per (model, slice key, outcome): ``tracked`` (went to a slice's own state),
    #: ``pooled`` (a value without state of its own), ``missing`` (no value for the key).
    slice_events: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: Shadow-against-production reports and alerts (``stream/core/shadow.py``).
    shadow: ShadowOutput = field(default_factory=ShadowOutput)


class MonitorRegistry:
    """Monitors by (model, model_version), created or restored on first use."""

    def __init__(
        self,
        config_for: Callable[[str], MonitorConfig],
        *,
        max_models: int,
        load_state: Callable[[str], dict[str, Any] | None] = lambda key: None,
        load_reference: Callable[[str], dict[str, Any] | None] = lambda key: None,
        load_quality: Callable[[str], dict[str, Any] | None] = lambda key: None,
        load_volume: Callable[[str], dict[str, Any] | None] = lambda key: None,
    ) -> None:
        self.config_for = config_for
        self.max_models = max_models
        self.load_state = load_state
        self.load_reference = load_reference
        self.load_quality = load_quality
        self.load_volume = load_volume
        self.monitors: dict[str, ModelMonitor] = {}
        #: Monitors of tracked slices (``slice_key``), outside the ``max_models`` cap: at
        #: most ``len(slice_keys) * max_slice_values`` per (model, version).
        self.slice_monitors: dict[str, ModelMonitor] = {}
        self.quality: dict[str, QualityMonitor] = {}
        self.volume: dict[str, VolumeTracker] = {}
        self._no_quality: set[str] = set()
        #: Shadow comparators and the shadow side's quality monitors, by model; their
        #: state lives with the quality state (``shadow_key``).
        self.shadow: dict[str, ShadowComparator] = {}
        self.shadow_quality: dict[str, QualityMonitor] = {}
        self._no_shadow: set[str] = set()
        self._shadow_dirty: set[str] = set()
        self._volume_dirty: set[str] = set()
        self._dirty: set[str] = set()
        self._quality_dirty: set[str] = set()
        #: Snapshots that could not be restored (kept for the operator, state restarted).
        self.restore_errors: list[str] = []

    def handle(self, envelope: dict[str, Any], *, now: float | None = None) -> HandleResult:
        """Process one envelope. ``now`` is the wall-clock arrival time, for the volume
        dead-man timer (``None`` in replay, which has no wall clock)."""
        result = HandleResult()
        if envelope.get("type") == "reference":
            self.set_reference(ReferenceProfile.restore(envelope["profile"]))
            return result
        if envelope.get("type") == "labels":
            return self._labels(envelope["model"], envelope["labels"], result)
        if envelope.get("type") == "rebaseline":
            model, version = envelope["model"], envelope.get("model_version")
            mon = self._get(model, version, result)
            if mon is not None:
                ts = float(envelope.get("ts") or 0.0)
                result.output.alerts += mon.rebaseline(ts=ts)
                key = reference_key(model, version)
                self._dirty.add(key)
                result.rebaselined.append(key)
                for skey in self._slices_of(model, version, mon):
                    result.output.alerts += self.slice_monitors[skey].rebaseline(ts=ts)
                    self._dirty.add(skey)
            return result
        if envelope.get("type") == "columns":
            cols = envelope["columns"]
        else:
            cols = columns_from_events(envelope["events"])
        model = envelope["model"]
        accepted = cols
        for version, part in _by_version(cols):
            mon = self._get(model, version, result)
            if mon is None:
                result.rejected += part["n"]
                for eid, e in zip(part["event_id"], events_from_columns(part), strict=True):
                    result.rejected_events.append(
                        {"event_id": eid, "model": model, "model_version": version, **e})
                continue
            result.output.extend(mon.process_columns(part))
            self._dirty.add(reference_key(model, version))
            if mon.config.slice_keys:
                self._route_slices(mon, part, result)
        config = self.config_for(model)
        if config.volume_enabled:
            vt = self._volume(model)
            if vt is not None:
                result.volume_alerts += vt.observe(cols["ts"], now=now)
                self._volume_dirty.add(model)
        if result.rejected:
            kept = [i for i, v in enumerate(cols["model_version"])
                    if reference_key(model, v) in self.monitors]
            accepted = select_columns(cols, kept) if kept else None
        shadow_part = None
        if accepted is not None and accepted.get("deployment") and accepted["prediction"]:
            accepted, shadow_part = self._shadow_split(model, accepted, config, result)
        if config.quality_enabled and (accepted is not None or shadow_part is not None):
            # a batch may hold shadow predictions only: both sides' joins start together
            qm = self._quality(model, create=config.label_join_start == "always")
            if qm is not None and accepted is not None:
                before = qm.join.counters
                out = qm.add_predictions(accepted)
                result.quality.extend(out)
                self._observe_quality(model, "production", out)
                _count(result, before, qm)
                self._quality_dirty.add(model)
            if qm is not None and shadow_part is not None:
                sqm = self._shadow_quality(model)
                if sqm is not None:
                    self._shadow_quality_out(model, sqm.add_predictions(shadow_part), result)
        return result

    def _shadow_split(self, model: str, cols: dict[str, Any], config: MonitorConfig,
                      result: HandleResult) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Feed the model's shadow comparator (created at its first shadow prediction);
        split the batch into its production and shadow rows for the label joins."""
        name = config.shadow_deployment
        dep = cols["deployment"]
        sc = self._shadow(model)
        if sc is None:
            if name not in dep:
                return cols, None
            first = dep.index(name)
            sc = self.shadow[model] = ShadowComparator(model, config)
            self._no_shadow.discard(model)
            feed = cols if first == 0 else select_columns(cols, slice(first, None))
        else:
            feed = cols
        result.shadow.extend(sc.add(feed))
        self._shadow_dirty.add(model)
        shadow_rows = [i for i, d in enumerate(dep) if d == name]
        if not shadow_rows:
            return cols, None
        prod_rows = [i for i, d in enumerate(dep) if d != name]
        return (select_columns(cols, prod_rows) if prod_rows else None,
                select_columns(cols, shadow_rows))

    def _shadow(self, model: str) -> ShadowComparator | None:
        sc = self.shadow.get(model)
        if sc is not None or model in self._no_shadow:
            return sc
        data = self.load_quality(shadow_key(model))
        if data is not None:
            try:
                sc = self.shadow[model] = ShadowComparator.restore(data, self.config_for(model))
                return sc
            except SnapshotError as exc:
                self.restore_errors.append(f"{shadow_key(model)!r}: {exc}")
        self._no_shadow.add(model)
        return None

    def _shadow_quality(self, model: str) -> QualityMonitor | None:
        """The label join and quality of a model's shadow side (its own, because both
        sides predict the same event ids)."""
        sqm = self.shadow_quality.get(model)
        if sqm is not None:
            return sqm
        name = shadow_key(model)
        header = self.load_quality(quality_key(name))
        if header is not None:
            try:
                chunks = [self.load_quality(join_chunk_key(name, cid))
                          for cid in QualityMonitor.chunk_ids(header)]
                sqm = QualityMonitor.restore(header, [c for c in chunks if c is not None],
                                             self.config_for(model))
            except SnapshotError as exc:
                self.restore_errors.append(f"{quality_key(name)!r}: {exc}")
        if sqm is None:
            if len(self.shadow_quality) >= self.max_models:
                return None
            sqm = QualityMonitor(model, self.config_for(model))
        self.shadow_quality[model] = sqm
        return sqm

    def _shadow_quality_out(self, model: str, out: QualityOutput, result: HandleResult) -> None:
        """The shadow side's quality reports (``deployment: shadow``) and alerts; its join
        counters are not the model's (the production join counts those)."""
        for report in out.reports:
            report["deployment"] = self.config_for(model).shadow_deployment
        result.quality.reports += out.reports
        result.quality.alerts += out.alerts
        self._observe_quality(model, "shadow", out)
        self._shadow_dirty.add(model)

    def _observe_quality(self, model: str, side: str, out: QualityOutput) -> None:
        sc = self.shadow.get(model)
        if sc is not None:
            for report in out.reports:
                sc.observe_quality(side, report)

    def _route_slices(self, mon: ModelMonitor, cols: dict[str, Any], result: HandleResult) -> None:
        """Feed the events of tracked slice values to their own monitors."""
        config = mon.config
        tags = cols.get("slices") or {}
        counts = result.slice_events
        for key in config.slice_keys:
            sel = mon.slices.get(key)
            if sel is None:
                sel = mon.slices[key] = SliceSelector(
                    key, max_values=config.max_slice_values, min_events=config.slice_min_events)
            pooled, missing = sel.pooled_events, sel.missing_events
            routed = sel.route(tags.get(key) or [None] * cols["n"])
            tracked = 0
            for value, rows in routed.items():
                skey = slice_key(mon.model, mon.model_version, key, value)
                smon = self.slice_monitors.get(skey)
                if smon is None:
                    smon = self.slice_monitors[skey] = self._restore_or_new(
                        mon.model, mon.model_version, (key, value))
                part = cols if len(rows) == cols["n"] else select_columns(cols, rows)
                o = smon.process_columns(part)  # its reports and alerts; the event
                result.output.reports += o.reports  # counts are the whole version's
                result.output.alerts += o.alerts
                self._dirty.add(skey)
                tracked += len(rows)
            for outcome, n in (("tracked", tracked), ("pooled", sel.pooled_events - pooled),
                               ("missing", sel.missing_events - missing)):
                if n:
                    k = (mon.model, key, outcome)
                    counts[k] = counts.get(k, 0) + n

    def _slices_of(self, model: str, version: str | None, mon: ModelMonitor) -> list[str]:
        """Keys of the slice monitors of a (model, version), restored if need be."""
        keys = []
        for key, sel in sorted(mon.slices.items()):
            for value in sel.tracked:
                skey = slice_key(model, version, key, value)
                if skey not in self.slice_monitors:
                    self.slice_monitors[skey] = self._restore_or_new(model, version, (key, value))
                keys.append(skey)
        return keys

    def _labels(self, model: str, labels: dict[str, Any], result: HandleResult) -> HandleResult:
        qm = self._quality(model, create=True)
        if qm is None:
            result.label_join["cap_exceeded"] = len(labels["event_id"])
            result.rejected_labels = [
                {"event_id": e, "model": model, "label": lab, "ts": t}
                for e, lab, t in zip(labels["event_id"], labels["label"], labels["ts"], strict=True)]
            return result
        before = qm.join.counters
        out = qm.add_labels(labels)
        result.quality.extend(out)
        self._observe_quality(model, "production", out)
        _count(result, before, qm)
        self._quality_dirty.add(model)
        self._shadow(model)  # restored if it exists, so that its quality is compared
        if model in self.shadow and (sqm := self._shadow_quality(model)) is not None:
            self._shadow_quality_out(model, sqm.add_labels(labels), result)
        return result

    def _quality(self, model: str, *, create: bool) -> QualityMonitor | None:
        qm = self.quality.get(model)
        if qm is not None:
            return qm
        if not create and model in self._no_quality:
            return None  # looked up before: no stored state (until a label creates it)
        config = self.config_for(model)
        header = self.load_quality(quality_key(model))
        if header is not None:
            try:
                chunks = [self.load_quality(join_chunk_key(model, cid))
                          for cid in QualityMonitor.chunk_ids(header)]
                qm = QualityMonitor.restore(header, [c for c in chunks if c is not None], config)
            except SnapshotError as exc:
                self.restore_errors.append(f"{quality_key(model)!r}: {exc}")
        if qm is None:
            if not create or len(self.quality) >= self.max_models:
                self._no_quality.add(model)
                return None
            qm = QualityMonitor(model, config)
        self._no_quality.discard(model)
        self.quality[model] = qm
        return qm

    def _volume(self, model: str) -> VolumeTracker | None:
        vt = self.volume.get(model)
        if vt is not None:
            return vt
        policy = volume_policy(self.config_for(model))
        data = self.load_volume(volume_key(model))
        if data is not None:
            try:
                vt = VolumeTracker.restore(data, policy)
            except SnapshotError as exc:
                self.restore_errors.append(f"{volume_key(model)!r}: {exc}")
        if vt is None:
            if len(self.volume) >= self.max_models:
                return None
            vt = VolumeTracker(model, policy)
        self.volume[model] = vt
        return vt

    def check_deadman(self, now: float) -> list[dict[str, Any]]:
        """The dead-man timers of every model at wall-clock ``now``: call it from a timer,
        so that a model that sends nothing at all is noticed."""
        alerts: list[dict[str, Any]] = []
        for model, vt in self.volume.items():
            fired = vt.check(now)
            if fired:
                alerts += fired
                self._volume_dirty.add(model)
        return alerts

    def take_volume_dirty(self) -> list[tuple[str, dict[str, Any]]]:
        """Snapshots of the volume trackers changed since the last call."""
        out = [(volume_key(m), self.volume[m].snapshot()) for m in sorted(self._volume_dirty)
               if m in self.volume]
        self._volume_dirty.clear()
        return out

    def take_quality_dirty(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Table writes for the quality state changed since the last call: the header of
        each changed model and its changed join chunks (``None``: delete the key)."""
        out: list[tuple[str, dict[str, Any] | None]] = []
        for model in sorted(self._quality_dirty):
            qm = self.quality.get(model)
            if qm is None:
                continue
            for cid, chunk in sorted(qm.take_chunks().items()):
                out.append((join_chunk_key(model, cid), chunk))
            out.append((quality_key(model), qm.snapshot()))
        self._quality_dirty.clear()
        for model in sorted(self._shadow_dirty):
            sc = self.shadow.get(model)
            if sc is not None:
                out.append((shadow_key(model), sc.snapshot()))
            sqm = self.shadow_quality.get(model)
            if sqm is not None:
                name = shadow_key(model)
                for cid, chunk in sorted(sqm.take_chunks().items()):
                    out.append((join_chunk_key(name, cid), chunk))
                out.append((quality_key(name), sqm.snapshot()))
        self._shadow_dirty.clear()
        return out

    def set_reference(self, profile: ReferenceProfile) -> None:
        """Install a published reference; the monitor's windows restart against it."""
        key = reference_key(profile.model, profile.model_version)
        mon = self.monitors.get(key)
        if mon is None:
            if len(self.monitors) >= self.max_models:
                return  # the references table keeps it; installed when the model arrives
            mon = self._restore_or_new(profile.model, profile.model_version)
            self.monitors[key] = mon
        mon.set_reference(profile)
        self._dirty.add(key)
        q = profile.quality
        if q is not None and self.config_for(profile.model).quality_enabled:
            qm = self._quality(profile.model, create=True)
            if qm is not None:
                metrics = {m: float(v) for m, v in q["metrics"].items()
                           if m in BASELINE_METRICS.get(q["task"], ()) and v is not None}
                qm.set_reference_quality(profile.model_version, metrics)
                self._quality_dirty.add(profile.model)

    def _get(self, model: str, version: str | None, result: HandleResult) -> ModelMonitor | None:
        key = reference_key(model, version)
        mon = self.monitors.get(key)
        if mon is not None:
            return mon
        if len(self.monitors) >= self.max_models:
            return None
        mon = self._restore_or_new(model, version)
        self.monitors[key] = mon
        result.created.append(key)
        return mon

    def _restore_or_new(self, model: str, version: str | None,
                        slice_: tuple[str, str] | None = None) -> ModelMonitor:
        key = reference_key(model, version) if slice_ is None else slice_key(
            model, version, *slice_)
        config = self.config_for(model)
        data = self.load_state(key)
        if data is not None:
            try:
                return ModelMonitor.restore(data, config)
            except SnapshotError as exc:
                self.restore_errors.append(f"{key!r}: {exc}")
        if slice_ is not None:  # a slice warms up its own reference: like with like
            return ModelMonitor(model, version, config, slice_=slice_)
        ref = self.load_reference(key)
        profile = ReferenceProfile.restore(ref) if ref is not None else None
        return ModelMonitor(model, version, config, profile)

    def take_dirty(self) -> list[tuple[str, dict[str, Any]]]:
        """Snapshots of the monitors changed since the last call (and forget them)."""
        out = []
        for key in sorted(self._dirty):
            mon = self.monitors.get(key) or self.slice_monitors.get(key)
            if mon is not None:
                out.append((key, mon.snapshot()))
        self._dirty.clear()
        return out

    def forget(self, predicate: Callable[[str], bool]) -> list[str]:
        """Drop monitors whose key matches (their partition moved away); returns them.
        A model's quality monitor goes with it (``predicate`` sees ``quality_key``)."""
        gone = [k for k in self.monitors if predicate(k)]
        for k in gone:
            del self.monitors[k]
            self._dirty.discard(k)
        for k in [k for k in self.slice_monitors if predicate(k)]:
            del self.slice_monitors[k]
            self._dirty.discard(k)
        for model in [m for m in self.quality if predicate(quality_key(m))]:
            del self.quality[model]
            self._quality_dirty.discard(model)
        for model in [m for m in self.shadow if predicate(shadow_key(m))]:
            del self.shadow[model]
            self.shadow_quality.pop(model, None)
            self._shadow_dirty.discard(model)
        self._no_shadow.clear()
        for model in [m for m in self.volume if predicate(volume_key(m))]:
            del self.volume[model]
            self._volume_dirty.discard(model)
        return gone


def shadow_key(model: str) -> str:
    """Table key (in the quality table) of a model's shadow comparator; the shadow side's
    label join is stored under ``quality_key(shadow_key(model))`` and its chunks.

    >>> shadow_key("fraud")
    'fraud\\x1fshadow'
    """
    return f"{model}\x1fshadow"


def slice_key(model: str, version: str | None, key: str, value: str) -> str:
    """Table key of the monitor of one tracked slice value of a (model, version).

    >>> slice_key("fraud", "v2", "region", "eu")
    'fraud\\x1fv2\\x1fslice\\x1fregion\\x1feu'
    """
    return f"{reference_key(model, version)}\x1fslice\x1f{key}\x1f{value}"


def volume_policy(cfg: MonitorConfig) -> VolumePolicy:
    """The volume policy of a model's monitor settings."""
    return VolumePolicy(
        bucket_seconds=cfg.volume_bucket_seconds, baseline_buckets=cfg.volume_baseline_buckets,
        min_baseline_buckets=min(cfg.volume_min_baseline_buckets, cfg.volume_baseline_buckets),
        spike_factor=cfg.volume_spike_factor, drop_factor=cfg.volume_drop_factor,
        deadman_seconds=cfg.volume_deadman_seconds)


def volume_key(model: str) -> str:
    """Table key of a model's volume tracker.

    >>> volume_key("fraud")
    'fraud\\x1fvolume'
    """
    return f"{model}\x1fvolume"


def _count(result: HandleResult, before: dict[str, int], qm: QualityMonitor) -> None:
    after = qm.join.counters
    if after["predictions"] == 0:  # a model never seen: its expired labels are unknown_model
        delta = after["labels_without_prediction"] - before["labels_without_prediction"]
        if delta:
            result.label_join["unknown_model"] = result.label_join.get("unknown_model", 0) + delta
        before = {**before, "labels_without_prediction": after["labels_without_prediction"]}
    for outcome in ("joined", "expired_predictions", "labels_without_prediction",
                    "duplicate_labels", "duplicate_predictions", "evicted_predictions",
                    "evicted_labels"):
        delta = after[outcome] - before[outcome]
        if delta:
            result.label_join[outcome] = result.label_join.get(outcome, 0) + delta
    for outcome, n in (("invalid_pairs", result.quality.invalid_pairs),
                       ("late_pairs", result.quality.late_pairs)):
        if n:
            result.label_join[outcome] = n


def quality_key(model: str) -> str:
    """Table key of a model's quality state header.

    >>> quality_key("fraud")
    'fraud\\x1fquality'
    """
    return f"{model}\x1fquality"


def join_chunk_key(model: str, chunk_id: int) -> str:
    """Table key of one chunk of a model's label join."""
    return f"{model}\x1fjoin\x1f{chunk_id}"


def _by_version(cols: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Split a columnar batch by model_version, keeping the order within each version."""
    versions = cols["model_version"]
    first = versions[0] if versions else None
    if versions.count(first) == len(versions):  # one version (the usual case), at C speed
        return [(first, cols)]
    rows: dict[str | None, list[int]] = {}
    for i, v in enumerate(versions):
        rows.setdefault(v, []).append(i)
    return [(v, select_columns(cols, r)) for v, r in rows.items()]
