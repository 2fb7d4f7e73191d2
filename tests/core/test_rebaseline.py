"""Re-baselining a model version (driftstream promote): alerts resolve, a new reference
is warmed up from the next events, episodes continue, and the state survives snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np

from stream.config import MonitorConfig
from stream.core.columns import columns_from_events
from stream.core.monitor import ModelMonitor
from stream.core.registry import MonitorRegistry

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "alert.json").read_text())
CFG = MonitorConfig(window_size=200, warmup_events=400, min_window_values=50,
                    quality_enabled=False, volume_enabled=False)


def events(n: int, start: int, mean: float, seed: int) -> list[dict]:
    x = np.random.default_rng(seed).normal(mean, 1.0, n)
    return [{"event_id": str(start + i), "model_version": "v1", "ts": float(start + i),
             "features": {"x": float(x[i])}} for i in range(n)]


def handle(reg: MonitorRegistry, evs: list[dict]) -> list[dict]:
    out = reg.handle({"type": "columns", "model": "m", "columns": columns_from_events(evs)})
    return [a for a in out.output.alerts if a["detector"] == "psi"]


def test_promote_resolves_alerts_and_the_shifted_traffic_becomes_normal() -> None:
    reg = MonitorRegistry(lambda m: CFG, max_models=10)
    handle(reg, events(400, 0, 0.0, 1))                       # warm-up
    fired = handle(reg, events(400, 400, 3.0, 2))             # shifted: fires
    assert [a["status"] for a in fired][:1] == ["firing"]
    episode = fired[0]["episode"]
    out = reg.handle({"type": "rebaseline", "model": "m", "model_version": "v1", "ts": 5.0})
    assert out.rebaselined == ["m\x1fv1"]
    resolved = out.output.alerts
    assert resolved and {a["status"] for a in resolved} == {"resolved"}
    assert {(a["feature"], a["detector"]) for a in resolved} >= {("x", "psi")}
    for a in resolved:
        jsonschema.validate(a, SCHEMA)
    mon = reg.monitors["m\x1fv1"]
    assert mon.reference is None and mon.alerts_firing() == 0
    # The shifted traffic warms up the new reference, then is normal: no alert.
    assert handle(reg, events(400, 800, 3.0, 3)) == []
    assert mon.reference is not None and mon.reference.source == "warmup"
    assert handle(reg, events(800, 1200, 3.0, 4)) == []
    # Going back to the old level is drift against the new reference: a new episode.
    refired = handle(reg, events(400, 2000, 0.0, 5))
    assert refired[0]["status"] == "firing" and refired[0]["episode"] == episode + 1


def test_a_rebaselined_monitor_survives_a_snapshot_during_warm_up() -> None:
    mon = ModelMonitor("m", "v1", CFG)
    mon.process(events(400, 0, 0.0, 1))
    out = mon.process(events(400, 400, 3.0, 2))
    episode = next(a["episode"] for a in out.alerts if a["detector"] == "psi")
    mon.rebaseline(ts=1.0)
    mon.process(events(100, 800, 3.0, 3))
    restored = ModelMonitor.restore(json.loads(json.dumps(mon.snapshot())), CFG)
    assert restored.snapshot() == mon.snapshot()
    restored.process(events(300, 900, 3.0, 4))                # warm-up completes
    again = restored.process(events(400, 1200, 0.0, 5))
    psi = [a for a in again.alerts if a["detector"] == "psi" and a["feature"] == "x"]
    assert psi and psi[0]["episode"] == episode + 1
