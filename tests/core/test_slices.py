"""Slices: top-K selection, per-slice drift state, bounded memory and labels, batch
invariance and snapshots."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from stream.config import ConfigError, MonitorConfig, load_settings
from stream.core.columns import columns_from_events
from stream.core.registry import MonitorRegistry, slice_key
from stream.core.slices import SliceSelector
from stream.errors import SnapshotError

SCHEMAS = Path(__file__).parents[2] / "schemas"
ALERT = json.loads((SCHEMAS / "alert.json").read_text())
REPORT = json.loads((SCHEMAS / "window-report.json").read_text())
REGIONS = ["eu", "us", "apac", "latam", "mea"]
CFG = MonitorConfig(window_size=500, warmup_events=1000, min_window_values=100,
                    slice_keys=("region",), max_slice_values=5, slice_min_events=50,
                    quality_enabled=False, volume_enabled=False)


# -- the selector ---------------------------------------------------------------------


def route_all(sel: SliceSelector, values: list[str | None], cuts: list[int]) -> dict[str, list[int]]:
    """Route ``values`` in batches cut at ``cuts``; rows as global indices."""
    rows: dict[str, list[int]] = {}
    bounds = [0, *cuts, len(values)]
    for a, b in itertools.pairwise(bounds):
        for value, r in sel.route(values[a:b]).items():
            rows.setdefault(value, []).extend(a + i for i in r)
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_routing_does_not_depend_on_batching(seed: int) -> None:
    rng = random.Random(seed)
    values: list[str | None] = [
        None if rng.random() < 0.05 else f"v{min(int(rng.expovariate(0.3)), 60)}"
        for _ in range(5000)]
    whole = SliceSelector("k", max_values=4, min_events=30)
    expected = whole.route(values)
    cut = SliceSelector("k", max_values=4, min_events=30)
    cuts = sorted(rng.sample(range(1, len(values)), 40))
    assert route_all(cut, values, cuts) == expected
    assert cut.snapshot() == whole.snapshot()
    # every event is accounted for exactly once
    assert (sum(map(len, expected.values())) + whole.pooled_events + whole.missing_events
            == len(values))


def test_the_busiest_values_get_the_slots_and_a_long_tail_cannot_claim_one() -> None:
    rng = random.Random(1)
    # two values with 3 % and 1.5 % of the traffic amid 10,000 values seen once each
    # (Space-Saving counts exactly enough any value above 1/96 of it)
    values = [f"user{i}" for i in range(10000)] + ["big"] * 300 + ["medium"] * 150
    rng.shuffle(values)
    sel = SliceSelector("k", max_values=3, min_events=100)
    rows = route_all(sel, values, list(range(997, len(values), 997)))
    assert sorted(sel.tracked) == ["big", "medium"]
    assert len(sel._counts) <= sel.capacity and len(sel._heap) <= 4 * sel.capacity
    # tracked from the event where the guaranteed count reached min_events
    assert 0 < len(rows["big"]) <= 201 and 0 < len(rows["medium"]) <= 51
    # and a restart in the middle changes nothing
    again = SliceSelector("k", max_values=3, min_events=100)
    half = len(values) // 2
    first = again.route(values[:half])
    again = SliceSelector.restore(orjson.loads(orjson.dumps(again.snapshot())))
    second = again.route(values[half:])
    merged = {v: first.get(v, []) + [half + i for i in second.get(v, [])]
              for v in set(first) | set(second)}
    assert merged == rows and again.snapshot() == sel.snapshot()


def test_slots_are_capped_and_the_rest_is_pooled_and_counted() -> None:
    sel = SliceSelector("k", max_values=3, min_events=2)
    values = [f"v{i % 50}" for i in range(1000)]
    rows = sel.route(values)
    assert len(sel.tracked) == 3 and set(rows) == set(sel.tracked)
    assert sel.pooled_events == 1000 - sum(map(len, rows.values()))


def test_snapshot_round_trips_through_json_and_refuses_garbage() -> None:
    sel = SliceSelector("k", max_values=3, min_events=5)
    sel.route([f"v{i % 7}" for i in range(20)] + [None])
    data = orjson.loads(orjson.dumps(sel.snapshot()))
    back = SliceSelector.restore(data)
    assert back.snapshot() == sel.snapshot()
    more = [f"v{i % 9}" for i in range(100)]
    assert back.route(more) == sel.route(more)
    with pytest.raises(SnapshotError, match="slice snapshot"):
        SliceSelector.restore({"kind": "driftstream.slices", "version": 99})
    with pytest.raises(SnapshotError, match="corrupt"):
        SliceSelector.restore({**data, "tracked": None})


# -- drift per slice through the registry ---------------------------------------------


def traffic(n: int, start: int, seed: int, shifted: str | None = None,
            regions: list[str] = REGIONS, weights: list[float] | None = None
            ) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    region = rng.choice(regions, n, p=weights)
    x = rng.normal(0.0, 1.0, n)
    if shifted is not None:
        x = np.where(region == shifted, x + 1.0, x)
    return [{"event_id": str(start + i), "model_version": "v1", "ts": float(start + i),
             "features": {"x": float(x[i]), "y": float(rng.normal())},
             "slices": {"region": str(region[i])}} for i in range(n)]


def run(reg: MonitorRegistry, evs: list[dict[str, Any]], batch: int = 700
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    reports: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for i in range(0, len(evs), batch):
        out = reg.handle({"type": "columns", "model": "m",
                          "columns": columns_from_events(evs[i:i + batch])})
        reports += out.output.reports
        alerts += out.output.alerts
    return reports, alerts


def test_drift_in_one_slice_fires_for_that_slice_only_and_the_global_psi_would_not() -> None:
    cfg = MonitorConfig(**{**CFG.__dict__, "window_size": 1000})
    reg = MonitorRegistry(lambda m: cfg, max_models=10)
    # eu has 10 % of the traffic; each region warms up its own reference of 1,000 events
    weights = [0.1, 0.3, 0.3, 0.2, 0.1]
    run(reg, traffic(12000, 0, 1, weights=weights))
    reports, alerts = run(reg, traffic(30000, 12000, 2, shifted="eu", weights=weights))
    psi_alerts = [a for a in alerts if a["detector"] == "psi" and a["status"] == "firing"]
    assert psi_alerts, "the drifted slice must fire"
    assert {(a["slice"]["key"], a["slice"]["value"], a["feature"]) for a in psi_alerts} == {
        ("region", "eu", "x")}
    for a in alerts:
        jsonschema.validate(a, ALERT)
    assert "region=eu" in psi_alerts[0]["message"]
    # the global PSI of x stayed below the warning threshold in every window
    global_x = [r["features"]["x"]["psi"] for r in reports if r["slice"] is None]
    assert global_x and max(global_x) < CFG.psi_warning
    eu_x = [r["features"]["x"]["psi"] for r in reports
            if r["slice"] == {"key": "region", "value": "eu"}]
    assert eu_x and max(eu_x) >= CFG.psi_critical
    for r in reports:
        jsonschema.validate(r, REPORT)
    # a slice's alert is its own condition, apart from the global one
    from stream.core.alerts import alert_id
    assert psi_alerts[0]["alert_id"] != alert_id("feature_drift", "m", "v1", "x", "psi")
    assert sorted(m.slice_[1] for m in reg.slice_monitors.values() if m.slice_) == sorted(
        REGIONS)


def test_memory_and_labels_are_bounded_by_the_top_k() -> None:
    cfg = MonitorConfig(**{**CFG.__dict__, "max_slice_values": 3})
    reg = MonitorRegistry(lambda m: cfg, max_models=10)
    regions = [f"r{i}" for i in range(40)]
    evs = traffic(6000, 0, 3, regions=regions)
    for e in evs[:300]:  # three busy values first
        e["slices"]["region"] = ["a", "b", "c"][int(e["event_id"]) % 3]
    reg2 = MonitorRegistry(lambda m: cfg, max_models=10)
    counts: dict[tuple[str, str, str], int] = {}
    for i in range(0, len(evs), 500):
        out = reg2.handle({"type": "columns", "model": "m",
                           "columns": columns_from_events(evs[i:i + 500])})
        for k, n in out.slice_events.items():
            counts[k] = counts.get(k, 0) + n
    assert len(reg2.slice_monitors) == 3
    assert {m.slice_[1] for m in reg2.slice_monitors.values() if m.slice_} == {"a", "b", "c"}
    assert counts[("m", "region", "pooled")] == 6000 - counts[("m", "region", "tracked")]
    assert counts[("m", "region", "pooled")] > 5000
    del reg


def per_monitor(out: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> bytes:
    """Outputs grouped by monitor (whole version, then each slice), each monitor's in the
    order it produced them: how monitors interleave within a batch depends on batching."""
    def who(r: dict[str, Any]) -> str:
        return orjson.dumps(r.get("slice")).decode()
    return orjson.dumps([sorted(out[0], key=who), sorted(out[1], key=who)])


def test_slices_are_batch_invariant_and_survive_a_restart() -> None:
    evs = traffic(6000, 0, 4) + traffic(6000, 6000, 5, shifted="apac")
    whole = MonitorRegistry(lambda m: CFG, max_models=10)
    expected_raw = run(whole, evs, batch=6000)
    expected = per_monitor(expected_raw)
    other = MonitorRegistry(lambda m: CFG, max_models=10)
    assert per_monitor(run(other, evs, batch=333)) == expected
    # restart halfway: state only through JSON snapshots of what take_dirty returns
    table: dict[str, bytes] = {}
    first = MonitorRegistry(lambda m: CFG, max_models=10)
    part1 = run(first, evs[:7000], batch=500)
    for key, snap in first.take_dirty():
        table[key] = orjson.dumps(snap)
    assert slice_key("m", "v1", "region", "apac") in table
    second = MonitorRegistry(lambda m: CFG, max_models=10,
                             load_state=lambda k: orjson.loads(table[k]) if k in table else None)
    part2 = run(second, evs[7000:], batch=500)
    assert per_monitor((part1[0] + part2[0], part1[1] + part2[1])) == expected
    assert any(a.get("slice") == {"key": "region", "value": "apac"} for a in expected_raw[1])


def test_promote_rebaselines_the_version_s_slices_too() -> None:
    reg = MonitorRegistry(lambda m: CFG, max_models=10)
    run(reg, traffic(8000, 0, 6))
    _, alerts = run(reg, traffic(6000, 8000, 7, shifted="us"))
    assert any(a.get("slice", {}).get("value") == "us" for a in alerts)
    out = reg.handle({"type": "rebaseline", "model": "m", "model_version": "v1", "ts": 1.0})
    resolved = [a for a in out.output.alerts if a.get("slice")]
    assert resolved and {a["status"] for a in resolved} == {"resolved"}
    assert all(m.reference is None for m in reg.slice_monitors.values())


# -- settings -------------------------------------------------------------------------


def test_slice_keys_come_from_a_toml_list_or_a_comma_separated_variable(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[monitor]\nslice_keys = ["region", "device"]\n')
    assert load_settings(f, env={}).monitor.slice_keys == ("region", "device")
    env = {"DRIFTSTREAM_MONITOR__SLICE_KEYS": "region, tier"}
    assert load_settings(None, env=env).monitor.slice_keys == ("region", "tier")
    f.write_text('[monitor]\nslice_keys = "region"\n')  # a string in a file is one key
    assert load_settings(f, env={}).monitor.slice_keys == ("region",)
    f.write_text('[monitor]\nslice_keys = [1]\n')
    with pytest.raises(ConfigError, match="list of strings"):
        load_settings(f, env={})
    f.write_text('[monitor]\nslice_keys = ["a", "a"]\n')
    with pytest.raises(ConfigError, match="twice"):
        load_settings(f, env={})
