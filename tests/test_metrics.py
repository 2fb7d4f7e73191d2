"""Prometheus metrics (``stream/metrics.py``): the bulk histogram agrees with
``prometheus_client.Histogram``, report gauges, the series cap, removal of a model's series,
and the naming conventions (metric names are API). Every test uses a fresh ``Metrics()``,
which owns its registry.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from stream.metrics import DELAY_BUCKETS, BulkHistogram, Metrics

# -- BulkHistogram against prometheus_client.Histogram ------------------------------


def samples(metrics: Any) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), float(s.value)) for family in metrics
            for s in family.samples if not s.name.endswith("_created")]


def by_le(rows: list[tuple[str, dict[str, str], float]]) -> dict[tuple[str, float | None], float]:
    """Samples keyed by (name, le as a number or None), so the label spelling does not
    matter."""
    return {(name, float(labels["le"]) if "le" in labels else None): value
            for name, labels, value in rows}


def reference_histogram(buckets: tuple[float, ...], batches: list[list[float]]
                        ) -> list[tuple[str, dict[str, str], float]]:
    registry = CollectorRegistry()
    h = Histogram("x_seconds", "help", buckets=buckets, registry=registry)
    for batch in batches:
        for v in batch:
            h.observe(v)
    return samples(registry.collect())


def bulk_histogram(buckets: tuple[float, ...], batches: list[list[float]]
                   ) -> list[tuple[str, dict[str, str], float]]:
    bulk = BulkHistogram("x_seconds", "help", buckets)
    for batch in batches:
        bulk.observe_many(np.array(batch, dtype=np.float64))
    return samples(bulk.collect())


# Values that are exact in binary, so sums do not depend on the order of additions.
CASES: list[tuple[tuple[float, ...], list[list[float]]]] = [
    ((1.0, 2.0, 5.0), [[0.5, 1.5, 3.0]]),
    ((1.0, 2.0, 5.0), [[1.0, 2.0, 5.0]]),  # on the bounds: le is inclusive
    ((1.0, 2.0, 5.0), [[0.0, -3.0, 5.25, 100.0]]),  # below the first, above the last
    ((1.0, 2.0, 5.0), [[]]),
    ((1.0, 2.0, 5.0), [[0.5], [], [1.5, 1.5], [7.0, 0.25, 2.0]]),  # several batches
    ((0.25,), [[0.25, 0.125, 0.5]]),
    (DELAY_BUCKETS, [[0.0, 0.01, 0.0625, 1.0, 2.5, 3600.0, 86400.0, 90000.0, 1e6]]),
]


@pytest.mark.parametrize(("buckets", "batches"), CASES)
def test_bulk_histogram_equals_prometheus_histogram(
    buckets: tuple[float, ...], batches: list[list[float]]
) -> None:
    expected = by_le(reference_histogram(buckets, batches))
    got = by_le(bulk_histogram(buckets, batches))
    assert got == expected
    values = [v for b in batches for v in b]
    assert got[("x_seconds_count", None)] == len(values)
    assert got[("x_seconds_sum", None)] == sum(values)
    assert got[("x_seconds_bucket", math.inf)] == len(values)
    assert len([k for k in got if k[0] == "x_seconds_bucket"]) == len(buckets) + 1


def test_bulk_histogram_random_values() -> None:
    rng = np.random.default_rng(3)
    batches = [rng.exponential(2.0, size=n).tolist() for n in (1, 50, 999, 3)]
    buckets = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0)
    expected = by_le(reference_histogram(buckets, batches))
    got = by_le(bulk_histogram(buckets, batches))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if key[0] == "x_seconds_sum":  # float sums in another order: equal to rounding
            assert got[key] == pytest.approx(value, rel=1e-12)
        else:
            assert got[key] == value, key


def test_bulk_histogram_ignores_non_finite_values() -> None:
    got = by_le(bulk_histogram((1.0,), [[0.5, math.nan, math.inf, -math.inf, 2.0]]))
    assert got[("x_seconds_count", None)] == 2
    assert got[("x_seconds_sum", None)] == 2.5


@pytest.mark.parametrize("buckets", [(1.0, 2.0), (0.5, 1234567.0)])
def test_bulk_histogram_le_labels_match_prometheus(buckets: tuple[float, ...]) -> None:
    batches = [[0.25, 1.5]]
    assert bulk_histogram(buckets, batches) == reference_histogram(buckets, batches)


def test_event_delay_histogram_is_registered() -> None:
    m = Metrics()
    m.event_delay.observe_many(np.array([0.5, 20.0, 20.0]))
    assert m.registry.get_sample_value("driftstream_event_delay_seconds_count") == 3
    assert m.registry.get_sample_value("driftstream_event_delay_seconds_sum") == 40.5
    text = m.render().decode()
    assert 'driftstream_event_delay_seconds_bucket{le="+Inf"} 3.0' in text


# -- report gauges, the series cap, forgetting a model -------------------------------


def report(model: str = "fraud", version: str | None = "v1", features: dict[str, Any] | None = None,
           prediction: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"model": model, "model_version": version,
            "features": {"amount": {"psi": 0.31}, "country": {"psi": 0.02}} if features is None
            else features,
            "prediction": {"score": {"psi": 0.12}} if prediction is None else prediction, **extra}


def psi_series(m: Metrics) -> dict[tuple[str, str, str], float]:
    return {(s.labels["model"], s.labels["model_version"], s.labels["feature"]): s.value
            for family in m.psi.collect() for s in family.samples}


def test_observe_report_sets_psi_per_feature_and_prediction() -> None:
    m = Metrics()
    m.observe_report(report(alerts_firing=2))
    assert psi_series(m) == {
        ("fraud", "v1", "amount"): 0.31,
        ("fraud", "v1", "country"): 0.02,
        ("fraud", "v1", "prediction.score"): 0.12,
    }
    get = m.registry.get_sample_value
    assert get("driftstream_psi", {"model": "fraud", "model_version": "v1",
                                   "feature": "prediction.score"}) == 0.12
    assert get("driftstream_windows_closed_total", {"model": "fraud", "model_version": "v1"}) == 1
    assert get("driftstream_alerts_firing", {"model": "fraud", "model_version": "v1"}) == 2
    # the next window overwrites the gauges
    m.observe_report(report(features={"amount": {"psi": 0.05}}, prediction={}, alerts_firing=0))
    assert psi_series(m)[("fraud", "v1", "amount")] == 0.05
    assert get("driftstream_windows_closed_total", {"model": "fraud", "model_version": "v1"}) == 2
    assert get("driftstream_alerts_firing", {"model": "fraud", "model_version": "v1"}) == 0


def test_observe_report_skips_missing_psi_and_maps_no_version_to_empty() -> None:
    m = Metrics()
    m.observe_report(report(version=None, features={"a": {"psi": None}, "b": {"psi": 0.5}},
                            prediction={"label": {}}))
    assert psi_series(m) == {("fraud", "", "b"): 0.5}


def test_fresh_metrics_do_not_share_state() -> None:
    a, b = Metrics(), Metrics()
    a.observe_report(report())
    a.dead_letters.labels(topic="predictions", reason="invalid_json").inc()
    assert psi_series(b) == {}
    assert b.registry.get_sample_value(
        "driftstream_dead_letters_total", {"topic": "predictions", "reason": "invalid_json"}) is None


@pytest.mark.parametrize(
    ("cap", "reports", "kept", "overflow"),
    [
        # 3 series per report (amount, country, prediction.score)
        (3, [report()], 3, 0),
        (2, [report()], 2, 1),
        (2, [report(), report()], 2, 2),  # counted again on every report
        (4, [report("fraud"), report("churn")], 4, 2),
        (1, [report("fraud", features={}, prediction={})], 0, 0),
    ],
)
def test_feature_series_cap(cap: int, reports: list[dict[str, Any]], kept: int,
                            overflow: int) -> None:
    m = Metrics(max_feature_series=cap)
    for r in reports:
        m.observe_report(r)
    assert len(psi_series(m)) == kept
    got = m.registry.get_sample_value("driftstream_cap_overflow_total", {"cap": "metric_series"})
    assert (got or 0) == overflow


def test_capped_series_create_no_series_in_any_metric() -> None:
    m = Metrics(max_feature_series=1)
    m.observe_report(report(features={"amount": {"psi": 0.3}, "country": {"psi": 0.1}},
                            prediction={}))
    m.observe_adwin("fraud", "v1", {"amount": 1, "country": 4})
    assert psi_series(m) == {("fraud", "v1", "amount"): 0.3}
    adwin = {s.labels["feature"]: s.value for f in m.adwin_detections.collect()
             for s in f.samples if s.name.endswith("_total")}
    assert adwin == {"amount": 1}
    assert "country" not in m.render().decode()


def test_forget_model_removes_only_that_models_series() -> None:
    m = Metrics()
    m.observe_report(report("fraud", "v1", alerts_firing=1))
    m.observe_report(report("fraud", "v2", alerts_firing=1))
    m.observe_report(report("churn", "v1", alerts_firing=0))
    m.observe_adwin("fraud", "v1", {"amount": 2})
    m.observe_adwin("churn", "v1", {"amount": 1})
    m.observe_alert({"kind": "feature_drift", "detector": "psi", "status": "firing"})
    before = m.render().decode()
    assert 'model="fraud",model_version="v1"' in before

    m.forget_model("fraud", "v1")
    text = m.render().decode()
    assert 'model="fraud",model_version="v1"' not in text
    for (model, version, _), _v in psi_series(m).items():
        assert (model, version) != ("fraud", "v1")
    # everything else is untouched
    kept = [line for line in before.splitlines() if not line.startswith("#")
            and 'model="fraud",model_version="v1"' not in line]
    assert kept == [line for line in text.splitlines() if not line.startswith("#")]
    assert len(psi_series(m)) == 6
    get = m.registry.get_sample_value
    assert get("driftstream_alert_transitions_total",
               {"kind": "feature_drift", "detector": "psi", "status": "firing"}) == 1


def test_forget_model_frees_only_that_versions_capped_slots() -> None:
    m = Metrics(max_feature_series=6)
    m.observe_report(report("fraud", "v1"))
    m.observe_report(report("fraud", "v2"))
    m.forget_model("fraud", "v1")
    m.observe_report(report("churn"))  # takes the 3 freed slots
    m.observe_report(report("eta"))  # fraud v2 still holds 3: no room
    assert {(k[0], k[1]) for k in psi_series(m)} == {("fraud", "v2"), ("churn", "v1")}
    assert m.registry.get_sample_value("driftstream_cap_overflow_total",
                                       {"cap": "metric_series"}) == 3


def test_forget_model_frees_capped_slots_and_is_idempotent() -> None:
    m = Metrics(max_feature_series=3)
    m.observe_report(report("fraud", None))
    m.forget_model("fraud", None)
    m.forget_model("fraud", None)
    m.forget_model("nosuch", "v9")
    m.observe_report(report("churn"))
    assert {k[0] for k in psi_series(m)} == {"churn"}
    assert m.registry.get_sample_value("driftstream_cap_overflow_total",
                                       {"cap": "metric_series"}) is None


# -- naming conventions --------------------------------------------------------------


def exposed_types(m: Metrics) -> dict[str, str]:
    """Metric name -> type, from the ``# TYPE`` lines of the text exposition."""
    text = m.render().decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    assert types, text
    return types


@pytest.fixture
def busy_metrics() -> Metrics:
    """Metrics with every labelled family populated, so every name shows in samples too."""
    m = Metrics()
    m.ingested.labels(topic="predictions").inc(3)
    m.dead_letters.labels(topic="predictions", reason="invalid_json").inc()
    m.processed.labels(outcome="windowed").inc(2)
    m.observe_report(report(alerts_firing=1))
    m.observe_alert({"kind": "feature_drift", "detector": "psi", "status": "firing"})
    m.observe_adwin("fraud", "v1", {"amount": 1})
    m.cap_overflow.labels(cap="models").inc()
    m.monitored_models.set(1)
    m.batch_seconds.labels(stage="ingest").observe(0.01)
    m.event_delay.observe_many(np.array([1.0]))
    return m


def test_every_metric_name_has_the_prefix(busy_metrics: Metrics) -> None:
    types = exposed_types(busy_metrics)
    assert len(types) >= 12
    for name in types:
        assert name.startswith("driftstream_"), name
    sample_names = re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", busy_metrics.render().decode(),
                              flags=re.M)
    assert sample_names
    assert all(n.startswith("driftstream_") for n in sample_names)


def test_counters_end_in_total_and_nothing_else_does(busy_metrics: Metrics) -> None:
    for name, kind in exposed_types(busy_metrics).items():
        assert (kind == "counter") == name.endswith("_total"), (name, kind)


NON_BASE_UNITS = ("ms", "msec", "millis", "milliseconds", "us", "micros", "microseconds",
                  "ns", "nanoseconds", "minutes", "mins", "hours", "days", "kb", "kib", "mb",
                  "mib", "gb", "kilobytes", "megabytes", "percent", "pct")


def test_names_use_base_units(busy_metrics: Metrics) -> None:
    types = exposed_types(busy_metrics)
    for name, kind in types.items():
        words = name.removesuffix("_total").split("_")
        assert not set(words) & set(NON_BASE_UNITS), name
        if kind == "histogram" or "time" in words or "delay" in words or "duration" in words:
            assert name.endswith("_seconds"), name
    assert {"driftstream_batch_processing_seconds", "driftstream_event_delay_seconds"} <= {
        n for n, k in types.items() if k == "histogram"}


def test_label_names_are_bounded(busy_metrics: Metrics) -> None:
    """No per-event or per-message labels (ids, offsets, timestamps) in any series."""
    text = busy_metrics.render().decode()
    labels = set(re.findall(r"[{,]([a-z_]+)=", text))
    assert labels <= {"topic", "reason", "outcome", "model", "model_version", "feature",
                      "kind", "detector", "status", "cap", "stage", "le"}, labels
