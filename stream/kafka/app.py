"""The Faust application: thin wiring of the ingest stage, the monitors and the tables.

Data flow, with the module that does the work::

    predictions, features ──► ingest task (stream/kafka/ingest.py: decode, validate,
         (any key)             route by model) ──► dead-letter topic (bad input)
                               (or ingest.processes children: stream/kafka/ingest_pool.py)
                                    │
                                    ▼
    references ──► agent ──► by-model topic (one envelope per model and batch,
                              partition = murmur2(model))
                                    │
                                    ▼
                          monitor agent (stream/core/registry.py, monitor.py)
                            ├─► alerts topic          (transitions only)
                            ├─► reports topic         (every closed window)
                            ├─► table "model-state"   (changelog-backed monitor snapshots)
                            ├─► table "references"    (changelog-backed profiles)
                            ├─► table "quality"       (label join chunks, quality windows)
                            └─► table "volume"        (per-model volume buckets, dead-man)

Both tables are keyed by ``model\\x1fversion`` and partitioned like the by-model topic,
so the worker that owns a model's events owns its state. Values are explicit, versioned
JSON snapshots (``ModelMonitor.snapshot``), never pickles.

**Consistency.** The monitor agent takes envelopes in batches (``app.state_flush_seconds``
at most), processes them, publishes their alerts and reports, then writes each changed
monitor once to the table. Faust acknowledges the envelopes only after that, and flushes
the producer before committing offsets, so a committed offset always has its state and
outputs on the broker (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from stream.config import Settings
from stream.core.clock import Clock, SystemClock
from stream.core.deadletter import dead_letter_record
from stream.core.events import Rejection
from stream.core.reference import ReferenceProfile
from stream.core.registry import MonitorRegistry
from stream.errors import DriftstreamError
from stream.kafka.ingest import IngestStage
from stream.kafka.ingest_pool import IngestPool
from stream.kafka.lag import LagProbe, LagSampler, LagTarget
from stream.kafka.security import client_kwargs, faust_credentials
from stream.kafka.topics import model_of, partition_for, state_key
from stream.metrics import Metrics

__all__ = ["DriftApp", "create_app"]

log = logging.getLogger(__name__)

#: Envelopes taken per monitor batch at most.
TAKE_MAX = 1000
#: How often the volume dead-man timers are checked (seconds).
DEADMAN_CHECK_SECONDS = 5.0


class ModelKeyedTable(faust.Table[str, bytes]):
    """A table whose keys start with a model name (``model\\x1fversion``).

    Each key is written to the changelog partition of its model, the by-model partition
    its events come from, whatever event happens to be current: the monitor agent
    processes envelopes of several partitions per batch.
    """

    def partition_for_key(self, key: Any) -> int:
        return partition_for(model_of(key), self.app.conf.topic_partitions)


@dataclass
class DriftApp:
    """The Faust app and the objects it wires together (tests reach in through these)."""

    app: faust.App
    settings: Settings
    metrics: Metrics
    registry: MonitorRegistry
    ingest: IngestStage
    #: the ingest children (``ingest.processes > 0``); ``ingest`` then does not run
    pool: IngestPool | None = None


def create_app(
    settings: Settings, *, metrics: Metrics | None = None, clock: Clock | None = None
) -> DriftApp:
    """Build the Faust app for ``settings``. Nothing connects until the worker starts."""
    if settings.kafka.embedded_broker_compat:
        from stream.kafka.tansu import apply_tansu_compat

        apply_tansu_compat()
    clock = clock or SystemClock()
    metrics = metrics or Metrics(settings.metrics.max_feature_series)
    s, k, t = settings, settings.kafka, settings.topics
    n = s.app.partitions
    app = faust.App(
        s.app.id,
        broker=[f"kafka://{h.strip()}" for h in k.bootstrap_servers.split(",")],
        store="memory://",
        autodiscover=False,
        topic_partitions=n,
        topic_replication_factor=1,
        broker_session_timeout=k.session_timeout_seconds,
        broker_heartbeat_interval=k.heartbeat_interval_seconds,
        broker_rebalance_timeout=k.rebalance_timeout_seconds,
        broker_commit_interval=s.app.commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=8 << 20,
        table_standby_replicas=0,
        web_enabled=True,
        web_bind=s.app.web_host,
        web_host=s.app.web_host,
        web_port=s.app.web_port,
        datadir=s.app.data_dir,
        broker_credentials=faust_credentials(k),
    )

    by_model = app.topic(t.by_model, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=n, internal=True)
    references = app.topic(t.references, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
    alerts = app.topic(t.alerts, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    reports = app.topic(t.reports, key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw")
    dead_letter = app.topic(t.dead_letter, key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")

    def table(name: str) -> faust.Table[str, bytes]:
        # value_type=bytes makes Faust use the "raw" codec for values (our own JSON
        # snapshots, written with orjson) both when writing and when recovering.
        tbl = ModelKeyedTable(app, name=name, default=None, beacon=app.tables.beacon,
                              partitions=n, key_type=str, value_type=bytes)
        app.tables.add(tbl)
        return tbl

    state_table = table("model-state")
    reference_table = table("references")
    quality_table = table("quality")
    volume_table = table("volume")

    def load(tbl: faust.Table[str, bytes]) -> Any:
        def get(key: str) -> dict[str, Any] | None:
            raw = tbl.get(key)
            return orjson.loads(raw) if raw is not None else None
        return get

    registry = MonitorRegistry(
        settings.monitor_for,
        max_models=s.monitor.max_models,
        load_state=load(state_table),
        load_reference=load(reference_table),
        load_quality=load(quality_table),
        load_volume=load(volume_table),
    )
    ingest = IngestStage(settings, metrics, clock)
    pool = IngestPool(settings, metrics) if s.ingest.processes else None

    @app.task  # type: ignore[untyped-decorator]
    async def run_ingest() -> None:
        """The ingest stage: in this process, or in ``ingest.processes`` children."""
        await (pool.run() if pool is not None else ingest.run())

    if s.lag.in_worker:
        lag = LagSampler(s.lag, LagProbe(k.bootstrap_servers, client_id=f"{s.app.id}-lag",
                                         **client_kwargs(k)),
                         metrics.lag, clock=clock)

        @app.task  # type: ignore[untyped-decorator]
        async def sample_lag() -> None:
            """The backlog SLI of the partitions this worker owns (metrics only: alerts
            come from ``driftstream lag``, which also sees a dead worker)."""
            while True:  # an unreachable broker must not crash the worker: retry
                try:
                    await lag.probe.start()
                    break
                except Exception as exc:
                    log.warning("lag sampling cannot connect yet (%s: %s); retrying in %.0f s",
                                type(exc).__name__, exc, s.lag.interval_seconds)
                    with contextlib.suppress(Exception):
                        await lag.probe.stop()
                    await asyncio.sleep(s.lag.interval_seconds)
            try:
                while True:
                    await asyncio.sleep(s.lag.interval_seconds)
                    await lag.sample_once(
                        await _worker_lag_targets(app, pool or ingest, settings))
            finally:
                with contextlib.suppress(Exception):  # the broker may be gone at shutdown
                    await lag.probe.stop()

    @app.agent(references)
    async def forward_references(stream: Any) -> None:
        """Route each published reference profile to the partition that owns its model."""
        async for event in stream.events():
            raw = event.value
            try:
                obj = orjson.loads(raw)
                if isinstance(obj, dict) and obj.get("kind") == CONTROL_KIND:
                    control = _rebaseline_control(obj)
                    await by_model.send(key=control["model"].encode(),
                                        partition=partition_for(control["model"], n),
                                        value=orjson.dumps(control))
                    continue
                profile = ReferenceProfile.restore(obj).snapshot()
            except (DriftstreamError, orjson.JSONDecodeError) as exc:
                reason = "invalid_json" if isinstance(exc, orjson.JSONDecodeError) else "invalid_value"
                rec = dead_letter_record(
                    Rejection(reason, f"not a reference profile: {exc}", raw or b""),
                    topic=event.message.topic, partition=event.message.partition,
                    offset=event.message.offset, now=clock.now(),
                    max_bytes=s.ingest.dead_letter_max_bytes)
                await dead_letter.send(value=orjson.dumps(rec))
                metrics.dead_letters.labels(topic=t.references, reason=reason).inc()
                continue
            model = profile["model"]
            await by_model.send(
                key=model.encode(), partition=partition_for(model, n),
                value=orjson.dumps({"type": "reference", "profile": profile}))

    @app.agent(by_model)
    async def monitor(stream: Any) -> None:
        """Run the monitors over envelopes, publish outputs, persist changed state."""
        async for events in stream.take_events(TAKE_MAX, within=s.app.state_flush_seconds):
            t0 = time.perf_counter()
            now = clock.now()
            for event in events:
                try:
                    env = orjson.loads(event.value)
                    if env.get("type") == "reference":
                        prof = env["profile"]
                        reference_table[state_key(prof["model"], prof["model_version"])] = (
                            orjson.dumps(prof))
                    result = registry.handle(env, now=now)
                except Exception as exc:
                    # Our own topic, so a bug or a foreign producer: never stall the agent
                    # on one message. Keep it, with the reason, and go on.
                    log.exception("monitor could not process a by-model message at %s[%s]@%s",
                                  event.message.topic, event.message.partition,
                                  event.message.offset)
                    rec = dead_letter_record(
                        Rejection("internal_error", f"{type(exc).__name__}: {exc}",
                                  event.value or b""),
                        topic=event.message.topic, partition=event.message.partition,
                        offset=event.message.offset, now=now,
                        max_bytes=s.ingest.dead_letter_max_bytes)
                    await dead_letter.send(value=orjson.dumps(rec))
                    metrics.dead_letters.labels(topic=t.by_model, reason="internal_error").inc()
                    continue
                out = result.output
                quality = result.quality
                for alert in out.alerts + quality.alerts + result.volume_alerts + result.shadow.alerts:
                    await alerts.send(key=alert["alert_id"].encode(), value=orjson.dumps(alert))
                    metrics.observe_alert(alert)
                for report in out.reports:
                    await reports.send(key=report["model"].encode(), value=orjson.dumps(report))
                    metrics.observe_report(report)
                for report in quality.reports:
                    await reports.send(key=report["model"].encode(), value=orjson.dumps(report))
                    metrics.observe_quality_report(report)
                for report in result.shadow.reports:
                    await reports.send(key=report["model"].encode(), value=orjson.dumps(report))
                    metrics.observe_shadow_report(report)
                for side, n in result.shadow.unpaired.items():
                    metrics.shadow_unpaired.labels(model=env["model"], side=side).inc(n)
                for outcome, n in result.label_join.items():
                    metrics.label_join.labels(outcome=outcome).inc(n)
                if result.slice_events:
                    metrics.observe_slices(result.slice_events)
                vt = registry.volume.get(env.get("model", ""))
                if vt is not None:
                    metrics.observe_volume(vt.model, vt.rate_of_last_bucket, vt.baseline_rate,
                                           vt.last_arrival)
                qm = registry.quality.get(env.get("model", ""))
                if qm is not None:
                    metrics.observe_join(qm.model, qm.join.coverage(), qm.join.pending)
                if quality.latencies.size:
                    metrics.label_latency.observe_many(quality.latencies)
                for label in result.rejected_labels:
                    rec = dead_letter_record(
                        Rejection("cap_exceeded",
                                  f"label for model {label['model']!r}: monitor.max_models="
                                  f"{s.monitor.max_models} reached on this worker; raise it or "
                                  "add workers", orjson.dumps(label)),
                        topic=event.message.topic, partition=event.message.partition,
                        offset=event.message.offset, now=now,
                        max_bytes=s.ingest.dead_letter_max_bytes)
                    await dead_letter.send(value=orjson.dumps(rec))
                    metrics.dead_letters.labels(topic=t.labels, reason="cap_exceeded").inc()
                for key in result.rebaselined:
                    reference_table.pop(key, None)
                if env.get("type") == "columns":
                    cols = env["columns"]
                    metrics.event_delay.observe_many(now - np.asarray(cols["ts"], dtype=np.float64))
                    if out.adwin_detections:
                        metrics.observe_adwin(env["model"], cols["model_version"][0],
                                              out.adwin_detections)
                for outcome, count in (("windowed", out.windowed), ("warmup", out.warmup),
                                       ("late", out.late), ("cap_exceeded", result.rejected)):
                    if count:
                        metrics.processed.labels(outcome=outcome).inc(count)
                if result.rejected:
                    metrics.cap_overflow.labels(cap="models").inc(result.rejected)
                    for e in result.rejected_events:
                        rec = dead_letter_record(
                            Rejection("cap_exceeded",
                                      f"monitor.max_models={s.monitor.max_models} reached on "
                                      "this worker; raise it or add workers",
                                      orjson.dumps(e)),
                            topic=event.message.topic, partition=event.message.partition,
                            offset=event.message.offset, now=now,
                            max_bytes=s.ingest.dead_letter_max_bytes)
                        await dead_letter.send(value=orjson.dumps(rec))
                        metrics.dead_letters.labels(topic=t.by_model, reason="cap_exceeded").inc()
            for key, snap in registry.take_dirty():
                state_table[key] = orjson.dumps(snap)
            for key, snap in registry.take_volume_dirty():
                volume_table[key] = orjson.dumps(snap)
            for key, value in registry.take_quality_dirty():
                if value is None:
                    quality_table.pop(key, None)
                else:
                    quality_table[key] = orjson.dumps(value)
            metrics.monitored_models.set(len(registry.monitors))
            metrics.monitored_slices.set(len(registry.slice_monitors))
            metrics.batch_seconds.labels(stage="monitor").observe(time.perf_counter() - t0)

    @app.timer(DEADMAN_CHECK_SECONDS)  # type: ignore[untyped-decorator]
    async def deadman() -> None:
        """The volume dead-man timers: a model that sends nothing at all is noticed."""
        for alert in registry.check_deadman(clock.now()):
            await alerts.send(key=alert["alert_id"].encode(), value=orjson.dumps(alert))
            metrics.observe_alert(alert)
        for key, snap in registry.take_volume_dirty():
            volume_table[key] = orjson.dumps(snap)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        gone_partitions = {tp.partition for tp in revoked if tp.topic == t.by_model}
        if not gone_partitions:
            return
        for key in registry.forget(lambda key: partition_for(model_of(key), n) in gone_partitions):
            model, _, version = key.partition("\x1f")  # (model, version) keys only
            metrics.forget_model(model, version or None)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return DriftApp(app=app, settings=settings, metrics=metrics, registry=registry, ingest=ingest,
                    pool=pool)


#: Control records on the references topic (``schemas/control.json``).
CONTROL_KIND = "driftstream.control"


def _rebaseline_control(obj: dict[str, Any]) -> dict[str, Any]:
    """The by-model envelope of a valid control record; raises ``DriftstreamError``."""
    from stream.errors import InvalidEvent

    if obj.get("version") != 1 or obj.get("action") != "rebaseline":
        raise InvalidEvent("invalid_value", "control record: version 1 and action "
                           "'rebaseline' are the only ones known")
    model, version = obj.get("model"), obj.get("model_version")
    if not isinstance(model, str) or not model or not (version is None or isinstance(version, str)):
        raise InvalidEvent("invalid_value", "control record: model (a string) and "
                           "model_version (a string or null) are required")
    ts = obj.get("ts")
    return {"type": "rebaseline", "model": model, "model_version": version,
            "ts": float(ts) if isinstance(ts, int | float) else 0.0}


async def _worker_lag_targets(app: faust.App, ingest: IngestStage | IngestPool,
                              settings: Settings) -> list[LagTarget]:
    """This worker's partitions: the ingest group's (with fetch positions) and the Faust
    group's by-model and references partitions."""
    from aiokafka import TopicPartition

    targets = []
    if (target := await ingest.lag_target()) is not None:
        targets.append(target)
    t = settings.topics
    try:
        faust_assigned = app.consumer.assignment()
    except Exception:  # not started yet, or stopping
        faust_assigned = set()
    mine = sorted(TopicPartition(tp.topic, tp.partition) for tp in faust_assigned
                  if tp.topic in (t.by_model, t.references))
    targets.append(LagTarget(settings.app.id, mine, True))
    return targets
