"""Smoke runs of the broker benchmarks (latency, scaling, models_rss): each runs with
``--smoke`` against its own embedded broker, exits 0 and prints one JSON object with the
fields docs/benchmarks.md quotes.

Speeds and latencies are not asserted (shared machines are noisy); the numbers live in
docs/benchmarks.md. On a timeout the benchmark gets SIGTERM first, so that it stops its
workers and its broker, then SIGKILL (with its process group).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def run_smoke(script: str) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, f"bench/{script}", "--smoke"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pytest.fail(f"bench/{script} --smoke took over {TIMEOUT}s; stderr:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    result: dict[str, Any] = json.loads(stdout)
    assert set(result["machine"]) >= {"cpus", "python", "platform"}
    return result


def assert_latency_stats(stats: dict[str, Any]) -> None:
    assert stats["count"] > 0
    assert 0 <= stats["min_seconds"] <= stats["p50_seconds"] <= stats["p99_seconds"] <= stats["max_seconds"]


@pytest.mark.broker
def test_latency_benchmark_smoke() -> None:
    result = run_smoke("latency.py")
    assert result["benchmark"] == "latency"
    assert (result["models"], result["window_size"], result["state_flush_seconds"]) == (5, 200, 0.1)
    assert result["max_rate"]["measured"] is True and result["max_rate"]["events_per_second"] > 0
    assert set(result["max_rate"]["probe_cpu_cores_used"]) == {"worker", "broker"}
    assert result["target_events_per_second"] == pytest.approx(result["max_rate"]["events_per_second"] / 2)
    assert result["events_sent"] > 0 and result["measured_seconds"] == 5.0
    for key in ("report_latency", "alert_latency", "by_model_envelope_latency"):
        assert_latency_stats(result[key])
    assert "p50_seconds_second_half" in result["report_latency"]
    assert result["alert_latency"]["firing_on_drifted_features"] > 0  # the injected drift fired
    assert set(result["cpu_cores_used"]) == {"worker", "broker", "bench"}
    assert "le_1.0" in result["worker_event_delay_share"]
    assert result["worker_peak_rss_mib"] > 0
    assert result["dead_letters"] == 0
    assert result["target_p99_seconds"] == 1.0
    assert any("getmany(timeout_ms=50)" in note for note in result["notes"])
    assert any("state_flush_seconds=0.1" in note for note in result["notes"])


@pytest.mark.broker
def test_scaling_benchmark_smoke() -> None:
    result = run_smoke("scaling.py")
    assert result["benchmark"] == "scaling"
    assert (result["events"], result["models"], result["partitions"]) == (20_000, 20, 4)
    for key, workers in (("one_worker", 1), ("two_workers", 2)):
        run = result[key]
        assert run["workers"] == workers and len(run["per_worker"]) == workers
        assert run["events"] >= result["events"]  # warm-up excluded; at-least-once may replay
        assert run["warmup_events"] > 0 and run["dead_letters"] == 0
        assert sum(w["events"] for w in run["per_worker"]) == run["events"]
        # Every worker held by-model partitions: the 20 models are split between them.
        assert sum(w["monitored_models"] for w in run["per_worker"]) == result["models"]
        assert all(w["events"] > 0 and w["peak_rss_mib"] > 0 for w in run["per_worker"])
        assert all("cpu_cores_used" in w for w in run["per_worker"]) and "broker_cpu_cores_used" in run
    for key in ("speedup", "speedup_after_produce"):
        assert key in result  # null when the smoke run is too short to time
    assert result["notes"]


@pytest.mark.broker
def test_models_rss_benchmark_smoke() -> None:
    result = run_smoke("models_rss.py")
    assert result["benchmark"] == "models_rss"
    assert (result["models"], result["events_per_model"], result["events"]) == (100, 30, 3000)
    assert result["monitored_models"] == 100
    worker = result["worker"]
    for key in ("idle_rss_mib", "peak_rss_mib", "rss_after_mib"):
        assert worker[key] > 0, key
    assert worker["peak_rss_mib"] >= worker["rss_after_mib"]
    assert "rss_growth_per_model_kib" in worker
    assert worker["broker_rss_mib"] > 0
    assert result["dead_letters"] == 0
    control = result["control"]
    assert (control["models"], control["events"], control["monitored_models"]) == (5, 3000, 5)
    assert control["peak_rss_mib"] > 0
    assert set(result["per_extra_model_kib"]) == {"peak_rss_mib", "rss_after_mib"}
