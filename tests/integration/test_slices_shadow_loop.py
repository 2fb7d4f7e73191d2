"""Slices and shadow deployments on the embedded broker, and replay of the same input.

One worker, two models:

- ``rec`` carries ``slices.region``; from event 12,000 on, feature ``x`` drifts in region
  ``eu`` only (10 % of the traffic). The ``eu`` slice fires a PSI alert naming its slice;
  the global PSI of ``x`` stays below the warning threshold in every window.
- ``fraud`` runs v2 in shadow of v1 on the same event ids; v2's scores are noisy, so the
  disagreement rate fires ``prediction_drift``/``shadow``; once labels arrive each side
  gets its own quality and the shadow reports say production is ahead.

Then ``replay`` of the same messages gives the same window reports, shadow reports and
alerts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from stream.replay import replay_lines
from tests.integration.harness import WorkerProcess, consume_until, make_env, produce, read_all

pytestmark = pytest.mark.broker

T0 = 1_700_000_000.0
REGIONS = ["eu", "us", "apac", "latam", "mea"]
WEIGHTS = [0.1, 0.3, 0.3, 0.2, 0.1]


def rec_events(n: int, start: int, seed: int, drift: bool) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, n, p=WEIGHTS)
    x = rng.normal(0.0, 1.0, n)
    if drift:
        x = np.where(region == "eu", x + 1.0, x)
    y = rng.normal(0.0, 1.0, n)
    return [{"event_id": f"r{start + i}", "model": "rec", "model_version": "v1",
             "ts": T0 + (start + i) * 0.01, "features": {"x": float(x[i]), "y": float(y[i])},
             "prediction": {"score": float(1 / (1 + np.exp(-y[i])))},
             "slices": {"region": str(region[i])}} for i in range(n)]


def fraud_events(n: int, start: int, seed: int, t0: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        z = float(rng.normal())
        score = 1 / (1 + np.exp(-2 * z))
        noisy = float(np.clip(score + rng.normal(0, 0.35), 0.0, 1.0))
        base = {"event_id": f"f{start + i}", "model": "fraud", "ts": t0 + i * 0.01,
                "features": {"z": z}}
        out.append({**base, "model_version": "v1", "deployment": "production",
                    "prediction": {"score": float(score)}})
        out.append({**base, "model_version": "v2", "deployment": "shadow",
                    "prediction": {"score": noisy}})
    return out


def fraud_labels(events: list[dict[str, Any]], seed: int, t: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    prod = [e for e in events if e["deployment"] == "production"]
    return [{"event_id": e["event_id"], "model": "fraud", "ts": t + i * 0.001,
             "label": bool(rng.random() < e["prediction"]["score"])}
            for i, e in enumerate(prod)]


def envelopes(events: list[dict[str, Any]], size: int = 100) -> list[bytes]:
    return [orjson.dumps(events[i:i + size]) for i in range(0, len(events), size)]


def _order(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r.get("type", ""), r["model"], orjson.dumps(r.get("slice")), r["window"]["index"]
            if r.get("window") else -1, r.get("alert_id", ""), r.get("status", ""))


async def test_slices_and_shadow_fire_live_and_replay_matches(
        broker: Any, unique: str, tmp_path: Any) -> None:
    env = make_env(broker.bootstrap, unique, tmp_path / "data",
                   DRIFTSTREAM_MONITOR__WINDOW_SIZE="1000",
                   DRIFTSTREAM_MONITOR__SLICE_KEYS="region",
                   DRIFTSTREAM_MONITOR__SLICE_MIN_EVENTS="50",
                   DRIFTSTREAM_MONITOR__VOLUME_ENABLED="false",
                   DRIFTSTREAM_MONITOR__LABEL_JOIN_START="always",
                   DRIFTSTREAM_MONITOR__SHADOW_WINDOW_SIZE="500",
                   DRIFTSTREAM_MONITOR__QUALITY_WINDOW_SIZE="500",
                   DRIFTSTREAM_MONITOR__QUALITY_ADWIN="false")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s = worker.settings
        bootstrap = s.kafka.bootstrap_servers
        rec = rec_events(12000, 0, 1, drift=False) + rec_events(30000, 12000, 2, drift=True)
        fraud1 = fraud_events(2000, 0, 3, T0)
        labels = fraud_labels(fraud1, 4, T0 + 1000.0)
        fraud2 = fraud_events(1000, 2000, 5, T0 + 2000.0)
        phase1 = {"rec": envelopes(rec), "fraud": envelopes(fraud1)}
        await produce(bootstrap, s.topics.predictions, phase1["rec"], key=b"rec")
        await produce(bootstrap, s.topics.predictions, phase1["fraud"], key=b"fraud")
        # phase 1 processed: the fraud comparison's 4 windows (2,000 pairs, the first
        # production prediction before any shadow one)
        await consume_until(bootstrap, s.topics.reports,
                            lambda rs: sum(r["type"] == "shadow" for r in rs) >= 3, 90, worker)
        label_values = envelopes(labels)
        await produce(bootstrap, s.topics.labels, label_values, key=b"fraud")
        await consume_until(
            bootstrap, s.topics.reports,
            lambda rs: {r.get("deployment") for r in rs if r["type"] == "quality"}
            >= {None, "shadow"}, 60, worker)
        phase2 = envelopes(fraud2)
        await produce(bootstrap, s.topics.predictions, phase2, key=b"fraud")
        await consume_until(bootstrap, s.topics.reports,
                            lambda rs: sum(r["type"] == "shadow" for r in rs) >= 5, 60, worker)
        reports = await read_all(bootstrap, s.topics.reports)
        alerts = await read_all(bootstrap, s.topics.alerts)

        # -- slices: eu fires, nothing global on PSI ------------------------------------
        psi = [a for a in alerts if a["model"] == "rec" and a["detector"] == "psi"]
        assert {(a["slice"]["value"], a["feature"]) for a in psi if a["status"] == "firing"} == {
            ("eu", "x")}
        assert all(a.get("slice") for a in psi)
        global_x = [r["features"]["x"]["psi"] for r in reports
                    if r["type"] == "window_report" and r["model"] == "rec" and not r["slice"]]
        assert len(global_x) >= 30 and max(global_x) < s.monitor.psi_warning
        assert worker.metric('driftstream_slice_psi{feature="x",model="rec",model_version="v1",'
                             'slice_key="region",slice_value="eu"}') >= s.monitor.psi_critical
        assert worker.metric('driftstream_slice_events_total{model="rec",outcome="tracked",'
                             'slice_key="region"}') > 40000

        # -- shadow: the gap fires, each side's quality, production ahead ----------------
        shadow = [r for r in reports if r["type"] == "shadow"]
        assert all(r["disagreement_rate"] > s.monitor.shadow_disagreement_critical
                   for r in shadow)
        fired = [a for a in alerts if a["detector"] == "shadow"]
        assert fired and fired[0]["model_version"] == "v2" and fired[0]["severity"] == "critical"
        assert shadow[-1]["ahead"] == "production"
        assert shadow[-1]["quality"]["shadow"]["model_version"] == "v2"
        assert worker.metric('driftstream_shadow_gap{measure="disagreement",model="fraud"}') > 0.15
        quality = [r for r in reports if r["type"] == "quality"]
        assert {(r["model_version"], r.get("deployment")) for r in quality} == {
            ("v1", None), ("v2", "shadow")}

        # -- replay of the same messages ------------------------------------------------
        lines = enumerate(phase1["rec"] + phase1["fraud"] + phase2)
        offline = replay_lines(lines, s, labels=enumerate(label_values))
        live_windows = sorted((r for r in reports if r["type"] == "window_report"), key=_order)
        assert orjson.dumps(live_windows) == orjson.dumps(sorted(offline.reports, key=_order))
        assert orjson.dumps(sorted(shadow, key=_order)) == orjson.dumps(
            sorted(offline.shadow_reports, key=_order))
        assert orjson.dumps(sorted(alerts, key=_order)) == orjson.dumps(
            sorted(offline.alerts, key=_order))
    finally:
        worker.stop()
