"""The drift monitor (``stream/core/monitor.py``): drift fires where it should and only
there, alerts resolve once, outputs do not depend on batching, snapshots restore exactly,
warm-up, event-time windows, data-quality counts and the published contracts."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.config import MonitorConfig
from stream.core.adwin import AdwinDetector
from stream.core.alerts import alert_id
from stream.core.attribution import OTHER
from stream.core.monitor import ModelMonitor
from stream.core.reference import ReferenceProfile
from stream.errors import SnapshotError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
T0 = 1_700_000_000.0
CATS = ("DE", "FR", "IT")
Event = dict[str, Any]


# -- event streams -------------------------------------------------------------------


def event(i: int, ts: float, features: dict[str, Any], score: float | None = None) -> Event:
    return {
        "kind": "prediction",
        "event_id": f"e{i}",
        "model": "m",
        "model_version": "v1",
        "ts": ts,
        "features": features,
        "prediction": {"label": None, "score": score, "value": None, "scores": None},
    }


def make_events(
    n: int,
    seed: int,
    start: int = 0,
    *,
    x_shift: float = 0.0,
    cat_p: tuple[float, ...] = (0.5, 0.3, 0.2),
    score_ab: tuple[float, float] = (2.0, 5.0),
    dt: float = 0.05,
) -> list[Event]:
    """Three numeric features (x ~ N(x_shift, 1), y ~ N(5, 2), z ~ Exp(1)), one categorical
    (c), and a prediction score ~ Beta(a, b); event ``i`` at ``T0 + i * dt``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(x_shift, 1.0, n)
    y = rng.normal(5.0, 2.0, n)
    z = rng.exponential(1.0, n)
    c = rng.choice(CATS, n, p=cat_p)
    s = rng.beta(*score_ab, n)
    return [
        event(start + i, T0 + (start + i) * dt,
              {"x": float(x[i]), "y": float(y[i]), "z": float(z[i]), "c": str(c[i])},
              float(s[i]))
        for i in range(n)
    ]


def reference(n: int = 5000, seed: int = 1) -> ReferenceProfile:
    return ReferenceProfile.build(make_events(n, seed), "m", "v1")


def sizes_fixed(n: int) -> Callable[[], Iterator[int]]:
    def gen() -> Iterator[int]:
        while True:
            yield n
    return gen


def sizes_random(seed: int, high: int = 80) -> Callable[[], Iterator[int]]:
    def gen() -> Iterator[int]:
        rng = np.random.default_rng(seed)
        while True:
            yield int(rng.integers(1, high))
    return gen


def sizes_one_batch() -> Iterator[int]:
    while True:
        yield 10**9


def run(mon: ModelMonitor, events: list[Event], sizes: Iterator[int] | None = None
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All reports and alerts of ``events`` fed in batches, after a JSON round trip."""
    sizes = sizes or sizes_one_batch()
    reports: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    i = 0
    while i < len(events):
        n = next(sizes)
        out = mon.process(events[i:i + n])
        reports += out.reports
        alerts += out.alerts
        i += n
    return orjson.loads(orjson.dumps(reports)), orjson.loads(orjson.dumps(alerts))


def psi_alerts(alerts: list[dict[str, Any]], feature: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["feature"] == feature and a["detector"] == "psi"]


# -- contracts -----------------------------------------------------------------------

REPORT_KEYS = ("schema_version", "type", "model", "model_version", "window", "reference",
               "features", "prediction", "adwin", "attribution", "unknown_features",
               "late_events", "alerts_firing")
ALERT_KEYS = ("schema_version", "alert_id", "episode", "kind", "status", "severity", "model",
              "model_version", "feature", "detector", "value", "threshold", "window", "ts",
              "message")


@pytest.fixture(scope="module")
def contracts() -> Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]:
    """Checks reports and alerts against ``schemas/window-report.json`` and
    ``schemas/alert.json`` when those exist, and always against their required keys."""
    validators: dict[str, Any] = {}
    for name in ("window-report", "alert"):
        path = SCHEMA_DIR / f"{name}.json"
        if path.exists():
            from jsonschema import Draft202012Validator

            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            validators[name] = Draft202012Validator(schema)

    def check(reports: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
        for kind, items, keys in (("window-report", reports, REPORT_KEYS),
                                  ("alert", alerts, ALERT_KEYS)):
            for item in items:
                assert set(keys) <= set(item), kind
                if kind in validators:
                    errors = [e.message for e in validators[kind].iter_errors(item)]
                    assert not errors, (kind, errors, item)

    return check


# -- drift fires where it should -----------------------------------------------------

CFG = MonitorConfig(window_size=500, warmup_events=1000, min_window_values=100)


def test_numeric_mean_shift_fires_only_on_the_drifted_feature(contracts):
    mon = ModelMonitor("m", "v1", CFG, reference())
    events = make_events(1000, 2) + make_events(1000, 3, 1000, x_shift=2.0)
    reports, alerts = run(mon, events)
    contracts(reports, alerts)
    assert [r["window"]["index"] for r in reports] == [0, 1, 2, 3]
    x_psi = [r["features"]["x"]["psi"] for r in reports]
    assert max(x_psi[:2]) < CFG.psi_warning
    assert min(x_psi[2:]) >= CFG.psi_critical
    for name in ("y", "z", "c"):
        assert max(r["features"][name]["psi"] for r in reports) < CFG.psi_warning, name
    assert max(r["prediction"]["score"]["psi"] for r in reports) < CFG.psi_warning

    (fired,) = psi_alerts(alerts, "x")
    assert (fired["kind"], fired["detector"], fired["transition"]) == (
        "feature_drift", "psi", "firing")
    assert (fired["severity"], fired["threshold"], fired["episode"]) == ("critical", 0.25, 1)
    assert fired["window"]["index"] == 2
    assert fired["value"] == reports[2]["features"]["x"]["psi"]
    assert fired["alert_id"] == alert_id("feature_drift", "m", "v1", "x", "psi")
    assert reports[2]["features"]["x"]["severity"] == "critical"
    # nothing at all about the stable series, from either detector
    assert not [a for a in alerts if a["feature"] != "x"]
    assert reports[-1]["alerts_firing"] == sum(
        1 for a in alerts if a["transition"] == "firing") - sum(
        1 for a in alerts if a["transition"] == "resolved")


def test_category_mix_change_fires_on_the_categorical_feature(contracts):
    mon = ModelMonitor("m", "v1", CFG, reference())
    new_p = (0.2, 0.3, 0.5)
    events = make_events(500, 2) + make_events(1000, 3, 500, cat_p=new_p)
    reports, alerts = run(mon, events)
    contracts(reports, alerts)
    # population PSI of (0.5, 0.3, 0.2) -> (0.2, 0.3, 0.5): 0.3 ln 2.5 + 0.3 ln 2.5
    expected = sum((q - p) * math.log(q / p) for p, q in zip((0.5, 0.3, 0.2), new_p,
                                                             strict=True))
    assert expected == pytest.approx(0.6 * math.log(2.5))
    c_psi = [r["features"]["c"]["psi"] for r in reports]
    assert c_psi[0] < CFG.psi_warning
    assert c_psi[1] == pytest.approx(expected, abs=0.15)
    assert c_psi[2] == pytest.approx(expected, abs=0.15)
    assert reports[1]["features"]["c"]["type"] == "categorical"
    (fired,) = psi_alerts(alerts, "c")
    assert (fired["kind"], fired["severity"], fired["window"]["index"]) == (
        "feature_drift", "critical", 1)
    assert {a["feature"] for a in alerts} == {"c"}  # categorical: no ADWIN


def test_prediction_score_shift_fires_prediction_drift(contracts):
    mon = ModelMonitor("m", "v1", CFG, reference())
    events = make_events(500, 2) + make_events(1000, 3, 500, score_ab=(5.0, 2.0))
    reports, alerts = run(mon, events)
    contracts(reports, alerts)
    assert set(reports[0]["prediction"]) == {"score"}  # label and value are never set
    assert reports[0]["prediction"]["score"]["psi"] < CFG.psi_warning
    assert reports[1]["prediction"]["score"]["psi"] >= CFG.psi_critical
    (fired,) = psi_alerts(alerts, "prediction.score")
    assert (fired["kind"], fired["detector"], fired["severity"]) == (
        "prediction_drift", "psi", "critical")
    assert fired["alert_id"] == alert_id("prediction_drift", "m", "v1", "prediction.score",
                                         "psi")
    assert not [a for a in alerts if a["kind"] == "feature_drift"]


def test_alert_resolves_exactly_once_after_drift_is_removed(contracts):
    mon = ModelMonitor("m", "v1", CFG, reference())
    events = (make_events(1000, 2) + make_events(1500, 3, 1000, x_shift=2.0)
              + make_events(2000, 4, 2500))
    reports, alerts = run(mon, events)
    contracts(reports, alerts)
    x = psi_alerts(alerts, "x")
    assert [a["transition"] for a in x] == ["firing", "resolved"]
    fired, resolved = x
    assert [a["window"]["index"] for a in x] == [2, 5]  # windows 2-4 drifted
    assert (resolved["status"], resolved["severity"]) == ("resolved", "critical")
    assert resolved["alert_id"] == fired["alert_id"]
    assert resolved["episode"] == fired["episode"] == 1
    assert resolved["value"] < CFG.psi_warning * (1 - CFG.hysteresis)
    assert [r["features"]["x"]["psi"] >= CFG.psi_critical for r in reports] == [
        False, False, True, True, True, False, False, False, False]
    assert mon.series[("feature", "x")].psi_alert.status == "ok"


# -- batch invariance ----------------------------------------------------------------

COUNT = MonitorConfig(window_size=200, warmup_events=300, min_window_values=50)
SLIDING = MonitorConfig(window_size=300, window_step=100, warmup_events=300,
                        min_window_values=50)
TIME = MonitorConfig(window_kind="time", window_seconds=10.0, allowed_lateness_seconds=2.0,
                     warmup_events=300, min_window_values=50)
CONFIGS = {"count": COUNT, "sliding": SLIDING, "time": TIME}


def add_attributions(events: list[Event], seed: int) -> None:
    """Attributions on most events: x, y, z, c with importances 1, 0.5, 0.25, 0.1, except
    in events 1300 to 2200 where z and x trade places; every 7th event has none, and from
    event 1000 on, more and more features the reference does not know (past the monitor's
    cap of 50 names, so some are pooled)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (len(events), 4))
    for i, e in enumerate(events):
        if i % 7 == 3:
            continue
        weights = (0.25, 0.5, 1.0, 0.1) if 1300 <= i < 2200 else (1.0, 0.5, 0.25, 0.1)
        attributions = {f: float(w * noise[i, j]) for j, (f, w) in enumerate(zip("xyzc", weights,
                                                                                   strict=True))}
        if i >= 1000:
            attributions.update({f"u{k:02d}": 0.001 * (k + 1) for k in range((i - 1000) // 25)})
        e["attributions"] = attributions


def invariance_stream() -> list[Event]:
    """Warm-up, stable traffic, a drift on x and the score, then stable again; with missing
    values, type mismatches, out-of-order events (1 s back, within the lateness) and
    late ones (6 s back); and attributions whose importance changes during the drift."""
    events = (make_events(1300, 21) + make_events(900, 22, 1300, x_shift=2.0,
                                                   score_ab=(5.0, 2.0))
              + make_events(800, 23, 2200))
    add_attributions(events, 24)
    for i, e in enumerate(events):
        if i % 37 == 5:
            e["ts"] -= 1.0
        if i % 101 == 7 and i > 400:
            e["ts"] -= 6.0
        if i % 53 == 3:
            e["features"]["y"] = None
        if i % 71 == 9:
            e["features"]["z"] = "n/a"
        if i % 89 == 11:
            e["features"]["c"] = 42
    return events


SPLITS = {
    "1": sizes_fixed(1),
    "13": sizes_fixed(13),
    "100": sizes_fixed(100),
    "random": sizes_random(5),
    "random_large": sizes_random(6, high=700),
}


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, tuple[list[Event], list[Any], list[Any]]]:
    out = {}
    for name, cfg in CONFIGS.items():
        events = invariance_stream()
        reports, alerts = run(ModelMonitor("m", "v1", cfg), events)
        out[name] = (events, reports, alerts)
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
def test_invariance_stream_exercises_the_monitor(config, uninterrupted, contracts):
    """The stream of the batch-invariance tests is not trivial: windows, alerts of both
    detectors, data-quality counts, and late events for time windows."""
    _, reports, alerts = uninterrupted[config]
    contracts(reports, alerts)
    assert len(reports) >= 8
    assert {a["detector"] for a in alerts} >= {"psi", "adwin", "type_mismatch", "ndcg", "share"}
    assert any(OTHER in r["attribution"]["importance"] for r in reports)
    assert {a["transition"] for a in alerts} >= {"firing", "resolved"}
    assert sum(r["features"]["z"]["type_mismatch"] for r in reports) > 0
    assert sum(r["features"]["c"]["type_mismatch"] for r in reports) > 0
    assert sum(r["features"]["y"]["missing"] for r in reports) > 0
    assert all(r["reference"] == {"source": "warmup", "events": 300, "features_over_cap": 0} for r in reports)
    if config == "time":
        assert sum(r["late_events"] for r in reports) > 0
        idx = [r["window"]["index"] for r in reports]
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
    else:
        assert [r["window"]["index"] for r in reports] == list(range(len(reports)))
        step = CONFIGS[config].step
        assert len(reports) == (3000 - 300 - CONFIGS[config].window_size) // step + 1


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_batch_invariance(config, split, uninterrupted):
    events, reports, alerts = uninterrupted[config]
    got_reports, got_alerts = run(ModelMonitor("m", "v1", CONFIGS[config]), events,
                                  SPLITS[split]())
    assert got_reports == reports
    assert got_alerts == alerts


def unknown_feature_stream() -> list[Event]:
    events = make_events(300, 31)
    for e in events:
        e["features"]["extra"] = 1.0
    return events


def test_unknown_feature_counts_do_not_depend_on_batching():
    cfg = MonitorConfig(window_size=100, warmup_events=100, min_window_values=50)
    ref = reference(2000)  # without "extra"
    events = unknown_feature_stream()
    per_window, _ = run(ModelMonitor("m", "v1", cfg, ref), events, sizes_fixed(100)())
    one_batch, _ = run(ModelMonitor("m", "v1", cfg, ref), events)
    assert [r["unknown_features"] for r in per_window] == [{"extra": 100}] * 3
    assert [r["unknown_features"] for r in one_batch] == [{"extra": 100}] * 3


def test_unknown_feature_cap_keeps_the_first_names_seen():
    cfg = MonitorConfig(window_size=100, warmup_events=10, min_window_values=10)
    events = make_events(110, 32)
    for k, e in enumerate(events[10:]):
        if k < 60:
            e["features"][f"u{k:02d}"] = 1.0
    (report,), _ = run(ModelMonitor("m", "v1", cfg), events)
    expected = {f"u{k:02d}": 1 for k in range(50)}
    expected["(other)"] = 10
    assert report["unknown_features"] == expected


# -- snapshots -----------------------------------------------------------------------


def assert_json_safe_without_pickle(value: Any) -> None:
    """Only JSON types, and no base64 string that decodes to a pickle (PROTO 2-5 ... STOP)."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            assert_json_safe_without_pickle(v)
    elif isinstance(value, list):
        for v in value:
            assert_json_safe_without_pickle(v)
    elif isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return
        assert not (raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
                    and raw.endswith(b".")), "pickled data in a snapshot"
    else:
        assert value is None or type(value) in (bool, int, float), type(value)


@pytest.mark.parametrize("cut", [150, 1234, 1500, 2777])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_snapshot_round_trip_continues_identically(config, cut, uninterrupted):
    events, reports, alerts = uninterrupted[config]
    cfg = CONFIGS[config]
    first = ModelMonitor("m", "v1", cfg)
    r1, a1 = run(first, events[:cut], sizes_fixed(37)())
    snap = first.snapshot()
    assert_json_safe_without_pickle(snap)
    data = orjson.loads(orjson.dumps(snap))  # no options: plain JSON types only
    assert data == snap
    restored = ModelMonitor.restore(data, cfg)
    assert orjson.dumps(restored.snapshot()) == orjson.dumps(snap)
    r2, a2 = run(restored, events[cut:], sizes_fixed(37)())
    assert r1 + r2 == reports
    assert a1 + a2 == alerts


def test_snapshot_right_after_an_adwin_detection_continues_identically():
    events = make_events(2000, 81) + make_events(2000, 82, 2000, x_shift=2.0)
    xs = np.array([e["features"]["x"] for e in events])
    det = AdwinDetector(chunk=32)
    cut = next(i for i in range(0, xs.size, 32) if det.update(xs[i:i + 32])) + 32
    # one window that ends half a chunk after the detection; snapshot in between
    cfg = MonitorConfig(window_size=cut + 16, min_window_values=10)
    ref = reference()
    reports, alerts = run(ModelMonitor("m", "v1", cfg, ref), events[:cut + 16])
    assert reports[0]["adwin"]["x"]["detections"] == 1
    first = ModelMonitor("m", "v1", cfg, ref)
    run(first, events[:cut])
    restored = ModelMonitor.restore(orjson.loads(orjson.dumps(first.snapshot())), cfg)
    assert run(restored, events[cut:cut + 16]) == (reports, alerts)


def test_restore_refuses_other_snapshots():
    good = ModelMonitor("m", "v1", COUNT, reference(500)).snapshot()
    for bad, message in (
        ({**good, "kind": "driftstream.reference"}, "not a monitor snapshot"),
        ({**good, "version": 2}, "not a monitor snapshot of version 1"),
        ({k: v for k, v in good.items() if k != "series"}, "corrupt monitor snapshot"),
        ({**good, "events_total": "lots"}, "corrupt monitor snapshot"),
    ):
        with pytest.raises(SnapshotError, match=message):
            ModelMonitor.restore(bad, COUNT)


def drifted_monitor(cfg: MonitorConfig) -> tuple[ModelMonitor, list[dict[str, Any]]]:
    mon = ModelMonitor("m", "v1", cfg, reference())
    _, alerts = run(mon, make_events(550, 3, x_shift=2.0))  # 1 window of 500 + 50 open
    return mon, alerts


def test_restore_with_a_changed_window_config_drops_open_windows_only():
    mon, alerts = drifted_monitor(CFG)
    assert [a["transition"] for a in psi_alerts(alerts, "x")] == ["firing"]
    snap = orjson.loads(orjson.dumps(mon.snapshot()))
    wider = MonitorConfig(window_size=600, warmup_events=1000, min_window_values=100)
    restored = ModelMonitor.restore(snap, wider)
    assert restored.reference is not None
    assert restored.reference.snapshot() == mon.reference.snapshot()  # type: ignore[union-attr]
    assert restored.alerts_firing() == mon.alerts_firing() == 1
    assert restored.evaluations == 1
    more = make_events(600, 4, 550, x_shift=2.0)
    reports, alerts = run(restored, more[:599])
    assert reports == []  # the 50 open events are gone: a full window is 600 new ones
    reports, alerts = run(restored, more[599:])
    (report,) = reports
    assert report["window"]["count"] == 600
    assert report["window"]["start"] == more[0]["ts"]
    assert report["window"]["index"] == 1
    assert report["alerts_firing"] == 1
    assert psi_alerts(alerts, "x") == []  # still firing: no second "firing"


def test_restore_with_the_same_window_config_keeps_open_windows():
    mon, _ = drifted_monitor(CFG)
    restored = ModelMonitor.restore(orjson.loads(orjson.dumps(mon.snapshot())), CFG)
    more = make_events(450, 4, 550, x_shift=2.0)
    (report,), alerts = run(restored, more)
    assert report["window"]["count"] == 500
    assert report["window"]["start"] == T0 + 500 * 0.05  # the 50 open events were kept
    assert psi_alerts(alerts, "x") == []


# -- warm-up -------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [sizes_one_batch, sizes_fixed(1), sizes_fixed(350)],
                         ids=["one_batch", "1", "350"])
def test_warmup_builds_the_reference_and_windows_start_after_it(sizes, contracts):
    cfg = MonitorConfig(window_size=100, warmup_events=300, min_window_values=50)
    events = make_events(520, 41)
    mon = ModelMonitor("m", "v1", cfg)
    warm = mon.process(events[:299])
    assert (warm.warmup, warm.windowed, warm.reports) == (299, 0, [])
    assert mon.reference is None
    reports, alerts = run(mon, events[299:], sizes())
    contracts(reports, alerts)
    assert mon.reference is not None
    expected = ReferenceProfile.build(events[:300], "m", "v1", source="warmup")
    assert mon.reference.snapshot() == orjson.loads(orjson.dumps(expected.snapshot()))
    assert len(reports) == 2
    first = reports[0]
    assert first["reference"] == {"source": "warmup", "events": 300, "features_over_cap": 0}
    assert first["window"] == {"kind": "count", "index": 0, "start": events[300]["ts"],
                               "end": events[399]["ts"], "count": 100}
    assert reports[1]["window"]["start"] == events[400]["ts"]


def test_warmup_output_counts():
    cfg = MonitorConfig(window_size=100, warmup_events=300, min_window_values=50)
    mon = ModelMonitor("m", "v1", cfg)
    out = mon.process(make_events(350, 42))
    assert (out.warmup, out.windowed, out.late) == (300, 50, 0)
    assert mon.events_total == 350


# -- event-time windows --------------------------------------------------------------

TCFG = MonitorConfig(window_kind="time", window_seconds=10.0, allowed_lateness_seconds=2.0,
                     min_window_values=1)
BASE_TS = 1000.0  # window k covers [10 k, 10 k + 10)


def at(ts_list: list[float], x: float = 0.0, start: int = 0) -> list[Event]:
    return [event(start + i, ts, {"x": x, "c": "DE"}, 0.5) for i, ts in enumerate(ts_list)]


def small_reference() -> ReferenceProfile:
    rng = np.random.default_rng(51)
    return ReferenceProfile.build(
        [event(i, float(i), {"x": float(v), "c": "DE"}, 0.5)
         for i, v in enumerate(rng.normal(size=500))], "m", "v1")


def test_late_events_are_counted_in_the_next_report_and_not_binned(contracts):
    mon = ModelMonitor("m", "v1", TCFG, small_reference())
    window_100 = [BASE_TS + k for k in range(10)]  # 1000 .. 1009
    out1 = mon.process(at(window_100))
    assert out1.reports == []  # watermark 1007: window 100 still open
    # 1012.5 moves the watermark to 1010.5: window 100 closes; then two late events
    out2 = mon.process(at([1012.5, 1005.0, 1001.0, 1013.0], start=10))
    contracts(out2.reports, out2.alerts)
    (r100,) = out2.reports
    assert r100["window"] == {"kind": "time", "index": 100, "start": 1000.0, "end": 1010.0,
                              "count": 10}
    assert r100["late_events"] == 0  # the late ones arrived after it closed
    assert r100["features"]["x"]["count"] == 10
    assert (out2.late, out2.windowed) == (2, 2)
    out3 = mon.process(at([1019.0, 1022.5], start=14))  # closes window 101
    (r101,) = out3.reports
    assert r101["window"]["index"] == 101
    assert r101["window"]["count"] == 3  # 1012.5, 1013, 1019: not the late ones
    assert r101["features"]["x"]["count"] == 3
    assert r101["late_events"] == 2
    out4 = mon.process(at([1040.0], start=16))  # closes window 102
    (r102,) = out4.reports
    assert r102["late_events"] == 0  # counted once


def test_out_of_order_events_within_lateness_are_binned():
    mon = ModelMonitor("m", "v1", TCFG, small_reference())
    # all in window 100, in shuffled order; the watermark never passes 1010
    ts = [1005.0, 1001.0, 1009.9, 1000.0, 1011.9, 1003.0, 1002.0]
    out = mon.process(at(ts))
    assert (out.reports, out.late, out.windowed) == ([], 0, 7)
    reports = mon.process(at([1030.0], start=7)).reports  # watermark 1028
    assert [(r["window"]["index"], r["window"]["count"], r["late_events"],
             r["features"]["x"]["count"]) for r in reports] == [(100, 6, 0, 6), (101, 1, 0, 1)]


def test_windows_close_in_order():
    mon = ModelMonitor("m", "v1", TCFG, small_reference())
    # windows 100 and 101 interleaved within the lateness, then a jump past both
    ts = [1009.0, 1010.5, 1009.6, 1011.0, 1008.5, 1035.0, 1050.0]
    reports, _ = run(mon, at(ts))
    assert [(r["window"]["index"], r["window"]["start"], r["window"]["end"],
             r["window"]["count"]) for r in reports] == [
        (100, 1000.0, 1010.0, 3), (101, 1010.0, 1020.0, 2), (103, 1030.0, 1040.0, 1)]
    assert all(r["late_events"] == 0 for r in reports)


# -- data quality ---------------------------------------------------------------------


def test_type_mismatch_is_counted_and_not_binned(contracts):
    cfg = MonitorConfig(window_size=100, warmup_events=100, min_window_values=10)
    mon = ModelMonitor("m", "v1", cfg, reference(2000))
    events = make_events(100, 61)
    for e in events[:7]:
        e["features"]["x"] = "oops"
    for e in events[7:12]:
        e["features"]["x"] = None
    for e in events[20:23]:
        e["features"]["c"] = True  # a boolean is a category ("true"): other, not mismatch
    for e in events[30:34]:
        e["features"]["c"] = 1.5  # a number in a categorical feature: mismatch
    (report,), alerts = run(mon, events)
    contracts([report], alerts)
    x, c = report["features"]["x"], report["features"]["c"]
    assert (x["count"], x["missing"], x["type_mismatch"]) == (93, 5, 7)
    assert (c["count"], c["missing"], c["type_mismatch"]) == (96, 0, 4)
    assert report["window"]["count"] == 100  # events, not values
    assert report["features"]["y"]["type_mismatch"] == 0


def test_a_series_with_only_mismatches_has_no_psi(contracts):
    cfg = MonitorConfig(window_size=50, warmup_events=100, min_window_values=10)
    mon = ModelMonitor("m", "v1", cfg, reference(2000))
    events = make_events(50, 62)
    for e in events:
        e["features"]["x"] = "oops"
    (report,), alerts = run(mon, events)
    contracts([report], alerts)
    assert report["features"]["x"] == {"type": "numeric", "psi": None, "count": 0, "missing": 0,
                                       "type_mismatch": 50, "noise_floor": None,
                                       "severity": "ok", "missing_rate": 0.0,
                                       "reference_missing_rate": 0.0, "new_missing": False,
                                       "type_mismatch_rate": 1.0, "out_of_range": 0,
                                       "out_of_range_rate": None}
    assert psi_alerts(alerts, "x") == []
    (mismatch,) = [a for a in alerts if a["detector"] == "type_mismatch"]
    assert (mismatch["kind"], mismatch["feature"], mismatch["severity"]) == (
        "data_quality", "x", "critical")


def test_unknown_features_are_reported_with_counts():
    cfg = MonitorConfig(window_size=100, warmup_events=100, min_window_values=10)
    mon = ModelMonitor("m", "v1", cfg, reference(2000))
    events = make_events(200, 63)
    for e in events[:30]:
        e["features"]["new_f"] = 1.0
    for e in events[50:60]:
        e["features"]["other_f"] = None  # null carries no value: not counted
    for e in events[60:70]:
        e["features"]["third_f"] = "v"
    first, _ = run(mon, events[:100])
    second, _ = run(mon, events[100:])
    assert first[0]["unknown_features"] == {"new_f": 30, "third_f": 10}
    assert "new_f" not in first[0]["features"]
    assert second[0]["unknown_features"] == {}


def test_noise_floor_in_reports():
    cfg = MonitorConfig(window_size=100, warmup_events=100, min_window_values=10)
    ref = reference(2000)
    mon = ModelMonitor("m", "v1", cfg, ref)
    (report,), _ = run(mon, make_events(100, 64))
    size = ref.series[("feature", "x")].binning.size  # 10 value bins + missing
    assert report["features"]["x"]["noise_floor"] == pytest.approx(
        (size - 1) * (1 / 2000 + 1 / 100))


# -- min_window_values ---------------------------------------------------------------


def test_small_windows_report_but_change_no_psi_alert_state(contracts):
    cfg = MonitorConfig(window_size=50, warmup_events=100, min_window_values=100)
    mon = ModelMonitor("m", "v1", cfg, reference())
    reports, alerts = run(mon, make_events(500, 71, x_shift=3.0))
    contracts(reports, alerts)
    assert len(reports) == 10
    assert all(r["features"]["x"]["psi"] >= cfg.psi_critical for r in reports)
    assert all(r["features"]["x"]["severity"] == "critical" for r in reports)
    assert [a for a in alerts if a["detector"] == "psi"] == []
    assert all(s.psi_alert.status == "ok" and s.psi_alert.episode == 0
               for s in mon.series.values())
    # the same data in windows big enough does fire
    big = MonitorConfig(window_size=100, warmup_events=100, min_window_values=100)
    _, alerts = run(ModelMonitor("m", "v1", big, reference()), make_events(500, 71,
                                                                           x_shift=3.0))
    assert [a["transition"] for a in psi_alerts(alerts, "x")] == ["firing"]


def test_small_windows_change_no_adwin_alert_state():
    cfg = MonitorConfig(window_size=50, warmup_events=100, min_window_values=100)
    mon = ModelMonitor("m", "v1", cfg, reference())
    events = make_events(3000, 72) + make_events(3000, 73, 3000, x_shift=3.0)
    reports, alerts = run(mon, events)
    assert sum(r["adwin"]["x"]["detections"] for r in reports) >= 1  # ADWIN did see it
    assert alerts == []
