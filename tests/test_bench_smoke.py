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
    for key in ("events", "raw", "worker", "ratio", "machine", "envelope"):
        assert key in result, key
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
