"""Delayed ground truth end to end on the embedded broker: labels delayed, out of order,
before their predictions, never arriving; a quality alert that fires on an accuracy drop
and resolves on recovery; and replay of the same files giving the same quality reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.config import load_settings
from stream.replay import replay_lines
from tests.integration.harness import WorkerProcess, consume_until, make_env, produce, read_all

pytestmark = pytest.mark.broker

T0 = 1_700_000_000.0
WINDOW = 200

CONFIG = """
[monitor]
quality_window_size = 200
quality_min_pairs = 50
quality_baseline_windows = 2
label_ttl_seconds = 300.0
label_join_start = "always"
label_grace_seconds = 50.0

[monitor.quality_slo]
accuracy = 0.8
"""


def predictions(model: str, n: int, *, start: float = T0, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    return [{"event_id": f"{model}-{i}", "model": model, "model_version": "v1",
             "ts": start + i * 0.1, "features": {"x": float(rng.normal())},
             "prediction": {"label": bool(score[i] >= 0.5), "score": round(float(score[i]), 3)}}
            for i in range(n)]


def labels_for(events: list[dict[str, Any]], *, wrong: set[int] = frozenset(),  # type: ignore[assignment]
               delay: float = 5.0) -> list[dict[str, Any]]:
    return [{"event_id": e["event_id"], "model": e["model"],
             "label": e["prediction"]["label"] != (i in wrong), "ts": e["ts"] + delay}
            for i, e in enumerate(events)]


def shuffled_in_blocks(items: list[Any], block: int, seed: int) -> list[Any]:
    """Out of order, but only within blocks, so windows keep their meaning."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(0, len(items), block):
        part = items[i:i + block]
        out += [part[j] for j in rng.permutation(len(part))]
    return out


def quality(reports: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return [r for r in reports if r.get("type") == "quality" and r["model"] == model]


async def test_delayed_labels_quality_alerts_and_replay(broker: Any, unique: str,
                                                        tmp_path: Path) -> None:
    config = tmp_path / "driftstream.toml"
    config.write_text(CONFIG)
    env = make_env(broker.bootstrap, unique, tmp_path / "data", DRIFTSTREAM_CONFIG=str(config),
                   DRIFTSTREAM_MONITOR__WARMUP_EVENTS="200")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s = worker.settings
        bootstrap, t = s.kafka.bootstrap_servers, s.topics
        sent_predictions: list[bytes] = []
        sent_labels: list[bytes] = []

        async def send(topic: str, events: list[dict[str, Any]]) -> None:
            values = [orjson.dumps(e) for e in events]
            (sent_predictions if topic == t.predictions else sent_labels).extend(values)
            # Keyed by model, as producers should: Kafka orders a model's labels then.
            await produce(bootstrap, topic, values, key=events[0]["model"].encode())

        def ingested(n: int) -> None:
            deadline = time.monotonic() + 60
            total = 0.0
            while time.monotonic() < deadline:
                total = sum(worker.metric(f'driftstream_ingested_events_total{{topic="{x}"}}')
                            for x in (t.predictions, t.labels))
                if total >= n:
                    return
                worker.check_alive()
                time.sleep(0.2)
            raise AssertionError(f"ingested {total} of {n}\n{worker.log_tail()}")

        # 1. fraud: labels delayed behind predictions, out of order within blocks; labels
        #    of predictions 800..1399 wrong (an accuracy drop), then right again.
        fraud = predictions("fraud", 2000, seed=1)
        await send(t.predictions, fraud)
        ingested(2000)
        wrong = {i for i in range(800, 1400) if i % 2 == 0}  # accuracy about 0.5 there
        await send(t.labels, shuffled_in_blocks(labels_for(fraud, wrong=wrong), 50, seed=2))
        # 2. early: labels first, predictions after them (within the grace period).
        early = predictions("early", 400, seed=3)
        await send(t.labels, labels_for(early, delay=-1.0))
        ingested(2000 + 2000 + 400)
        await send(t.predictions, early)
        # 3. expiry: 300 predictions, labels for 100; a late prediction moves event time
        #    past the TTL, so the other 200 expire.
        ingested(4800)
        expiry = predictions("expiry", 300, seed=4)
        await send(t.predictions, expiry)
        ingested(5100)
        await send(t.labels, labels_for(expiry[:100]))
        ingested(5200)
        late = predictions("expiry", 1, start=T0 + 1000.0, seed=5)[0]
        await send(t.predictions, [{**late, "event_id": "expiry-late"}])

        reports = await consume_until(
            bootstrap, t.reports,
            lambda rs: len(quality(rs, "fraud")) >= 10 and len(quality(rs, "early")) >= 2,
            60, worker)
        fraud_q = quality(reports, "fraud")
        accuracy = [r["metrics"]["accuracy"] for r in fraud_q]
        print("fraud accuracy per window:", accuracy)
        assert [r["window"]["count"] for r in fraud_q] == [WINDOW] * 10
        assert min(accuracy[4:7]) < 0.8 < min(accuracy[:4] + accuracy[7:])
        assert sum(r["window"]["count"] for r in quality(reports, "early")) == 400

        alerts = await consume_until(
            bootstrap, t.alerts,
            lambda al: any(a["kind"] == "quality" and a["detector"] == "slo"
                           and a["status"] == "resolved" for a in al), 30, worker)
        slo = [(a["status"], a["window"]["index"]) for a in alerts
               if a["kind"] == "quality" and a["detector"] == "slo" and a["model"] == "fraud"]
        assert slo == [("firing", 4), ("resolved", 7)], slo

        def join(outcome: str) -> float:
            return worker.metric(f'driftstream_label_join_events_total{{outcome="{outcome}"}}')

        deadline = time.monotonic() + 30
        while join("expired_predictions") < 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert join("expired_predictions") == 200
        assert join("joined") == 2000 + 400 + 100
        assert worker.metric('driftstream_label_coverage_ratio{model="expiry"}') == pytest.approx(
            100 / 300)
        assert worker.metric('driftstream_quality{metric="accuracy",model="fraud",'
                             'model_version="v1"}') == pytest.approx(accuracy[-1])
        assert worker.metric("driftstream_label_latency_seconds_count") >= 2500

        # Replay of what was produced, in the same order, gives the same quality reports.
        live = [r for r in await read_all(bootstrap, t.reports, idle=1.0)
                if r.get("type") == "quality"]
        settings = load_settings(config, env=env)
        result = replay_lines(enumerate(sent_predictions), settings,
                              labels=enumerate(sent_labels))
        key = lambda r: (r["model"], r["window"]["index"])  # noqa: E731
        replayed = sorted(result.quality_reports, key=key)

        def window_part(r: dict[str, Any]) -> dict[str, Any]:
            # The join's point-in-time state (pending, running totals) depends on how the
            # two topics interleaved on arrival, which replay approximates by event time;
            # everything computed from the window's pairs must be identical.
            lab = r["labels"]
            return {**r, "labels": {k: lab[k] for k in ("latency_p50_seconds",
                                                        "latency_p95_seconds")}}

        assert len(replayed) == len(live) == 10 + 2
        for a, b in zip(replayed, sorted(live, key=key), strict=True):
            assert window_part(a) == window_part(b)
        assert result.label_join["joined"] == join("joined")
        assert result.label_join["expired_predictions"] == 200
    finally:
        worker.stop()
