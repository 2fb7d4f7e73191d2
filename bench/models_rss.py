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

The RSS growth over the idle worker, divided by the number of monitors, is an upper bound
of the memory per model (monitor, reference, table snapshot, metric series): the growth
also holds transient buffers, which the allocator keeps. A **control** run (fresh broker
and worker) processes the same number of events over 5 models; the difference per extra
model separates what the models cost from what the events cost. The broker's RSS is
given for context (the embedded broker keeps every record in memory).

Prints one JSON object.

    python bench/models_rss.py                       # 100 models × 2,000 events, control 5 models
    python bench/models_rss.py --warmup-events 100   # smaller warm-up buffers per model
    python bench/models_rss.py --smoke               # 100 models × 30 events, for CI
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


def run(models: int, per_model: int, warmup: int, idle_seconds: float, timeout: float) -> dict[str, Any]:
    """One worker, on its own broker, over ``models`` × ``per_model`` events."""
    n = models * per_model
    events = named_events(n, models)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        env = worker_env(broker.bootstrap, Path(tmp), DRIFTSTREAM_MONITOR__WARMUP_EVENTS=str(warmup))
        create_topics(env)
        workers = start_workers(env, 1, Path(tmp))
        try:
            pid = workers[0].proc.pid if workers[0].proc else None
            time.sleep(idle_seconds)
            idle = proc_status_mib(pid)
            topic = env["DRIFTSTREAM_TOPICS__PREDICTIONS"]
            pool, fut = in_thread(lambda: asyncio.run(produce(broker.bootstrap, topic, events, 1)))
            with pool:
                rate = measure(workers, n, timeout, background=fut,
                               broker_pid=broker.pid)["events_per_second"]
                fut.result()
            time.sleep(2.0)  # the last batch's table writes and reports
            after = proc_status_mib(pid)
            m = poll(workers)[0]
            broker_rss = proc_status_mib(broker.pid)["rss_mib"]
        finally:
            stop_workers(workers)
    monitors = m.get("driftstream_monitored_models", float("nan"))
    return {
        "models": models,
        "events": n,
        "monitored_models": monitors,
        "idle_rss_mib": idle["rss_mib"],
        "peak_rss_mib": after["peak_rss_mib"],
        "rss_after_mib": after["rss_mib"],
        "rss_growth_mib": after["rss_mib"] - idle["rss_mib"],
        "events_per_second": rate,
        "windows": metric_sum(m, "driftstream_windows_closed_total"),
        "dead_letters": metric_sum(m, "driftstream_dead_letters_total"),
        "broker_rss_mib": broker_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--events-per-model", type=int, default=2000)
    parser.add_argument("--control-models", type=int, default=5,
                        help="the same number of events over this many models (0: skip)")
    parser.add_argument("--warmup-events", type=int, default=1000,
                        help="monitor.warmup_events: events per model kept to build its reference")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="after /metrics answers, before reading the idle RSS (group joins)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    exit_on_sigterm()
    per_model = 30 if args.smoke else args.events_per_model
    timeout = 60 if args.smoke else 600
    idle_seconds = 3.0 if args.smoke else args.idle_seconds
    apply_tansu_compat()
    worker = run(args.models, per_model, args.warmup_events, idle_seconds, timeout)
    control = None
    if args.control_models:
        n = args.models * per_model
        control = run(args.control_models, n // args.control_models, args.warmup_events,
                      idle_seconds, timeout)
    monitors = worker["monitored_models"]
    result = {
        "benchmark": "models_rss",
        "models": args.models,
        "events_per_model": per_model,
        "events": worker["events"],
        "features_per_event": FEATURES,
        "window_size": 1000,
        "warmup_events": args.warmup_events,
        "monitored_models": monitors,
        "worker": {**worker,
                   "rss_growth_per_model_kib": worker["rss_growth_mib"] * 1024 / monitors
                   if monitors else float("nan")},
        "control": control,
        "per_extra_model_kib": {
            key: (worker[key] - control[key]) * 1024 / (monitors - control["monitored_models"])
            for key in ("peak_rss_mib", "rss_after_mib")
        } if control and monitors > control["monitored_models"] else None,
        "dead_letters": worker["dead_letters"],
        "notes": [
            "peak_rss_mib is VmHWM of the worker process over its whole life (idle included); "
            "it also holds transient buffers (fetched records, envelopes, a monitor batch, the "
            "warm-up events every model keeps until its reference is built); freed memory is "
            "not returned to the OS, so rss_after_mib stays near the peak",
            "rss_growth_per_model_kib: (rss_after - idle_rss) / monitored_models, which "
            "charges every transient buffer to the models",
            "control: the same number of events over control models, with a fresh broker and "
            "worker; per_extra_model_kib = (worker - control) / (models - control models)",
            f"models are named model-000 .. model-{args.models - 1:03d}, events round-robin, "
            "so every model is in warm-up at the same time",
        ],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
