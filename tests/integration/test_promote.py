"""driftstream promote on the embedded broker: a re-baselined version's alerts resolve
and the shifted traffic becomes its new normal."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.harness import (
    REPO,
    WorkerProcess,
    consume_until,
    make_env,
    produce,
    read_all,
)
from tests.integration.test_drift_loop import encode, make_events

pytestmark = pytest.mark.broker


def psi_alerts(alerts: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["feature"] == "x" and a["detector"] == "psi"
            and a["status"] == status]


async def test_promote_rebaselines_a_version(broker: Any, unique: str, tmp_path: Any) -> None:
    env = make_env(broker.bootstrap, unique, tmp_path / "data",
                   DRIFTSTREAM_MONITOR__VOLUME_ENABLED="false")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s = worker.settings
        bootstrap = s.kafka.bootstrap_servers
        await produce(bootstrap, s.topics.predictions,
                      encode(make_events(1000, seed=1) + make_events(1000, start=1000, drift_x=3.0,
                                                                     seed=2)), key=b"fraud")
        await consume_until(bootstrap, s.topics.alerts, lambda a: psi_alerts(a, "firing"), 60, worker)

        out = subprocess.run([sys.executable, "-m", "stream", "promote", "--model", "fraud",
                              "--model-version", "v1"], env={**os.environ, **env}, cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "re-baseline of fraud v1 published" in out.stdout
        alerts = await consume_until(bootstrap, s.topics.alerts,
                                     lambda a: psi_alerts(a, "resolved"), 60, worker)
        assert "re-baselined" in psi_alerts(alerts, "resolved")[0]["message"]

        # The shifted level warms up the new reference (1000 events) and is then normal.
        await produce(bootstrap, s.topics.predictions,
                      encode(make_events(2000, start=2000, drift_x=3.0, seed=3)), key=b"fraud")
        reports = await consume_until(
            bootstrap, s.topics.reports,
            lambda r: sum(1 for x in r if x.get("type") == "window_report"
                          and x["reference"]["source"] == "warmup") >= 3, 60, worker)
        after = [x for x in reports if x.get("type") == "window_report"][-1]
        assert after["features"]["x"]["severity"] == "ok", after["features"]["x"]
        alerts = await read_all(bootstrap, s.topics.alerts, idle=1.0)
        assert len(psi_alerts(alerts, "firing")) == 1  # no new episode against the new normal
    finally:
        worker.stop()
