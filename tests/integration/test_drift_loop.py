"""The drift loop end to end on the embedded broker: real topics, a real worker process."""

from __future__ import annotations

import signal
import time
from typing import Any

import numpy as np
import orjson
import pytest

from stream.core.events import normalize_event
from stream.core.reference import reference_key
from stream.kafka.topics import partition_for
from stream.replay import build_profiles, replay_lines
from tests.integration.harness import WorkerProcess, consume_until, make_env, produce, read_all

pytestmark = pytest.mark.broker

FEATURES = ("x", "y", "z")


def make_events(n: int, *, start: int = 0, drift_x: float = 0.0, seed: int = 0,
                model: str = "fraud", version: str = "v1") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(drift_x, 1.0, n)
    y = rng.normal(10.0, 2.0, n)
    z = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    score = rng.beta(2, 5, n)
    return [
        {"event_id": f"{model}-{start + i}", "model": model, "model_version": version,
         "ts": 1_700_000_000.0 + (start + i) * 0.01,
         "features": {"x": float(x[i]), "y": float(y[i]), "c": str(z[i])},
         "prediction": {"label": bool(score[i] > 0.5), "score": float(score[i])}}
        for i in range(n)
    ]


def encode(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


async def publish_reference(env: dict[str, str], worker: WorkerProcess,
                            events: list[dict[str, Any]]) -> None:
    settings = worker.settings
    profiles = build_profiles([normalize_event(e, "prediction") for e in events], settings)
    for p in profiles:
        await produce(settings.kafka.bootstrap_servers, settings.topics.references,
                      [orjson.dumps(p.snapshot())],
                      key=reference_key(p.model, p.model_version).encode())


def feature_alerts(alerts: list[dict[str, Any]], feature: str, status: str = "firing",
                   detector: str | None = None) -> list[dict[str, Any]]:
    return [a for a in alerts if a["feature"] == feature and a["status"] == status
            and (detector is None or a["detector"] == detector)]


@pytest.fixture
def worker_env(broker: Any, unique: str, tmp_path: Any) -> dict[str, str]:
    return make_env(broker.bootstrap, unique, tmp_path / "data")


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Any) -> Any:
    w = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    w.wait_ready()
    yield w
    w.stop()


async def test_drifted_feature_fires_and_stable_features_do_not(
        worker: WorkerProcess, worker_env: dict[str, str]) -> None:
    s = worker.settings
    bootstrap = s.kafka.bootstrap_servers
    await publish_reference(worker_env, worker, make_events(5000, seed=1))
    events = make_events(2000, seed=2) + make_events(2000, start=2000, drift_x=2.0, seed=3)
    await produce(bootstrap, s.topics.predictions, encode(events), key=b"fraud")

    reports = await consume_until(bootstrap, s.topics.reports, lambda r: len(r) >= 8, 60, worker)
    alerts = await consume_until(bootstrap, s.topics.alerts,
                                 lambda a: bool(feature_alerts(a, "x", detector="psi")), 30, worker)
    assert [r["reference"]["source"] for r in reports] == ["file"] * len(reports)
    psi_x = [r["features"]["x"]["psi"] for r in reports]
    assert max(psi_x[:4]) < 0.1 < 0.25 < min(psi_x[4:8]), psi_x
    fired = feature_alerts(alerts, "x", detector="psi")[0]
    assert fired["kind"] == "feature_drift" and fired["severity"] == "critical"
    assert fired["window"]["index"] == 4 and fired["model_version"] == "v1"
    for stable in ("y", "c", "prediction.score", "prediction.label"):
        assert not feature_alerts(alerts, stable), (stable, alerts)
    assert worker.metric(
        'driftstream_psi{feature="x",model="fraud",model_version="v1"}') > 0.25


async def test_bad_events_are_dead_lettered_and_the_stream_continues(
        worker: WorkerProcess) -> None:
    s = worker.settings
    bootstrap = s.kafka.bootstrap_servers
    good = make_events(1200, seed=4)
    bad = [
        (b"{not json", "invalid_json"),
        (b'{"event_id": "b1", "model": "fraud", "ts": 1, "features": {"x": NaN}, "prediction": 1}',
         "non_finite_number"),
        (b'{"event_id": "b2", "model": "fraud", "ts": 1, "features": {"x": 1e999}, "prediction": 1}',
         "non_finite_number"),
        (b'{"event_id": "b3", "model": "fraud", "ts": 1, "features": [1, 2], "prediction": 1}',
         "wrong_type"),
        (b'{"event_id": "b4", "ts": 1, "features": {}, "prediction": 1}', "missing_field"),
        (b'{"event_id": "b5", "model": "fraud", "ts": 1700000000000, "features": {},'
         b' "prediction": 1}', "invalid_ts"),
        (b'{"event_id": "b6", "model": "fraud", "ts": 1, "features": {}, "prediction": 1,'
         b' "pad": "' + b"x" * (2 << 20) + b'"}', "oversize"),
        (b"[]", "empty_message"),
    ]
    values = encode(good[:600])
    for raw, _ in bad:
        values.append(raw)
    values += encode(good[600:])
    await produce(bootstrap, s.topics.predictions, values, key=b"fraud", partition=0)

    dead = await consume_until(bootstrap, s.topics.dead_letter,
                               lambda d: len(d) >= len(bad), 40, worker)
    assert [d["reason"] for d in dead] == [reason for _, reason in bad]
    assert [d["source"]["offset"] for d in dead] == list(range(600, 600 + len(bad)))
    assert dead[6]["truncated"] and dead[6]["size"] > 2 << 20
    deadline = time.monotonic() + 30
    while worker.metric('driftstream_ingested_events_total{topic="' + s.topics.predictions
                        + '"}') < 1200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.metric(
        'driftstream_ingested_events_total{topic="' + s.topics.predictions + '"}') == 1200
    assert worker.metric('driftstream_dead_letters_total{reason="invalid_json",topic="'
                         + s.topics.predictions + '"}') == 1
    worker.check_alive()
    # warm-up (1000) then 200 windowed events: every good event reached the monitor
    deadline = time.monotonic() + 20
    while (worker.metric('driftstream_processed_events_total{outcome="warmup"}')
           + worker.metric('driftstream_processed_events_total{outcome="windowed"}')) < 1200:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_restart_preserves_state_and_does_not_refire(
        worker: WorkerProcess, worker_env: dict[str, str], tmp_path: Any, sig: int) -> None:
    s = worker.settings
    bootstrap = s.kafka.bootstrap_servers
    await publish_reference(worker_env, worker, make_events(5000, seed=1))
    first = make_events(1000, seed=2) + make_events(1000, start=1000, drift_x=3.0, seed=3)
    await produce(bootstrap, s.topics.predictions, encode(first), key=b"fraud")
    reports = await consume_until(bootstrap, s.topics.reports, lambda r: len(r) >= 4, 60, worker)
    alerts = await consume_until(bootstrap, s.topics.alerts,
                                 lambda a: bool(feature_alerts(a, "x", detector="psi")), 30, worker)
    time.sleep(1.5)  # let the commit interval pass, so that a SIGKILL loses nothing committed
    assert worker.stop(sig) is not None

    restarted = WorkerProcess(worker_env, tmp_path / "worker2.log").start()
    try:
        restarted.wait_ready()
        more = make_events(1000, start=2000, drift_x=3.0, seed=5)
        await produce(bootstrap, s.topics.predictions, encode(more), key=b"fraud")
        reports = await consume_until(bootstrap, s.topics.reports,
                                      lambda r: len(r) >= 6, 60, restarted)
        alerts = await read_all(bootstrap, s.topics.alerts)
        indexes = [r["window"]["index"] for r in reports]
        # the windows continue where they were: no window restarts at 0 after the restart
        assert indexes[:6] == [0, 1, 2, 3, 4, 5] or sorted(set(indexes)) == list(range(6)), indexes
        # reference came back from the changelog, not from a new warm-up
        assert reports[-1]["reference"]["source"] == "file"
        fired = feature_alerts(alerts, "x", detector="psi")
        assert len({(a["alert_id"], a["episode"]) for a in fired}) == 1, fired
        assert restarted.metric('driftstream_processed_events_total{outcome="warmup"}') == 0
    finally:
        restarted.stop()


async def test_replay_gives_the_same_reports_and_alerts_as_live(
        worker: WorkerProcess, worker_env: dict[str, str]) -> None:
    s = worker.settings
    bootstrap = s.kafka.bootstrap_servers
    reference = make_events(3000, seed=11)
    await publish_reference(worker_env, worker, reference)
    events = (make_events(1500, seed=12) + make_events(1500, start=1500, drift_x=1.0, seed=13)
              + make_events(1500, start=3000, seed=14, model="eta", version="v3"))
    values = encode(events)
    values.insert(100, b"{broken")
    # Each model keyed to one partition: Kafka keeps per-model order within a partition.
    await produce(bootstrap, s.topics.predictions, values[:2000], key=b"k")
    await produce(bootstrap, s.topics.predictions, values[2000:], key=b"k")
    # fraud: 3000 events in windows of 500; eta (no reference): 1000 warm-up, 1 window
    want = 6 + 1
    live_reports = await consume_until(bootstrap, s.topics.reports,
                                       lambda r: len(r) >= want, 60, worker)
    live_reports = await read_all(bootstrap, s.topics.reports)
    live_alerts = await read_all(bootstrap, s.topics.alerts)

    profiles = build_profiles([normalize_event(e, "prediction") for e in reference], s)
    offline = replay_lines(enumerate(values), s, references=profiles, batch_lines=777)
    assert len(offline.reports) == want
    assert len(offline.dead_letters) == 1
    eta_sources = [r["reference"]["source"] for r in offline.reports if r["model"] == "eta"]
    assert eta_sources == ["warmup"]
    assert orjson.dumps(sorted(live_reports, key=_order)) == orjson.dumps(
        sorted(offline.reports, key=_order))
    assert orjson.dumps(sorted(live_alerts, key=_order)) == orjson.dumps(
        sorted(offline.alerts, key=_order))
    assert offline.alerts, "the drifted windows should have fired in both"


def _order(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["model"], r["window"]["index"], r.get("alert_id", ""), r.get("status", ""))


async def test_a_foreign_message_on_the_internal_topic_does_not_stall_the_monitors(
        worker: WorkerProcess) -> None:
    s = worker.settings
    bootstrap = s.kafka.bootstrap_servers
    p = partition_for("fraud", s.app.partitions)
    await produce(bootstrap, s.topics.by_model, [b'{"type": "columns", "model": "fraud"}',
                                                  b"not even json"], partition=p)
    await produce(bootstrap, s.topics.predictions, encode(make_events(1500, seed=9)),
                  key=b"fraud")
    dead = await consume_until(bootstrap, s.topics.dead_letter,
                               lambda d: len(d) >= 2, 40, worker)
    assert [d["reason"] for d in dead] == ["internal_error", "internal_error"]
    assert {d["source"]["topic"] for d in dead} == {s.topics.by_model}
    # the good events behind them are processed: warm-up (1000) then one window of 500
    reports = await consume_until(bootstrap, s.topics.reports, lambda r: len(r) >= 1, 40,
                                  worker)
    assert reports[0]["window"]["count"] == 500
    worker.check_alive()
