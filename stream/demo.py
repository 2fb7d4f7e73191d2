"""``driftstream demo``: the quick start in one command.

Starts the embedded broker (Tansu) on a free loopback port, publishes reference profiles
built from pre-drift simulated traffic, starts a worker subprocess, produces realistic
traffic for three models with drift injected after ``--drift-at`` seconds and delayed
labels that turn worse after twice that, and prints alerts (drift, data quality, quality)
as they arrive on the alert topic. Ctrl-C (or ``--duration``) stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson

from stream.cli import format_alert
from stream.config import load_settings

__all__ = ["run_demo"]

DEMO_ENV = {
    # Tansu holds every group join for half the session timeout: keep it short here.
    "DRIFTSTREAM_KAFKA__SESSION_TIMEOUT_SECONDS": "3",
    "DRIFTSTREAM_KAFKA__HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "DRIFTSTREAM_KAFKA__REBALANCE_TIMEOUT_SECONDS": "3",
    "DRIFTSTREAM_KAFKA__EMBEDDED_BROKER_COMPAT": "true",
    "DRIFTSTREAM_APP__ID": "driftstream-demo",
    "DRIFTSTREAM_APP__LOG_LEVEL": "warning",
    "DRIFTSTREAM_MONITOR__WINDOW_SIZE": "500",
}


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or ``args.duration``; the broker and the worker
    stop with it."""
    # SIGTERM (``timeout``, ``kill``, a service manager) stops the demo as Ctrl-C does.
    # Python's default would end the process at once, without the clean-up below, and
    # leave the broker (in its own process group) running.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from stream.kafka.tansu import EmbeddedBroker, free_port

    port = args.port or free_port()
    with EmbeddedBroker(port=port) as broker:
        print(f"driftstream demo: embedded Kafka broker (Tansu) on {broker.bootstrap}", flush=True)
        env = {**os.environ, **DEMO_ENV, "DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
               "DRIFTSTREAM_APP__DATA_DIR": tempfile.mkdtemp(prefix="driftstream-demo-")}
        env.setdefault("DRIFTSTREAM_APP__WEB_PORT", str(free_port()))
        worker: subprocess.Popen[bytes] | None = None
        try:
            settings = load_settings(env=env)
            asyncio.run(_publish_references(settings, args))
            worker = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env)
            print(f"driftstream demo: worker pid {worker.pid}; metrics at "
                  f"http://{settings.app.web_host}:{settings.app.web_port}/metrics", flush=True)
            asyncio.run(_traffic_and_alerts(settings, args, worker))
        except KeyboardInterrupt:
            pass
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(20)
                except subprocess.TimeoutExpired:
                    worker.kill()
        print("driftstream demo: stopped", flush=True)
    return 0


def _sim_config(args: argparse.Namespace) -> Any:
    from stream.simulate import DriftSpec, SimConfig

    return SimConfig(
        rate=args.rate,
        # Delayed ground truth, and from 2 × drift-at on a third of the labels disagree
        # with the predictions: quality alerts after the drift alerts.
        labels=True,
        label_delay_mean_seconds=5.0,
        accuracy_drop=0.35,
        accuracy_drop_at_seconds=args.drift_at * 2,
        drifts=(
            DriftSpec("fraud", ("amount",), at_seconds=args.drift_at, magnitude=1.5),
            DriftSpec("churn", ("region",), at_seconds=args.drift_at, magnitude=1.2),
            DriftSpec("eta", ("prediction",), at_seconds=args.drift_at * 1.5, magnitude=2.0),
        ),
    )


async def _publish_references(settings: Any, args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaProducer

    from stream.core.reference import reference_key
    from stream.kafka.topics import ensure_topics
    from stream.replay import build_profiles
    from stream.simulate import Simulator

    await ensure_topics(settings)
    sim = Simulator(_sim_config(args))
    events = [e for m in ("fraud", "churn", "eta") for e in sim.reference_events(m, 5000)]
    from stream.core.events import normalize_event

    profiles = build_profiles([normalize_event(e, "prediction") for e in events], settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for p in profiles:
            await producer.send_and_wait(settings.topics.references, orjson.dumps(p.snapshot()),
                                         key=reference_key(p.model, p.model_version).encode())
    finally:
        await producer.stop()
    print(f"driftstream demo: published {len(profiles)} reference profiles "
          f"({', '.join(f'{p.model} {p.model_version}' for p in profiles)})", flush=True)


async def _traffic_and_alerts(settings: Any, args: argparse.Namespace,
                              worker: subprocess.Popen[bytes]) -> None:
    from aiokafka import AIOKafkaConsumer

    from stream.simulate import produce

    print(f"driftstream demo: producing {args.rate:g} events/s; drift starts after "
          f"{args.drift_at:g} s (fraud.amount, churn.region, then eta's prediction), labels "
          f"turn worse after {args.drift_at * 2:g} s (quality alerts). Alerts appear below; "
          "Ctrl-C stops.", flush=True)
    consumer = AIOKafkaConsumer(settings.topics.alerts,
                                bootstrap_servers=settings.kafka.bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    traffic = asyncio.create_task(produce(
        settings.kafka.bootstrap_servers, _sim_config(args),
        predictions_topic=settings.topics.predictions, labels_topic=settings.topics.labels,
        duration_seconds=args.duration, max_events=None, realtime=True))
    started = time.monotonic()
    # Ctrl-C and SIGTERM end the loop below, so that the traffic and the consumer are
    # stopped in order (an interrupt raised mid-await would leave aiokafka's tasks behind)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):  # no loop signal handlers on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set() and (
                not traffic.done() or time.monotonic() - started < (args.duration or 0) + 5):
            if worker.poll() is not None:
                raise SystemExit(f"driftstream demo: the worker exited with {worker.returncode}")
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    print(format_alert(orjson.loads(m.value)), flush=True)
            if traffic.done() and args.duration is None:
                break
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        traffic.cancel()
        with contextlib.suppress(BaseException):
            await traffic
        await consumer.stop()
