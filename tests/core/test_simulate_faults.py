"""Simulated data-integrity and traffic faults: each one shows inside its window and not
outside it, leaves the other models alone, is deterministic, and parses from ``--fault``."""

from __future__ import annotations

import argparse
import asyncio
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.cli import main
from stream.core.events import normalize_event, normalize_label
from stream.errors import ConfigError
from stream.simulate import (
    FAULT_FORMAT,
    FAULT_KINDS,
    NEW_CATEGORY,
    FaultSpec,
    SimConfig,
    Simulator,
    add_arguments,
    config_from_args,
    default_models,
    parse_fault,
    produce,
    simulate_to_file,
)

START = 1_700_000_000.0
RATE = 1000.0
N = 6000  # 6 s of traffic: before [0, 2), during [2, 4), after [4, 6)
T0, T1 = 2.0, 4.0

Event = dict[str, Any]


def make(*faults: FaultSpec, **kw: Any) -> Simulator:
    kw.setdefault("start_ts", START)
    kw.setdefault("rate", RATE)
    return Simulator(SimConfig(faults=faults, **kw))


def during(event: Event) -> bool:
    return T0 <= event["ts"] - START < T1


def regular(event: Event) -> bool:
    """Not one of a spike's extra events (their ids end in ``-<n>``)."""
    return bool(event["event_id"].count("-") == 2)


def of(events: list[Event], model: str) -> list[Event]:
    return [e for e in events if e["model"] == model]


def without(event: Event, feature: str) -> Event:
    return {**event, "features": {k: v for k, v in event["features"].items() if k != feature}}


@pytest.fixture(scope="module")
def base() -> list[Event]:
    return make().batch(N)


@pytest.fixture(scope="module")
def base_labelled() -> tuple[list[Event], list[Event]]:
    sim = make(labels=True)
    events = [e for n in (2500, 2500, 1000) for e in sim.batch(n)]
    return events, sim.due_labels(math.inf)


def assert_feature_fault_is_confined(
    faulted: list[Event], base: list[Event], model: str, feature: str
) -> list[tuple[Event, Event]]:
    """Outside the window, and for every other model, the events are exactly the base
    ones; inside it the model's other features are too. Returns the (faulted, base)
    pairs of the model's events in the window."""
    assert len(faulted) == len(base)
    inside = []
    for f, b in zip(faulted, base, strict=True):
        if b["model"] != model or not during(b):
            assert f == b
        else:
            assert without(f, feature)["features"] == without(b, feature)["features"]
            inside.append((f, b))
    assert len(inside) > 300  # churn, the smallest model, has ~400 events in the window
    return inside


# ------------------------------------------------------------------ feature faults


def test_null_fault_sends_null_in_the_window_only(base: list[Event]) -> None:
    events = make(FaultSpec("fraud", "null", "amount", T0, T1)).batch(N)
    inside = assert_feature_fault_is_confined(events, base, "fraud", "amount")
    assert all(f["features"]["amount"] is None for f, _ in inside)
    assert all(b["features"]["amount"] is not None for _, b in inside)
    for f, _ in inside[:50]:
        assert normalize_event(orjson.loads(orjson.dumps(f)), "prediction")["features"]["amount"] is None
    # the model predicts from what it is sent: a missing amount counts as the mean
    assert [f["prediction"] for f, _ in inside] != [b["prediction"] for _, b in inside]


def test_null_fault_on_a_categorical_feature(base: list[Event]) -> None:
    events = make(FaultSpec("eta", "null", "city", T0, T1)).batch(N)
    inside = assert_feature_fault_is_confined(events, base, "eta", "city")
    assert {f["features"]["city"] for f, _ in inside} == {None}


@pytest.mark.parametrize(("model", "feature"), [("fraud", "country"), ("eta", "distance_km")])
def test_missing_fault_leaves_the_key_out_in_the_window_only(
    base: list[Event], model: str, feature: str
) -> None:
    events = make(FaultSpec(model, "missing", feature, T0, T1)).batch(N)
    inside = assert_feature_fault_is_confined(events, base, model, feature)
    assert all(feature not in f["features"] for f, _ in inside)
    assert all(feature in e["features"] for e in of(events, model) if not during(e))
    normalized = normalize_event(orjson.loads(orjson.dumps(inside[0][0])), "prediction")
    assert feature not in normalized["features"]


@pytest.mark.parametrize(
    ("model", "feature", "factor"),
    [("eta", "distance_km", None), ("fraud", "txn_count_24h", None), ("churn", "monthly_spend", 60.0)],
)
def test_unit_fault_multiplies_values_in_the_window_only(
    base: list[Event], model: str, feature: str, factor: float | None
) -> None:
    fault = FaultSpec(model, "unit", feature, T0, T1, factor)
    assert fault.factor == (1000.0 if factor is None else factor)
    events = make(fault).batch(N)
    inside = assert_feature_fault_is_confined(events, base, model, feature)
    spec = next(m for m in default_models() if m.name == model).feature(feature)
    decimals = getattr(spec, "decimals", 2)
    pairs = [(f["features"][feature], b["features"][feature]) for f, b in inside]
    present = [(f, b) for f, b in pairs if b is not None]
    assert all(f is None for f, b in pairs if b is None)  # naturally missing stays missing
    got = np.array([f for f, _ in present], dtype=float)
    want = fault.factor * np.array([b for _, b in present], dtype=float)
    # each side is rounded to `decimals` after (fault) or before (base) the multiplication
    tolerance = (fault.factor + 1) * 0.5 * 10.0**-decimals + 1e-9
    assert np.abs(got - want).max() <= tolerance
    if decimals == 0:
        assert got.tolist() == want.tolist() and all(type(f) is int for f, _ in present)


def test_new_category_fault_gives_the_share_a_never_seen_value(base: list[Event]) -> None:
    events = make(FaultSpec("fraud", "new_category", "device", T0, T1, factor=0.3)).batch(N)
    inside = assert_feature_fault_is_confined(events, base, "fraud", "device")
    values = [f["features"]["device"] for f, _ in inside]
    share = values.count(NEW_CATEGORY) / len(values)
    assert share == pytest.approx(0.3, abs=0.06)  # ~1000 events: the std is 0.015
    # the others keep the category they had
    assert all(f["features"]["device"] in (NEW_CATEGORY, b["features"]["device"]) for f, b in inside)
    assert NEW_CATEGORY not in {e["features"]["device"] for e in of(base, "fraud")}
    assert all(e["features"].get("device") != NEW_CATEGORY for e in events if not during(e))


def test_new_category_fault_with_the_default_share_takes_every_event(base: list[Event]) -> None:
    fault = FaultSpec("churn", "new_category", "plan_tier", T0, T1)
    assert fault.factor == 1.0
    events = make(fault).batch(N)
    inside = assert_feature_fault_is_confined(events, base, "churn", "plan_tier")
    assert {f["features"]["plan_tier"] for f, _ in inside} == {NEW_CATEGORY}


def test_feature_fault_without_an_end_lasts_to_the_end(base: list[Event]) -> None:
    events = make(FaultSpec("fraud", "null", "amount", T0)).batch(N)
    assert all(e["features"]["amount"] is None for e in of(events, "fraud") if e["ts"] - START >= T0)
    assert events[: int(T0 * RATE)] == base[: int(T0 * RATE)]


def test_several_faults_combine(base: list[Event]) -> None:
    faults = (
        FaultSpec("fraud", "null", "amount", 1.0, 2.5),
        FaultSpec("fraud", "missing", "country", 3.0, 5.0),
        FaultSpec("eta", "unit", "distance_km", 0.0, 1.0),
    )
    events = make(*faults).batch(N)
    for f, b in zip(events, base, strict=True):
        t = f["ts"] - START
        if f["model"] == "fraud":
            assert (f["features"]["amount"] is None) == (1.0 <= t < 2.5)
            assert ("country" in f["features"]) != (3.0 <= t < 5.0)
        elif f["model"] == "eta" and t < 1.0:
            got, was = f["features"]["distance_km"], b["features"]["distance_km"]
            assert abs(got - 1000 * was) <= 5.01
        else:
            assert f == b  # churn throughout, eta after its window


# ------------------------------------------------------------------ traffic faults


def test_drop_fault_stops_the_model_in_the_window_only(base: list[Event]) -> None:
    sim = make(FaultSpec("churn", "drop", start_seconds=T0, end_seconds=T1))
    events = sim.batch(N)
    assert sim.slots == N and sim.last_ts == base[-1]["ts"]
    assert not [e for e in of(events, "churn") if during(e)]
    assert len([e for e in of(base, "churn") if during(e)]) > 300
    # everything else, other models and churn outside the window, is the base traffic
    assert events == [e for e in base if not (e["model"] == "churn" and during(e))]


def test_spike_fault_multiplies_the_models_rate_in_the_window_only(base: list[Event]) -> None:
    sim = make(FaultSpec("eta", "spike", start_seconds=T0, end_seconds=T1))
    events = sim.batch(N)
    assert sim.slots == N
    before = Counter(during(e) for e in of(base, "eta"))
    after = Counter(during(e) for e in of(events, "eta"))
    assert after[True] == 5 * before[True] and after[False] == before[False]
    # the regular events are the base ones; the extras are new, in the window, in order
    assert [e for e in events if regular(e)] == base
    extras = [e for e in events if not regular(e)]
    assert {e["model"] for e in extras} == {"eta"} and all(during(e) for e in extras)
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert len({e["event_id"] for e in events}) == len(events)
    for e in extras[:50]:
        normalize_event(orjson.loads(orjson.dumps(e)), "prediction")
    # the extras are fresh draws, not copies of their slot's event
    by_id = {e["event_id"]: e for e in events}
    parent = by_id[extras[0]["event_id"].rsplit("-", 1)[0]]
    assert parent["features"] != extras[0]["features"]


def test_a_fractional_spike_factor_is_exact_over_the_window(base: list[Event]) -> None:
    events = make(FaultSpec("churn", "spike", start_seconds=T0, end_seconds=T1, factor=2.5)).batch(N)
    regular_count = sum(during(e) for e in of(base, "churn"))
    spiked = sum(during(e) for e in of(events, "churn"))
    assert abs(spiked - 2.5 * regular_count) <= 1
    assert [e for e in events if regular(e)] == base


def test_traffic_faults_spread_over_batches_keep_their_counts(base: list[Event]) -> None:
    faults = (
        FaultSpec("eta", "spike", start_seconds=T0, end_seconds=T1, factor=1.5),
        FaultSpec("fraud", "drop", start_seconds=T0, end_seconds=T1),
    )
    sizes = (1, 999, 1500, 7, 2493, 1000)  # windows straddling batches
    sim, plain_sim = make(*faults), make()
    pieces = [e for n in sizes for e in sim.batch(n)]
    plain = [e for n in sizes for e in plain_sim.batch(n)]
    assert [e for e in pieces if regular(e)] == [
        e for e in plain if not (e["model"] == "fraud" and during(e))
    ]
    extras = [e for e in pieces if not regular(e)]
    assert abs(len(extras) - 0.5 * sum(during(e) for e in of(plain, "eta"))) <= 1
    assert all(e["model"] == "eta" and during(e) for e in extras)


def test_overlapping_traffic_faults_multiply() -> None:
    faults = (
        FaultSpec("eta", "spike", start_seconds=2.0, end_seconds=4.0, factor=3),
        FaultSpec("eta", "drop", start_seconds=3.0, end_seconds=5.0),
    )
    events, plain = make(*faults).batch(N), make().batch(N)

    def count(evs: list[Event], lo: float, hi: float) -> int:
        return sum(lo <= e["ts"] - START < hi for e in of(evs, "eta"))

    assert count(events, 2.0, 3.0) == 3 * count(plain, 2.0, 3.0)
    assert count(events, 3.0, 5.0) == 0
    assert count(events, 5.0, 6.0) == count(plain, 5.0, 6.0)


def test_spike_in_real_time_keeps_ts_up_to_now_and_in_order() -> None:
    sim = make(FaultSpec("fraud", "spike", start_seconds=0.0, factor=3))
    now = START
    events: list[Event] = []
    for n in (10, 200, 50):
        now += n / RATE
        batch = sim.batch(n, now=now)
        assert all(e["ts"] <= round(now, 6) for e in batch)
        events.extend(batch)
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    fraud = of(events, "fraud")
    assert len(fraud) == 3 * sum(regular(e) for e in fraud)


def test_labels_of_other_models_are_unchanged_and_dropped_events_get_none(
    base_labelled: tuple[list[Event], list[Event]],
) -> None:
    base_events, base_labels = base_labelled
    for fault in (
        FaultSpec("churn", "drop", start_seconds=T0, end_seconds=T1),
        FaultSpec("churn", "spike", start_seconds=T0, end_seconds=T1, factor=2),
        FaultSpec("churn", "new_category", "region", T0, T1, factor=0.5),
    ):
        sim = make(fault, labels=True)
        events = [e for n in (2500, 2500, 1000) for e in sim.batch(n)]
        labels = sim.due_labels(math.inf)
        assert of(events, "fraud") == of(base_events, "fraud")
        assert [lab for lab in labels if lab["model"] != "churn"] == [
            lab for lab in base_labels if lab["model"] != "churn"
        ], fault.kind
        ids = {e["event_id"] for e in events}
        churn_labels = [lab for lab in labels if lab["model"] == "churn"]
        assert all(lab["event_id"] in ids for lab in churn_labels)
        for lab in churn_labels[:20]:
            normalize_label(lab)
        if fault.kind == "spike":
            extra_labelled = sum(not regular({"event_id": lab["event_id"]}) for lab in churn_labels)
            extras = sum(not regular(e) for e in events)
            assert extra_labelled == pytest.approx(0.9 * extras, rel=0.15)  # label_coverage


# ------------------------------------------------------------------ determinism, identity


@pytest.mark.parametrize(
    "fault",
    [
        FaultSpec("fraud", "new_category", "country", T0, T1, factor=0.4),
        FaultSpec("eta", "spike", start_seconds=T0, end_seconds=T1, factor=2.5),
        FaultSpec("churn", "missing", "nps", T0),
    ],
    ids=lambda f: f.kind,
)
def test_faults_are_deterministic_for_a_seed(fault: FaultSpec) -> None:
    a, b = make(fault, seed=3).batch(4000), make(fault, seed=3).batch(4000)
    assert a == b
    c = make(fault, seed=4).batch(4000)
    assert c != a


def test_faults_outside_the_run_change_nothing(base: list[Event]) -> None:
    late = [
        FaultSpec("fraud", kind, None if kind in ("drop", "spike") else feature, start_seconds=60.0)
        for kind, feature in zip(FAULT_KINDS, ("amount", "amount", "amount", "device", "", ""),
                                 strict=True)
    ]
    assert make(*late).batch(N) == base
    assert make().batch(N) == base


def test_reference_events_never_carry_faults() -> None:
    faults = (
        FaultSpec("fraud", "missing", "amount", 0.0),
        FaultSpec("fraud", "drop", start_seconds=0.0),
    )
    assert make(*faults).reference_events("fraud", 500) == make().reference_events("fraud", 500)


# ------------------------------------------------------------------ sinks


def test_produce_counts_slots_so_a_fully_dropped_run_still_ends() -> None:
    sent: list[tuple[str, bytes, bytes]] = []

    class Producer:
        def __init__(self, bootstrap: str) -> None:
            pass

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

        async def flush(self) -> None:
            pass

        async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
            sent.append((topic, key, value))
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

    fraud = default_models()[0]
    config = SimConfig(models=(fraud,), start_ts=START, labels=True,
                       faults=(FaultSpec("fraud", "drop", start_seconds=0.0),))
    counts = asyncio.run(produce("h:1", config, max_events=4500, realtime=False, producer_factory=Producer))
    assert counts == {"events": 0, "messages": 0, "labels": 0, "labels_dropped": 0} and sent == []
    spiky = SimConfig(start_ts=START, faults=(FaultSpec("eta", "spike", start_seconds=1.0, factor=2),))
    counts = asyncio.run(produce("h:1", spiky, max_events=3000, realtime=False, producer_factory=Producer))
    events = [orjson.loads(value) for _, _, value in sent]
    eta_after = sum(e["model"] == "eta" and e["ts"] - START >= 1.0 for e in events if regular(e))
    assert counts["events"] == len(sent) == 3000 + eta_after
    assert sum(regular(e) for e in events) == 3000


def test_simulate_to_file_with_a_spike(tmp_path: Path) -> None:
    config = SimConfig(start_ts=START, rate=RATE,
                       faults=(FaultSpec("fraud", "spike", start_seconds=0.5, end_seconds=1.0),))
    out = simulate_to_file(config, tmp_path / "e.jsonl", max_events=2000)
    events = [orjson.loads(line) for line in (tmp_path / "e.jsonl").read_bytes().splitlines()]
    assert out["events"] == len(events) > 2000
    assert [e for e in events if regular(e)] == make(rate=RATE).batch(2000)


def test_the_cli_writes_faulted_traffic(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    argv = ["simulate", "--out", str(path), "--max-events", "3000", "--rate", "1000",
            "--fault", "fraud:null:amount:1-2", "--fault", "churn:drop:0.5-2.5"]
    assert main(argv) == 0
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    t0 = events[0]["ts"]
    assert all((e["features"]["amount"] is None) == (1 <= e["ts"] - t0 < 2) for e in of(events, "fraud"))
    assert not [e for e in of(events, "churn") if 0.5 <= e["ts"] - t0 < 2.5]
    assert [e for e in of(events, "churn") if e["ts"] - t0 >= 2.5]


def test_the_cli_rejects_a_bad_fault(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--out", str(tmp_path / "e.jsonl"), "--fault", "fraud:drop:amount:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftstream simulate: error: --fault 'fraud:drop:amount:1'")
    assert FAULT_FORMAT in err


# ------------------------------------------------------------------ FaultSpec validation


def test_fault_factors_default_per_kind() -> None:
    assert FaultSpec("eta", "unit", "distance_km").factor == 1000.0
    assert FaultSpec("eta", "spike").factor == 5.0
    assert FaultSpec("eta", "new_category", "city").factor == 1.0
    assert FaultSpec("eta", "null", "city").factor is None
    assert FaultSpec("eta", "drop").factor is None
    assert FaultSpec("eta", "spike", factor=5) == FaultSpec("eta", "spike")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"kind": "nul", "feature": "amount"},
         "kind must be one of null, missing, unit, new_category, drop, spike, not 'nul'"),
        ({"kind": "null"}, "kind 'null' needs a feature"),
        ({"kind": "unit", "feature": ""}, "kind 'unit' needs a feature"),
        ({"kind": "drop", "feature": "amount"}, "kind 'drop' takes no feature"),
        ({"kind": "spike", "feature": "amount"}, "kind 'spike' takes no feature"),
        ({"kind": "null", "feature": "prediction"}, "not 'prediction'"),
        ({"kind": "drop", "start_seconds": -1.0}, "start_seconds must be a number >= 0"),
        ({"kind": "drop", "start_seconds": math.nan}, "start_seconds must be a number >= 0"),
        ({"kind": "drop", "start_seconds": 5.0, "end_seconds": 5.0}, "end_seconds must be None"),
        ({"kind": "drop", "end_seconds": math.inf}, "end_seconds must be None"),
        ({"kind": "null", "feature": "amount", "factor": 2.0}, "kind 'null' takes no factor"),
        ({"kind": "missing", "feature": "amount", "factor": 2.0}, "kind 'missing' takes no factor"),
        ({"kind": "drop", "factor": 0.0}, "kind 'drop' takes no factor"),
        ({"kind": "unit", "feature": "amount", "factor": 0.0}, "non-zero"),
        ({"kind": "unit", "feature": "amount", "factor": math.inf}, "finite number"),
        ({"kind": "spike", "factor": 1.0}, "a spike factor must be > 1"),
        ({"kind": "spike", "factor": 0.5}, "kind 'drop' stops the traffic"),
        ({"kind": "new_category", "feature": "device", "factor": 0.0}, "must be in (0, 1]"),
        ({"kind": "new_category", "feature": "device", "factor": 1.5}, "must be in (0, 1]"),
    ],
)
def test_invalid_fault_specs_say_what_is_accepted(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        FaultSpec("fraud", **kwargs)
    assert str(info.value).startswith("fault on 'fraud': ") and problem in str(info.value)


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (FaultSpec("nope", "drop"), "unknown model 'nope'; known models: fraud, churn, eta"),
        (FaultSpec("fraud", "null", "amnt"), "unknown feature 'amnt'; known features: amount,"),
        (FaultSpec("fraud", "unit", "country"), "kind 'unit' needs a numeric feature; 'country' is"),
        (FaultSpec("eta", "new_category", "distance_km"), "needs a categorical feature"),
    ],
)
def test_faults_are_checked_against_the_models(fault: FaultSpec, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        SimConfig(faults=(fault,))


# ------------------------------------------------------------------ --fault


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fraud:null:amount:60-120", FaultSpec("fraud", "null", "amount", 60.0, 120.0)),
        ("fraud:missing:country:0", FaultSpec("fraud", "missing", "country", 0.0)),
        ("eta:unit:distance_km:30", FaultSpec("eta", "unit", "distance_km", 30.0, None, 1000.0)),
        ("eta:unit:distance_km:30-60:0.001", FaultSpec("eta", "unit", "distance_km", 30.0, 60.0, 0.001)),
        ("fraud:new_category:device:10-20:0.25", FaultSpec("fraud", "new_category", "device", 10, 20, 0.25)),
        ("churn:drop:60-90", FaultSpec("churn", "drop", None, 60.0, 90.0)),
        ("churn:spike:60:4", FaultSpec("churn", "spike", None, 60.0, None, 4.0)),
        ("eta:spike:5.5-7.25", FaultSpec("eta", "spike", None, 5.5, 7.25, 5.0)),
        (" eta : drop : 1e-3-2e-3 ", FaultSpec("eta", "drop", None, 0.001, 0.002)),
    ],
)
def test_fault_strings_parse(text: str, expected: FaultSpec) -> None:
    assert parse_fault(text) == expected
    assert config_from_args(parse("--fault", text)).faults == (expected,)


def test_config_from_args_takes_several_faults_and_none_by_default() -> None:
    cfg = config_from_args(parse("--fault", "fraud:null:amount:60-120", "--fault", "churn:drop:90"))
    assert cfg.faults == (
        FaultSpec("fraud", "null", "amount", 60.0, 120.0),
        FaultSpec("churn", "drop", None, 90.0),
    )
    assert config_from_args(parse()).faults == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fraud", "expected 3 to 5 ':'-separated parts, got 1"),
        ("fraud:nul:amount:60", "KIND 'nul' is not one of null, missing, unit, new_category, drop, spike"),
        (":null:amount:60", "MODEL is empty"),
        ("fraud:null:60", "KIND 'null' takes MODEL:null:FEATURE:START[-END][:FACTOR], 4 or 5"),
        ("fraud:null:amount:1:2:3", "4 or 5 ':'-separated parts, got 6"),
        ("fraud:drop", "KIND 'drop' takes MODEL:drop:START[-END][:FACTOR], 3 or 4"),
        ("fraud:null::60", "FEATURE is empty"),
        ("fraud:null:amount:", "START is empty"),
        ("fraud:null:amount:soon", "START 'soon' is not a number"),
        ("fraud:null:amount:60-later", "END 'later' is not a number"),
        ("fraud:null:amount:60-30", "END must be > START, got '60-30'"),
        ("fraud:null:amount:60-60", "END must be > START"),
        ("fraud:null:amount:-5", "START must be >= 0"),
        ("fraud:null:amount:inf", "START must be finite"),
        ("fraud:null:amount:60:2", "kind 'null' takes no factor"),
        ("fraud:drop:amount:60", "KIND 'drop' takes no FEATURE"),
        ("fraud:spike:60-x", "END 'x' is not a number"),
        ("fraud:spike:soon", "KIND 'spike' takes no FEATURE"),
        ("fraud:drop:60:2", "kind 'drop' takes no factor"),
        ("fraud:spike:60:1", "a spike factor must be > 1"),
        ("fraud:spike:60:x", "FACTOR 'x' is not a number"),
        ("fraud:unit:amount:60:0", "non-zero"),
        ("fraud:new_category:device:60:1.5", "(0, 1]"),
        ("fraud:null:prediction:60", "not 'prediction'"),
        ("nope:drop:60", "unknown model 'nope'"),
        ("fraud:null:amnt:60", "unknown feature 'amnt'"),
        ("fraud:unit:country:60", "'country' is categorical"),
        ("fraud:new_category:amount:60", "'amount' is numeric"),
    ],
)
def test_bad_fault_strings_are_rejected_quoting_the_format(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_args(parse("--fault", text))
    message = str(info.value)
    assert message.startswith(f"--fault {text!r}: ") and problem in message
    assert FAULT_FORMAT in message and "MODEL:KIND[:FEATURE]:START[-END][:FACTOR]" in message
    assert "null, missing, unit, new_category, drop, spike" in message
    with pytest.raises(ConfigError):
        parse_fault(text)


def test_the_help_documents_the_fault_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "--fault MODEL:KIND[:FEATURE]:START[-END][:FACTOR]" in text
    for kind in FAULT_KINDS:
        assert kind in text
