"""Backlog alert lifecycle on lag readings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from stream.core.backlog import BacklogAlerts, BacklogPolicy, backlog_summary
from stream.core.lag import LagReading, PartitionStatus
from stream.errors import SnapshotError

S = PartitionStatus
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "alert.json").read_text())
POLICY = BacklogPolicy(age_warning_seconds=60, age_critical_seconds=300, drain_warning_seconds=120,
                       drain_critical_seconds=600, drain_min_age_seconds=10, quiet=2)


def reading(status: S = S.OK, age: float | None = 0.0, drain: float | None = 0.0,
            lag: int = 0) -> LagReading:
    return LagReading(at=0.0, status=status, reason=status.name.lower(), highwater=lag,
                      committed=0, offset_lag=lag, position_lag=None, backlog_age_seconds=age,
                      arrival_rate=None, processing_rate=None, drain_seconds=drain,
                      stuck_seconds=0.0)


def step(alerts: BacklogAlerts, ts: float, **parts: LagReading) -> list[tuple[str, str, str]]:
    events = alerts.evaluate("g", "predictions", {int(k[1:]): v for k, v in parts.items()}, ts=ts)
    for e in events:
        jsonschema.validate(e, SCHEMA)
    return [(e["detector"], e["transition"], e["severity"]) for e in events]


def test_healthy_pipeline_never_alerts() -> None:
    alerts = BacklogAlerts(POLICY)
    for t in range(50):
        assert step(alerts, t, p0=reading(S.OK, age=3.0, drain=math.inf, lag=20),
                    p1=reading(S.IDLE)) == []


def test_stop_fires_escalates_and_resolves_after_quiet_samples() -> None:
    alerts = BacklogAlerts(POLICY)
    assert step(alerts, 0, p0=reading(S.STOPPED, age=30, drain=math.inf, lag=500)) == [
        ("time_to_drain", "firing", "critical"), ("status", "firing", "critical")]
    assert step(alerts, 1, p0=reading(S.STOPPED, age=100, drain=math.inf, lag=900)) == [
        ("backlog_age", "firing", "warning")]
    assert step(alerts, 2, p0=reading(S.STOPPED, age=400, drain=math.inf, lag=900)) == [
        ("backlog_age", "escalated", "critical")]
    assert alerts.firing() == 3
    # Resumed: draining fast, backlog young again.
    assert step(alerts, 3, p0=reading(S.OK, age=5, drain=4.0, lag=100)) == [
        ("backlog_age", "resolved", "critical"), ("time_to_drain", "resolved", "critical")]
    assert step(alerts, 4, p0=reading(S.IDLE)) == [("status", "resolved", "critical")]
    assert alerts.firing() == 0


def test_drain_alert_ignores_young_backlogs_and_has_hysteresis() -> None:
    alerts = BacklogAlerts(POLICY)
    assert step(alerts, 0, p0=reading(S.OK, age=5, drain=1e6, lag=10)) == []
    assert step(alerts, 1, p0=reading(S.OK, age=20, drain=200, lag=10)) == [
        ("time_to_drain", "firing", "warning")]
    assert step(alerts, 2, p0=reading(S.OK, age=20, drain=110, lag=10)) == []   # above 96
    assert step(alerts, 3, p0=reading(S.OK, age=20, drain=90, lag=10)) == [
        ("time_to_drain", "resolved", "warning")]


def test_one_stalled_partition_names_it() -> None:
    alerts = BacklogAlerts(POLICY)
    events = alerts.evaluate("g", "predictions", {0: reading(S.OK), 3: reading(S.STALLED, age=40, lag=9)},
                             ts=10.0)
    status = next(e for e in events if e["detector"] == "status")
    assert status["pipeline"]["partitions"] == [3]
    assert status["pipeline"]["status"] == "STALLED"
    assert "partitions 3 of predictions are STALLED" in status["message"]
    assert status["model"] is None and status["kind"] == "backlog"


def test_alert_ids_differ_by_group_and_topic_and_are_stable() -> None:
    a, b = BacklogAlerts(POLICY), BacklogAlerts(POLICY)
    e1 = a.evaluate("g1", "t", {0: reading(S.STOPPED, lag=5)}, ts=0)
    e2 = b.evaluate("g2", "t", {0: reading(S.STOPPED, lag=5)}, ts=0)
    e3 = BacklogAlerts(POLICY).evaluate("g1", "t", {0: reading(S.STOPPED, lag=5)}, ts=9)
    assert e1[0]["alert_id"] != e2[0]["alert_id"]
    assert e1[0]["alert_id"] == e3[0]["alert_id"]


def test_summary_rolls_up_with_max_age_and_json_safe_drain() -> None:
    s = backlog_summary("g", "t", {0: reading(S.OK, age=3, drain=math.inf, lag=4),
                                   1: reading(S.FALLING_BEHIND, age=9, drain=5, lag=6),
                                   2: reading(S.IDLE, age=None, drain=None)})
    assert s["offset_lag"] == 10
    assert s["backlog_age_seconds"] == 9
    assert s["status"] == "FALLING_BEHIND" and s["partitions"] == [1]
    assert s["drain_seconds"] is None
    json.dumps(s, allow_nan=False)


def test_snapshot_round_trip_keeps_firing_alerts_quiet() -> None:
    alerts = BacklogAlerts(POLICY)
    step(alerts, 0, p0=reading(S.STOPPED, age=100, drain=math.inf, lag=5))
    restored = BacklogAlerts.restore(json.loads(json.dumps(alerts.snapshot())), POLICY)
    assert restored.snapshot() == alerts.snapshot()
    assert step(restored, 1, p0=reading(S.STOPPED, age=100, drain=math.inf, lag=5)) == []


def test_restore_rejects_other_snapshots() -> None:
    with pytest.raises(SnapshotError, match="backlog alert snapshot"):
        BacklogAlerts.restore({"kind": "driftstream.monitor", "version": 1})


@pytest.mark.parametrize(
    "kwargs",
    [{"age_warning_seconds": 0}, {"age_warning_seconds": 400}, {"drain_warning_seconds": 2000},
     {"hysteresis": 1.0}, {"quiet": 0}],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backlog policy needs"):
        BacklogPolicy(**kwargs)  # type: ignore[arg-type]
