"""The backlog SLI on the embedded broker: a real worker, the real ``driftstream lag``
monitor process, producers that keep writing while the worker is killed or frozen."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from stream.config import LagSettings
from stream.core.lag import PartitionStatus
from stream.kafka.lag import LagProbe, LagSampler, LagTarget
from stream.metrics import LagMetrics
from tests.integration.harness import WorkerProcess, consume_until, make_env, read_all

pytestmark = pytest.mark.broker

#: Fast lag settings: sample every second; stalled after 4 s, stopped after 8 s.
LAG = {
    "DRIFTSTREAM_LAG__INTERVAL_SECONDS": "1",
    "DRIFTSTREAM_LAG__WINDOW_SECONDS": "20",
    "DRIFTSTREAM_LAG__STALL_AFTER_SECONDS": "4",
    "DRIFTSTREAM_LAG__STOP_AFTER_SECONDS": "8",
    "DRIFTSTREAM_LAG__MIN_SPAN_SECONDS": "3",
    "DRIFTSTREAM_LAG__AGE_WARNING_SECONDS": "3",
    "DRIFTSTREAM_LAG__AGE_CRITICAL_SECONDS": "60",
    "DRIFTSTREAM_LAG__DRAIN_MIN_AGE_SECONDS": "3",
}
#: The documented detection bounds for a dead or frozen worker, from its last commit:
#: STALLED within stall_after + one interval, STOPPED within stop_after + one interval
#: (sooner when the broker drops the member at its session timeout). Plus slack for a
#: loaded 2-core CI machine.
STALLED_WITHIN = 4 + 1 + 5
STOPPED_WITHIN = 8 + 1 + 5


class Producer:
    """Writes prediction events at a steady rate in the background."""

    def __init__(self, bootstrap: str, topic: str, rate: float = 200.0) -> None:
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Producer:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await self._producer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            for _ in range(int(self.rate / 10)):
                event = {"event_id": f"e{self.sent}", "model": f"m{self.sent % 4}",
                         "ts": time.time(), "features": {"x": float(self.sent % 97)},
                         "prediction": {"score": (self.sent % 10) / 10}}
                await self._producer.send(self.topic, orjson.dumps(event))
                self.sent += 1
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._producer.stop()


def statuses(monitor: WorkerProcess, group: str, topic: str) -> dict[int, str]:
    """{partition: status} of (group, topic) from the monitor's /metrics."""
    out: dict[int, str] = {}
    try:
        metrics = monitor.metrics()
    except OSError:
        return out
    pattern = re.compile(r'driftstream_consumer_status\{driftstream_consumer_status="(\w+)",'
                         r'group="([^"]+)",partition="(\d+)",topic="([^"]+)"\}')
    for line, value in metrics.items():
        m = pattern.fullmatch(line)
        if m and value == 1.0 and m.group(2) == group and m.group(4) == topic:
            out[int(m.group(3))] = m.group(1)
    return out


def gauge(monitor: WorkerProcess, name: str, group: str, topic: str) -> list[float]:
    metrics = monitor.metrics()
    return [v for line, v in metrics.items()
            if line.startswith(f"{name}{{") and f'group="{group}"' in line
            and f'topic="{topic}"' in line]


async def wait_for(cond: Callable[[], bool], timeout: float, what: str,
                   *procs: WorkerProcess) -> float:
    """Poll ``cond`` (every 0.25 s, letting the producer run); return the seconds taken."""
    t0 = time.monotonic()
    while not cond():
        for p in procs:
            p.check_alive()
        if time.monotonic() - t0 > timeout:
            logs = "\n".join(p.log_tail(30) for p in procs)
            raise AssertionError(f"not {what} after {timeout:.0f} s\n{logs}")
        await asyncio.sleep(0.25)
    return time.monotonic() - t0


def backlog_alerts(alerts: list[dict[str, Any]], group: str, detector: str) -> list[str]:
    return [a["status"] for a in alerts if a["kind"] == "backlog" and a["detector"] == detector
            and a["pipeline"]["group"] == group]


@pytest.fixture
def env(broker: Any, unique: str, tmp_path: Any) -> dict[str, str]:
    return make_env(broker.bootstrap, unique, tmp_path / "data", **LAG)


@pytest.mark.parametrize("how", ["sigkill", "sigstop"])
async def test_dead_or_frozen_worker_is_reported_and_recovers(
        env: dict[str, str], tmp_path: Any, how: str) -> None:
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    worker.wait_ready()
    s = worker.settings
    group, topic = f"{s.app.id}-ingest", s.topics.predictions
    monitor = WorkerProcess(env, tmp_path / "monitor.log", command=["lag", "--watch"])
    try:
        async with Producer(s.kafka.bootstrap_servers, topic):
            # Healthy: the worker has processed traffic and keeps up.
            ingested = f'driftstream_ingested_events_total{{topic="{topic}"}}'
            await wait_for(lambda: worker.metric(ingested) > 1000, 60, "processing", worker)
            monitor.start().wait_ready()
            await wait_for(lambda: set(statuses(monitor, group, topic).values()) <= {"idle", "ok"}
                           and len(statuses(monitor, group, topic)) > 0, 60, "healthy",
                           worker, monitor)
            assert worker.proc is not None
            if how == "sigkill":
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait(5)
            else:
                worker.proc.send_signal(signal.SIGSTOP)
            took = await wait_for(
                lambda: set(statuses(monitor, group, topic).values()) & {"stalled", "stopped"},
                STALLED_WITHIN, "reported stalled", monitor)
            took_stop = await wait_for(
                lambda: set(statuses(monitor, group, topic).values()) == {"stopped"},
                STOPPED_WITHIN, "reported stopped", monitor)
            print(f"{how}: stalled after {took:.1f} s, stopped {took_stop:.1f} s later")
            lag0 = sum(gauge(monitor, "driftstream_consumer_lag_records", group, topic))
            age0 = max(gauge(monitor, "driftstream_backlog_age_seconds", group, topic))
            await asyncio.sleep(2.5)
            lag1 = sum(gauge(monitor, "driftstream_consumer_lag_records", group, topic))
            age1 = max(gauge(monitor, "driftstream_backlog_age_seconds", group, topic))
            assert lag1 > lag0 > 0 and age1 > age0 > 0, (lag0, lag1, age0, age1)
            alerts = await consume_until(
                s.kafka.bootstrap_servers, s.topics.alerts,
                lambda a: "firing" in backlog_alerts(a, group, "backlog_age")
                and "firing" in backlog_alerts(a, group, "status"), 15)
            assert backlog_alerts(alerts, group, "status") == ["firing"], alerts

            # Resume: a new worker, or the frozen one thawed.
            if how == "sigkill":
                worker = WorkerProcess(env, tmp_path / "worker2.log").start()
            else:
                worker.proc.send_signal(signal.SIGCONT)
            await wait_for(lambda: set(statuses(monitor, group, topic).values()) <= {"idle", "ok"},
                           60, "recovered", worker, monitor)
        await wait_for(lambda: set(statuses(monitor, group, topic).values()) == {"idle"},
                       30, "drained", worker, monitor)
        alerts = await read_all(s.kafka.bootstrap_servers, s.topics.alerts, idle=2.5)
        assert backlog_alerts(alerts, group, "status") == ["firing", "resolved"], alerts
        assert backlog_alerts(alerts, group, "backlog_age")[-1] == "resolved", alerts
        # Idle topic, long after: IDLE with age 0, not stale.
        await asyncio.sleep(float(LAG["DRIFTSTREAM_LAG__STOP_AFTER_SECONDS"]) + 1)
        assert set(statuses(monitor, group, topic).values()) == {"idle"}
        assert set(gauge(monitor, "driftstream_backlog_age_seconds", group, topic)) == {0.0}
    finally:
        if monitor.proc is not None:
            monitor.stop()
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGCONT)
        worker.stop()


async def test_worker_exports_lag_of_its_own_partitions(env: dict[str, str], tmp_path: Any) -> None:
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        s = worker.settings
        group = f"{s.app.id}-ingest"
        async with Producer(s.kafka.bootstrap_servers, s.topics.predictions):
            def exported() -> bool:
                m = worker.metrics()
                return any(line.startswith("driftstream_consumer_position_lag_records{")
                           and f'group="{group}"' in line for line in m) and any(
                    line.startswith("driftstream_consumer_status{") and f'group="{s.app.id}"' in line
                    and f'topic="{s.topics.by_model}"' in line for line in m)
            await wait_for(exported, 40, "exporting its lag", worker)
        m = worker.metrics()
        lags = [v for line, v in m.items() if line.startswith("driftstream_consumer_lag_records{")]
        assert lags and min(lags) >= 0
    finally:
        worker.stop()


async def test_idle_topic_reports_idle_with_age_zero_and_revoked_partitions_vanish(
        broker: Any, unique: str) -> None:
    """Through the sampler directly: a fully consumed, idle topic is IDLE with age 0; a
    partition no longer sampled loses its series."""
    topic, group = f"idle-{unique}", f"g-{unique}"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    for i in range(20):
        await producer.send_and_wait(topic, b"x", partition=i % 2)
    await producer.stop()
    probe = LagProbe(broker.bootstrap)
    await probe.start()
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        ends = {tp: (await probe.sample(group, [tp], now=0.0))[tp].highwater for tp in tps}
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        consumer.assign(tps)
        await consumer.commit(ends)
        await consumer.stop()
        metrics = LagMetrics(CollectorRegistry())
        sampler = LagSampler(LagSettings(interval_seconds=1, window_seconds=20, stall_after_seconds=2,
                                         stop_after_seconds=4), probe, metrics)
        for _ in range(3):
            readings = await sampler.sample_once([LagTarget(group, tps)])
            await asyncio.sleep(2.5)
        readings = await sampler.sample_once([LagTarget(group, tps)])
        assert {r.status for r in readings.values()} == {PartitionStatus.IDLE}
        assert {r.backlog_age_seconds for r in readings.values()} == {0.0}
        assert {r.offset_lag for r in readings.values()} == {0}
        assert metrics.partitions() == {(group, topic, 0), (group, topic, 1)}
        await sampler.sample_once([LagTarget(group, tps[:1])])
        assert metrics.partitions() == {(group, topic, 0)}
        text = generate_latest(metrics.registry).decode()
        assert f'partition="1",topic="{topic}"' not in text
        assert f'partition="0",topic="{topic}"' in text
    finally:
        await probe.stop()


async def test_restarted_monitor_takes_back_firing_backlog_alerts(broker: Any, unique: str) -> None:
    """The alert states come back from the alerts topic: no second firing, same episode."""
    from stream.config import load_settings
    from stream.core.backlog import BacklogAlerts
    from stream.core.lag import LagReading
    from stream.kafka.lag import _recover_alerts

    settings = load_settings(env={"DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
                                  "DRIFTSTREAM_TOPICS__ALERTS": f"alerts-{unique}"})
    stopped = LagReading(at=0.0, status=PartitionStatus.STOPPED, reason="test", highwater=9,
                         committed=0, offset_lag=9, position_lag=None, backlog_age_seconds=99.0,
                         arrival_rate=None, processing_rate=None, drain_seconds=None,
                         stuck_seconds=99.0)
    first = BacklogAlerts()
    fired = first.evaluate("g", "t", {0: stopped}, ts=1.0)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    await producer.send_and_wait(settings.topics.alerts, orjson.dumps({"kind": "feature_drift"}))
    for event in fired:
        await producer.send_and_wait(settings.topics.alerts, orjson.dumps(event))
    await producer.stop()
    second = BacklogAlerts()
    assert await _recover_alerts(settings, second) == len(fired) == 2
    assert second.evaluate("g", "t", {0: stopped}, ts=2.0) == []
    assert second.snapshot() == first.snapshot()


async def test_one_shot_lag_exits_1_for_a_backlog_without_a_consumer(
        broker: Any, unique: str, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    from tests.integration.harness import REPO, settings_from

    env = make_env(broker.bootstrap, unique, tmp_path / "data")
    s = settings_from(env)
    topic, group = s.topics.predictions, f"{s.app.id}-ingest"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    for _ in range(20):
        await producer.send_and_wait(topic, b"{}", partition=0)
    await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.commit({TopicPartition(topic, 0): 5})  # 15 behind, and then nobody
    await consumer.stop()

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stream", "lag"], env={**os.environ, **env},
                              cwd=REPO, capture_output=True, text=True, timeout=60)

    out = run()
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{group} {topic}[0] OK lag=15" in out.stdout
    assert "the group has no member" in out.stdout
