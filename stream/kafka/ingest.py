"""The bulk ingest stage: producers' topics in, validated events and labels regrouped by
model out.

Faust dispatches each Kafka message through its conductor, an event, a queue and the
agent's stream: about 250 µs per message on our machines, so a bare Faust agent tops out
near 4k messages/s. Decoding and validating every event through that path would cap
driftstream there. The ingest stage therefore reads the input topics with aiokafka's
``getmany`` directly (thousands of records per call), decodes and validates them in one
pass, and publishes one *envelope* per model and batch on the by-model topic, where the
Faust agent that owns the model picks it up. Faust's per-message cost is then paid once
per envelope (hundreds of events), not once per event.

Three input topics are read: predictions and features (events, published as
``{"type": "columns", ...}`` envelopes, see :mod:`stream.core.columns`) and labels, the
delayed ground truth (``schemas/label.json``), published as
``{"type": "labels", "model": m, "labels": {"event_id": [...], "label": [...],
"ts": [...]}}`` envelopes on the same by-model partition as the model's events, so the
agent that owns a model sees its predictions and their labels. Bad events and bad labels
alike go to the dead-letter topic.

It is stateless, runs as a Faust-managed task in every worker, and forms its own
consumer group (``<app.id>-ingest``), so workers share the input partitions.

**At-least-once.** Offsets are committed only after every envelope and dead-letter record
of the batch has been acknowledged by the broker. A crash replays at most one batch;
duplicate events are absorbed by the monitors like any at-least-once replay.

:func:`route` is the pure part (no I/O), shared with the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from stream.config import Settings
from stream.core.clock import Clock, SystemClock
from stream.core.columns import ColumnsBuilder
from stream.core.deadletter import dead_letter_record
from stream.core.events import PlainEvent, decode_message, sink_acceptor
from stream.errors import InvalidEvent
from stream.kafka.security import client_kwargs
from stream.kafka.topics import partition_for

if TYPE_CHECKING:
    from stream.kafka.lag import LagTarget

__all__ = ["ENVELOPE_MAX_EVENTS", "IngestMetrics", "IngestStage", "Record", "RoutedBatch",
           "ingest_group_id", "route"]

log = logging.getLogger(__name__)

#: Events (or labels) per by-model envelope at most (keeps messages well under Kafka's 1 MB
#: default).
ENVELOPE_MAX_EVENTS = 500


def ingest_group_id(settings: Settings) -> str:
    """The ingest stage's consumer group, whichever process runs it."""
    return f"{settings.app.id}-ingest"


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record: anything with these attributes (aiokafka's ``ConsumerRecord``
    too). ``offset`` is the record's own offset, not the next one."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class RoutedBatch:
    """Envelopes to publish, keyed by model, and dead-letter records, in input order."""

    envelopes: list[tuple[str, int, bytes]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=dict)


def route(
    records: Iterable[Any],
    *,
    kinds: dict[str, str],
    partitions: int,
    max_message_bytes: int,
    dead_letter_max_bytes: int,
    now: float,
) -> RoutedBatch:
    """Decode ``records``, group valid events and labels by model (order kept within a
    model), and build the envelopes ``(model, partition, value)`` and dead-letter records.

    ``kinds`` maps an input topic to the kind of its records: ``"prediction"`` or
    ``"feature"`` (events), or ``"label"`` (labels).

    Each model's events become ``{"type": "columns", "model": m, "columns": {...}}``
    envelopes and its labels ``{"type": "labels", "model": m, "labels": {"event_id":
    [...], "label": [...], "ts": [...]}}`` envelopes (columnar lists, in input order), at
    most :data:`ENVELOPE_MAX_EVENTS` rows each, all on ``partition_for(model,
    partitions)``. Events and labels never share an envelope. Envelope order is
    deterministic: models in the order they first appear in ``records`` (event or label),
    and for each model its event envelopes first, then its label envelopes. A label
    therefore never overtakes a prediction of the same model and batch; one arriving
    before its prediction in a later batch is the label join's business.

    ``accepted`` counts the valid events or labels per input topic; each invalid one
    becomes one dead-letter record, with the offset of the record that carried it.

    An event of the common shape goes from the decoded JSON straight into its model's
    column builder (:func:`~stream.core.events.plain_event`,
    :class:`~stream.core.columns.ColumnsBuilder`), with no normalised dict in between;
    any other goes through :func:`~stream.core.events.normalize_event`. The envelopes
    are the same either way (``tests/core/test_columns_builder.py``).

    >>> recs = [Record("p", 0, 5, b'{"event_id": "a", "model": "m", "ts": 1, "features": {},'
    ...                            b' "prediction": 1}'), Record("p", 0, 6, b"nope")]
    >>> out = route(recs, kinds={"p": "prediction"}, partitions=4, max_message_bytes=1000,
    ...             dead_letter_max_bytes=100, now=0.0)
    >>> [(m, p) for m, p, _ in out.envelopes], out.dead_letters[0]["source"]["offset"]
    ([('m', 0)], 6)

    Labels, here a JSON array with one bad element:

    >>> recs = [Record("l", 1, 7, b'[{"event_id": "a", "model": "m", "label": true, "ts": 9},'
    ...                           b' {"event_id": "b", "model": "m", "ts": 9}]')]
    >>> out = route(recs, kinds={"l": "label"}, partitions=4, max_message_bytes=1000,
    ...             dead_letter_max_bytes=100, now=0.0)
    >>> (model, partition, value), = out.envelopes
    >>> model, partition, orjson.loads(value)
    ('m', 0, {'type': 'labels', 'model': 'm', 'labels': {'event_id': ['a'], 'label': [True], 'ts': [9.0]}})
    >>> out.dead_letters[0]["reason"], out.dead_letters[0]["source"], out.accepted
    ('missing_field', {'topic': 'l', 'partition': 1, 'offset': 7, 'index': 1}, {'l': 1})
    """
    by_model = _ByModel()
    out = RoutedBatch()
    accepted = out.accepted
    accept = {topic: sink_acceptor(kind, by_model) for topic, kind in kinds.items()}
    for rec in records:
        kind = kinds[rec.topic]
        value = rec.value
        # Fast path, the common case: a message holding one valid event or label, decoded
        # once and handed straight to its model.
        if value and len(value) <= max_message_bytes and value[:1] == b"{":
            try:
                accept[rec.topic](orjson.loads(value))
            except (orjson.JSONDecodeError, InvalidEvent):
                pass  # the general path below says precisely what is wrong
            else:
                accepted[rec.topic] = accepted.get(rec.topic, 0) + 1
                continue
        batch = decode_message(value, kind, max_bytes=max_message_bytes, sink=by_model)
        if batch.sunk:
            accepted[rec.topic] = accepted.get(rec.topic, 0) + batch.sunk
        for rej in batch.rejects:
            out.dead_letters.append(
                dead_letter_record(rej, topic=rec.topic, partition=rec.partition,
                                   offset=rec.offset, now=now, max_bytes=dead_letter_max_bytes)
            )
    for model, (builders, labels) in by_model.models.items():
        p = partition_for(model, partitions)
        for b in builders:
            if len(b):
                value = orjson.dumps({"type": "columns", "model": model, "columns": b.build()})
                out.envelopes.append((model, p, value))
        for i in range(0, len(labels), ENVELOPE_MAX_EVENTS):
            out.envelopes.append((model, p, _labels_envelope(model, labels[i:i + ENVELOPE_MAX_EVENTS])))
    return out


class _ByModel:
    """Accepted events and labels grouped by model, in order of first appearance: each
    model's events in column builders of at most :data:`ENVELOPE_MAX_EVENTS` rows, its
    labels in a list (an :class:`~stream.core.events.EventSink`)."""

    __slots__ = ("models",)

    def __init__(self) -> None:
        self.models: dict[str, tuple[list[ColumnsBuilder], list[dict[str, Any]]]] = {}

    def _builder(self, model: str) -> ColumnsBuilder:
        slot = self.models.get(model)
        if slot is None:
            slot = self.models[model] = ([ColumnsBuilder()], [])
        b = slot[0][-1]
        if len(b) >= ENVELOPE_MAX_EVENTS:
            b = ColumnsBuilder()
            slot[0].append(b)
        return b

    def add_plain(self, f: PlainEvent) -> None:
        self._builder(f[1]).append(f[0], f[2], f[3], f[4], f[5], f[6], f[7],
                                   prediction=f[5] is not None or f[6] is not None
                                   or f[7] is not None)

    def add_event(self, e: dict[str, Any]) -> None:
        if "features" not in e:  # a normalised label
            self.models.setdefault(e["model"], ([ColumnsBuilder()], []))[1].append(e)
        else:
            self._builder(e["model"]).append_event(e)


def _labels_envelope(model: str, labels: list[dict[str, Any]]) -> bytes:
    """The by-model envelope of normalised labels of ``model``: columnar lists."""
    return orjson.dumps({
        "type": "labels",
        "model": model,
        "labels": {
            "event_id": [lab["event_id"] for lab in labels],
            "label": [lab["label"] for lab in labels],
            "ts": [lab["ts"] for lab in labels],
        },
    })


class IngestMetrics(Protocol):
    """What the stage counts: :class:`~stream.metrics.Metrics` in a worker, an
    :class:`~stream.kafka.ingest_pool.IngestRecorder` in an ingest child."""

    ingested: Any  # labels(topic=...).inc(n)
    dead_letters: Any  # labels(topic=..., reason=...).inc()
    batch_seconds: Any  # labels(stage="ingest").observe(seconds)


class IngestStage:
    """The consumer loop around :func:`route`."""

    def __init__(self, settings: Settings, metrics: IngestMetrics,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock or SystemClock()
        t = settings.topics
        self.kinds = {t.predictions: "prediction", t.features: "feature", t.labels: "label"}
        self.consumer: Any = None
        self.producer: Any = None
        self.batches = 0
        self._buffered: asyncio.Future[None] | None = None

    @property
    def group_id(self) -> str:
        return ingest_group_id(self.settings)

    async def fetch_positions(self, timeout: float = 0.5) -> dict[Any, int]:
        """The fetch position (the offset of the next record the consumer will read) of
        each partition assigned to this stage; a partition whose position is not known
        within ``timeout`` seconds is left out."""
        positions: dict[Any, int] = {}
        consumer = self.consumer
        for tp in sorted(consumer.assignment()) if consumer is not None else []:
            with contextlib.suppress(Exception):  # a position is optional
                positions[tp] = await asyncio.wait_for(consumer.position(tp), timeout)
        return positions

    async def lag_target(self) -> LagTarget | None:
        """The partitions this stage reads, with their fetch positions, for the worker's
        backlog SLI (``None`` before the stage has started)."""
        from stream.kafka.lag import LagTarget

        if self.consumer is None:
            return None
        return LagTarget(self.group_id, sorted(self.consumer.assignment()), True,
                         await self.fetch_positions())

    async def run(self) -> None:
        """Consume until cancelled."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.errors import CommitFailedError, IllegalStateError

        s = self.settings
        k = s.kafka
        security = client_kwargs(k)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=k.bootstrap_servers, linger_ms=5, max_request_size=8 << 20,
            client_id=f"{s.app.id}-ingest", **security,
        )
        self.consumer = AIOKafkaConsumer(
            *self.kinds,
            bootstrap_servers=k.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{s.app.id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(k.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(k.heartbeat_interval_seconds * 1000),
            rebalance_timeout_ms=int(k.rebalance_timeout_seconds * 1000),
            max_poll_records=s.ingest.max_records,
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
            **security,
        )
        await self.producer.start()
        try:
            await self.consumer.start()
            try:
                # Batches are pipelined: while the broker acknowledges batch k's
                # envelopes, batch k+1 is fetched and routed. Offsets are committed in
                # order, each only once its batch's sends are all acknowledged.
                in_flight: deque[tuple[asyncio.Future[Any], dict[Any, int]]] = deque()
                while True:
                    batch = await self.consumer.getmany(
                        timeout_ms=200, max_records=s.ingest.max_records)
                    if batch:
                        acks = self._handle(batch)
                        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batch.items()}
                        in_flight.append((acks, offsets))
                    while in_flight and (in_flight[0][0].done() or len(in_flight) > 2
                                         or not batch):
                        acks, offsets = in_flight.popleft()
                        await acks  # a failed send raises: the worker stops, nothing commits
                        await self._commit(offsets, CommitFailedError, IllegalStateError)
            finally:
                await self.consumer.stop()
        finally:
            await self.producer.stop()

    async def _commit(self, offsets: dict[Any, int], *errors: type[Exception]) -> None:
        try:
            await self.consumer.commit(offsets)
        except errors as exc:
            # Partitions moved during the batch: their new owner re-reads them.
            log.warning("ingest commit skipped after a rebalance: %s", exc)

    def _handle(self, batch: dict[Any, list[Any]]) -> asyncio.Future[Any]:
        """Route a fetched batch and start sending it; the returned future resolves when
        the broker has acknowledged every record of it. Batches are handed to the
        producer strictly one after the other, so each model's events stay in order."""
        t0 = time.perf_counter()
        s = self.settings
        routed = route(
            (m for msgs in batch.values() for m in msgs),
            kinds=self.kinds,
            partitions=s.app.partitions,
            max_message_bytes=s.ingest.max_message_bytes,
            dead_letter_max_bytes=s.ingest.dead_letter_max_bytes,
            now=self.clock.now(),
        )
        for rec in routed.dead_letters:
            self.metrics.dead_letters.labels(topic=rec["source"]["topic"], reason=rec["reason"]).inc()
        for topic, n in routed.accepted.items():
            self.metrics.ingested.labels(topic=topic).inc(n)
        self.batches += 1
        self.metrics.batch_seconds.labels(stage="ingest").observe(time.perf_counter() - t0)
        previous, buffered = self._buffered, asyncio.get_running_loop().create_future()
        self._buffered = buffered
        return asyncio.ensure_future(self._send(routed, previous, buffered))

    async def _send(self, routed: RoutedBatch, previous: asyncio.Future[None] | None,
                    buffered: asyncio.Future[None]) -> None:
        s, send = self.settings, self.producer.send
        try:
            if previous is not None:
                await previous
            acks = [await send(s.topics.by_model, value=value, key=model.encode(), partition=p)
                    for model, p, value in routed.envelopes]
            acks += [await send(s.topics.dead_letter, value=orjson.dumps(rec))
                     for rec in routed.dead_letters]
        finally:
            if not buffered.done():
                buffered.set_result(None)
        await asyncio.gather(*acks)
