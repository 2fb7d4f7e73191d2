"""Bytes of state per (model, feature): the monitor snapshot, and the Python heap.

1. **Snapshot size.** One ``ModelMonitor`` with a reference of 20 features (16 numeric,
   4 categorical with 5 categories) and a prediction (score and label), fed 50,000 events
   under three window settings: count windows of 1,000 (tumbling), event-time windows of
   60 s with 5 s lateness, sliding count windows of 5,000 every 1,000. The size is
   ``len(orjson.dumps(monitor.snapshot()))`` (what the changelog-backed table stores)
   divided by the number of series, at the end and at its largest after any batch; the
   ADWIN part and the reference part are also given alone. The target is 4 KiB per
   (model, feature).
2. **Heap.** ``tracemalloc`` around building 100 monitors (each with its own copy of the
   reference) and feeding each 2,000 events; peak and retained bytes per model.
   ``steady_state`` is the heap of one monitor after all the 50,000 events, when its ADWIN
   histories are full. river's ADWIN is a Rust object whose allocations ``tracemalloc``
   does not see: ``river_adwin_native_bytes_each`` estimates them from the RSS growth over
   3,000 river ADWINs fed as many inputs (in a fresh child process; coarse).

Prints one JSON object.

    python bench/state_size.py           # the sizes above
    python bench/state_size.py --smoke   # small, for CI
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from river.drift import ADWIN  # noqa: E402

from stream.config import MonitorConfig  # noqa: E402
from stream.core.columns import columns_from_events, select_columns  # noqa: E402
from stream.core.events import normalize_event  # noqa: E402
from stream.core.monitor import ModelMonitor  # noqa: E402
from stream.core.reference import ReferenceProfile  # noqa: E402

TARGET_BYTES = 4096
NUMERIC, CATEGORICAL = 16, 4
CATEGORIES = ["alpha", "beta", "gamma", "delta", "epsilon"]

WINDOWS: dict[str, dict[str, Any]] = {
    "count_1000": {"window_kind": "count", "window_size": 1000},
    "time_60s_lateness_5s": {"window_kind": "time", "window_seconds": 60.0,
                             "allowed_lateness_seconds": 5.0},
    "sliding_5000_step_1000": {"window_kind": "count", "window_size": 5000, "window_step": 1000},
}


def make_events(n: int, seed: int, rate: float = 100.0, t0: float = 1_700_000_000.0) -> list[dict[str, Any]]:
    """Normalised prediction events: 16 numeric and 4 categorical features, score and
    label; ``rate`` events per second of event time, up to 2 s out of order."""
    rng = np.random.default_rng(seed)
    num = rng.normal(0, 1, (n, NUMERIC)).round(4)
    cats = rng.integers(0, len(CATEGORIES), (n, CATEGORICAL))
    score = rng.random(n).round(4)
    ts = t0 + np.arange(n) / rate + rng.uniform(0, 2.0, n)
    names = [f"num_feature_{i:02d}" for i in range(NUMERIC)]
    cnames = [f"cat_feature_{i}" for i in range(CATEGORICAL)]
    out = []
    for i in range(n):
        features: dict[str, Any] = dict(zip(names, num[i].tolist(), strict=True))
        features.update({c: CATEGORIES[v] for c, v in zip(cnames, cats[i].tolist(), strict=True)})
        out.append(normalize_event({
            "event_id": f"evt-{i:012d}", "model": "model-0", "model_version": "v1",
            "ts": float(ts[i]), "features": features,
            "prediction": {"label": bool(score[i] > 0.5), "score": float(score[i])},
        }, "prediction"))
    return out


def batches(cols: dict[str, Any], size: int) -> list[dict[str, Any]]:
    return [select_columns(cols, slice(a, a + size)) for a in range(0, cols["n"], size)]


def size(obj: Any) -> int:
    return len(orjson.dumps(obj))


def snapshot_sizes(mon: ModelMonitor) -> dict[str, int]:
    snap = mon.snapshot()
    adwins = [s[4] for s in snap["series"] if s[4] is not None]
    return {
        "total": size(snap),
        "reference": size(snap["reference"]),
        "adwin": sum(size(a) for a in adwins),
        "windows": size([snap["sub"], snap["subs"], snap["open"]]),
        "alerts": sum(size([s[2], s[3]]) for s in snap["series"]),
    }


def measure_snapshot(ref: ReferenceProfile, parts: list[dict[str, Any]],
                     window: dict[str, Any]) -> dict[str, Any]:
    mon = ModelMonitor("model-0", "v1", MonitorConfig(**window), ReferenceProfile.restore(ref.snapshot()))
    largest: dict[str, int] = {}
    reports = 0
    for cols in parts:
        reports += len(mon.process_columns(cols).reports)
        s = snapshot_sizes(mon)
        if s["total"] > largest.get("total", 0):
            largest = s
    final = snapshot_sizes(mon)
    n_series = len(mon.series)
    n_adwin = sum(1 for s in mon.series.values() if s.adwin is not None)
    return {
        "events": mon.events_total,
        "windows_evaluated": reports,
        "series": n_series,
        "adwin_series": n_adwin,
        "bytes_final": final,
        "bytes_largest": largest,
        "per_series_bytes_final": final["total"] / n_series,
        "per_series_bytes_largest": largest["total"] / n_series,
        "reference_per_series_bytes": final["reference"] / n_series,
        "adwin_per_adwin_series_bytes_largest": largest["adwin"] / n_adwin,
        "within_target": largest["total"] / n_series <= TARGET_BYTES,
    }


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def build_and_feed(ref_snapshot: dict[str, Any], parts: list[dict[str, Any]],
                   models: int) -> list[ModelMonitor]:
    monitors = []
    cfg = MonitorConfig()
    for m in range(models):
        mon = ModelMonitor(f"model-{m}", "v1", cfg, ReferenceProfile.restore(ref_snapshot))
        for cols in parts:
            mon.process_columns(cols)
        monitors.append(mon)
    return monitors


def river_native_bytes(inputs: int, count: int = 3000) -> float:
    """RSS growth per river ``ADWIN`` fed ``inputs`` chunk means, less its traced Python
    bytes: the native (Rust) memory ``tracemalloc`` cannot see. Coarse (allocator pages)."""
    xs = np.random.default_rng(0).normal(0.0, 0.18, inputs).astype(np.float32).tolist()
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    kept = []
    for _ in range(count):
        a = ADWIN()
        for x in xs:
            a.update(x)
        kept.append(a)
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return max(0.0, (rss_bytes() - rss0 - traced) / count)


def measure_heap(ref: ReferenceProfile, parts: list[dict[str, Any]], models: int,
                 steady_parts: list[dict[str, Any]], native: dict[str, float]) -> dict[str, Any]:
    ref_snapshot = ref.snapshot()
    build_and_feed(ref_snapshot, parts, 1)  # first-call allocations (caches, imports) out of the way
    gc.collect()
    tracemalloc.start()
    monitors = build_and_feed(ref_snapshot, parts, models)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n_features = sum(1 for k in ref.series if k[0] == "feature")
    n_adwin = sum(1 for s in monitors[0].series.values() if s.adwin is not None)
    snap_total = sum(size(m.snapshot()) for m in monitors)
    del monitors
    gc.collect()
    # One monitor after many events: ADWIN histories are full (max_history inputs).
    tracemalloc.start()
    steady = build_and_feed(ref_snapshot, steady_parts, 1)[0]
    gc.collect()
    steady_bytes, _ = tracemalloc.get_traced_memory()
    steady_adwin = sum(_deep_size(s.adwin) for s in steady.series.values() if s.adwin is not None)
    tracemalloc.stop()
    return {
        "models": models,
        "features_per_model": n_features,
        "series_per_model": len(ref.series),
        "adwin_series_per_model": n_adwin,
        "events_per_model": sum(c["n"] for c in parts),
        "heap_peak_bytes": peak,
        "heap_retained_bytes": current,
        "heap_peak_per_model_bytes": peak / models,
        "heap_retained_per_model_bytes": current / models,
        "heap_retained_per_feature_bytes": current / models / n_features,
        "river_adwin_native_bytes_each": native["model"],
        "snapshot_per_model_bytes": snap_total / models,
        "steady_state": {
            "events": steady.events_total,
            "heap_retained_bytes": steady_bytes,
            "heap_retained_per_series_bytes": steady_bytes / len(ref.series),
            "adwin_history_python_bytes": steady_adwin,
            "river_adwin_native_bytes_each": native["steady"],
            "snapshot_bytes": size(steady.snapshot()),
        },
    }


def _deep_size(det: Any) -> int:
    """Python-heap bytes of an ``AdwinDetector``'s own state (river's Rust object excluded)."""
    history = det._history
    return (sys.getsizeof(history) + sum(sys.getsizeof(x) for x in history)
            + det._pending.nbytes + sys.getsizeof(det.__dict__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events for the snapshot sizes")
    parser.add_argument("--reference-events", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=100, help="monitors for the heap measure")
    parser.add_argument("--model-events", type=int, default=2_000, help="events per monitor (heap)")
    parser.add_argument("--batch", type=int, default=500, help="events per process_columns call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="small run for CI")
    parser.add_argument("--heap-only", action="store_true",
                        help="only the heap measure (run in a fresh process by the full benchmark)")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.reference_events, args.models, args.model_events = 6_000, 2_000, 3, 1_000

    if args.heap_only:  # first, before this process allocates (and frees) anything large
        chunk = MonitorConfig().adwin_chunk
        native = {"model": river_native_bytes(args.model_events // chunk),
                  "steady": river_native_bytes(args.events // chunk)}
    ref = ReferenceProfile.build(make_events(args.reference_events, args.seed + 1), "model-0", "v1")
    cols = columns_from_events(make_events(args.events, args.seed))
    parts = batches(cols, args.batch)
    if args.heap_only:
        heap_parts = batches(select_columns(cols, slice(0, args.model_events)), args.batch)
        heap = measure_heap(ref, heap_parts, args.models, parts, native)
        print(orjson.dumps(heap).decode())
        return
    # The heap measure runs in a fresh process, so that the RSS growth of river's ADWINs is
    # not hidden by memory this process freed (and keeps) after building events.
    child = subprocess.run([sys.executable, __file__, "--heap-only", *sys.argv[1:]],
                           capture_output=True, text=True, check=True)
    heap = orjson.loads(child.stdout)
    snapshots = {name: measure_snapshot(ref, parts, w) for name, w in WINDOWS.items()}

    result = {
        "benchmark": "state_size",
        "events": args.events,
        "reference_events": args.reference_events,
        "batch": args.batch,
        "features": {"numeric": NUMERIC, "categorical": CATEGORICAL, "categories": len(CATEGORIES)},
        "prediction_series": sorted(k[1] for k in ref.series if k[0] == "prediction"),
        "target_bytes_per_series": TARGET_BYTES,
        "snapshot": snapshots,
        "within_target": all(s["within_target"] for s in snapshots.values()),
        "heap": heap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "platform": platform.platform()},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
