"""Memory caps: what exceeds a cap is counted and reported, never silently dropped."""

from __future__ import annotations

from typing import Any

from stream.config import MonitorConfig
from stream.core.registry import MonitorRegistry
from stream.metrics import Metrics


def events(model: str, n: int, features: int) -> list[dict[str, Any]]:
    return [{"event_id": f"{model}-{i}", "model": model, "model_version": "v1", "ts": float(i),
             "features": {f"f{j}": float((i * (j + 1)) % 7) for j in range(features)}}
            for i in range(n)]


def test_features_beyond_the_cap_are_counted_in_reports_and_metrics() -> None:
    cfg = MonitorConfig(warmup_events=50, window_size=50, max_features=3, min_window_values=10)
    reg = MonitorRegistry(lambda m: cfg, max_models=10)
    out = reg.handle({"type": "events", "model": "m", "events": events("m", 100, 5)}).output
    (report,) = out.reports
    assert len(report["features"]) == 3
    assert report["reference"]["features_over_cap"] == 2
    metrics = Metrics()
    metrics.observe_report(report)
    assert b'driftstream_features_over_cap{model="m",model_version="v1"} 2.0' in metrics.render()


def test_models_beyond_the_cap_are_returned_not_dropped() -> None:
    cfg = MonitorConfig(warmup_events=10, window_size=10)
    reg = MonitorRegistry(lambda m: cfg, max_models=2)
    for model in ("a", "b"):
        assert reg.handle({"type": "events", "model": model,
                           "events": events(model, 5, 2)}).rejected == 0
    result = reg.handle({"type": "events", "model": "c", "events": events("c", 7, 2)})
    assert result.rejected == 7
    assert [e["event_id"] for e in result.rejected_events] == [f"c-{i}" for i in range(7)]
    assert result.rejected_events[0]["model"] == "c"
    assert sorted(reg.monitors) == ["a\x1fv1", "b\x1fv1"]
