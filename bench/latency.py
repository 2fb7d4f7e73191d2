"""Latency from event time to the window report and to the alert, at half of maximum load.

One ``driftstream worker`` subprocess on the embedded broker, count windows of 200 events
per model (5 models), so that windows close often:

1. **Maximum rate.** A backlog of events (default 100k) is produced first, then the worker
   is started and its rate is taken from its Prometheus counters between the first and the
   last processed event, as bench/throughput.py does (``--max-rate`` skips the
   measurement; the backlog is still processed, as warm-up).
2. **Half of it, in real time.** Events are produced at half that rate for ``--seconds``
   (default 30), with ``ts`` = the wall clock when they are sent, in small batches every
   5 ms. Half-way, 4 numeric features of every model shift by 2 standard deviations, so
   that alerts fire.
3. A consumer in this process reads the reports and alerts topics
   (``getmany(timeout_ms=50)``, ``fetch_max_wait_ms=50``). The latency of a window report
   is the time it is read minus ``report["window"]["end"]`` (the event time of the
   window's last event); the latency of an alert is the time it is read minus
   ``alert["ts"]`` (the same window end). Only windows that start after the first
   real-time report was read are counted (no backlog, no warm-up). The by-model envelopes
   are read too, to split the latency at the first hop (ingest), and the CPU used by the
   worker, the broker and this process over the measured seconds is reported.

Prints one JSON object. The issue's target is p99 ≤ 1 s.

    python bench/latency.py                    # measure the maximum rate, then 30 s at half
    python bench/latency.py --max-rate 30000   # 30 s at 15k events/s
    python bench/latency.py --smoke            # 5 s, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from scaling import (  # noqa: E402
    cpu_now,
    create_topics,
    exit_on_sigterm,
    measure,
    metric_sum,
    poll,
    start_workers,
    stop_workers,
    worker_env,
)
from throughput import PARTITIONS, make_events, peak_rss_mib, processed, produce  # noqa: E402

from stream.config import AppSettings  # noqa: E402
from stream.kafka.tansu import EmbeddedBroker, apply_tansu_compat  # noqa: E402
from tests.integration.harness import WorkerProcess  # noqa: E402

WINDOW_SIZE = 200
STATE_FLUSH_SECONDS = 0.1
POLL_MS = 50
TICK_SECONDS = 0.005
DRIFT_FEATURES = ("num_feature_00", "num_feature_01", "num_feature_02", "num_feature_03")
DRIFT_SHIFT = 2.0
DELAY_METRIC = "driftstream_event_delay_seconds_bucket"


def event_pools(n: int, models: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events as dicts (``n`` a multiple of ``models``), before and after the drift."""
    normal = [orjson.loads(e) for e in make_events(n, models, seed=2)]
    drifted = []
    for e in normal:
        features = dict(e["features"])
        for name in DRIFT_FEATURES:
            features[name] += DRIFT_SHIFT
        drifted.append({**e, "features": features})
    return normal, drifted


def stats(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"count": 0, "p50_seconds": None, "p99_seconds": None, "max_seconds": None}
    a = np.asarray(latencies)
    return {"count": int(a.size), "p50_seconds": float(np.percentile(a, 50)),
            "p99_seconds": float(np.percentile(a, 99)), "max_seconds": float(a.max()),
            "min_seconds": float(a.min())}


def delay_buckets(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Share of the events processed between two scrapes, by upper bound of the worker's
    ``driftstream_event_delay_seconds`` (monitor processing time − event time)."""
    counts = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith(DELAY_METRIC)}
    total = next((v for k, v in counts.items() if 'le="+Inf"' in k), 0.0)
    out = {}
    for k, v in counts.items():
        le = k.split('le="')[1].rstrip('"}')
        if le != "+Inf" and float(le) <= 2.5:
            out[f"le_{le}"] = v / total if total else float("nan")
    return out


class Reader:
    """Reads the reports, alerts and by-model topics, stamping each record with the time it
    is read (one stamp per getmany)."""

    def __init__(self, bootstrap: str, reports: str, alerts: str, by_model: str) -> None:
        self.topics = (reports, alerts, by_model)
        self.consumer = AIOKafkaConsumer(*self.topics, bootstrap_servers=bootstrap,
                                         group_id=None, auto_offset_reset="earliest",
                                         fetch_max_wait_ms=POLL_MS, max_partition_fetch_bytes=16 << 20,
                                         fetch_max_bytes=64 << 20)
        self.reports: list[tuple[float, dict[str, Any]]] = []
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        #: (time read, event time of the envelope's last event) of the by-model envelopes
        self.envelopes: list[tuple[float, float]] = []
        self.stop = False

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while not self.stop:
                batch = await self.consumer.getmany(timeout_ms=POLL_MS)
                now = time.time()
                for tp, msgs in batch.items():
                    if tp.topic == self.topics[2]:
                        for m in msgs:
                            env = orjson.loads(m.value)
                            if env.get("type") == "columns":
                                self.envelopes.append((now, max(env["columns"]["ts"])))
                        continue
                    out = self.reports if tp.topic == self.topics[0] else self.alerts
                    out += [(now, orjson.loads(m.value)) for m in msgs]
        finally:
            await self.consumer.stop()


async def send_due(producer: AIOKafkaProducer, topic: str, pool: list[dict[str, Any]], first: int,
                   count: int, acks: list[asyncio.Future[Any]]) -> None:
    """Events ``first .. first+count-1`` of ``pool`` (cycled), stamped now, round-robin over
    the partitions, one record batch per partition."""
    ts = time.time()
    batches = [producer.create_batch() for _ in range(PARTITIONS)]
    for i in range(first, first + count):
        value = orjson.dumps({**pool[i % len(pool)], "event_id": f"rt-{i:012d}", "ts": ts})
        p = i % PARTITIONS
        if batches[p].append(key=None, value=value, timestamp=None) is None:
            acks.append(await producer.send_batch(batches[p], topic, partition=p))
            batches[p] = producer.create_batch()
            batches[p].append(key=None, value=value, timestamp=None)
    for p, batch in enumerate(batches):
        if batch.record_count():
            acks.append(await producer.send_batch(batch, topic, partition=p))


async def real_time(bootstrap: str, worker: WorkerProcess, broker_pid: int | None, rate: float,
                    seconds: float, models: int, timeout: float) -> dict[str, Any]:
    """Produce at ``rate`` until the first real-time report is read, then ``seconds`` more
    (drift half-way); wait for the worker to catch up; latencies of what was read."""
    env = worker.env
    topic = env["DRIFTSTREAM_TOPICS__PREDICTIONS"]
    assert worker.proc is not None
    reader = Reader(bootstrap, env["DRIFTSTREAM_TOPICS__REPORTS"], env["DRIFTSTREAM_TOPICS__ALERTS"],
                    env["DRIFTSTREAM_TOPICS__BY_MODEL"])
    reading = asyncio.ensure_future(reader.run())
    before = processed(worker.metrics())
    normal, drifted = event_pools(models * 4000, models)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    acks: list[asyncio.Future[Any]] = []
    sent = 0
    t_measure = t_drift = float("inf")  # wall clock: first real-time report read; drift starts
    scrape_start: asyncio.Future[dict[str, float]] | None = None
    cpu_start: list[float] = []
    try:
        t_start = time.time()
        t0 = time.monotonic()
        end = t0 + 60.0  # until the first real-time report, then ``seconds`` more
        while (now := time.monotonic()) < end:
            if reading.done():
                reading.result()  # re-raise a reader failure
            if scrape_start is None:
                worker.check_alive()
                first = next((t for t, r in reader.reports if r["window"]["start"] >= t_start), None)
                if first is not None:
                    t_measure, t_drift = first, time.time() + seconds / 2
                    end = now + seconds
                    # In a thread: the worker answers /metrics between its batches only.
                    scrape_start = asyncio.ensure_future(asyncio.to_thread(worker.metrics))
                    cpu_start = [*cpu_now([worker], broker_pid), time.process_time()]
            due = int((now - t0) * rate) - sent
            if due > 0:
                await send_due(producer, topic, drifted if time.time() >= t_drift else normal,
                               sent, due, acks)
                sent += due
            await asyncio.sleep(TICK_SECONDS)
        produced_seconds = time.monotonic() - t0
        if scrape_start is None:
            raise RuntimeError(f"no window report within 60 s of real-time load; log:\n{worker.log_tail()}")
        cpu = [(b - a) / seconds for a, b in zip(
            cpu_start, [*cpu_now([worker], broker_pid), time.process_time()], strict=True)]
        end_metrics = await asyncio.to_thread(worker.metrics)
        start_metrics = await scrape_start
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    deadline = time.monotonic() + timeout  # let the worker finish, and the last reports arrive
    while time.monotonic() < deadline and processed(await asyncio.to_thread(worker.metrics)) < before + sent:
        worker.check_alive()
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    reader.stop = True
    await reading
    reports = [(t, t - r["window"]["end"]) for t, r in reader.reports if r["window"]["start"] >= t_measure]
    half = t_measure + seconds / 2
    alerts = [(t - a["ts"], a) for t, a in reader.alerts if a["ts"] >= t_measure]
    statuses: dict[str, int] = {}
    for _, a in alerts:
        statuses[a["status"]] = statuses.get(a["status"], 0) + 1
    drift_firing = sum(1 for _, a in alerts if a["ts"] >= t_drift and a["status"] == "firing"
                       and a["feature"] in DRIFT_FEATURES)
    return {
        "target_events_per_second": rate,
        "achieved_events_per_second": sent / produced_seconds,
        "measured_seconds": seconds,
        "events_sent": sent,
        "worker_backlog_at_end_events": before + sent - processed(end_metrics),
        "report_latency": {
            **stats([lat for _, lat in reports]),
            "p50_seconds_first_half": stats([lat for t, lat in reports if t < half])["p50_seconds"],
            "p50_seconds_second_half": stats([lat for t, lat in reports if t >= half])["p50_seconds"],
        },
        "alert_latency": {**stats([lat for lat, _ in alerts]), "by_status": statuses,
                          "firing_on_drifted_features": drift_firing},
        "by_model_envelope_latency": stats([t - ts for t, ts in reader.envelopes if ts >= t_measure]),
        "worker_event_delay_share": delay_buckets(start_metrics, end_metrics),
        "cpu_cores_used": dict(zip(("worker", "broker", "bench"), cpu, strict=True)),
        "worker_peak_rss_mib": peak_rss_mib(worker.proc.pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-rate", type=float, default=None,
                        help="events/s at full load (default: measured first, in this run)")
    parser.add_argument("--probe-events", type=int, default=100_000,
                        help="backlog for measuring the maximum rate")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured real-time load")
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    exit_on_sigterm()
    probe_n = 20_000 if args.smoke else args.probe_events
    seconds = 5.0 if args.smoke else args.seconds
    timeout = 60 if args.smoke else 600
    apply_tansu_compat()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        env = worker_env(broker.bootstrap, Path(tmp),
                         DRIFTSTREAM_MONITOR__WINDOW_SIZE=str(WINDOW_SIZE),
                         DRIFTSTREAM_APP__STATE_FLUSH_SECONDS=str(STATE_FLUSH_SECONDS))
        topic = env["DRIFTSTREAM_TOPICS__PREDICTIONS"]
        create_topics(env)
        asyncio.run(produce(broker.bootstrap, topic, make_events(probe_n, args.models), 1))
        workers = start_workers(env, 1, Path(tmp))
        try:
            probe = measure(workers, probe_n, timeout, broker_pid=broker.pid)
            max_rate = args.max_rate or probe["events_per_second"]
            if not max_rate > 0:  # NaN: the backlog went in one counter update
                raise RuntimeError(f"could not measure the maximum rate from {probe_n} events; "
                                   "pass --max-rate or more --probe-events")
            rt = asyncio.run(real_time(broker.bootstrap, workers[0], broker.pid, max_rate / 2,
                                       seconds, args.models, timeout))
            dead = metric_sum(poll(workers)[0], "driftstream_dead_letters_total")
        finally:
            stop_workers(workers)
    result = {
        "benchmark": "latency",
        "models": args.models,
        "features_per_event": 20,
        "window_size": WINDOW_SIZE,
        "state_flush_seconds": STATE_FLUSH_SECONDS,
        "max_rate": {"events_per_second": max_rate, "measured": args.max_rate is None,
                     "probe_events": probe_n, "probe_events_per_second": probe["events_per_second"],
                     "probe_cpu_cores_used": {"worker": probe["per_worker"][0]["cpu_cores_used"],
                                              "broker": probe["broker_cpu_cores_used"]}},
        **rt,
        "dead_letters": dead,
        "target_p99_seconds": 1.0,
        "notes": [
            f"the reader polls with getmany(timeout_ms={POLL_MS}) and fetch_max_wait_ms={POLL_MS}: "
            f"it adds up to ~{POLL_MS} ms to each latency, ~{POLL_MS // 2} ms on average",
            f"the monitor agent takes envelopes for up to app.state_flush_seconds="
            f"{STATE_FLUSH_SECONDS} s (take_events(within=...)) before processing them: up to "
            f"{STATE_FLUSH_SECONDS} s of each latency (the default is "
            f"{AppSettings().state_flush_seconds} s)",
            f"events are sent in batches every {TICK_SECONDS * 1000:.0f} ms with ts = the wall "
            "clock when the batch is built; the producer, this reader, the broker and the worker "
            "share the machine's cores",
            "by_model_envelope_latency: read time of the ingest stage's envelopes on the by-model "
            "topic minus their last event's ts (the first hop, ingest); the rest of a report's "
            "latency is the monitor's side: Faust's consumer, take_events, the monitors, the "
            "report's publication and this reader",
            "worker_event_delay_share: the worker's own histogram of monitor processing time "
            "minus event time over the measured seconds (share of events at or under each bound)",
            "worker_backlog_at_end_events: events sent but not yet processed when production "
            "stopped; far above rate x p50 latency means the worker did not keep up",
            "with 200-event windows the PSI noise floor (about 0.054 for 10 bins) is half the "
            "warning threshold: alerts flap before the drift too; every transition is a sample",
            f"drift: {', '.join(DRIFT_FEATURES)} shift by {DRIFT_SHIFT} standard deviations half-way",
        ],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
