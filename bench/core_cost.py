"""Cost of the monitors' core per event, by what is switched on, in one run.

The same columnar envelopes (what the ingest stage publishes; ~633-byte events with 20
features, 5 models) go through :class:`stream.core.registry.MonitorRegistry` in-process,
under five settings:

- ``drift``: the drift monitors only (quality and volume off): histograms, PSI, ADWIN,
  and the data-integrity figures of every window;
- ``+volume``: plus the volume buckets of every model;
- ``+labels_pending``: plus the label join, with predictions kept from the first one on
  (``label_join_start = "always"``) and no label ever arriving: the join's cost per
  prediction;
- ``default``: the defaults (``label_join_start = "first_label"``; no label arrives, so
  the join costs nothing);
- ``+labels``: ``always``, and a label for every prediction after the predictions.

No Kafka: this isolates the core from the pipeline (``bench/throughput.py`` measures the
whole worker). Prints one JSON object; quote the ratios to ``drift``, not the times.

    python bench/core_cost.py           # 100k events
    python bench/core_cost.py --smoke   # 2k events, for CI
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from throughput import make_events  # noqa: E402

from stream.config import load_settings  # noqa: E402
from stream.core.registry import MonitorRegistry  # noqa: E402
from stream.kafka.ingest import Record, route  # noqa: E402

SETTINGS = {
    "drift": {"quality_enabled": False, "volume_enabled": False},
    "+volume": {"quality_enabled": False},
    "+labels_pending": {"label_join_start": "always"},
    "default": {},
    "+labels": {"label_join_start": "always"},
}


def run(envs: list[dict[str, Any]], labels: list[dict[str, Any]], over: dict[str, Any],
        with_labels: bool) -> dict[str, float]:
    base = load_settings(env={}).monitor
    cfg = dataclasses.replace(base, **over)
    reg = MonitorRegistry(lambda m: cfg, max_models=100)
    n = sum(e["columns"]["n"] for e in envs)
    t0 = time.perf_counter()
    for env in envs:
        reg.handle(env, now=0.0)
    if with_labels:
        for env in labels:
            reg.handle(env, now=0.0)
    reg.take_dirty()
    reg.take_quality_dirty()
    reg.take_volume_dirty()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "us_per_event": seconds / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    n = 2000 if args.smoke else args.events
    values = make_events(n, 5)
    routed = route([Record("p", 0, i, v) for i, v in enumerate(values)],
                   kinds={"p": "prediction"}, partitions=4, max_message_bytes=1 << 20,
                   dead_letter_max_bytes=1000, now=0.0)
    envs = [orjson.loads(v) for _, _, v in routed.envelopes]
    label_records = [Record("l", 0, i, orjson.dumps(
        {"event_id": e["event_id"], "model": e["model"], "label": e["prediction"]["label"],
         "ts": e["ts"] + 5}))
        for i, e in enumerate(orjson.loads(v) for v in values)]
    routed_labels = route(label_records, kinds={"l": "label"}, partitions=4,
                          max_message_bytes=1 << 20, dead_letter_max_bytes=1000, now=0.0)
    labels = [orjson.loads(v) for _, _, v in routed_labels.envelopes]
    results = {name: run(envs, labels, over, name == "+labels") for name, over in SETTINGS.items()}
    drift = results["drift"]["seconds"]
    print(json.dumps({
        "benchmark": "core_cost",
        "events": n,
        "features_per_event": 20,
        "models": 5,
        "results": results,
        "ratio_to_drift": {k: v["seconds"] / drift for k, v in results.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }, indent=2))


if __name__ == "__main__":
    main()
