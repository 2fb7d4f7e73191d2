"""Prometheus metrics of a driftstream worker. Metric names are API: change them only
with a deprecation.

Conventions: one prefix (``driftstream_``), base units (seconds), ``_total`` on counters,
label sets bounded by the configured caps (models, features, ``metrics.max_feature_series``);
series of a model are removed when its partition moves to another worker.

Every instance owns its registry, so tests (and two apps in one process) never share
state.

>>> m = Metrics(max_feature_series=10)
>>> m.dead_letters.labels(topic="predictions", reason="invalid_json").inc()
>>> m.observe_report({"model": "fraud", "model_version": "v1",
...                   "features": {"amount": {"psi": 0.3}}, "prediction": {}})
>>> b"driftstream_psi{feature=\\"amount\\",model=\\"fraud\\",model_version=\\"v1\\"} 0.3" in m.render()
True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from stream.core.lag import LagReading, PartitionStatus

__all__ = ["BulkHistogram", "LagMetrics", "Metrics"]

#: Seconds from event time to processing: from sub-second to a day behind.
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                 3600.0, 21600.0, 86400.0)


class BulkHistogram:
    """A Prometheus histogram fed with numpy arrays (one call per batch, not per value).

    >>> h = BulkHistogram("x_seconds", "help", (1.0, 2.0))
    >>> h.observe_many(np.array([0.5, 1.5, 3.0]))
    >>> [(s.name, s.value) for s in next(h.collect()).samples][:3]
    [('x_seconds_bucket', 1), ('x_seconds_bucket', 2), ('x_seconds_bucket', 3)]
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(self.buckets.size + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        v = values[np.isfinite(values)]
        if not v.size:
            return
        idx = np.searchsorted(self.buckets, v, side="left")
        counts = np.bincount(idx, minlength=self.buckets.size + 1)
        with self._lock:
            self._counts += counts
            self._sum += float(v.sum())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        bounds = [floatToGoString(b) for b in self.buckets.tolist()]  # type: ignore[no-untyped-call]
        bounds.append("+Inf")
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(bounds, cumulative, strict=True)), total)
        yield family


_PARTITION = ["group", "topic", "partition"]


class LagMetrics:
    """The backlog SLI of consumer groups, per (group, topic, partition); the same names
    from the worker (its own partitions) and from ``driftstream lag`` (all partitions).

    Values are never negative and never sentinels: a signal that is not known (the
    backlog age when the record at the committed offset could not be read, rates before
    two samples) is not exported. The series of a partition are removed when it is
    revoked from the worker or disappears (:meth:`forget`).

    >>> from stream.core.lag import OffsetSample, evaluate, LagPolicy
    >>> m = LagMetrics(CollectorRegistry())
    >>> m.observe("g", "predictions", 0, evaluate([OffsetSample(0, 10, 4, head_ts=-2.0)], 0, LagPolicy()))
    >>> text = generate_latest(m.registry).decode()
    >>> 'driftstream_consumer_lag_records{group="g",partition="0",topic="predictions"} 6.0' in text
    True
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = r = registry
        self._seen: set[tuple[str, str, str]] = set()
        self.highwater = Gauge(
            "driftstream_consumer_highwater_offset",
            "Offset of the next record to be written to the partition (log-end offset).",
            _PARTITION, registry=r)
        self.committed = Gauge(
            "driftstream_consumer_committed_offset",
            "The group's committed offset: the next record it will read after a restart. "
            "Absent when the group never committed on the partition.", _PARTITION, registry=r)
        self.lag = Gauge(
            "driftstream_consumer_lag_records",
            "Offset lag: highwater minus committed offset (the log start when never "
            "committed), never negative.", _PARTITION, registry=r)
        self.position_lag = Gauge(
            "driftstream_consumer_position_lag_records",
            "Position lag: highwater minus this worker's fetch position (worker only).",
            _PARTITION, registry=r)
        self.age = Gauge(
            "driftstream_backlog_age_seconds",
            "Age of the oldest unprocessed record (now minus the timestamp of the record at "
            "the committed offset); 0 when caught up.", _PARTITION, registry=r)
        self.drain = Gauge(
            "driftstream_backlog_drain_seconds",
            "Time to drain the backlog at the current rates; +Inf when it is not shrinking, "
            "0 when there is none.", _PARTITION, registry=r)
        self.arrival = Gauge(
            "driftstream_consumer_arrival_records_per_second",
            "Records written to the partition per second, over the lag window.",
            _PARTITION, registry=r)
        self.processing = Gauge(
            "driftstream_consumer_processing_records_per_second",
            "Records committed by the group per second, over the lag window.",
            _PARTITION, registry=r)
        self.status = Enum(
            "driftstream_consumer_status",
            "Backlog status of the partition (see stream/core/lag.py for the precedence).",
            _PARTITION, states=[s.value for s in PartitionStatus], registry=r)
        self.sample_errors = Counter(
            "driftstream_lag_sample_errors_total",
            "Lag samples that failed (broker unreachable, group or topic unknown), by group.",
            ["group"], registry=r)
        self.last_sample = Gauge(
            "driftstream_lag_last_sample_timestamp_seconds",
            "When the lag of the group was last sampled (Unix time).", ["group"], registry=r)

    def observe(self, group: str, topic: str, partition: int, reading: LagReading) -> None:
        """Export one partition's :class:`~stream.core.lag.LagReading`."""
        labels = (group, topic, str(partition))
        self._seen.add(labels)
        self.highwater.labels(*labels).set(reading.highwater)
        if reading.committed is not None:
            self.committed.labels(*labels).set(reading.committed)
        self.lag.labels(*labels).set(reading.offset_lag)
        for gauge, value in ((self.position_lag, reading.position_lag),
                             (self.age, reading.backlog_age_seconds),
                             (self.drain, reading.drain_seconds),
                             (self.arrival, reading.arrival_rate),
                             (self.processing, reading.processing_rate)):
            if value is not None:
                gauge.labels(*labels).set(value)
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self.status.labels(*labels).state(reading.status.value)

    def partitions(self) -> set[tuple[str, str, int]]:
        """The (group, topic, partition) whose series are exported now."""
        return {(g, t, int(p)) for g, t, p in self._seen}

    def forget(self, group: str, topic: str, partition: int) -> None:
        """Remove a partition's series (revoked from this worker, or gone)."""
        labels = (group, topic, str(partition))
        self._seen.discard(labels)
        for metric in (self.highwater, self.committed, self.lag, self.position_lag, self.age,
                       self.drain, self.arrival, self.processing, self.status):
            with contextlib.suppress(KeyError):
                metric.remove(*labels)


def _series(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The series of a window report by metric name: features, then ``prediction.<part>``."""
    return list(report["features"].items()) + [
        (f"prediction.{k}", v) for k, v in report["prediction"].items()]


class Metrics:
    """All metrics of one worker, on a private registry."""

    def __init__(self, max_feature_series: int = 5000) -> None:
        # ``*_created`` series double every counter for no use in alerting.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.max_feature_series = max_feature_series
        self._feature_series: set[tuple[str, str, str]] = set()
        self.ingested = Counter(
            "driftstream_ingested_events_total",
            "Events accepted by the ingest stage, by input topic.", ["topic"], registry=r)
        self.dead_letters = Counter(
            "driftstream_dead_letters_total",
            "Events sent to the dead-letter topic, by input topic and reason.",
            ["topic", "reason"], registry=r)
        self.processed = Counter(
            "driftstream_processed_events_total",
            "Events processed by the monitors, by outcome: windowed (binned into a window), "
            "warmup (used to build a reference), late (event-time window already closed), "
            "cap_exceeded (model over monitor.max_models; dead-lettered).",
            ["outcome"], registry=r)
        self.psi = Gauge(
            "driftstream_psi",
            "PSI of the last closed window against the reference, per model and series "
            "(features by name, predictions as prediction.<part>).",
            ["model", "model_version", "feature"], registry=r)
        self.alerts_firing = Gauge(
            "driftstream_alerts_firing",
            "Alert conditions firing now, per model.", ["model", "model_version"], registry=r)
        self.alert_transitions = Counter(
            "driftstream_alert_transitions_total",
            "Alert events published, by kind, detector and status.",
            ["kind", "detector", "status"], registry=r)
        self.adwin_detections = Counter(
            "driftstream_adwin_detections_total",
            "Changes detected by ADWIN, per model and series.",
            ["model", "model_version", "feature"], registry=r)
        self.windows = Counter(
            "driftstream_windows_closed_total", "Windows evaluated, per model.",
            ["model", "model_version"], registry=r)
        self.cap_overflow = Counter(
            "driftstream_cap_overflow_total",
            "Items refused because a memory cap was reached, by cap: models, metric_series.",
            ["cap"], registry=r)
        self.features_over_cap = Gauge(
            "driftstream_features_over_cap",
            "Features of a model's reference left out by monitor.max_features.",
            ["model", "model_version"], registry=r)
        self.ingest_processes = Gauge(
            "driftstream_ingest_processes",
            "Ingest child processes alive (ingest.processes; 0 when ingest runs in the "
            "worker's process).", registry=r)
        self.ingest_restarts = Counter(
            "driftstream_ingest_process_restarts_total",
            "Ingest child processes started again after they exited.", registry=r)
        self.monitored_models = Gauge(
            "driftstream_monitored_models", "(model, version) monitors held by this worker.",
            registry=r)
        self.batch_seconds = Histogram(
            "driftstream_batch_processing_seconds",
            "Wall time to process one batch, by stage (ingest, monitor).", ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r)
        self.event_delay = BulkHistogram(
            "driftstream_event_delay_seconds",
            "Processing time minus event time of the events the monitors processed.",
            DELAY_BUCKETS)
        r.register(self.event_delay)
        self.integrity = Gauge(
            "driftstream_data_integrity_ratio",
            "Data integrity of the last closed window, per series and check: missing "
            "(missing rate), type_mismatch, out_of_range, unseen_categories (shares of values).",
            ["model", "model_version", "feature", "check"], registry=r)
        self.attribution_ndcg = Gauge(
            "driftstream_attribution_ndcg",
            "NDCG of the last closed window's feature-importance ranking (mean |attribution|) "
            "against the reference's; 1 when the ranking is unchanged.",
            ["model", "model_version"], registry=r)
        self.volume = Gauge(
            "driftstream_volume_events_per_second",
            "Event rate of a model in event time: of its last closed volume bucket, and of "
            "its trailing baseline.", ["model", "series"], registry=r)
        self.last_event = Gauge(
            "driftstream_last_event_timestamp_seconds",
            "When the worker last received an event of the model (Unix time): alert on "
            "time() minus it for a dead pipeline or a silent model.", ["model"], registry=r)
        self.quality = Gauge(
            "driftstream_quality",
            "Quality metric of the last labelled window, per model version and metric "
            "(accuracy, precision, recall, f1, roc_auc, log_loss, brier, macro_f1, mae, rmse, r2).",
            ["model", "model_version", "metric"], registry=r)
        self.quality_alerts_firing = Gauge(
            "driftstream_quality_alerts_firing",
            "Quality alert conditions firing now, per model version.",
            ["model", "model_version"], registry=r)
        self.label_coverage = Gauge(
            "driftstream_label_coverage_ratio",
            "Share of predictions that got their label within the TTL, among those whose "
            "fate is decided (joined, expired or evicted), per model.", ["model"], registry=r)
        self.label_pending = Gauge(
            "driftstream_label_join_pending",
            "Predictions waiting for their label in the join table, per model.", ["model"],
            registry=r)
        self.label_join = Counter(
            "driftstream_label_join_events_total",
            "Label join outcomes: joined, expired_predictions (no label within the TTL), "
            "labels_without_prediction, duplicate_labels, duplicate_predictions, "
            "evicted_predictions, evicted_labels (memory bound), unknown_model (labels of a model "
            "that never had a prediction), cap_exceeded (over monitor.max_models), invalid_pairs, "
            "late_pairs.", ["outcome"], registry=r)
        self.label_latency = BulkHistogram(
            "driftstream_label_latency_seconds",
            "Label time minus prediction time of the joined pairs.", DELAY_BUCKETS)
        r.register(self.label_latency)
        self.slice_psi = Gauge(
            "driftstream_slice_psi",
            "PSI of the last closed window of one tracked slice value against the slice's own "
            "reference (at most monitor.max_slice_values values per slice key).",
            ["model", "model_version", "slice_key", "slice_value", "feature"], registry=r)
        self.slice_alerts_firing = Gauge(
            "driftstream_slice_alerts_firing",
            "Alert conditions firing now, per tracked slice value.",
            ["model", "model_version", "slice_key", "slice_value"], registry=r)
        self.monitored_slices = Gauge(
            "driftstream_monitored_slices",
            "Tracked slice values with their own monitor, held by this worker.", registry=r)
        self.slice_events = Counter(
            "driftstream_slice_events_total",
            "Events by slice key and outcome: tracked (monitored in their slice value's own "
            "state), pooled (a value beyond the top monitor.max_slice_values; in the global "
            "state only), missing (the event has no value for the key).",
            ["model", "slice_key", "outcome"], registry=r)
        self.shadow_gap = Gauge(
            "driftstream_shadow_gap",
            "Shadow against production over the last comparison window, per model: "
            "disagreement (share of pairs whose predicted class differs), "
            "relative_abs_diff (regression: mean |difference| / mean |production|), psi "
            "(of the shadow side's score distribution against production's).",
            ["model", "measure"], registry=r)
        self.shadow_unpaired = Counter(
            "driftstream_shadow_unpaired_total",
            "Predictions of a model with a shadow that found no partner on the other side, "
            "by side (production, shadow).", ["model", "side"], registry=r)
        self._slice_series: set[tuple[str, str, str, str, str]] = set()
        self._quality_series: set[tuple[str, str, str]] = set()
        self.lag = LagMetrics(r)

    def observe_report(self, report: dict[str, Any]) -> None:
        """Update the per-series gauges from a window report."""
        model, version = report["model"], report["model_version"] or ""
        if report.get("slice"):
            self._observe_slice_report(report)
            return
        for name, stats in _series(report):
            key = (model, version, name)
            if key not in self._feature_series:
                if len(self._feature_series) >= self.max_feature_series:
                    self.cap_overflow.labels(cap="metric_series").inc()
                    continue
                self._feature_series.add(key)
            if stats.get("psi") is not None:
                self.psi.labels(model=model, model_version=version, feature=name).set(stats["psi"])
            for check in ("missing", "type_mismatch", "out_of_range", "unseen_categories"):
                value = stats.get(f"{check}_rate")
                if value is not None:
                    self.integrity.labels(model=model, model_version=version, feature=name,
                                          check=check).set(value)
        self.windows.labels(model=model, model_version=version).inc()
        attribution = report.get("attribution")
        if attribution and attribution.get("ndcg") is not None:
            self.attribution_ndcg.labels(model=model, model_version=version).set(
                attribution["ndcg"])
        over = report.get("reference", {}).get("features_over_cap", 0)
        if over:
            self.features_over_cap.labels(model=model, model_version=version).set(over)
        if "alerts_firing" in report:
            self.alerts_firing.labels(model=model, model_version=version).set(
                report["alerts_firing"])

    def _observe_slice_report(self, report: dict[str, Any]) -> None:
        model, version = report["model"], report["model_version"] or ""
        sk, sv = report["slice"]["key"], report["slice"]["value"]
        for name, stats in _series(report):
            key = (model, version, sk, sv, name)
            if key not in self._slice_series:
                if (len(self._feature_series) + len(self._slice_series)
                        >= self.max_feature_series):
                    self.cap_overflow.labels(cap="metric_series").inc()
                    continue
                self._slice_series.add(key)
            if stats.get("psi") is not None:
                self.slice_psi.labels(*key).set(stats["psi"])
        self.slice_alerts_firing.labels(model, version, sk, sv).set(report["alerts_firing"])

    def observe_shadow_report(self, report: dict[str, Any]) -> None:
        """Update the shadow gauges from a shadow report."""
        for measure, field_ in (("disagreement", "disagreement_rate"),
                                ("relative_abs_diff", "relative_abs_diff"), ("psi", "psi")):
            if report.get(field_) is not None:
                self.shadow_gap.labels(model=report["model"], measure=measure).set(
                    report[field_])

    def observe_slices(self, counts: dict[tuple[str, str, str], int]) -> None:
        """Slice routing counts of a batch: (model, slice key, outcome) -> events."""
        for (model, key, outcome), n in counts.items():
            self.slice_events.labels(model=model, slice_key=key, outcome=outcome).inc(n)

    def observe_alert(self, alert: dict[str, Any]) -> None:
        self.alert_transitions.labels(
            kind=alert["kind"], detector=alert["detector"], status=alert["status"]).inc()

    def observe_adwin(self, model: str, version: str | None, detections: dict[str, int]) -> None:
        for name, n in detections.items():
            if (model, version or "", name) in self._feature_series:
                self.adwin_detections.labels(
                    model=model, model_version=version or "", feature=name).inc(n)

    def observe_quality_report(self, report: dict[str, Any]) -> None:
        """Update the quality gauges from a quality report."""
        model, version = report["model"], report["model_version"] or ""
        for metric, value in report["metrics"].items():
            if metric == "n" or value is None:
                continue
            key = (model, version, metric)
            if key not in self._quality_series:
                if len(self._feature_series) + len(self._quality_series) >= self.max_feature_series:
                    self.cap_overflow.labels(cap="metric_series").inc()
                    continue
                self._quality_series.add(key)
            self.quality.labels(model=model, model_version=version, metric=metric).set(value)
        self.quality_alerts_firing.labels(model=model, model_version=version).set(
            report["alerts_firing"])
        labels = report["labels"]
        self.observe_join(model, labels["coverage"], labels["pending_predictions"])

    def observe_join(self, model: str, coverage: float | None, pending: int) -> None:
        """Label coverage and pending predictions of a model's join, after each batch."""
        if coverage is not None:
            self.label_coverage.labels(model=model).set(coverage)
        self.label_pending.labels(model=model).set(pending)

    def observe_volume(self, model: str, last_bucket: float | None, baseline: float | None,
                       last_arrival: float | None) -> None:
        """Volume gauges of a model after a batch."""
        for series, value in (("last_bucket", last_bucket), ("baseline", baseline)):
            if value is not None:
                self.volume.labels(model=model, series=series).set(value)
        if last_arrival is not None:
            self.last_event.labels(model=model).set(last_arrival)

    def forget_model(self, model: str, version: str | None) -> None:
        """Remove a model's labelled series (its partition moved to another worker)."""
        v = version or ""
        for key in [k for k in self._feature_series if k[0] == model and k[1] == v]:
            self._feature_series.discard(key)
            for metric in (self.psi, self.adwin_detections):
                with contextlib.suppress(KeyError):
                    metric.remove(model, v, key[2])
            for check in ("missing", "type_mismatch", "out_of_range", "unseen_categories"):
                with contextlib.suppress(KeyError):
                    self.integrity.remove(model, v, key[2], check)
        for key5 in [k for k in self._slice_series if k[0] == model and k[1] == v]:
            self._slice_series.discard(key5)
            with contextlib.suppress(KeyError):
                self.slice_psi.remove(*key5)
            with contextlib.suppress(KeyError):
                self.slice_alerts_firing.remove(*key5[:4])
        for metric in (self.alerts_firing, self.windows, self.features_over_cap,
                       self.quality_alerts_firing, self.attribution_ndcg):
            with contextlib.suppress(KeyError):
                metric.remove(model, v)
        for key in [k for k in self._quality_series if k[0] == model and k[1] == v]:
            self._quality_series.discard(key)
            with contextlib.suppress(KeyError):
                self.quality.remove(*key)
        for measure in ("disagreement", "relative_abs_diff", "psi"):
            with contextlib.suppress(KeyError):
                self.shadow_gap.remove(model, measure)
        for metric in (self.label_coverage, self.label_pending, self.last_event):
            with contextlib.suppress(KeyError):
                metric.remove(model)
        for series in ("last_bucket", "baseline"):
            with contextlib.suppress(KeyError):
                self.volume.remove(model, series)

    def render(self) -> bytes:
        """The text exposition format, as served at ``/metrics``."""
        return generate_latest(self.registry)
