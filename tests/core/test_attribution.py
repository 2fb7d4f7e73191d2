"""Feature-attribution drift: the NDCG and share measures (``stream/core/attribution.py``),
the contract of ``attributions`` on prediction events, their columns and reference
importance, and the monitor's ``attribution_drift`` alerts end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator
from sklearn.metrics import ndcg_score

from stream.config import MonitorConfig
from stream.core.alerts import alert_id
from stream.core.attribution import OTHER, cap_importance, max_share_change, ndcg, shares
from stream.core.columns import (
    append_columns,
    columns_from_events,
    events_from_columns,
    select_columns,
)
from stream.core.events import MAX_ATTRIBUTIONS, decode_message, normalize_event
from stream.core.monitor import ModelMonitor
from stream.core.reference import ReferenceProfile
from stream.errors import ConfigError, InvalidEvent

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
T0 = 1_700_000_000.0

REF = {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.05}


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


# -- ndcg ------------------------------------------------------------------------------

# (id, reference importance, current importance, k, expected: a number, or a (low, high)
# range, or None when undefined)
NDCG_CASES: list[tuple[str, dict[str, float], dict[str, float], int | None, Any]] = [
    ("identical", REF, REF, None, 1.0),
    ("same-ranking-other-scale", REF, {"a": 50.0, "b": 3.0, "c": 0.2, "d": 0.1}, None, 1.0),
    ("reversed", REF, {"a": 0.05, "b": 0.1, "c": 0.3, "d": 0.5}, None, (0.6, 0.65)),
    ("top-two-swapped", REF, {"a": 0.3, "b": 0.5, "c": 0.1, "d": 0.05}, None, (0.9, 0.91)),
    ("bottom-two-swapped", REF, {"a": 0.5, "b": 0.3, "c": 0.05, "d": 0.1}, None, (0.99, 1.0)),
    ("top-feature-to-the-bottom", REF, {"a": 0.01, "b": 0.3, "c": 0.1, "d": 0.05}, None,
     (0.75, 0.8)),
    ("new-feature-on-top", REF, {**REF, "new": 1.0}, None, (0.6, 0.7)),
    ("reference-feature-gone", REF, {"b": 0.3, "c": 0.1, "d": 0.05}, None, (0.75, 0.8)),
    ("all-tied", REF, dict.fromkeys(REF, 1.0), None, (0.79, 0.81)),
    ("ties-within-equal-reference", {"a": 1.0, "b": 1.0, "c": 0.5}, {"a": 2.0, "b": 2.0,
                                                                      "c": 1.0}, None, 1.0),
    ("equal-reference-any-order", {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 3.0}, None, 1.0),
    ("k2-bottom-swap-invisible", REF, {"a": 0.5, "b": 0.3, "c": 0.05, "d": 0.1}, 2, 1.0),
    ("k1-top-swap", REF, {"a": 0.3, "b": 0.5, "c": 0.1, "d": 0.05}, 1, 0.6),
    ("k-beyond-features", REF, {"a": 0.05, "b": 0.1, "c": 0.3, "d": 0.5}, 10, (0.6, 0.65)),
    ("single-feature", {"a": 0.2}, {"a": 7.0}, None, 1.0),
    ("no-reference", {}, REF, None, None),
    ("zero-reference", dict.fromkeys(REF, 0.0), REF, None, None),
    ("no-current", REF, {}, None, None),
    ("zero-current", REF, dict.fromkeys(REF, 0.0), None, None),
]


@pytest.mark.parametrize(("ref", "cur", "k", "expected"), [c[1:] for c in NDCG_CASES],
                         ids=[c[0] for c in NDCG_CASES])
def test_ndcg(ref: dict[str, float], cur: dict[str, float], k: int | None, expected: Any) -> None:
    got = ndcg(ref, cur, k)
    if expected is None:
        assert got is None
    elif isinstance(expected, tuple):
        assert got is not None and expected[0] <= got <= expected[1]
    else:
        assert got == pytest.approx(expected, abs=1e-12)
    if got is not None:
        assert 0.0 <= got <= 1.0


# scikit-learn needs a value to compare and at least two features
SKLEARN_CASES = [c for c in NDCG_CASES if c[4] is not None and len(set(c[1]) | set(c[2])) > 1]


@pytest.mark.parametrize(("ref", "cur", "k", "expected"), [c[1:] for c in SKLEARN_CASES],
                         ids=[c[0] for c in SKLEARN_CASES])
def test_ndcg_is_scikit_learns_ndcg_score(ref: dict[str, float], cur: dict[str, float],
                                          k: int | None, expected: Any) -> None:
    """The definition is scikit-learn's ``ndcg_score`` (the one SageMaker cites) over the
    union of the features, ties averaged."""
    names = sorted(set(ref) | set(cur))
    y_true = [[ref.get(n, 0.0) for n in names]]
    y_score = [[cur.get(n, 0.0) for n in names]]
    assert ndcg(ref, cur, k) == pytest.approx(ndcg_score(y_true, y_score, k=k), abs=1e-12)


def test_ndcg_identical_rankings_are_exactly_one() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        values = rng.exponential(size=rng.integers(2, 40))
        ref = {f"f{i}": float(v) for i, v in enumerate(values)}
        assert ndcg(ref, {k: 3.0 * v for k, v in ref.items()}) == 1.0


def test_ndcg_weighs_important_features_more() -> None:
    """A swap costs more the more important the swapped features were in the reference."""
    ref = {f"f{i}": 2.0 ** -i for i in range(8)}
    costs = []
    for i in range(7):
        cur = dict(ref)
        cur[f"f{i}"], cur[f"f{i + 1}"] = ref[f"f{i + 1}"], ref[f"f{i}"]
        value = ndcg(ref, cur)
        assert value is not None
        costs.append(1.0 - value)
    assert costs == sorted(costs, reverse=True)
    assert costs[-1] < 0.001 < 0.05 < costs[0]


def test_ndcg_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="k must be"):
        ndcg(REF, REF, k=0)
    with pytest.raises(ValueError, match="non-negative"):
        ndcg(REF, {"a": -1.0})
    with pytest.raises(ValueError, match="finite"):
        ndcg({"a": math.nan}, REF)


# -- shares ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("importance", "expected"),
    [
        ({"a": 3.0, "b": 1.0}, {"a": 0.75, "b": 0.25}),
        ({"a": 2.0}, {"a": 1.0}),
        ({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.0}),
        ({"a": 0.0, "b": 0.0}, {}),
        ({}, {}),
    ],
)
def test_shares(importance: dict[str, float], expected: dict[str, float]) -> None:
    assert shares(importance) == expected


@pytest.mark.parametrize(
    ("ref", "cur", "expected"),
    [
        (REF, REF, ("a", 0.0)),
        (REF, {k: 10 * v for k, v in REF.items()}, (None, 0.0)),  # scale does not matter
        ({"a": 0.5, "b": 0.5}, {"a": 0.25, "b": 0.75}, ("a", 0.25)),  # tie: first name
        ({"a": 0.8, "b": 0.2}, {"a": 0.8, "b": 0.2, "c": 1.0}, ("c", 0.5)),  # a new feature
        ({"a": 1.0, "b": 1.0}, {"a": 1.0}, ("a", 0.5)),  # a feature gone: both moved
        ({"a": 1.0}, {"b": 1.0}, ("a", 1.0)),  # the most a share can move
        (REF, {}, None),
        ({}, REF, None),
    ],
)
def test_max_share_change(ref: dict[str, float], cur: dict[str, float],
                          expected: tuple[str | None, float] | None) -> None:
    got = max_share_change(ref, cur)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got[0] == (expected[0] or got[0])
        assert got[1] == pytest.approx(expected[1], abs=1e-12)


def test_max_share_change_sees_what_ndcg_cannot() -> None:
    """The top feature grows from half to most of the total: same ranking, NDCG 1."""
    ref = {"a": 0.5, "b": 0.3, "c": 0.2}
    cur = {"a": 0.9, "b": 0.06, "c": 0.04}
    assert ndcg(ref, cur) == 1.0
    assert max_share_change(ref, cur) == ("a", pytest.approx(0.4))


def test_cap_importance_pools_the_least_important() -> None:
    imp = {"a": 0.1, "b": 0.5, "c": 0.2, "d": 0.05, "e": 0.0}
    assert cap_importance(imp, 10) == dict(sorted(imp.items()))
    capped = cap_importance(imp, 2)
    assert capped == {"b": 0.5, "c": 0.2, OTHER: pytest.approx(0.15)}
    assert sum(capped.values()) == pytest.approx(sum(imp.values()))


# -- the contract ----------------------------------------------------------------------


def raw_prediction(**changes: Any) -> dict[str, Any]:
    return {"event_id": "e1", "model": "m", "ts": T0, "features": {"x": 1.0},
            "prediction": {"score": 0.3}, **changes}


def test_normalised_events_carry_attributions_or_none() -> None:
    e = normalize_event(raw_prediction(attributions={"x": -0.25, "y": 2}), "prediction")
    assert e["attributions"] == {"x": -0.25, "y": 2.0}
    assert type(e["attributions"]["y"]) is float
    for absent in ({}, {"attributions": None}, {"attributions": {}}):
        assert normalize_event(raw_prediction(**absent), "prediction")["attributions"] is None
    feature_event = {k: v for k, v in raw_prediction(attributions={"x": 1.0}).items()
                     if k != "prediction"}
    assert normalize_event(feature_event, "feature")["attributions"] is None  # predictions only
    (decoded,) = decode_message(orjson.dumps(raw_prediction(attributions={"x": 0.5})),
                                "prediction").events
    assert decoded["attributions"] == {"x": 0.5}


@pytest.mark.parametrize(
    ("attributions", "reason"),
    [
        ({"x": math.nan}, "non_finite_number"),
        ({"x": math.inf}, "non_finite_number"),
        ({"x": 10 ** 400}, "non_finite_number"),
        ({"x": True}, "wrong_type"),
        ({"x": "0.5"}, "wrong_type"),
        ({"x": None}, "wrong_type"),
        ([("x", 0.5)], "wrong_type"),
        ({f"f{i}": 1.0 for i in range(MAX_ATTRIBUTIONS + 1)}, "invalid_value"),
    ],
)
def test_bad_attributions_are_rejected_with_a_reason(attributions: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        normalize_event(raw_prediction(attributions=attributions), "prediction")
    assert info.value.reason == reason


def test_an_envelope_rejects_only_the_event_with_bad_attributions() -> None:
    message = orjson.dumps([raw_prediction(attributions={"x": 1.0}),
                            raw_prediction(attributions={"x": "high"}),
                            raw_prediction()])
    batch = decode_message(message, "prediction")
    assert [e["attributions"] for e in batch.events] == [{"x": 1.0}, None]
    assert [(r.reason, r.index) for r in batch.rejects] == [("wrong_type", 1)]


# -- columns ---------------------------------------------------------------------------


def normalised(n: int, attributions: Any = None, start: int = 0) -> list[dict[str, Any]]:
    return [normalize_event(raw_prediction(event_id=f"e{start + i}", ts=T0 + start + i,
                                           features={"x": float(i)},
                                           attributions=attributions(i) if attributions else None),
                            "prediction") for i in range(n)]


def test_envelopes_without_attributions_are_unchanged() -> None:
    events = normalised(5)
    without_key = [{k: v for k, v in e.items() if k != "attributions"} for e in events]
    cols = columns_from_events(events)
    assert "attributions" not in cols
    assert orjson.dumps(cols) == orjson.dumps(columns_from_events(without_key))
    assert orjson.dumps(select_columns(cols, [0, 2])) == orjson.dumps(
        select_columns(columns_from_events(without_key), [0, 2]))
    assert "attributions" not in append_columns(None, cols)
    assert all("attributions" not in e for e in events_from_columns(cols))


def test_attribution_columns_survive_select_append_and_back_to_events() -> None:
    events = normalised(4, lambda i: {"x": -i, "y": 0.5} if i % 2 else {"z": 1.0})
    events.insert(1, normalised(1, start=9)[0])  # one without attributions
    cols = columns_from_events(events)
    assert cols["attributions"] == {"x": [None, None, -1.0, None, -3.0],
                                    "y": [None, None, 0.5, None, 0.5],
                                    "z": [1.0, None, None, 1.0, None]}
    assert select_columns(cols, slice(1, 3))["attributions"] == {
        "x": [None, -1.0], "y": [None, 0.5], "z": [None, None]}
    back = events_from_columns(cols)
    assert [e.get("attributions") for e in back] == [
        {"z": 1.0}, None, {"x": -1.0, "y": 0.5}, {"z": 1.0}, {"x": -3.0, "y": 0.5}]
    plain = columns_from_events(normalised(2, start=20))
    joined = append_columns(append_columns(None, plain), cols)
    assert joined["n"] == 7
    assert joined["attributions"]["z"] == [None, None, 1.0, None, None, 1.0, None]
    assert append_columns(joined, plain)["attributions"]["x"][-2:] == [None, None]


# -- reference -------------------------------------------------------------------------


def test_reference_importance_is_the_mean_absolute_attribution() -> None:
    events = normalised(4, lambda i: {"x": (-1) ** i * (i + 1), "y": 0.5} if i < 3 else None)
    ref = ReferenceProfile.build(events, "m", "v1")
    # over the 3 events with attributions: |x| = 1, 2, 3; y = 0.5 each
    assert ref.attributions == {"x": 2.0, "y": 0.5}
    assert ref.attribution_events == 3
    snap = ref.snapshot()
    validator("reference").validate(snap)
    assert snap["attributions"] == {"x": 2.0, "y": 0.5} and snap["attribution_events"] == 3
    restored = ReferenceProfile.restore(orjson.loads(orjson.dumps(snap)))
    assert restored.attributions == ref.attributions
    assert restored.snapshot() == snap


def test_reference_without_attributions_has_none_and_old_snapshots_restore() -> None:
    ref = ReferenceProfile.build(normalised(10), "m", "v1")
    assert ref.attributions is None
    snap = ref.snapshot()
    assert "attributions" not in snap and "attribution_events" not in snap
    assert ReferenceProfile.restore(snap).attributions is None


def test_reference_importance_keeps_the_most_important_features() -> None:
    events = normalised(5, lambda i: {f"f{j}": float(j) for j in range(10)})
    ref = ReferenceProfile.build(events, "m", "v1", max_features=3)
    assert ref.attributions == {"f7": 7.0, "f8": 8.0, "f9": 9.0, OTHER: 21.0}


# -- the monitor, end to end -----------------------------------------------------------

WEIGHTS = {"x": 1.0, "y": 0.5, "z": 0.25, "c": 0.1}
#: The same features, the importance permuted: z becomes the most important (NDCG 0.79).
PERMUTED = {"x": 0.5, "y": 0.25, "z": 1.0, "c": 0.1}
#: x and y swapped (NDCG 0.88).
SWAPPED = {"x": 0.5, "y": 1.0, "z": 0.25, "c": 0.1}
CATS = ("DE", "FR", "IT")


def stream_events(n: int, seed: int, start: int = 0, weights: dict[str, float] | None = WEIGHTS,
                  every: int = 1) -> list[dict[str, Any]]:
    """Inputs from fixed distributions whatever ``weights`` (x ~ N(0, 1), y ~ N(5, 2),
    z ~ Exp(1), c categorical, a score ~ Beta(2, 5)); attributions ``w_f * N(0, 1)`` per
    feature on every ``every``-th event."""
    rng = np.random.default_rng(seed)
    x, y, z = rng.normal(0, 1, n), rng.normal(5, 2, n), rng.exponential(1, n)
    c, s = rng.choice(CATS, n, p=(0.5, 0.3, 0.2)), rng.beta(2, 5, n)
    noise = rng.normal(0, 1, (n, len(WEIGHTS)))
    events = []
    for i in range(n):
        attributions = None
        if weights is not None and (start + i) % every == 0:
            attributions = {f: float(w * noise[i, j]) for j, (f, w) in enumerate(weights.items())}
        events.append({
            "kind": "prediction", "event_id": f"e{start + i}", "model": "m",
            "model_version": "v1", "ts": T0 + (start + i) * 0.05,
            "features": {"x": float(x[i]), "y": float(y[i]), "z": float(z[i]), "c": str(c[i])},
            "prediction": {"label": None, "score": float(s[i]), "value": None, "scores": None},
            "attributions": attributions,
        })
    return events


CFG = MonitorConfig(window_size=500, warmup_events=1000, min_window_values=100)


def reference_profile() -> ReferenceProfile:
    return ReferenceProfile.build(stream_events(5000, 1), "m", "v1")


def run(mon: ModelMonitor, events: list[dict[str, Any]], size: int = 10**9
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    reports: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for i in range(0, len(events), size):
        out = mon.process(events[i:i + size])
        reports += out.reports
        alerts += out.alerts
    return orjson.loads(orjson.dumps(reports)), orjson.loads(orjson.dumps(alerts))


def check_contracts(reports: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
    for report in reports:
        validator("window-report").validate(report)
    for alert in alerts:
        validator("alert").validate(alert)


def test_stable_attributions_never_alert() -> None:
    ref = reference_profile()
    assert ref.attributions is not None and list(ref.attributions) == ["c", "x", "y", "z"]
    mon = ModelMonitor("m", "v1", CFG, ref)
    reports, alerts = run(mon, stream_events(10_000, 2), size=700)
    check_contracts(reports, alerts)
    assert len(reports) == 20 and alerts == []
    for r in reports:
        a = r["attribution"]
        assert a["events"] == 500
        assert a["ndcg"] > 0.99
        assert a["max_share_change"] < 0.05
        assert set(a["importance"]) == set(WEIGHTS)


def test_a_permuted_importance_fires_ndcg_and_share_then_resolves() -> None:
    mon = ModelMonitor("m", "v1", CFG, reference_profile())
    events = (stream_events(1000, 2) + stream_events(1500, 3, 1000, weights=PERMUTED)
              + stream_events(1500, 4, 2500))
    reports, alerts = run(mon, events, size=333)
    check_contracts(reports, alerts)
    assert {a["kind"] for a in alerts} == {"attribution_drift"}  # the inputs did not move
    ndcg_alerts = [a for a in alerts if a["detector"] == "ndcg"]
    share_alerts = [a for a in alerts if a["detector"] == "share"]
    # windows 2-4 have the permuted importance
    assert [(a["transition"], a["window"]["index"]) for a in ndcg_alerts] == [
        ("firing", 2), ("resolved", 5)]
    assert [(a["transition"], a["window"]["index"]) for a in share_alerts] == [
        ("firing", 2), ("resolved", 5)]
    fired, resolved = ndcg_alerts
    # the ranking z, x, y, c against x, y, z, c: NDCG about 0.79
    assert (fired["severity"], fired["threshold"], fired["feature"]) == ("critical", 0.8, None)
    assert 0.75 < fired["value"] < 0.8
    assert fired["value"] == reports[2]["attribution"]["ndcg"]
    assert resolved["value"] > 1 - (1 - 0.9) * (1 - CFG.hysteresis)
    assert fired["alert_id"] == resolved["alert_id"] == alert_id(
        "attribution_drift", "m", "v1", None, "ndcg")
    assert "most important now: z, x, y (reference: x, y, z)" in fired["message"]
    fired, resolved = share_alerts
    # z: from 0.25 / 1.85 to 1 / 1.85 of the total
    assert (fired["feature"], fired["severity"], fired["threshold"]) == ("z", "critical", 0.2)
    assert fired["value"] == pytest.approx(0.75 / 1.85, abs=0.03)
    assert reports[2]["attribution"]["max_share_feature"] == "z"
    assert fired["alert_id"] == resolved["alert_id"] == alert_id(
        "attribution_drift", "m", "v1", None, "share")
    assert resolved["value"] < CFG.attribution_share_warning * (1 - CFG.hysteresis)
    # the episode keeps the feature it fired for, whichever moves most when it resolves
    assert resolved["feature"] == "z"
    assert [r["alerts_firing"] for r in reports] == [0, 0, 2, 2, 2, 0, 0, 0]
    assert mon.attribution_alerts["ndcg"].status == mon.attribution_alerts["share"].status == "ok"


def test_ndcg_warns_then_escalates_then_resolves() -> None:
    mon = ModelMonitor("m", "v1", CFG, reference_profile())
    events = (stream_events(500, 2, weights=SWAPPED) + stream_events(500, 3, 500, weights=PERMUTED)
              + stream_events(500, 4, 1000, weights=SWAPPED) + stream_events(500, 5, 1500))
    reports, alerts = run(mon, events, size=128)
    check_contracts(reports, alerts)
    ndcg_alerts = [a for a in alerts if a["detector"] == "ndcg"]
    assert [(a["transition"], a["severity"], a["threshold"], a["window"]["index"])
            for a in ndcg_alerts] == [("firing", "warning", 0.9, 0), ("escalated", "critical", 0.8, 1),
                                      ("deescalated", "warning", 0.9, 2),
                                      ("resolved", "warning", 0.9, 3)]
    assert [a["value"] for a in ndcg_alerts] == [r["attribution"]["ndcg"] for r in reports]
    assert 0.8 < reports[0]["attribution"]["ndcg"] < 0.9 < reports[3]["attribution"]["ndcg"]
    assert len({a["alert_id"] for a in ndcg_alerts}) == 1
    assert {a["episode"] for a in ndcg_alerts} == {1}


def test_windows_with_few_attributions_change_no_alert() -> None:
    """Every 10th event has attributions: 50 per window of 500, below min_window_values."""
    mon = ModelMonitor("m", "v1", CFG, reference_profile())
    reports, alerts = run(mon, stream_events(2000, 5, weights=PERMUTED, every=10))
    check_contracts(reports, alerts)
    assert alerts == []
    assert all(r["attribution"]["events"] == 50 for r in reports)
    assert all(r["attribution"]["ndcg"] < 0.9 for r in reports)  # reported all the same
    assert mon.attribution_alerts == {}


def test_a_version_without_attributions_reports_null() -> None:
    ref = ReferenceProfile.build(stream_events(2000, 1, weights=None), "m", "v1")
    mon = ModelMonitor("m", "v1", CFG, ref)
    reports, alerts = run(mon, stream_events(1000, 2, weights=None))
    check_contracts(reports, alerts)
    assert [r["attribution"] for r in reports] == [None, None]
    # attributions that start arriving are reported, not judged (nothing to compare with)
    reports, alerts = run(mon, stream_events(500, 3, 1000))
    check_contracts(reports, alerts)
    (a,) = [r["attribution"] for r in reports]
    assert (a["events"], a["ndcg"], a["max_share_change"]) == (500, None, None)
    assert set(a["importance"]) == set(WEIGHTS) and alerts == []


def test_warmup_reference_learns_the_importance() -> None:
    cfg = MonitorConfig(window_size=500, warmup_events=1000, min_window_values=100)
    mon = ModelMonitor("m", "v1", cfg)
    reports, alerts = run(mon, stream_events(2000, 6) + stream_events(500, 7, 2000,
                                                                        weights=PERMUTED))
    assert mon.reference is not None and mon.reference.attribution_events == 1000
    assert [r["attribution"]["ndcg"] > 0.99 for r in reports] == [True, True, False]
    assert {a["detector"] for a in alerts} == {"ndcg", "share"}


def test_features_beyond_the_cap_are_pooled() -> None:
    ref = reference_profile()
    mon = ModelMonitor("m", "v1", MonitorConfig(window_size=100, min_window_values=10), ref)
    events = stream_events(100, 8)
    for i, e in enumerate(events):  # 70 new attribution features, one more every event
        e["attributions"].update({f"u{k:02d}": 0.01 for k in range(min(i, 70))})
    (report,), _ = run(mon, events, size=7)
    importance = report["attribution"]["importance"]
    assert {f"u{k:02d}" for k in range(50)} <= set(importance)
    assert "u50" not in importance and importance[OTHER] > 0
    # u00 appears from event 1 on: 99 of 100 events
    assert importance["u00"] == pytest.approx(0.0099)
    assert len(mon.snapshot()["attribution"]["new"]) == 50


@pytest.mark.parametrize("cut", [700, 1250, 2600])
def test_snapshot_round_trip_continues_identically(cut: int) -> None:
    events = (stream_events(1000, 2) + stream_events(1500, 3, 1000, weights=PERMUTED)
              + stream_events(1500, 4, 2500))
    cfg = MonitorConfig(window_size=300, window_step=100, warmup_events=1000,
                        min_window_values=100)
    whole = run(ModelMonitor("m", "v1", cfg), events, size=250)
    first = ModelMonitor("m", "v1", cfg)
    r1, a1 = run(first, events[:cut], size=250)
    snap = orjson.loads(orjson.dumps(first.snapshot()))
    restored = ModelMonitor.restore(snap, cfg)
    assert orjson.dumps(restored.snapshot()) == orjson.dumps(snap)
    r2, a2 = run(restored, events[cut:], size=250)
    assert (r1 + r2, a1 + a2) == whole
    assert {a["detector"] for a in whole[1]} >= {"ndcg", "share"}


def test_snapshots_from_before_attributions_restore() -> None:
    mon = ModelMonitor("m", "v1", CFG, reference_profile())
    run(mon, stream_events(700, 2))
    snap = orjson.loads(orjson.dumps(mon.snapshot()))
    assert snap["sub"]["attributions"][0] == 200
    del snap["attribution"]
    del snap["sub"]["attributions"]
    del snap["reference"]["attributions"], snap["reference"]["attribution_events"]
    restored = ModelMonitor.restore(snap, CFG)
    assert restored.attribution_alerts == {} and restored.reference is not None
    assert restored.reference.attributions is None
    reports, _ = run(restored, stream_events(300, 3, 700))
    assert reports[0]["attribution"] == {"events": 300, "ndcg": None, "max_share_change": None,
                                         "max_share_feature": None,
                                         "importance": reports[0]["attribution"]["importance"]}


def test_alert_state_survives_a_restart() -> None:
    mon = ModelMonitor("m", "v1", CFG, reference_profile())
    _, alerts = run(mon, stream_events(500, 3, weights=PERMUTED))
    assert {a["detector"] for a in alerts} == {"ndcg", "share"}
    restored = ModelMonitor.restore(orjson.loads(orjson.dumps(mon.snapshot())), CFG)
    assert restored.alerts_firing() == 2
    _, alerts = run(restored, stream_events(500, 4, 500, weights=PERMUTED))
    assert alerts == []  # still firing: no second "firing"


@pytest.mark.parametrize(
    "changes",
    [
        {"attribution_ndcg_warning": 0.8, "attribution_ndcg_critical": 0.9},
        {"attribution_ndcg_warning": 1.1},
        {"attribution_ndcg_critical": 0.0},
        {"attribution_share_warning": 0.3, "attribution_share_critical": 0.2},
        {"attribution_share_warning": 0.0},
        {"attribution_share_critical": 1.5},
    ],
)
def test_config_validation(changes: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="attribution_"):
        MonitorConfig(**changes).validate()  # type: ignore[arg-type]
