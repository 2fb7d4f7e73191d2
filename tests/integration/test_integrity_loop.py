"""Data integrity and volume on the embedded broker: each injected failure fires its alert
for its model and resolves after recovery, and the other models stay quiet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.simulate import FaultSpec, SimConfig, produce
from tests.integration.harness import WorkerProcess, consume_until, make_env

pytestmark = pytest.mark.broker

CONFIG = """
[monitor]
volume_bucket_seconds = 10.0
volume_baseline_buckets = 8
volume_min_baseline_buckets = 3
quality_enabled = false
"""

#: (model, kind, detector, feature) of every fault, and the alert it must raise.
FAULTS = [
    (FaultSpec("fraud", "null", "amount", start_seconds=60, end_seconds=90),
     "data_quality", "missing", "amount"),
    (FaultSpec("eta", "unit", "distance_km", start_seconds=60, end_seconds=90),
     "data_quality", "out_of_range", "distance_km"),
    (FaultSpec("churn", "new_category", "region", start_seconds=60, end_seconds=90),
     "data_quality", "unseen_categories", "region"),
    (FaultSpec("churn", "drop", start_seconds=120, end_seconds=150),
     "volume", "too_small", None),
    (FaultSpec("fraud", "spike", start_seconds=180, end_seconds=200),
     "volume", "too_big", None),
]
DURATION = 260.0  # simulated seconds


async def test_each_failure_fires_for_its_model_and_resolves(broker: Any, unique: str,
                                                             tmp_path: Path) -> None:
    config = tmp_path / "driftstream.toml"
    config.write_text(CONFIG)
    env = make_env(broker.bootstrap, unique, tmp_path / "data", DRIFTSTREAM_CONFIG=str(config))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s = worker.settings
        sim = SimConfig(rate=300.0, seed=7, start_ts=1_700_000_000.0,
                        faults=tuple(f for f, *_ in FAULTS))
        counts = await produce(s.kafka.bootstrap_servers, sim, predictions_topic=s.topics.predictions,
                               labels_topic=s.topics.labels, duration_seconds=DURATION,
                               realtime=False)
        assert counts["events"] > 60_000

        def key(a: dict[str, Any]) -> tuple[Any, ...]:
            return (a["model"], a["kind"], a["detector"], a["feature"])

        wanted = {(f.model, kind, det, feat) for f, kind, det, feat in FAULTS}

        def done(alerts: list[dict[str, Any]]) -> bool:
            resolved = {key(a) for a in alerts if a["status"] == "resolved"}
            return wanted <= resolved

        alerts = await consume_until(s.kafka.bootstrap_servers, s.topics.alerts, done, 90, worker)
        integrity = [a for a in alerts if a["kind"] in ("data_quality", "volume")]
        for f, kind, det, feat in FAULTS:
            mine = [a for a in integrity if key(a) == (f.model, kind, det, feat)]
            assert mine and mine[0]["status"] == "firing", (f, mine)
            assert mine[-1]["status"] == "resolved", (f, mine)
            first = mine[0]["window"] or {}
            print(f"{f.model} {det}: fired at window {first.get('index')} "
                  f"({first.get('start', 0) - sim.start_ts:.0f} s), "
                  f"{len(mine)} transitions")
        # Nothing fired outside the faults of its own model. (Within a fault, its
        # consequences may fire too: a null feature is also a reference feature that
        # stopped arriving; a unit bug also moves a regression's predictions.)
        windows: dict[str, list[tuple[float, float]]] = {}
        for f, *_ in FAULTS:
            windows.setdefault(f.model, []).append(
                (f.start_seconds, f.end_seconds if f.end_seconds is not None else DURATION))
        for a in integrity:
            if a["status"] != "firing" or a["transition"] != "firing":
                continue
            w = a["window"]
            start, end = w["start"] - sim.start_ts, w["end"] - sim.start_ts
            assert any(s0 - 10 <= end and start <= e0 + 20 for s0, e0 in windows[a["model"]]), (
                f"{key(a)} fired over [{start:.0f}, {end:.0f}] s, outside its model's faults "
                f"{windows[a['model']]}: {a['message']}")
    finally:
        worker.stop()
