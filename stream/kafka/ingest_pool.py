"""The ingest stage in child processes of the worker (``ingest.processes``).

A worker is one Python process, and so uses one core. Profiles of a busy worker
(``docs/benchmarks.md``) show it spending about half of its time in the ingest stage
(fetching producers' records, decoding, validating, building the by-model envelopes) and
the other half in the monitors. The ingest stage is stateless and talks to the rest of
the worker only through Kafka (it publishes envelopes on the by-model topic), so it can
run in other processes without changing anything else: with ``ingest.processes = N``,
the worker starts N children, each running :class:`~stream.kafka.ingest.IngestStage` as
one more member of the ingest consumer group (``<app.id>-ingest``), and does not run the
stage itself. ``0`` (the default) keeps it in the worker's process.

**Delivery** is the stage's own: a child commits its input offsets only after the broker
has acknowledged the batch's envelopes and dead letters, so a child that dies (killed,
crashed) loses nothing; its partitions go to the remaining members and are read again
from the last commit (at-least-once, as for a worker).

**Supervision.** The worker restarts a child that exits, after a delay that starts at
``RESTART_DELAY_SECONDS`` and doubles while children keep dying young (up to
``MAX_RESTART_DELAY_SECONDS``: a broker outage must not become a fork loop), logs why,
and counts it in ``driftstream_ingest_process_restarts_total``;
``driftstream_ingest_processes`` is the number alive. Children leave when the worker
stops, and on their own when the worker is gone (``os.getppid()`` changes, or the pipe
to it breaks), so a ``SIGKILL``-ed worker leaves no orphan reading its partitions.

**Metrics.** A child records what the stage counts (``driftstream_ingested_events_total``,
``driftstream_dead_letters_total``, ``driftstream_batch_processing_seconds{stage="ingest"}``)
and sends the increments to the worker every ``FLUSH_SECONDS`` as JSON over a pipe,
with its partitions and fetch positions for the worker's backlog SLI; the worker adds
them to its own registry, so ``/metrics`` looks the same whatever the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

import orjson

from stream.config import (
    AppSettings,
    IngestSettings,
    KafkaSettings,
    LagSettings,
    MetricsSettings,
    Settings,
    TopicSettings,
)
from stream.kafka.ingest import IngestStage, ingest_group_id
from stream.kafka.lag import LagTarget
from stream.metrics import Metrics

__all__ = ["FLUSH_SECONDS", "MAX_RESTART_DELAY_SECONDS", "RESTART_DELAY_SECONDS", "IngestPool",
           "IngestRecorder", "restart_delay"]

log = logging.getLogger(__name__)

#: Seconds between two reports of a child to the worker.
FLUSH_SECONDS = 0.5
#: Seconds before a child that exited is started again.
RESTART_DELAY_SECONDS = 1.0
#: The longest delay before a restart.
MAX_RESTART_DELAY_SECONDS = 30.0
#: A child that ran this long counts as healthy: its successor starts after the first delay.
_HEALTHY_SECONDS = 60.0


def restart_delay(previous: float | None, lived: float) -> float:
    """Seconds to wait before starting again a child that exited after ``lived`` seconds,
    given the delay before the previous start (``None`` for the first start).

    >>> restart_delay(None, 5.0), restart_delay(1.0, 5.0), restart_delay(16.0, 2.0)
    (1.0, 2.0, 30.0)
    >>> restart_delay(30.0, 3600.0)  # it had been running fine: back to the first delay
    1.0
    """
    if previous is None or lived >= _HEALTHY_SECONDS:
        return RESTART_DELAY_SECONDS
    return min(2 * previous, MAX_RESTART_DELAY_SECONDS)


#: The metric families the ingest stage moves, and how.
_FAMILIES = {"ingested": "inc", "dead_letters": "inc", "batch_seconds": "observe"}


class _Series:
    __slots__ = ("_key", "_updates")

    def __init__(self, updates: dict[tuple[str, str], Any], key: tuple[str, str]) -> None:
        self._updates, self._key = updates, key

    def inc(self, amount: float = 1.0) -> None:
        self._updates[self._key] = self._updates.get(self._key, 0.0) + amount

    def observe(self, value: float) -> None:
        self._updates.setdefault(self._key, []).append(value)


class _Family:
    __slots__ = ("_name", "_updates")

    def __init__(self, updates: dict[tuple[str, str], Any], name: str) -> None:
        self._updates, self._name = updates, name

    def labels(self, **labels: str) -> _Series:
        return _Series(self._updates, (self._name, orjson.dumps(labels).decode()))


class IngestRecorder:
    """What the ingest stage counts, recorded in a child for :meth:`apply` in the worker:
    the same ``ingested``, ``dead_letters`` and ``batch_seconds`` attributes as
    :class:`~stream.metrics.Metrics`, with ``labels(...).inc()`` and ``.observe()``.

    >>> rec = IngestRecorder()
    >>> rec.ingested.labels(topic="predictions").inc(500)
    >>> rec.batch_seconds.labels(stage="ingest").observe(0.01)
    >>> m = Metrics()
    >>> IngestRecorder.apply(m, orjson.loads(orjson.dumps(rec.drain())))
    >>> m.registry.get_sample_value("driftstream_ingested_events_total",
    ...                             {"topic": "predictions"})
    500.0
    >>> rec.drain()
    []
    """

    def __init__(self) -> None:
        self._updates: dict[tuple[str, str], Any] = {}
        self.ingested = _Family(self._updates, "ingested")
        self.dead_letters = _Family(self._updates, "dead_letters")
        self.batch_seconds = _Family(self._updates, "batch_seconds")

    def drain(self) -> list[list[Any]]:
        """The updates since the last call, JSON-safe: ``[family, labels, amount or
        observations]``."""
        out = [[name, orjson.loads(labels), value]
               for (name, labels), value in self._updates.items()]
        self._updates.clear()
        return out

    @staticmethod
    def apply(metrics: Metrics, updates: list[list[Any]]) -> None:
        """Add ``updates`` (from :meth:`drain`) to the worker's metrics. Unknown families
        are ignored (a child of another version)."""
        for name, labels, value in updates:
            how = _FAMILIES.get(name)
            if how is None:
                continue
            series = getattr(metrics, name).labels(**labels)
            if how == "inc":
                series.inc(value)
            else:
                for v in value:
                    series.observe(v)


#: The settings sections a child needs (not the monitors'), as plain values.
_CHILD_SECTIONS: dict[str, type[Any]] = {
    "kafka": KafkaSettings, "topics": TopicSettings, "app": AppSettings,
    "ingest": IngestSettings, "metrics": MetricsSettings, "lag": LagSettings}


def child_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    """The sections of ``settings`` a child needs, as plain dicts (what crosses to it).

    >>> s = Settings().with_overrides(app={"id": "x"}, ingest={"processes": 2})
    >>> rebuilt = settings_of_child(child_settings(s))
    >>> rebuilt.app.id, rebuilt.ingest, rebuilt.kafka == s.kafka
    ('x', IngestSettings(max_records=5000, max_message_bytes=1048576, \
dead_letter_max_bytes=65536, processes=2), True)
    """
    return {name: asdict(getattr(settings, name)) for name in _CHILD_SECTIONS}


def settings_of_child(data: dict[str, dict[str, Any]]) -> Settings:
    """The settings a child runs with: :func:`child_settings` over default monitors."""
    return Settings(**{name: cls(**data[name]) for name, cls in _CHILD_SECTIONS.items()})


class _Child:
    """One child process and the worker's end of its pipe."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process, self.conn = process, conn
        self.report: dict[str, Any] = {}


class IngestPool:
    """Runs ``settings.ingest.processes`` ingest stages in child processes and supervises
    them (see the module's docstring). :meth:`run` until cancelled."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.size = settings.ingest.processes
        self.children: list[_Child | None] = [None] * self.size
        self._ctx = multiprocessing.get_context("spawn")

    @property
    def group_id(self) -> str:
        return ingest_group_id(self.settings)

    def _start(self, index: int) -> _Child:
        parent, child = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=child_main,
                                 args=(child_settings(self.settings), child, os.getpid()),
                                 name=f"driftstream-ingest-{index}", daemon=True)
        proc.start()
        child.close()
        log.info("ingest process %d started (pid %s)", index, proc.pid)
        return _Child(proc, parent)

    async def run(self) -> None:
        restart_at: dict[int, float] = {}
        delays: dict[int, float] = {}
        started: dict[int, float] = {}
        try:
            for i in range(self.size):
                self.children[i] = self._start(i)
                started[i] = time.monotonic()
            while True:
                await asyncio.sleep(FLUSH_SECONDS / 2)
                alive = 0
                for i, child in enumerate(self.children):
                    if child is None:
                        if time.monotonic() >= restart_at.get(i, 0.0):
                            self.children[i] = self._start(i)
                            started[i] = time.monotonic()
                            self.metrics.ingest_restarts.inc()
                        continue
                    self._drain(child)
                    if child.process.is_alive():
                        alive += 1
                        continue
                    child.process.join(0)
                    delays[i] = restart_delay(delays.get(i), time.monotonic() - started[i])
                    log.error("ingest process %d (pid %s) exited with %s; starting it again "
                              "in %.0f s. Its partitions are read again from their last "
                              "commit by the other members of the ingest group.",
                              i, child.process.pid, child.process.exitcode, delays[i])
                    child.conn.close()
                    self.children[i] = None
                    restart_at[i] = time.monotonic() + delays[i]
                self.metrics.ingest_processes.set(alive)
        finally:
            self.stop()

    def _drain(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                report = orjson.loads(child.conn.recv_bytes())
                IngestRecorder.apply(self.metrics, report.get("updates", []))
                child.report = report
        except (EOFError, OSError, orjson.JSONDecodeError):
            pass  # the child is gone or going: is_alive() says so next

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the children (SIGTERM, then SIGKILL after ``timeout``)."""
        live = [c for c in self.children if c is not None]
        for c in live:
            if c.process.is_alive():
                c.process.terminate()
        deadline = time.monotonic() + timeout
        for c in live:
            c.process.join(max(0.0, deadline - time.monotonic()))
            if c.process.is_alive():
                c.process.kill()
                c.process.join(1.0)
            with contextlib.suppress(OSError):
                c.conn.close()
        self.children = [None] * self.size
        self.metrics.ingest_processes.set(0)

    async def lag_target(self) -> LagTarget:
        """The ingest group's partitions held by this worker's children, with their fetch
        positions, from the children's last reports (what
        :meth:`~stream.kafka.ingest.IngestStage.lag_target` gives for one stage)."""
        from aiokafka import TopicPartition

        partitions: list[TopicPartition] = []
        positions: dict[TopicPartition, int] = {}
        for c in self.children:
            for topic, partition, position in (c.report.get("assignment", []) if c else []):
                tp = TopicPartition(topic, partition)
                partitions.append(tp)
                if position is not None:
                    positions[tp] = position
        return LagTarget(self.group_id, sorted(partitions), True, positions)


def child_main(sections: dict[str, dict[str, Any]], conn: Connection, parent_pid: int) -> None:
    """A child's process: run the ingest stage, report to the worker, leave with it."""
    settings = settings_of_child(sections)
    # Ctrl-C reaches the whole process group; the worker stops its children itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=settings.app.log_level.upper(),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    if settings.kafka.embedded_broker_compat:
        from stream.kafka.tansu import apply_tansu_compat

        apply_tansu_compat()
    from stream.kafka.gc_tuning import tune_gc

    tune_gc()
    asyncio.run(_child_run(settings, conn, parent_pid))


async def _child_run(settings: Settings, conn: Connection, parent_pid: int) -> None:
    recorder = IngestRecorder()
    stage = IngestStage(settings, recorder)
    task = asyncio.ensure_future(stage.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    positions: dict[Any, int] = {}
    positions_at = 0.0
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=FLUSH_SECONDS)
            if os.getppid() != parent_pid:
                log.warning("the worker (pid %d) is gone; ingest process leaving", parent_pid)
                break
            consumer = stage.consumer
            assigned = sorted(consumer.assignment()) if consumer is not None else []
            if time.monotonic() - positions_at >= settings.lag.interval_seconds:
                positions_at = time.monotonic()
                positions = await stage.fetch_positions()
            report = {"updates": recorder.drain(),
                      "assignment": [[tp.topic, tp.partition, positions.get(tp)]
                                     for tp in assigned]}
            try:
                conn.send_bytes(orjson.dumps(report))
            except (BrokenPipeError, OSError):
                log.warning("the pipe to the worker is closed; ingest process leaving")
                break
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # a crash of the stage raises here: the process exits non-zero
