"""CLI commands that talk to Kafka, against the embedded broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.reference import ReferenceProfile
from tests.integration.harness import produce, read_all
from tests.integration.test_drift_loop import make_events

pytestmark = pytest.mark.broker


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream", *args], capture_output=True,
                          text=True, timeout=120, env=env)


async def test_alerts_command_prints_alerts_readably(broker: Any, unique: str) -> None:
    topic = f"alerts-{unique}"
    alert = {"schema_version": 1, "alert_id": "41a2883bf13c8af7", "episode": 1,
             "kind": "feature_drift", "status": "firing", "severity": "critical",
             "transition": "firing", "model": "fraud", "model_version": "v1",
             "feature": "amount", "detector": "psi", "value": 0.31, "threshold": 0.25,
             "window": None, "ts": 1763932443.9, "message": "PSI of feature 'amount' is 0.310"}
    await produce(broker.bootstrap, topic, [orjson.dumps(alert)])
    env = {**os.environ, "DRIFTSTREAM_TOPICS__ALERTS": topic}
    out = run_cli("alerts", "--from-beginning", "--duration", "3", "--bootstrap",
                  broker.bootstrap, env=env)
    assert out.returncode == 0, out.stderr
    assert "FIRING   critical feature_drift  fraud v1 amount [psi 0.31 >= 0.25]" in out.stdout
    out = run_cli("alerts", "--from-beginning", "--duration", "3", "--json", "--bootstrap",
                  broker.bootstrap, env=env)
    assert orjson.loads(out.stdout.splitlines()[0]) == alert


async def test_reference_publish_puts_one_profile_per_version_on_the_topic(
        broker: Any, unique: str, tmp_path: Path) -> None:
    path = tmp_path / "ref.jsonl"
    events = make_events(600, seed=1) + make_events(400, start=600, seed=2, model="eta",
                                                    version="v2")
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    topic = f"references-{unique}"
    env = {**os.environ, "DRIFTSTREAM_TOPICS__REFERENCES": topic}
    out = run_cli("reference", str(path), "--publish", "--bootstrap", broker.bootstrap, env=env)
    assert out.returncode == 0, out.stderr
    records = await read_all(broker.bootstrap, topic, idle=1.0)
    profiles = {(r["model"], r["model_version"]): ReferenceProfile.restore(r) for r in records}
    assert set(profiles) == {("fraud", "v1"), ("eta", "v2")}
    assert profiles[("fraud", "v1")].events == 600 and profiles[("eta", "v2")].events == 400
