"""A version rollout with attributions, from the simulator, on the embedded broker.

``driftstream simulate``'s generator rolls fraud v2 out from 20 s to 60 s of simulated
time, with feature attributions. v2's model differs from v1's, so comparing it with v1's
reference would fire; instead v2 warms up its own reference and nothing fires for either
version. Replay of the same messages gives the same window reports (attribution figures
included) and alerts.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream.core.events import normalize_event
from stream.core.monitor import ModelMonitor
from stream.replay import replay_lines
from stream.simulate import SimConfig, Simulator, parse_rollout
from tests.integration.harness import WorkerProcess, consume_until, make_env, produce, read_all

pytestmark = pytest.mark.broker

DRIFT_KINDS = {"feature_drift", "prediction_drift", "attribution_drift"}


def _order(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["model"], r["model_version"] or "", r["window"]["index"] if r.get("window") else -1,
            r.get("alert_id", ""), r.get("status", ""))


async def test_a_rolled_out_version_warms_up_its_own_reference(
        broker: Any, unique: str, tmp_path: Any) -> None:
    env = make_env(broker.bootstrap, unique, tmp_path / "data",
                   DRIFTSTREAM_MONITOR__VOLUME_ENABLED="false")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s = worker.settings
        bootstrap = s.kafka.bootstrap_servers
        sim = Simulator(SimConfig(rate=300.0, seed=21, start_ts=1_700_000_000.0,
                                  attributions=True,
                                  rollouts=(parse_rollout("fraud:v2:20-60:1.0"),)))
        events = sim.batch(36000)
        fraud = [e for e in events if e["model"] == "fraud"]
        versions = {e["model_version"] for e in fraud}
        assert versions == {"v1", "v2"} and all(e.get("attributions") for e in fraud)
        values = [orjson.dumps(fraud[i:i + 100]) for i in range(0, len(fraud), 100)]
        await produce(bootstrap, s.topics.predictions, values, key=b"fraud")
        reports = await consume_until(
            bootstrap, s.topics.reports,
            lambda rs: sum(r["model_version"] == "v2" for r in rs) >= 4, 60, worker)
        reports = await read_all(bootstrap, s.topics.reports)
        alerts = await read_all(bootstrap, s.topics.alerts, idle=1.0)
        v2 = [r for r in reports if r["model_version"] == "v2"]
        assert {r["reference"]["source"] for r in v2} == {"warmup"}
        assert all(r["attribution"] and r["attribution"]["ndcg"] is not None for r in v2)
        drift = [a for a in alerts if a["kind"] in DRIFT_KINDS]
        assert drift == [], [a["message"] for a in drift]

        # v2 against v1's reference would have fired: v2's model is not v1's
        normal = [normalize_event(e, "prediction") for e in fraud]
        v1 = ModelMonitor("fraud", "v1", s.monitor)
        v1.process([e for e in normal if e["model_version"] == "v1"][:s.monitor.warmup_events])
        assert v1.reference is not None
        wrong = ModelMonitor("fraud", "v2", s.monitor, v1.reference)
        out = wrong.process([e for e in normal if e["model_version"] == "v2"])
        assert [a for a in out.alerts if a["status"] == "firing" and a["kind"] in DRIFT_KINDS]

        offline = replay_lines(enumerate(values), s)
        assert orjson.dumps(sorted(reports, key=_order)) == orjson.dumps(
            sorted(offline.reports, key=_order))
        assert orjson.dumps(sorted(alerts, key=_order)) == orjson.dumps(
            sorted(offline.alerts, key=_order))
    finally:
        worker.stop()
