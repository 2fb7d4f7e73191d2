"""Resident memory of one worker monitoring 100 models × 20 features.

One ``driftstream worker`` subprocess on the embedded broker, with bench/throughput.py's
settings (count windows of 1,000 events, 1,000 warm-up events per model):

1. started on empty topics; once it serves ``/metrics`` and its groups had time to join,
   its RSS is read (``idle``);
2. events of 100 models (2,000 each, 200k in all, ~630 bytes with 20 features: 16 numeric,
   4 categorical, and a prediction) are produced, and the worker runs until its processed
   counter has them all;
3. after a short pause (the last state writes), ``VmHWM`` (peak RSS) and ``VmRSS`` are read
   from ``/proc/<pid>/status``, with ``driftstream_monitored_models``.

The RSS growth over the idle worker, divided by the number of monitors, estimates the
memory per model (monitor, its reference, the changelog-backed table's snapshot, metric
series); the peak also holds transient batch buffers. The broker's RSS is given for
context (the embedded broker keeps every record in memory).

Prints one JSON object.

    python bench/models_rss.py           # 100 models × 2,000 events
    python bench/models_rss.py --smoke   # 100 models × 30 events, for CI
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

import orjson

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from scaling import (  # noqa: E402
    create_topics,
    exit_on_sigterm,
    in_thread,
    measure,
    metric_sum,
    poll,
    start_workers,
    stop_workers,
    worker_env,
)
from throughput import make_events, produce  # noqa: E402

from stream.kafka.tansu import EmbeddedBroker, apply_tansu_compat  # noqa: E402

FEATURES = 20


def proc_status_mib(pid: int | None) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a process, in MiB."""
    if pid is None:
        return {"rss_mib": float("nan"), "peak_rss_mib": float("nan")}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mib" if key == "VmRSS" else "peak_rss_mib"] = int(value.split()[0]) / 1024
    return out


def named_events(n: int, models: int) -> list[bytes]:
    """bench/throughput.py's events, with models named ``model-000`` .. ``model-099``."""
    return [e.replace(b'"model":"model-%d"' % (i % models), b'"model":"model-%03d"' % (i % models), 1)
            for i, e in enumerate(make_events(n, models))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--events-per-model", type=int, default=2000)
    parser.add_argument("--warmup-events", type=int, default=1000,
                        help="monitor.warmup_events: events per model kept to build its reference")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="after /metrics answers, before reading the idle RSS (group joins)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    exit_on_sigterm()
    per_model = 30 if args.smoke else args.events_per_model
    n = args.models * per_model
    timeout = 60 if args.smoke else 600
    apply_tansu_compat()
    events = named_events(n, args.models)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        env = worker_env(broker.bootstrap, Path(tmp),
                         DRIFTSTREAM_MONITOR__WARMUP_EVENTS=str(args.warmup_events))
        create_topics(env)
        workers = start_workers(env, 1, Path(tmp))
        try:
            pid = workers[0].proc.pid if workers[0].proc else None
            time.sleep(args.idle_seconds)
            idle = proc_status_mib(pid)
            topic = env["DRIFTSTREAM_TOPICS__PREDICTIONS"]
            pool, fut = in_thread(lambda: asyncio.run(produce(broker.bootstrap, topic, events, 1)))
            with pool:
                run = measure(workers, n, timeout, background=fut)
                fut.result()
            time.sleep(2.0)  # the last batch's table writes and reports
            after = proc_status_mib(pid)
            m = poll(workers)[0]
            broker_mem = proc_status_mib(broker.pid)
        finally:
            stop_workers(workers)
    monitors = m.get("driftstream_monitored_models", float("nan"))
    growth = after["rss_mib"] - idle["rss_mib"]
    result = {
        "benchmark": "models_rss",
        "models": args.models,
        "events_per_model": per_model,
        "events": n,
        "features_per_event": FEATURES,
        "window_size": 1000,
        "warmup_events": args.warmup_events,
        "monitored_models": monitors,
        "worker": {
            "idle_rss_mib": idle["rss_mib"],
            "peak_rss_mib": after["peak_rss_mib"],
            "rss_after_mib": after["rss_mib"],
            "rss_growth_mib": growth,
            "rss_growth_per_model_kib": growth * 1024 / monitors if monitors else float("nan"),
            "events_per_second": run["events_per_second"],
        },
        "windows": metric_sum(m, "driftstream_windows_closed_total"),
        "dead_letters": metric_sum(m, "driftstream_dead_letters_total"),
        "broker_rss_mib": broker_mem["rss_mib"],
        "notes": [
            "peak_rss_mib is VmHWM of the worker process over its whole life (idle included); "
            "it also holds transient buffers (fetched records, envelopes, a monitor batch)",
            "rss_growth_per_model_kib: (rss_after - idle_rss) / monitored_models: monitors, "
            "references, table snapshots and metric series, plus allocator slack",
            f"models are named model-000 .. model-{args.models - 1:03d}, events round-robin",
        ],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
