"""Volume through the registry: alerts per model, the dead-man timer, state in a table."""

from __future__ import annotations

import orjson

from stream.config import MonitorConfig
from stream.core.columns import columns_from_events
from stream.core.registry import MonitorRegistry, volume_key

CFG = MonitorConfig(warmup_events=50, volume_bucket_seconds=10.0, volume_baseline_buckets=5,
                    volume_min_baseline_buckets=3, volume_deadman_seconds=60.0,
                    quality_enabled=False)


def envelope(model: str, ts: list[float]) -> dict:
    events = [{"event_id": f"{model}-{t}", "model_version": "v1", "ts": t,
               "features": {"x": float(i % 7)}} for i, t in enumerate(ts)]
    return {"type": "columns", "model": model, "columns": columns_from_events(events)}


def per_bucket(start: int, buckets: int, n: int) -> list[float]:
    return [b * 10.0 + i * (10.0 / n) for b in range(start, start + buckets) for i in range(n)]


def test_spike_of_one_model_alerts_for_that_model_only() -> None:
    reg = MonitorRegistry(lambda m: CFG, max_models=10)
    alerts = []
    for model in ("a", "b"):
        alerts += reg.handle(envelope(model, per_bucket(0, 6, 20)), now=100.0).volume_alerts
    assert alerts == []
    spike = reg.handle(envelope("a", [*per_bucket(6, 1, 200), 75.0]), now=101.0).volume_alerts
    assert [(a["model"], a["kind"], a["detector"]) for a in spike] == [("a", "volume", "too_big")]
    assert reg.handle(envelope("b", per_bucket(6, 2, 20)), now=101.0).volume_alerts == []


def test_deadman_fires_from_the_timer_and_state_round_trips_through_a_table() -> None:
    table: dict[str, bytes] = {}
    reg = MonitorRegistry(lambda m: CFG, max_models=10,
                          load_volume=lambda k: orjson.loads(table[k]) if k in table else None)
    reg.handle(envelope("a", per_bucket(0, 8, 20)), now=1000.0)
    assert reg.check_deadman(1050.0) == []
    fired = reg.check_deadman(1070.0)
    assert [(a["detector"], a["status"], a["severity"]) for a in fired] == [
        ("deadman", "firing", "critical")]
    for key, snap in reg.take_volume_dirty():
        table[key] = orjson.dumps(snap)
    assert volume_key("a") in table
    # A restarted worker: the firing dead-man is not fired again, and resolves on traffic.
    again = MonitorRegistry(lambda m: CFG, max_models=10,
                            load_volume=lambda k: orjson.loads(table[k]) if k in table else None)
    out = again.handle(envelope("a", per_bucket(8, 1, 20)), now=1080.0)
    assert [(a["detector"], a["status"]) for a in out.volume_alerts][:1] == [("deadman", "resolved")]
    assert again.check_deadman(1081.0) == []


def test_volume_can_be_turned_off() -> None:
    off = MonitorConfig(warmup_events=50, volume_enabled=False, quality_enabled=False)
    reg = MonitorRegistry(lambda m: off, max_models=10)
    reg.handle(envelope("a", per_bucket(0, 8, 20)), now=0.0)
    assert reg.volume == {} and reg.check_deadman(10_000.0) == []
