"""Sampling consumer lag from Kafka: the I/O around :mod:`stream.core.lag`.

:class:`LagProbe` reads, for one consumer group and a set of partitions, everything a
:class:`~stream.core.lag.OffsetSample` needs, through the Kafka protocol only:

- the group's **committed offsets** (OffsetFetch, via the admin client), the next
  record the group will read; a partition the group never committed on has none;
- whether the group has a **live member** (DescribeGroups): a group whose workers were
  all killed is empty once their session times out;
- the **highwater** (offset of the next record to be written), as the maximum of
  ListOffsets(latest) and the high watermark of a Fetch response (the embedded broker
  under-reports the former, see ``stream/kafka/tansu.py``);
- the **log start** offset, for groups that never committed;
- the **timestamp of the record at the committed offset** (the oldest unprocessed
  record), from one small fetch by a group-less consumer positioned there. This is the
  record's Kafka timestamp: when the producer sent it, so the backlog age measures time
  spent waiting in the pipeline.

It needs no access to the worker, so ``driftstream lag`` can watch a worker that is dead
or frozen. :class:`LagSampler` turns samples into readings, Prometheus series and
(optionally) backlog alerts; the worker and ``driftstream lag`` both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream.config import LagSettings, Settings
from stream.core.backlog import BacklogAlerts
from stream.core.clock import Clock, SystemClock
from stream.core.lag import LagReading, LagTracker, OffsetSample
from stream.kafka.security import client_kwargs
from stream.kafka.tansu import true_end_offsets
from stream.metrics import LagMetrics

__all__ = [
    "LagProbe",
    "LagSampler",
    "LagTarget",
    "format_reading",
    "monitor_groups",
    "run_monitor",
]

log = logging.getLogger(__name__)


class LagProbe:
    """Reads committed offsets, highwaters, group liveness and head-record timestamps.

    ``client_kwargs`` are passed to aiokafka's consumer and admin client (security
    settings, for example). Call :meth:`start` before and :meth:`stop` after use.
    """

    def __init__(self, bootstrap_servers: str, *, fetch_timeout: float = 2.0,
                 client_id: str = "driftstream-lag", **client_kwargs: Any) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.fetch_timeout = fetch_timeout
        self.client_id = client_id
        self.client_kwargs = client_kwargs
        self._admin: Any = None
        self._consumer: Any = None

    async def start(self) -> None:
        """Connect (on the running event loop)."""
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                          client_id=self.client_id, **self.client_kwargs)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=100, client_id=self.client_id,
            max_partition_fetch_bytes=64 << 10, **self.client_kwargs)
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        try:
            if self._consumer is not None:
                await self._consumer.stop()
        finally:
            if self._admin is not None:
                await self._admin.close()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of ``topics`` that exists now (unknown topics have none, and
        are not created: only existing topics are described)."""
        existing = set(await self._admin.list_topics())
        wanted = [t for t in topics if t in existing]
        if not wanted:
            return []
        out = []
        for desc in await self._admin.describe_topics(wanted):
            if desc.get("error_code", 0) == 0:
                out += [TopicPartition(desc["topic"], p["partition"]) for p in desc["partitions"]]
        return sorted(out)

    async def group_alive(self, group: str) -> bool:
        """Whether ``group`` has at least one member now."""
        described = await self._admin.describe_consumer_groups([group])
        for response in described:
            for g in response.groups:
                if g[1] == group:
                    return len(g[5]) > 0
        return False

    async def sample(
        self,
        group: str,
        tps: Sequence[TopicPartition],
        *,
        now: float,
        consumer_alive: bool | None = None,
        positions: Mapping[TopicPartition, int] | None = None,
    ) -> dict[TopicPartition, OffsetSample]:
        """One :class:`OffsetSample` per partition of ``tps`` whose highwater could be read.

        ``consumer_alive`` overrides the DescribeGroups answer (a worker sampling its own
        partitions passes ``True``); ``positions`` are the consumer's fetch positions,
        known only inside the worker.
        """
        if not tps:
            return {}
        tps = list(tps)
        fetched = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        committed: dict[TopicPartition, int | None] = {}
        for tp in tps:
            meta = fetched.get(tp)
            committed[tp] = meta.offset if meta is not None and meta.offset >= 0 else None
        if consumer_alive is None:
            consumer_alive = await self.group_alive(group)
        never = [tp for tp in tps if committed[tp] is None]
        earliest: Mapping[TopicPartition, int] = (
            await self._consumer.beginning_offsets(never) if never else {})
        listed: Mapping[TopicPartition, int] = await self._consumer.end_offsets(tps)
        start: dict[TopicPartition, int] = {}
        for tp in tps:
            c = committed[tp]
            start[tp] = c if c is not None else int(earliest.get(tp, 0))
        highwaters, heads = await self._fetch_heads(start)
        out: dict[TopicPartition, OffsetSample] = {}
        for tp in tps:
            hw = max(int(listed.get(tp, 0)), highwaters.get(tp, 0))
            out[tp] = OffsetSample(
                at=now, highwater=hw, committed=committed[tp], earliest=int(earliest.get(tp, 0)),
                position=positions.get(tp) if positions else None, head_ts=heads.get(tp),
                consumer_alive=consumer_alive)
        return out

    async def _fetch_heads(
        self, start: Mapping[TopicPartition, int]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, float]]:
        """Fetch from ``start`` on each partition: the Fetch high watermarks, and the
        timestamp (epoch seconds) of the first record at or after ``start`` where there
        is one."""
        c = self._consumer
        c.assign(list(start))
        for tp, offset in start.items():
            c.seek(tp, offset)
        sent_ms = time.time() * 1000.0 - 1.0
        heads: dict[TopicPartition, float] = {}
        highwaters: dict[TopicPartition, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fetch_timeout
        pending = set(start)
        try:
            while pending and loop.time() < deadline:
                batch = await c.getmany(*pending, timeout_ms=100, max_records=len(pending) * 50)
                for tp, records in batch.items():
                    if tp not in heads and records:
                        heads[tp] = records[0].timestamp / 1000.0
                for tp in list(pending):
                    hw = c.highwater(tp)
                    polled = c.last_poll_timestamp(tp)
                    if hw is None or polled is None or polled < sent_ms:
                        continue
                    highwaters[tp] = int(hw)
                    if tp in heads or hw <= start[tp]:
                        pending.discard(tp)
        finally:
            # Stop fetching until the next sample (which assigns afresh). Not assign([]):
            # aiokafka's consumer then hangs in stop().
            c.pause(*start)
        if pending:
            log.warning("lag probe: no fetch answer in %.1f s for %s; their backlog age is "
                        "unknown this time", self.fetch_timeout,
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending)))
        return highwaters, heads


@dataclass
class LagTarget:
    """A consumer group and the partitions to sample for it."""

    group: str
    partitions: list[TopicPartition]
    consumer_alive: bool | None = None
    positions: dict[TopicPartition, int] = field(default_factory=dict)


AlertSink = Callable[[dict[str, Any]], Awaitable[None]]


class LagSampler:
    """Samples targets with a :class:`LagProbe`, keeps a :class:`LagTracker`, exports
    :class:`LagMetrics`, and (given ``alerts`` and ``publish``) publishes backlog alerts.

    Partitions that are no longer sampled (revoked from this worker, or gone) are
    forgotten, and their series removed, at the next :meth:`sample_once`.
    """

    def __init__(self, settings: LagSettings, probe: LagProbe, metrics: LagMetrics, *,
                 clock: Clock | None = None, alerts: BacklogAlerts | None = None,
                 publish: AlertSink | None = None) -> None:
        self.settings = settings
        self.probe = probe
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.tracker = LagTracker(settings.policy())
        self.alerts = alerts
        self.publish = publish

    async def sample_once(
        self, targets: Sequence[LagTarget]
    ) -> dict[tuple[str, str, int], LagReading]:
        """Sample every target once; return this round's readings."""
        readings: dict[tuple[str, str, int], LagReading] = {}
        for target in targets:
            now = self.clock.now()
            try:
                samples = await self.probe.sample(
                    target.group, target.partitions, now=now,
                    consumer_alive=target.consumer_alive, positions=target.positions)
            except Exception as exc:  # the broker may be down: count it, keep going
                log.warning("lag sample of group %s failed: %s: %s", target.group,
                            type(exc).__name__, exc)
                self.metrics.sample_errors.labels(group=target.group).inc()
                continue
            self.metrics.last_sample.labels(group=target.group).set(now)
            for tp, sample in samples.items():
                key = (target.group, tp.topic, tp.partition)
                reading = self.tracker.observe(key, sample)
                readings[key] = reading
                self.metrics.observe(target.group, tp.topic, tp.partition, reading)
        sampled = {(t.group, tp.topic, tp.partition) for t in targets for tp in t.partitions}
        for gone in self.tracker.tracked():
            if gone not in sampled:
                self.tracker.forget(gone)
                g, t, p = cast(tuple[str, str, int], gone)
                self.metrics.forget(g, t, p)
        if self.alerts is not None:
            await self._alert(readings)
        return readings

    async def _alert(self, readings: Mapping[tuple[str, str, int], LagReading]) -> None:
        assert self.alerts is not None
        by_topic: dict[tuple[str, str], dict[int, LagReading]] = {}
        for (group, topic, partition), reading in readings.items():
            by_topic.setdefault((group, topic), {})[partition] = reading
        ts = self.clock.now()
        for (group, topic), parts in sorted(by_topic.items()):
            for event in self.alerts.evaluate(group, topic, parts, ts=ts):
                log.warning("backlog alert %s/%s: %s", event["detector"], event["status"],
                            event["message"])
                if self.publish is not None:
                    await self.publish(event)


# -- the outside monitor: `driftstream lag` ---------------------------------------------


def monitor_groups(settings: Settings) -> dict[str, list[str]]:
    """The consumer groups of a driftstream deployment and the topics each reads."""
    t = settings.topics
    return {
        f"{settings.app.id}-ingest": [t.predictions, t.features],
        settings.app.id: [t.by_model, t.references],
    }


def format_reading(group: str, topic: str, partition: int, r: LagReading) -> str:
    """One line of ``driftstream lag`` output.

    >>> from stream.core.lag import OffsetSample, LagPolicy, evaluate
    >>> print(format_reading("g", "predictions", 0,
    ...       evaluate([OffsetSample(0.0, 120, 100, head_ts=-4.0)], 0.0, LagPolicy())))
    g predictions[0] OK lag=20 age=4.0s drain=? (a backlog of 20 records, draining)
    """
    age = "?" if r.backlog_age_seconds is None else f"{r.backlog_age_seconds:.1f}s"
    drain = ("?" if r.drain_seconds is None else "inf" if math.isinf(r.drain_seconds)
             else f"{r.drain_seconds:.1f}s")
    return (f"{group} {topic}[{partition}] {r.status.name} lag={r.offset_lag} age={age} "
            f"drain={drain} ({r.reason})")


async def _recover_alerts(settings: Settings, alerts: BacklogAlerts, timeout: float = 5.0) -> int:
    """Read the backlog alerts already on the alerts topic back into ``alerts``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
        client_id=f"{settings.app.id}-lag-recover", **client_kwargs(settings.kafka))
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(settings.topics.alerts, p)
               for p in sorted(consumer.partitions_for_topic(settings.topics.alerts) or ())]
        if not tps:
            await consumer.topics()
            tps = [TopicPartition(settings.topics.alerts, p)
                   for p in sorted(consumer.partitions_for_topic(settings.topics.alerts) or ())]
        if not tps:
            return 0
        ends = await true_end_offsets(consumer, tps, timeout=timeout)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending and loop.time() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=200)
            for tp, msgs in batch.items():
                for m in msgs:
                    if b'"backlog"' in (m.value or b""):
                        with contextlib.suppress(orjson.JSONDecodeError):
                            events.append(orjson.loads(m.value))
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        if pending:
            log.warning("lag monitor: read the alerts topic for %.0f s and did not reach its "
                        "end; backlog alerts already firing may fire again", timeout)
    finally:
        await consumer.stop()
    events.sort(key=lambda e: e.get("ts", 0.0))
    return alerts.recover(events)


async def run_monitor(
    settings: Settings,
    *,
    watch: bool,
    duration: float | None = None,
    publish_alerts: bool = True,
    serve_metrics: bool = True,
    out: Callable[[str], None] = print,
    clock: Clock | None = None,
) -> dict[tuple[str, str, int], LagReading]:
    """Sample driftstream's consumer groups from outside the workers.

    One-shot (``watch=False``): one sample, printed; only the statuses that need no
    history are visible (``IDLE``, ``OK``, ``STOPPED`` for an empty group). With
    ``watch``: sample every ``lag.interval_seconds``, print each round, serve
    ``/metrics`` on ``lag.monitor_host:lag.monitor_port``, and publish backlog alerts to
    the alerts topic. Returns the last round's readings.
    """
    from aiokafka import AIOKafkaProducer
    from prometheus_client import CollectorRegistry, start_http_server

    s = settings.lag
    registry = CollectorRegistry(auto_describe=True)
    metrics = LagMetrics(registry)
    probe = LagProbe(settings.kafka.bootstrap_servers, client_id=f"{settings.app.id}-lag",
                     **client_kwargs(settings.kafka))
    producer: Any = None
    alerts: BacklogAlerts | None = None
    publish: AlertSink | None = None
    if watch and publish_alerts:
        alerts = BacklogAlerts(s.backlog_policy())
        recovered = await _recover_alerts(settings, alerts)
        if recovered:
            out(f"recovered {recovered} backlog alert condition(s) from {settings.topics.alerts}")
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                    client_id=f"{settings.app.id}-lag",
                                    **client_kwargs(settings.kafka))
        await producer.start()

        async def publish(event: dict[str, Any]) -> None:
            await producer.send_and_wait(settings.topics.alerts, orjson.dumps(event),
                                         key=event["alert_id"].encode())

    sampler = LagSampler(s, probe, metrics, clock=clock, alerts=alerts, publish=publish)
    server: Any = None
    await probe.start()
    try:
        if watch and serve_metrics:
            server = start_http_server(s.monitor_port, s.monitor_host, registry=registry)
            out(f"serving /metrics on http://{s.monitor_host}:{s.monitor_port}/metrics")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration if duration is not None else None
        groups = monitor_groups(settings)
        readings: dict[tuple[str, str, int], LagReading] = {}
        while True:
            started = loop.time()
            targets = [LagTarget(g, await probe.partitions(topics)) for g, topics in groups.items()]
            readings = await sampler.sample_once(targets)
            for (g, t, p), r in sorted(readings.items()):
                out(format_reading(g, t, p, r))
            if not readings:
                out("no partition to sample yet: none of the topics "
                    f"{sorted({t for ts in groups.values() for t in ts})} exists on "
                    f"{settings.kafka.bootstrap_servers} (start a worker, which creates them)")
            if not watch or (deadline is not None and loop.time() >= deadline):
                return readings
            out("")
            await asyncio.sleep(max(0.0, s.interval_seconds - (loop.time() - started)))
    finally:
        if server is not None:
            server[0].shutdown()
        await probe.stop()
        if producer is not None:
            await producer.stop()
