"""Smoke runs of the benchmarks: they run and print the fields docs/benchmarks.md quotes.

Speed is not asserted here (shared machines are noisy); the numbers live in
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.broker
def test_throughput_benchmark_smoke() -> None:
    out = subprocess.run([sys.executable, "bench/throughput.py", "--smoke"], cwd=REPO,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    for key in ("events", "raw", "worker", "ratio", "cpu_ceiling_ratio", "machine", "envelope"):
        assert key in result, key
    for key in ("worker_process", "ingest_processes", "broker", "total"):
        assert result["worker"]["cpu_microseconds_per_event"][key] >= 0, key
    for key in ("worker_process", "ingest_processes", "broker"):  # None: too short to see
        wait = result["worker"]["run_queue_wait_cores"][key]
        assert wait is None or wait >= 0, key
    assert result["raw"]["cpu_microseconds_per_event"]["consumer"] > 0
    assert result["worker"]["events"] == result["events"] == 4000
    assert result["raw"]["events"] == result["events"]
    assert result["worker"]["peak_rss_mib"] > 0
    assert result["worker"]["dead_letters"] == 0


@pytest.mark.broker
def test_faust_dispatch_benchmark_smoke() -> None:
    out = subprocess.run([sys.executable, "bench/faust_dispatch.py", "--smoke"], cwd=REPO,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    for key in ("raw", "faust_agent", "ratio", "faust_seconds_per_message", "machine"):
        assert key in result, key
    assert result["faust_agent"]["events"] == result["events"] == 2000


def test_throughput_helpers_doctests() -> None:
    """The rate and CPU-ceiling arithmetic the figures in docs/benchmarks.md rest on."""
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_throughput", REPO / "bench/throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0, result
