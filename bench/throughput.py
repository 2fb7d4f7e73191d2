"""End-to-end throughput of a driftstream worker against raw aiokafka, in one run.

Both measurements read the *same* events from the *same* topic on the same embedded
broker:

- ``raw``: an aiokafka consumer with ``getmany`` + ``orjson.loads`` per message (the
  ceiling for any Python consumer on this machine);
- ``worker``: a real ``driftstream worker`` subprocess: ingest (decode, validate, route by
  model), by-model repartition through Kafka, monitors (histograms, PSI, ADWIN, alerts),
  changelog-backed state. Its rate is the slower of its monitors' and its ingest stage's,
  from its own Prometheus counters while both were at work (``pipeline_rate``), so
  start-up and group joins are not counted.

Besides the rates: the CPU each stage spent per event (worker process, ingest children,
broker; and the raw consumer's), how long each stage waited for a core
(``run_queue_wait_cores``), and ``cpu_ceiling_ratio``, the ratio this machine allows at
the measured CPU per event: when the ratio is close to it, only a cheaper pipeline or
more cores go faster.

Prints one JSON object. Quote the ratio, not absolute rates: machines are shared.

    python bench/throughput.py                 # 200k events, 20 features, 5 models
    python bench/throughput.py --envelope 100  # the same events, 100 per message
    python bench/throughput.py --smoke         # a few thousand events, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream.kafka.tansu import EmbeddedBroker, apply_tansu_compat, free_port  # noqa: E402
from stream.kafka.topics import ensure_topics  # noqa: E402

PARTITIONS = 4
SCRAPE_INTERVAL = 0.5  # seconds between two scrapes of the worker's /metrics


def make_events(n: int, models: int, seed: int = 0) -> list[bytes]:
    """~630-byte prediction events with 20 features (16 numeric, 4 categorical)."""
    rng = np.random.default_rng(seed)
    num = rng.normal(0, 1, (n, 16)).round(4)
    cats = rng.integers(0, 5, (n, 4))
    score = rng.random(n).round(4)
    names = [f"num_feature_{i:02d}" for i in range(16)]
    cnames = [f"cat_feature_{i}" for i in range(4)]
    values = ["alpha", "beta", "gamma", "delta", "epsilon"]
    t0 = 1_700_000_000.0
    out = []
    for i in range(n):
        features: dict[str, Any] = dict(zip(names, num[i].tolist(), strict=True))
        features.update({c: values[v] for c, v in zip(cnames, cats[i].tolist(), strict=True)})
        out.append(orjson.dumps({
            "event_id": f"evt-{i:012d}", "model": f"model-{i % models}", "model_version": "v1",
            "ts": t0 + i * 0.001, "features": features,
            "prediction": {"label": bool(score[i] > 0.5), "score": float(score[i])},
        }))
    return out


async def produce(bootstrap: str, topic: str, events: list[bytes], envelope: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=8 << 20)
    await producer.start()
    messages = 0
    try:
        if envelope > 1:
            values = [b"[" + b",".join(events[i:i + envelope]) + b"]"
                      for i in range(0, len(events), envelope)]
        else:
            values = events
        for p in range(PARTITIONS):
            batch = producer.create_batch()
            for v in values[p::PARTITIONS]:
                if batch.append(key=None, value=v, timestamp=None) is None:
                    await (await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=None, value=v, timestamp=None)
                messages += 1
            await (await producer.send_batch(batch, topic, partition=p))
    finally:
        await producer.stop()
    return messages


async def raw_consume(bootstrap: str, topic: str, messages: int,
                      broker_pid: int | None = None) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    seen = events = 0
    t0, c0 = time.perf_counter(), time.process_time()
    b0 = cpu_seconds(broker_pid) if broker_pid else 0.0
    try:
        while seen < messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    obj = orjson.loads(m.value)
                    events += len(obj) if isinstance(obj, list) else 1
                seen += len(msgs)
    finally:
        await consumer.stop()
    elapsed = time.perf_counter() - t0
    consumer_cpu = time.process_time() - c0
    broker_cpu = (cpu_seconds(broker_pid) - b0) if broker_pid else 0.0
    return {"seconds": elapsed, "events": events, "events_per_second": events / elapsed,
            "cpu_cores_used": consumer_cpu / elapsed,
            # CPU spent per event, in the consumer and in the broker serving it
            "cpu_microseconds_per_event": {"consumer": consumer_cpu / events * 1e6,
                                           "broker": broker_cpu / events * 1e6}}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def processed(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("driftstream_processed_events_total"))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """User + system CPU seconds of a process and its reaped children... and of its live
    children, which /proc/PID/stat does not include: summed over the process tree (with
    ``tree=False``, the process's own threads only)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *(children(pid) if tree else [])]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_queue_wait_seconds(pids: list[int]) -> float:
    """Seconds the threads of ``pids`` spent runnable but waiting for a CPU
    (``/proc/PID/task/TID/schedstat``, second field): a process that is "not busy" may be
    idle, or starved of a core by the others on the machine; this tells the two apart."""
    total = 0
    for pid in pids:
        for f in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(f.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def pipeline_rate(timeline: list[tuple[float, float, float]], total: int) -> dict[str, Any]:
    """Events/s through both stages: the slower of the monitors' and the ingest stage's
    rates, each taken from its counter over the time both were at work (from 10 % of the
    events processed to 95 % ingested), between two scrapes, so neither start-up nor the
    scrape interval biases it. With ingest in child processes (``ingest.processes``),
    ingest can run ahead of the monitors; a rate taken after it had finished would be the
    monitors' alone, with a core to themselves.

    >>> pipeline_rate([(0, 0, 100), (1, 200, 300), (2, 400, 500), (3, 600, 600)], 600)
    {'events_per_second': 150.0, 'monitors_events_per_second': 200.0, \
'ingest_events_per_second': 150.0, 'measured_seconds': 2}
    """
    a = next((p for p in timeline if p[1] >= 0.1 * total), None)
    b = next((p for p in timeline if p[2] >= 0.95 * total), None)
    if a is None or b is None or b[0] <= a[0]:
        # too short to see (smoke runs), or ingest done before the monitors were at 10 %
        t0, t1 = timeline[0], timeline[-1]
        rate = (t1[1] - t0[1]) / (t1[0] - t0[0]) if t1[0] > t0[0] else float("nan")
        return {"events_per_second": rate, "monitors_events_per_second": rate,
                "ingest_events_per_second": None, "measured_seconds": t1[0] - t0[0]}
    dt = b[0] - a[0]
    monitors, ingest = (b[1] - a[1]) / dt, (b[2] - a[2]) / dt
    return {"events_per_second": min(monitors, ingest), "monitors_events_per_second": monitors,
            "ingest_events_per_second": ingest, "measured_seconds": dt}


def waits(worker: int, broker: int | None) -> dict[str, float]:
    kids = children(worker)
    return {"worker_process": run_queue_wait_seconds([worker]),
            "ingest_processes": run_queue_wait_seconds(kids),
            "broker": run_queue_wait_seconds([broker]) if broker else 0.0}


def children(pid: int) -> list[int]:
    try:
        return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_worker(bootstrap: str, topic: str, total: int, tmp: str, timeout: float,
               broker_pid: int | None = None) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ,
           "DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "DRIFTSTREAM_KAFKA__SESSION_TIMEOUT_SECONDS": "3",
           "DRIFTSTREAM_KAFKA__HEARTBEAT_INTERVAL_SECONDS": "0.5",
           "DRIFTSTREAM_KAFKA__REBALANCE_TIMEOUT_SECONDS": "3",
           "DRIFTSTREAM_KAFKA__EMBEDDED_BROKER_COMPAT": "true",
           "DRIFTSTREAM_APP__ID": f"bench-{port}",
           "DRIFTSTREAM_APP__WEB_PORT": str(port),
           "DRIFTSTREAM_APP__DATA_DIR": tmp,
           "DRIFTSTREAM_APP__LOG_LEVEL": "warning",
           "DRIFTSTREAM_TOPICS__PREDICTIONS": topic,
           "DRIFTSTREAM_TOPICS__BY_MODEL": f"{topic}-by-model",
           "DRIFTSTREAM_TOPICS__ALERTS": f"{topic}-alerts",
           "DRIFTSTREAM_TOPICS__REPORTS": f"{topic}-reports",
           "DRIFTSTREAM_TOPICS__DEAD_LETTER": f"{topic}-dlq"}
    proc = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL,
                            stderr=open(Path(tmp) / "worker.log", "wb"))  # noqa: SIM115
    try:
        deadline = time.monotonic() + timeout
        start = None
        last = n0 = 0.0
        cpu0 = (0.0, 0.0, 0.0)
        wait0: dict[str, float] = {}
        # (seconds, processed by the monitors, accepted by ingest), from the first event in
        timeline: list[tuple[float, float, float]] = []
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: {(Path(tmp) / 'worker.log').read_text()[-3000:]}")
            try:
                m = scrape(port)
            except OSError:
                time.sleep(0.05)
                continue
            n = processed(m)
            ingested = sum(v for k, v in m.items()
                           if k.startswith("driftstream_ingested_events_total"))
            now = time.perf_counter()
            if start is None and (n > 0 or ingested > 0):
                start = now
                cpu0 = (cpu_seconds(proc.pid), cpu_seconds(broker_pid) if broker_pid else 0.0,
                        cpu_seconds(proc.pid, tree=False))
                wait0 = waits(proc.pid, broker_pid)
                n0 = n
                if os.environ.get("BENCH_PROFILE"):  # where the worker's time goes (py-spy)
                    subprocess.Popen(["py-spy", "record", "--format", "raw", "-r", "200",
                                      "--nonblocking", "--threads", "-d", "6", "-o",
                                      os.environ["BENCH_PROFILE"], "-p", str(proc.pid)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if start is not None:
                timeline.append((round(now - start, 2), n, ingested))
            if n >= total:
                assert start is not None
                elapsed = now - start
                per_event = 1e6 / max(1.0, total - n0)
                cpu1 = (cpu_seconds(proc.pid), cpu_seconds(broker_pid) if broker_pid else 0.0,
                        cpu_seconds(proc.pid, tree=False))
                wait1 = waits(proc.pid, broker_pid)
                return {
                    "cpu_cores_used": {  # average cores busy while measuring (process trees)
                        "worker": (cpu1[0] - cpu0[0]) / elapsed if elapsed > 0 else None,
                        "broker": (cpu1[1] - cpu0[1]) / elapsed if elapsed > 0 else None,
                        # the worker's own process (the monitors), without ingest children
                        "worker_process": (cpu1[2] - cpu0[2]) / elapsed if elapsed > 0 else None,
                    },
                    # CPU spent per event (from the first event in to the last processed)
                    "cpu_microseconds_per_event": {
                        "worker_process": (cpu1[2] - cpu0[2]) * per_event,
                        "ingest_processes": (cpu1[0] - cpu0[0] - cpu1[2] + cpu0[2]) * per_event,
                        "broker": (cpu1[1] - cpu0[1]) * per_event,
                        "total": (cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]) * per_event},
                    # average threads runnable but without a core: CPU starvation, not idling
                    "run_queue_wait_cores": {
                        k: (wait1[k] - wait0[k]) / elapsed if elapsed > 0 else None
                        for k in wait1},
                    "seconds": elapsed,
                    "events": total,
                    **pipeline_rate(timeline, total),
                    "peak_rss_mib": peak_rss_mib(proc.pid),
                    "ingest_processes_peak_rss_mib": [peak_rss_mib(c) for c in children(proc.pid)],
                    # stalls show as flat runs
                    "timeline": timeline[::max(1, len(timeline) // 40)],
                    "windows": sum(v for k, v in m.items()
                                   if k.startswith("driftstream_windows_closed_total")),
                    "dead_letters": sum(v for k, v in m.items()
                                        if k.startswith("driftstream_dead_letters_total")),
                }
            last = n
            # Prometheus scrapes every 15 s or so; 2 scrapes/s keep the timeline fine
            # without the rendering (~3 ms each) becoming part of what is measured
            time.sleep(SCRAPE_INTERVAL)
        raise RuntimeError(f"worker processed {last} of {total} events in {timeout}s")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def prepare(bootstrap: str, topic: str, events: list[bytes], envelope: int) -> int:
    from stream.config import load_settings

    settings = load_settings(env={"DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                                  "DRIFTSTREAM_TOPICS__PREDICTIONS": topic})
    await ensure_topics(settings)
    return await produce(bootstrap, topic, events, envelope)


def cpu_ceiling_ratio(worker: dict[str, Any], raw: dict[str, Any]) -> float | None:
    """``ratio`` if every core ran the pipeline (broker included) at its measured CPU per
    event: what this machine allows, whatever the scheduling (``None`` when the run was
    too short to see any CPU time, as in smoke runs).

    >>> cpu_ceiling_ratio({"cpu_microseconds_per_event": {"total": 20.0}},
    ...                   {"events_per_second": 200_000.0}) * 200_000 * 20 / 1e6 == os.cpu_count()
    True
    """
    total = worker["cpu_microseconds_per_event"]["total"]
    if not total:
        return None
    return (os.cpu_count() or 1) * 1e6 / total / float(raw["events_per_second"])


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit``, so that the ``finally`` blocks and context managers
    stop the workers and the broker when a benchmark is terminated (by a test's timeout,
    for instance)."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--envelope", type=int, default=1, help="events per Kafka message")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    n = 4000 if args.smoke else args.events
    apply_tansu_compat()
    events = make_events(n, args.models)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = f"bench-{os.getpid()}"
        messages = asyncio.run(prepare(broker.bootstrap, topic, events, args.envelope))
        raw = asyncio.run(raw_consume(broker.bootstrap, topic, messages, broker.pid))
        worker = run_worker(broker.bootstrap, topic, n, tmp, timeout=60 if args.smoke else 600,
                            broker_pid=broker.pid)
    result = {
        "benchmark": "throughput",
        "events": n,
        "models": args.models,
        "features_per_event": 20,
        "event_bytes_mean": round(sum(map(len, events)) / n, 1),
        "envelope": args.envelope,
        "messages": messages,
        "raw": raw,
        "worker": worker,
        "ratio": worker["events_per_second"] / raw["events_per_second"],
        # the ratio the pipeline would reach with every core of this machine busy on it
        # (its broker included) at the CPU per event measured above: the machine's ceiling
        "cpu_ceiling_ratio": cpu_ceiling_ratio(worker, raw),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
