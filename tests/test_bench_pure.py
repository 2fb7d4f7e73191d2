"""Smoke runs of the pure-CPU benchmarks (no broker): each runs with ``--smoke``, exits 0
and prints one JSON object with the fields docs/benchmarks.md quotes.

Speed is not asserted (shared machines are noisy); the numbers live in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_smoke(script: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, f"bench/{script}", "--smoke"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout)
    assert set(result["machine"]) >= {"cpus", "python", "platform"}
    return result


def test_psi_cost_smoke() -> None:
    result = run_smoke("psi_cost.py")
    assert result["benchmark"] == "psi_cost"
    assert (result["features"], result["windows"]) == (2, 3)
    assert result["agree"] is True
    assert result["max_abs_diff_ours_recompute"] <= 1e-9
    for method in ("ours", "recompute"):
        assert result[method]["per_window_us"] > 0 and result[method]["per_window_feature_us"] > 0
    assert result["ours"]["psi_share"] > 0
    assert result["ratios"]["recompute_over_ours"] > 0
    ev = result["evidently"]
    if ev["available"]:  # the bench extra is installed
        assert ev["version"] and ev["api"].endswith("psi_stat_test")
        assert ev["per_window_us"] > 0
        assert result["ratios"]["evidently_over_ours"] > 0
    else:  # recorded with its error, never faked
        assert ev["error"]
        assert result["ratios"]["evidently_over_ours"] is None
    assert result["psi_mean"]["ours_drift"] > result["psi_mean"]["ours_no_drift"]


def test_state_size_smoke() -> None:
    result = run_smoke("state_size.py")
    assert result["benchmark"] == "state_size"
    assert result["prediction_series"] == ["label", "score"]
    assert set(result["snapshot"]) == {"count_1000", "time_60s_lateness_5s", "sliding_5000_step_1000"}
    for s in result["snapshot"].values():
        assert s["events"] == result["events"]
        assert (s["series"], s["adwin_series"]) == (22, 17)  # 20 features + score + label
        for part in ("total", "reference", "adwin", "windows", "alerts"):
            assert s["bytes_final"][part] > 0 and s["bytes_largest"][part] > 0
        assert s["bytes_largest"]["total"] >= s["bytes_final"]["total"]
        for key in ("per_series_bytes_final", "per_series_bytes_largest",
                    "reference_per_series_bytes", "adwin_per_adwin_series_bytes_largest"):
            assert s[key] > 0
        assert isinstance(s["within_target"], bool)
    assert result["target_bytes_per_series"] == 4096
    heap = result["heap"]
    assert heap["features_per_model"] == 20
    for key in ("heap_peak_bytes", "heap_retained_bytes", "heap_peak_per_model_bytes",
                "heap_retained_per_model_bytes", "snapshot_per_model_bytes"):
        assert heap[key] > 0, key
    assert heap["heap_peak_bytes"] >= heap["heap_retained_bytes"]
    assert heap["adwin_series_per_model"] == 17
    assert heap["river_adwin_native_bytes_each"] >= 0
    steady = heap["steady_state"]
    assert steady["events"] == result["events"]
    for key in ("heap_retained_bytes", "heap_retained_per_series_bytes", "adwin_history_python_bytes",
                "snapshot_bytes"):
        assert steady[key] > 0, key
    assert steady["river_adwin_native_bytes_each"] >= 0


def test_adwin_cost_smoke() -> None:
    result = run_smoke("adwin_cost.py")
    assert result["benchmark"] == "adwin_cost"
    assert result["change_point"] == result["values"] // 2
    assert set(result["methods"]) == {"per_value", "chunk_8", "chunk_32", "chunk_128"}
    assert set(result["whatif_clock"]) == {"chunk_8_clock_4", "chunk_32_clock_1", "chunk_128_clock_1"}
    for m in (*result["methods"].values(), *result["whatif_clock"].values()):
        assert m["ns_per_value"] > 0 and m["speedup_vs_per_value"] > 0
        assert len(m["delays"]) == result["seeds"]
        assert m["missed"] == sum(d is None for d in m["delays"])
        assert m["false_alarms_total"] >= 0
    assert result["methods"]["per_value"]["speedup_vs_per_value"] == 1.0


def test_core_cost_smoke() -> None:
    result = run_smoke("core_cost.py")
    assert result["benchmark"] == "core_cost" and result["events"] == 2000
    assert set(result["results"]) == {"drift", "+volume", "+labels_pending", "default", "+labels"}
    for r in result["results"].values():
        assert r["seconds"] > 0 and r["us_per_event"] > 0
    assert result["ratio_to_drift"]["drift"] == 1.0
