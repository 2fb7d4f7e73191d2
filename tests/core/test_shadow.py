"""Shadow against production: pairing, gap measures against numpy, alerts, quality of each
side and which is ahead, batch invariance, bounds and snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from stream.config import MonitorConfig
from stream.core.columns import columns_from_events, select_columns
from stream.core.registry import MonitorRegistry
from stream.core.shadow import ShadowComparator
from stream.errors import SnapshotError

SCHEMAS = Path(__file__).parents[2] / "schemas"
SHADOW = json.loads((SCHEMAS / "shadow-report.json").read_text())
ALERT = json.loads((SCHEMAS / "alert.json").read_text())
QUALITY = json.loads((SCHEMAS / "quality-report.json").read_text())
CFG = MonitorConfig(shadow_window_size=200, min_window_values=50, warmup_events=200,
                    window_size=200, quality_window_size=200, quality_min_pairs=50,
                    quality_adwin=False, volume_enabled=False, label_join_start="always")


def pairs(n: int, start: int, seed: int, noise: float, *, regression: bool = False,
          shadow_first: bool = False) -> list[dict[str, Any]]:
    """Production then shadow events of the same ids; the shadow's output is production's
    plus ``noise``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        eid, ts = f"e{start + i}", float(start + i)
        x = float(rng.normal())
        if regression:
            p = {"label": None, "score": None, "value": 10.0 + 3 * x, "scores": None}
            s = {**p, "value": 10.0 + 3 * x + float(rng.normal(0, noise))}
        else:
            score = float(1 / (1 + np.exp(-x)))
            sh = float(np.clip(score + rng.normal(0, noise), 0, 1))
            p = {"label": None, "score": score, "value": None, "scores": None}
            s = {**p, "score": sh}
        prod = {"event_id": eid, "model_version": "v1", "ts": ts, "features": {"x": x},
                "prediction": p, "deployment": "production"}
        shadow = {**prod, "model_version": "v2", "prediction": s, "deployment": "shadow"}
        out += [shadow, prod] if shadow_first else [prod, shadow]
    return out


def feed(cmp: ShadowComparator, evs: list[dict[str, Any]], batch: int) -> tuple[list, list]:
    cols = columns_from_events(evs)
    reports, alerts = [], []
    for i in range(0, cols["n"], batch):
        out = cmp.add(select_columns(cols, slice(i, i + batch)))
        reports += out.reports
        alerts += out.alerts
    return reports, alerts


def test_classification_gap_and_psi_match_numpy_and_the_alert_lifecycle() -> None:
    evs = pairs(400, 0, 1, 0.01) + pairs(400, 400, 2, 0.4) + pairs(600, 800, 3, 0.0)
    reports, alerts = feed(ShadowComparator("m", CFG), evs, 150)
    assert [r["pairs"] for r in reports] == [200] * 7
    for k, r in enumerate(reports):
        jsonschema.validate(r, SHADOW)
        window = evs[k * 400:(k + 1) * 400]
        ps = np.array([e["prediction"]["score"] for e in window[0::2]])
        ss = np.array([e["prediction"]["score"] for e in window[1::2]])
        assert r["disagreement_rate"] == pytest.approx(np.mean((ps >= 0.5) != (ss >= 0.5)))
        assert r["task"] == "classification" and r["mean_abs_diff"] is None
        assert (r["production_version"], r["shadow_version"]) == ("v1", "v2")
    assert reports[0]["disagreement_rate"] < 0.05 < reports[2]["disagreement_rate"]
    assert reports[2]["psi"] > reports[0]["psi"]
    assert [(a["status"], a["window"]["index"]) for a in alerts] == [
        ("firing", 2), ("resolved", 4)]
    for a in alerts:
        jsonschema.validate(a, ALERT)
        assert (a["kind"], a["detector"], a["model_version"]) == ("prediction_drift", "shadow", "v2")
    assert "disagreement rate of shadow v2" in alerts[0]["message"]


def test_regression_measures_the_relative_mean_absolute_difference() -> None:
    cfg = MonitorConfig(**{**CFG.__dict__, "shadow_relative_diff_warning": 0.05})
    evs = pairs(200, 0, 4, 2.0, regression=True)
    reports, alerts = feed(ShadowComparator("m", cfg), evs, 64)
    p = np.array([e["prediction"]["value"] for e in evs[0::2]])
    s = np.array([e["prediction"]["value"] for e in evs[1::2]])
    (r,) = reports
    assert r["task"] == "regression" and r["disagreement_rate"] is None
    assert r["mean_abs_diff"] == pytest.approx(np.mean(np.abs(p - s)))
    assert r["relative_abs_diff"] == pytest.approx(np.sum(np.abs(p - s)) / np.sum(np.abs(p)))
    assert alerts and alerts[0]["value"] == pytest.approx(r["relative_abs_diff"])


@pytest.mark.parametrize("batch", [1, 7, 333])
def test_reports_do_not_depend_on_batching_or_on_which_side_comes_first(batch: int) -> None:
    evs = pairs(300, 0, 5, 0.2) + pairs(300, 300, 6, 0.2, shadow_first=True)
    expected = feed(ShadowComparator("m", CFG), evs, len(evs))
    assert feed(ShadowComparator("m", CFG), evs, batch) == expected
    assert len(expected[0]) == 3


def test_unpaired_predictions_are_counted_never_lost() -> None:
    cfg = MonitorConfig(**{**CFG.__dict__, "shadow_max_pending": 10, "shadow_pair_seconds": 50.0})
    evs = pairs(200, 0, 7, 0.1)
    lonely = [e for e in evs[:40] if e["deployment"] == "production"]  # 20 without partner
    late_shadow = [{**evs[1], "ts": 500.0}]  # e0's partner, far too late
    evs2 = pairs(200, 1000, 8, 0.1)
    cmp = ShadowComparator("m", cfg)
    out = cmp.add(columns_from_events(lonely))
    assert out.unpaired["production"] == 10  # evicted by the cap of 10 waiting
    out = cmp.add(columns_from_events(late_shadow + evs2))
    (r,) = out.reports
    assert r["pairs"] == 200
    # 10 evicted earlier, the 10 left expire (one of them, e0, met its partner too late,
    # which then waits and expires too)
    assert r["unpaired"]["production"] == 20 and r["unpaired"]["shadow"] == 1


def test_the_state_survives_a_json_snapshot_mid_window() -> None:
    evs = pairs(500, 0, 9, 0.3)
    expected = feed(ShadowComparator("m", CFG), evs, 100)
    cmp = ShadowComparator("m", CFG)
    first = feed(cmp, evs[:451], 100)  # a production event waiting for its partner
    assert cmp.pending
    back = ShadowComparator.restore(orjson.loads(orjson.dumps(cmp.snapshot())), CFG)
    second = feed(back, evs[451:], 100)
    assert (first[0] + second[0], first[1] + second[1]) == expected
    with pytest.raises(SnapshotError, match="shadow snapshot"):
        ShadowComparator.restore({"kind": "x"}, CFG)


# -- through the registry: both sides' quality, and which is ahead ----------------------


def labels_for(evs: list[dict[str, Any]], seed: int) -> dict[str, list[Any]]:
    """Labels drawn from production's score: production is calibrated, the noisy shadow
    is worse."""
    rng = np.random.default_rng(seed)
    prod = [e for e in evs if e["deployment"] == "production"]
    return {"event_id": [e["event_id"] for e in prod],
            "label": [bool(rng.random() < e["prediction"]["score"]) for e in prod],
            "ts": [e["ts"] + 5.0 for e in prod]}


def test_registry_compares_both_sides_quality_and_says_which_is_ahead() -> None:
    reg = MonitorRegistry(lambda m: CFG, max_models=10)
    evs = pairs(600, 0, 10, 0.35)
    out = reg.handle({"type": "columns", "model": "m", "columns": columns_from_events(evs)})
    # the comparator starts at the first shadow prediction: e0's production one came
    # before it and is not paired (whatever the batching)
    assert [r["pairs"] for r in out.shadow.reports] == [200, 200]
    assert out.shadow.reports[0]["ahead"] is None
    lab = reg.handle({"type": "labels", "model": "m", "labels": labels_for(evs, 11)})
    # each side joined its own 600 predictions: no duplicate predictions in production's join
    assert lab.label_join.get("joined") == 600 and "duplicate_predictions" not in lab.label_join
    sides = {(r["model_version"], r.get("deployment")) for r in lab.quality.reports}
    assert sides == {("v1", None), ("v2", "shadow")}
    for r in lab.quality.reports:
        jsonschema.validate(r, QUALITY)
    more = pairs(200, 600, 12, 0.35)
    out = reg.handle({"type": "columns", "model": "m", "columns": columns_from_events(more)})
    (r,) = out.shadow.reports
    jsonschema.validate(r, SHADOW)
    assert r["quality"]["production"]["model_version"] == "v1"
    assert r["quality"]["shadow"]["model_version"] == "v2"
    assert r["ahead"] == "production" and r["ahead_by"]["metric"] == "roc_auc"
    assert r["ahead_by"]["production"] > r["ahead_by"]["shadow"]
    # the state is written with the quality state and restores
    table = dict(reg.take_quality_dirty())
    assert "m\x1fshadow" in table and "m\x1fshadow\x1fquality" in table
    reg2 = MonitorRegistry(lambda m: CFG, max_models=10,
                           load_quality=lambda k: orjson.loads(orjson.dumps(table.get(k))))
    again = reg2.handle({"type": "columns", "model": "m",
                         "columns": columns_from_events(pairs(200, 800, 13, 0.35))})
    assert again.shadow.reports and again.shadow.reports[0]["ahead"] == "production"


def test_shadow_predictions_in_batches_of_their_own_reach_the_shadow_join() -> None:
    reg = MonitorRegistry(lambda m: CFG, max_models=10)
    evs = pairs(400, 0, 15, 0.35)
    for side in ("production", "shadow"):  # each side published on its own
        mine = [e for e in evs if e["deployment"] == side]
        reg.handle({"type": "columns", "model": "m", "columns": columns_from_events(mine)})
    lab = reg.handle({"type": "labels", "model": "m", "labels": labels_for(evs, 16)})
    shadow_quality = [r for r in lab.quality.reports if r.get("deployment") == "shadow"]
    assert [r["window"]["count"] for r in shadow_quality] == [200, 200]


def test_a_model_without_shadow_traffic_gets_no_comparator() -> None:
    reg = MonitorRegistry(lambda m: CFG, max_models=10)
    evs = [e for e in pairs(300, 0, 14, 0.1) if e["deployment"] == "production"]
    out = reg.handle({"type": "columns", "model": "m", "columns": columns_from_events(evs)})
    assert not out.shadow.reports and not reg.shadow
