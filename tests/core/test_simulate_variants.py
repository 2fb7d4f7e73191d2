"""Slices, attributions, shadow deployments and rollouts in the simulator: each is
deterministic, changes nothing when off and only what it documents when on, follows the
event contract, and parses from its CLI flag with helpful errors."""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator

from stream.cli import main
from stream.core.events import decode_message, normalize_event
from stream.errors import ConfigError
from stream.simulate import (
    DEFAULT_CHANGE,
    DRIFT_FORMAT,
    PRODUCTION,
    ROLLOUT_FORMAT,
    SHADOW,
    SHADOW_FORMAT,
    SLICES,
    CategoricalFeature,
    DriftSpec,
    FaultSpec,
    ModelSpec,
    NumericFeature,
    RolloutSpec,
    ShadowSpec,
    SimConfig,
    Simulator,
    Term,
    add_arguments,
    config_from_args,
    default_models,
    encode_messages,
    parse_drift,
    parse_rollout,
    parse_shadow,
    perturbed_model,
    simulate_to_file,
)

START = 1_700_000_000.0
RATE = 1000.0
N = 8000  # 8 s of simulated traffic
AT = 4.0  # drift onset
ADDED = ("slices", "attributions", "deployment")

Event = dict[str, Any]
SCHEMA = Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[2] / "schemas" / "prediction.json").read_text())
)
MODELS = {m.name: m for m in default_models()}


def make(**kw: Any) -> Simulator:
    kw.setdefault("start_ts", START)
    kw.setdefault("rate", RATE)
    return Simulator(SimConfig(**kw))


def run(n: int = N, **kw: Any) -> tuple[list[Event], list[Event]]:
    sim = make(labels=True, **kw)
    events = [e for size in (n // 4, n // 2, n - n // 4 - n // 2) for e in sim.batch(size)]
    return events, sim.due_labels(math.inf)


def of(events: list[Event], model: str) -> list[Event]:
    return [e for e in events if e["model"] == model]


def strip(event: Event, *keys: str) -> Event:
    return {k: v for k, v in event.items() if k not in keys}


def production(events: list[Event]) -> list[Event]:
    return [e for e in events if e.get("deployment") != SHADOW]


def shadows(events: list[Event]) -> list[Event]:
    return [e for e in events if e.get("deployment") == SHADOW]


def elapsed(event: Event) -> float:
    return float(event["ts"]) - START


def importance(events: list[Event]) -> dict[str, float]:
    names = events[0]["attributions"].keys()
    return {k: float(np.mean([abs(e["attributions"][k]) for e in events])) for k in names}


def ranking(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda k: (-scores[k], k))


def expected_attributions(spec: ModelSpec, event: Event) -> dict[str, float]:
    """Attributions recomputed from the spec and the event alone: per term
    ``weight * (input - reference input)`` for the explained output, summed per feature."""
    out = spec.classes.index(event["prediction"]["label"]) if spec.task == "multiclass" else 0
    total = {f.name: 0.0 for f in spec.features}
    for term in spec.terms:
        f = spec.feature(term.feature)
        x = event["features"].get(f.name)
        if isinstance(f, NumericFeature):
            value, base = (0.0 if x is None else (x - f.mean) / f.std), 0.0
        else:
            assert term.category is not None
            value = float(x == term.category)
            base = f.probs[f.categories.index(term.category)] * (1 - f.missing)
        total[f.name] += term.weights[out] * (value - base)
    return total


def reference_offset(spec: ModelSpec) -> float:
    """``E_ref[z] - intercept`` for a one-output model (the categorical terms' share)."""
    offset = 0.0
    for term in spec.terms:
        f = spec.feature(term.feature)
        if isinstance(f, CategoricalFeature):
            assert term.category is not None
            offset += term.weights[0] * f.probs[f.categories.index(term.category)] * (1 - f.missing)
    return offset


@pytest.fixture(scope="module")
def base() -> tuple[list[Event], list[Event]]:
    return run()


RICH_SHADOWS = (ShadowSpec("eta", "v2"), ShadowSpec("churn", "v9", 1.0))
RICH_ROLLOUTS = (RolloutSpec("fraud", "v2", 2.0, 6.0),)
#: Every option on, with a spike and a drop so that they meet the faults too.
RICH: dict[str, Any] = {
    "slices": True,
    "attributions": True,
    "shadows": RICH_SHADOWS,
    "rollouts": RICH_ROLLOUTS,
    "faults": (FaultSpec("eta", "spike", None, 1.0, 2.0), FaultSpec("churn", "drop", None, 3.0, 4.0)),
}


@pytest.fixture(scope="module")
def rich() -> tuple[list[Event], list[Event]]:
    return run(**RICH)


# ------------------------------------------------------------------ invariants


def test_every_option_is_deterministic_for_a_seed(rich: tuple[list[Event], list[Event]]) -> None:
    events, labels = rich
    again = run(**RICH)
    assert orjson.dumps(again[0]) == orjson.dumps(events)
    assert orjson.dumps(again[1]) == orjson.dumps(labels)
    other, _ = run(seed=8, **RICH)
    assert [e["slices"] for e in other[:500]] != [e["slices"] for e in events[:500]]


def test_options_left_off_change_nothing_byte_for_byte(base: tuple[list[Event], list[Event]]) -> None:
    off = run(slices=False, attributions=False, shadows=(), rollouts=())
    assert orjson.dumps(off[0]) == orjson.dumps(base[0])
    assert orjson.dumps(off[1]) == orjson.dumps(base[1])
    assert not any(k in e for e in base[0] for k in ADDED)


@pytest.mark.parametrize(
    "options",
    [
        {"slices": True},
        {"attributions": True},
        {"shadows": (ShadowSpec("eta", "v2"),)},
        {"slices": True, "attributions": True, "shadows": (ShadowSpec("fraud", "v2", 2.0),)},
    ],
    ids=["slices", "attributions", "shadow", "all"],
)
def test_an_option_adds_its_fields_and_changes_nothing_else(
    base: tuple[list[Event], list[Event]], options: dict[str, Any]
) -> None:
    events, labels = run(**options)
    assert [strip(e, *ADDED) for e in production(events)] == base[0]
    assert orjson.dumps(labels) == orjson.dumps(base[1])  # never a label more or less
    for key, on in (("slices", "slices"), ("attributions", "attributions")):
        assert all((key in e) == bool(options.get(on)) for e in events)


def test_options_leave_a_spikes_regular_events_alone() -> None:
    spike = (FaultSpec("fraud", "spike", None, 1.0, 3.0),)
    plain, _ = run(4000, faults=spike)
    rich, _ = run(4000, faults=spike, slices=True, attributions=True,
                  shadows=(ShadowSpec("fraud", "v2"),))  # fmt: skip
    assert [strip(e, *ADDED) for e in production(rich)] == plain
    extras = [e for e in production(rich) if e["event_id"].count("-") == 3]
    assert len(extras) > 500 and all("slices" in e and "attributions" in e for e in extras)


def test_every_event_follows_the_contract(rich: tuple[list[Event], list[Event]]) -> None:
    events, _ = rich
    kinds = Counter((e["model_version"], e.get("deployment")) for e in events)
    assert {("v2", SHADOW), ("v9", SHADOW), ("v1", PRODUCTION), ("v2", None), ("v1", None)} <= set(kinds)
    for raw in events:
        SCHEMA.validate(raw)
        event = normalize_event(orjson.loads(orjson.dumps(raw)), "prediction")
        assert event["slices"] == raw["slices"]
        assert event["attributions"] == raw["attributions"]
        assert event.get("deployment") == raw.get("deployment")
        assert event["model_version"] == raw["model_version"]


# ------------------------------------------------------------------ slices


def test_slices_follow_their_weights_for_every_model() -> None:
    events = make(slices=True).batch(30_000)
    assert all(set(e["slices"]) == set(SLICES) for e in events)
    for model in MODELS:
        mine = of(events, model)
        for key, (values, probs) in SLICES.items():
            counts = Counter(e["slices"][key] for e in mine)
            assert set(counts) == set(values)
            for value, p in zip(values, probs, strict=True):
                tolerance = 4 * math.sqrt(p * (1 - p) / len(mine))
                assert abs(counts[value] / len(mine) - p) < tolerance, (model, key, value)
    # region and device are drawn independently
    both = Counter((e["slices"]["region"], e["slices"]["device"]) for e in events)
    assert abs(both["eu", "mobile"] / len(events) - 0.4 * 0.6) < 0.015


def test_a_slice_restricted_drift_moves_only_its_slice() -> None:
    drift = DriftSpec("fraud", ("amount", "country"), AT, magnitude=2.0, slice=("region", "eu"))
    calm = make(slices=True).batch(N)
    drifted = make(slices=True, drifts=(drift,)).batch(N)
    assert len(calm) == len(drifted)
    hit = []
    for before, after in zip(calm, drifted, strict=True):
        assert before["slices"] == after["slices"]
        inside = before["model"] == "fraud" and before["slices"]["region"] == "eu"
        if inside and elapsed(before) >= AT:
            hit.append((before, after))
        else:
            assert before == after  # other slices, other models, before the onset
    assert len(hit) > 500
    amount = MODELS["fraud"].feature("amount")
    assert isinstance(amount, NumericFeature)
    shift = np.mean([a["features"]["amount"] - b["features"]["amount"] for b, a in hit])
    assert shift == pytest.approx(2.0 * amount.std, rel=0.02)
    ng = sum(a["features"]["country"] == "NG" for _, a in hit) / len(hit)
    assert ng == pytest.approx(0.9 + 0.1 * 0.03, abs=0.03)  # min(0.9, 2 / 2) of the mass moved


def test_a_slice_restricted_prediction_drift_moves_only_its_slice() -> None:
    drift = DriftSpec("eta", ("prediction",), AT, magnitude=3.0, slice=("device", "web"))
    calm = make(slices=True).batch(N)
    drifted = make(slices=True, drifts=(drift,)).batch(N)
    moved = [
        (a["prediction"] - b["prediction"], b["slices"]["device"])
        for b, a in zip(calm, drifted, strict=True)
        if b["model"] == "eta" and elapsed(b) >= AT
    ]
    assert all(d == 0 for d, device in moved if device != "web")
    assert np.mean([d for d, device in moved if device == "web"]) > 5.0


def test_a_slice_drift_without_slices_is_rejected() -> None:
    drift = DriftSpec("fraud", ("amount",), AT, slice=("region", "eu"))
    with pytest.raises(ConfigError, match=r"in slice region=eu needs slices=True \(--slices\)"):
        SimConfig(drifts=(drift,))
    with pytest.raises(ConfigError) as info:
        config_from_args(parse("--drift", "fraud:amount@region=eu:60"))
    assert "needs --slices" in str(info.value) and DRIFT_FORMAT in str(info.value)
    cfg = config_from_args(parse("--slices", "--drift", "fraud:amount,country@region=eu:60:1.5"))
    assert cfg.slices and cfg.drifts == (
        DriftSpec("fraud", ("amount", "country"), 60.0, 1.5, slice=("region", "eu")),
    )


# ------------------------------------------------------------------ attributions


@pytest.mark.parametrize("model", sorted(MODELS))
def test_attributions_are_the_linear_shap_values_of_the_model(
    rich: tuple[list[Event], list[Event]], model: str
) -> None:
    events, _ = rich
    spec = MODELS[model]
    versions = {"v1": spec}
    variants: list[ShadowSpec | RolloutSpec] = [*RICH_SHADOWS, *RICH_ROLLOUTS]
    for variant in variants:
        if variant.model == model:
            versions[variant.version] = perturbed_model(spec, variant.version, variant.change, 7)
    mine = of(events, model)
    assert {e["model_version"] for e in mine} == set(versions)
    for event in mine:
        expected = expected_attributions(versions[event["model_version"]], event)
        assert event["attributions"].keys() == expected.keys()
        for name, value in expected.items():
            assert event["attributions"][name] == pytest.approx(value, abs=2e-6)


def test_attributions_sum_to_the_output_minus_its_reference_expectation() -> None:
    events = make(attributions=True).batch(6000)
    eta, fraud = MODELS["eta"], MODELS["fraud"]
    checked = 0
    for e in of(events, "eta"):
        if e["prediction"] > 1.5:  # above the floor
            z = eta.intercepts[0] + reference_offset(eta) + sum(e["attributions"].values())
            assert e["prediction"] == pytest.approx(z, abs=0.006)
            checked += 1
    for e in of(events, "fraud"):
        p = e["prediction"]["score"]
        if 0.01 < p < 0.99:
            z = fraud.intercepts[0] + reference_offset(fraud) + sum(e["attributions"].values())
            assert math.log(p / (1 - p)) == pytest.approx(z, abs=1e-3)
            checked += 1
    assert checked > 3000
    no_terms = {f.name for f in fraud.features} - {t.feature for t in fraud.terms}
    assert no_terms and all(e["attributions"][k] == 0.0 for e in of(events, "fraud") for k in no_terms)


def toy_model(weights: tuple[float, ...]) -> ModelSpec:
    """A regression on same-spread features, so importance is |weight| times a constant."""
    features = tuple(NumericFeature(f"x{i}", "normal", 0.0, 1.0) for i in range(len(weights)))
    terms = tuple(Term(f.name, (w,)) for f, w in zip(features, weights, strict=True))
    return ModelSpec("toy", "v1", "regression", features, terms, intercepts=(10.0,))


def test_the_importance_ranking_is_the_weights_ranking_and_follows_a_rollout() -> None:
    toy = toy_model((3.0, -2.0, 1.0, 0.5, 0.25))
    change, seed = 3.0, 7
    v2 = perturbed_model(toy, "v2", change, seed)
    by_weight = {
        spec.version: ranking({t.feature: abs(t.weights[0]) for t in spec.terms}) for spec in (toy, v2)
    }
    assert by_weight["v1"] == ["x0", "x1", "x2", "x3", "x4"]
    assert by_weight["v2"] != by_weight["v1"]  # a change of 3 reorders the weights
    rollout = RolloutSpec("toy", "v2", 5.0, change=change)
    events = make(models=(toy,), seed=seed, attributions=True, rollouts=(rollout,)).batch(10_000)
    for version in ("v1", "v2"):
        served = [e for e in events if e["model_version"] == version]
        assert len(served) > 4000
        assert all((elapsed(e) >= 5.0) == (version == "v2") for e in served)
        assert ranking(importance(served)) == by_weight[version]
    # and the importance is |weight| * E|N(0, 1)| for each feature
    late = importance([e for e in events if e["model_version"] == "v2"])
    for term in v2.terms:
        assert late[term.feature] == pytest.approx(abs(term.weights[0]) * math.sqrt(2 / math.pi), rel=0.06)


# ------------------------------------------------------------------ shadow


def test_shadow_events_pair_one_to_one_with_production(rich: tuple[list[Event], list[Event]]) -> None:
    events, labels = rich
    for model, version in (("eta", "v2"), ("churn", "v9")):
        mine = of(events, model)
        prod, twins = production(mine), shadows(mine)
        assert len(prod) == len(twins) > 500
        assert all(e["deployment"] == PRODUCTION for e in prod)
        for a, b in zip(mine[::2], mine[1::2], strict=True):  # each right after its own
            assert (a["deployment"], b["deployment"]) == (PRODUCTION, SHADOW)
            assert b["model_version"] == version and a["model_version"] == "v1"
            for key in ("event_id", "ts", "features", "slices", "model"):
                assert a[key] == b[key]
        for a, b in itertools.pairwise(events):
            if b.get("deployment") == SHADOW:
                assert a["event_id"] == b["event_id"] and a.get("deployment") == PRODUCTION
        differ = sum(a["prediction"] != b["prediction"] for a, b in zip(prod, twins, strict=True))
        assert differ > 0.9 * len(prod)
    # a spike's extra events have their twins; a dropped event has none
    extra_twins = [e for e in shadows(of(events, "eta")) if e["event_id"].count("-") == 3]
    assert len(extra_twins) > 500
    assert not [e for e in of(events, "churn") if 3.0 <= elapsed(e) < 4.0]
    assert not [e for e in of(events, "fraud") if "deployment" in e]
    # one label per event id, from production, never one for a shadow
    ids = [lab["event_id"] for lab in labels]
    assert len(ids) == len(set(ids))
    assert set(ids) <= {e["event_id"] for e in production(events)}


def test_the_shadow_gap_grows_with_change() -> None:
    def gap(change: float) -> float:
        events = make(shadows=(ShadowSpec("fraud", "v2", change),)).batch(4000)
        mine = of(events, "fraud")
        prod, twins = production(mine), shadows(mine)
        return float(np.mean([abs(a["prediction"]["score"] - b["prediction"]["score"])
                              for a, b in zip(prod, twins, strict=True)]))  # fmt: skip

    gaps = [gap(c) for c in (0.0, 0.25, DEFAULT_CHANGE, 1.0, 2.0)]
    assert gaps[0] == 0.0  # change 0: an identical copy
    assert all(a < b for a, b in itertools.pairwise(gaps)), gaps


def test_a_shadow_of_the_version_a_rollout_completes_predicts_the_same() -> None:
    events = make(shadows=(ShadowSpec("fraud", "v2"),),
                  rollouts=(RolloutSpec("fraud", "v2", 1.0, 2.0),)).batch(3000)  # fmt: skip
    mine = of(events, "fraud")
    late = [(a, b) for a, b in zip(mine[::2], mine[1::2], strict=True) if elapsed(a) >= 2.0]
    assert len(late) > 400
    assert all(a["model_version"] == b["model_version"] == "v2" for a, b in late)
    assert all(a["prediction"] == b["prediction"] for a, b in late)


def test_shadow_events_keep_their_model_key_and_order_in_envelopes(
    rich: tuple[list[Event], list[Event]],
) -> None:
    events = rich[0][:4000]
    decoded: dict[str, list[tuple[str, str | None]]] = {}
    for key, value in encode_messages(events, envelope=30):
        batch = decode_message(value, "prediction")
        assert batch.rejects == []
        assert {e["model"] for e in batch.events} == {key.decode()}
        decoded.setdefault(key.decode(), []).extend(
            (e["event_id"], e.get("deployment")) for e in batch.events
        )
    for model, seen in decoded.items():
        assert seen == [(e["event_id"], e.get("deployment")) for e in of(events, model)]


def test_the_cli_writes_shadow_rollout_slices_and_attributions(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    argv = ["simulate", "--out", str(path), "--max-events", "3000", "--rate", "1000", "--labels",
            "--slices", "--attributions", "--shadow", "eta:v2:1.0", "--rollout", "fraud:v3:1-2",
            "--drift", "fraud:amount@region=eu:1"]  # fmt: skip
    assert main(argv) == 0
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(production(events)) == 3000 and len(shadows(events)) == len(of(production(events), "eta"))
    for event in events:
        SCHEMA.validate(event)
    t0 = events[0]["ts"]
    assert {e["model_version"] for e in of(events, "fraud") if e["ts"] - t0 >= 2} == {"v3"}
    labels = [orjson.loads(x) for x in (tmp_path / "e.labels.jsonl").read_bytes().splitlines()]
    assert len(labels) == len({lab["event_id"] for lab in labels}) > 2000


def test_simulate_to_file_counts_shadow_events(tmp_path: Path) -> None:
    out = simulate_to_file(SimConfig(start_ts=START, shadows=(ShadowSpec("churn", "v2"),)),
                           tmp_path / "s.jsonl", max_events=1000)  # fmt: skip
    lines = (tmp_path / "s.jsonl").read_bytes().splitlines()
    assert out["events"] == len(lines) > 1000
    assert sum(orjson.loads(x).get("deployment") == SHADOW for x in lines) == len(lines) - 1000


# ------------------------------------------------------------------ rollout


@pytest.mark.parametrize(("start", "end"), [(2.0, 8.0), (3.0, None)])
def test_the_rollout_share_ramps_as_specified(start: float, end: float | None) -> None:
    rollout = RolloutSpec("fraud", "v2", start, end)
    events = make(rollouts=(rollout,)).batch(20_000)  # 20 s, ~10,000 fraud events
    mine = of(events, "fraud")
    t = np.array([elapsed(e) for e in mine])
    new = np.array([e["model_version"] == "v2" for e in mine])
    assert not new[t < start].any()
    assert new[t >= (start if end is None else end)].all()
    if end is not None:
        edges = np.linspace(start, end, 7)
        for lo, hi in itertools.pairwise(edges):
            inside = (t >= lo) & (t < hi)
            expected = ((lo + hi) / 2 - start) / (end - start)
            sd = math.sqrt(expected * (1 - expected) / inside.sum())
            assert abs(new[inside].mean() - expected) < 4 * sd + 0.01, (lo, hi)


def test_a_rollout_changes_only_the_served_version_and_prediction(
    base: tuple[list[Event], list[Event]],
) -> None:
    events, labels = run(rollouts=(RolloutSpec("churn", "v2", 2.0, 4.0, change=1.0),))
    assert orjson.dumps(labels) == orjson.dumps(base[1])  # ground truth does not move
    served = 0
    for before, after in zip(base[0], events, strict=True):
        if after["model_version"] == "v2":
            served += 1
            assert after["model"] == "churn" and elapsed(after) > 2.0
            assert strip(after, "model_version", "prediction") == strip(before, "model_version", "prediction")
        else:
            assert after == before
    assert served > 800


def test_rollout_choices_are_deterministic_and_depend_on_the_seed() -> None:
    def choices(seed: int) -> list[bool]:
        sim = make(seed=seed, rollouts=(RolloutSpec("eta", "v2", 0.0, 10.0),))
        return [e["model_version"] == "v2" for e in of(sim.batch(5000), "eta")]

    assert choices(1) == choices(1)
    assert choices(1) != choices(2)


# ------------------------------------------------------------------ perturbed models


def test_perturbed_models_are_deterministic_and_move_linearly_with_change() -> None:
    for spec in MODELS.values():
        one = perturbed_model(spec, "v2", 1.0, seed=7)
        assert one == perturbed_model(spec, "v2", 1.0, seed=7)
        assert one != perturbed_model(spec, "v2", 1.0, seed=8)
        assert one != perturbed_model(spec, "v3", 1.0, seed=7)
        assert perturbed_model(spec, "v2", 0.0, seed=7).terms == spec.terms
        two = perturbed_model(spec, "v2", 2.0, seed=7)
        for t0, t1, t2 in zip(spec.terms, one.terms, two.terms, strict=True):
            step = np.subtract(t1.weights, t0.weights)
            assert np.allclose(np.subtract(t2.weights, t0.weights), 2 * step)
        assert (one.name, one.task, one.features, one.version) == (spec.name, spec.task, spec.features, "v2")


# ------------------------------------------------------------------ reference events


def test_reference_events_carry_slices_and_attributions_but_no_deployment() -> None:
    plain = make().reference_events("fraud", 300)
    rich = make(slices=True, attributions=True, shadows=(ShadowSpec("fraud", "v2"),),
                rollouts=(RolloutSpec("fraud", "v2", 0.0),)).reference_events("fraud", 300)  # fmt: skip
    assert [strip(e, *ADDED) for e in rich] == plain
    assert all("slices" in e and "attributions" in e and "deployment" not in e for e in rich)
    assert {e["model_version"] for e in rich} == {"v1"}


# ------------------------------------------------------------------ CLI and validation


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_config_from_args_takes_the_new_flags() -> None:
    cfg = config_from_args(parse(
        "--slices", "--attributions", "--shadow", "eta:v2", "--shadow", "churn:c2:1.5",
        "--rollout", "fraud:v2:60-120", "--rollout", "eta:v2:30:0.5",
    ))  # fmt: skip
    assert cfg.slices and cfg.attributions
    assert cfg.shadows == (ShadowSpec("eta", "v2", 0.5), ShadowSpec("churn", "c2", 1.5))
    assert cfg.rollouts == (RolloutSpec("fraud", "v2", 60.0, 120.0), RolloutSpec("eta", "v2", 30.0))
    defaults = config_from_args(parse())
    assert (defaults.slices, defaults.attributions, defaults.shadows, defaults.rollouts) == (
        False, False, (), ())  # fmt: skip


def test_the_help_documents_the_new_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(parser.format_help().split())
    for piece in ("--slices", "--attributions", f"--shadow {SHADOW_FORMAT}", f"--rollout {ROLLOUT_FORMAT}",
                  f"--drift {DRIFT_FORMAT}", "@SLICE=VALUE", "region (eu 40%", "deployment 'shadow'"):
        assert piece in text, piece  # fmt: skip


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fraud:amount@:60", "must be @SLICE=VALUE"),
        ("fraud:amount@region:60", "must be @SLICE=VALUE"),
        ("fraud:amount@region=:60", "must be @SLICE=VALUE"),
        ("fraud:amount@regon=eu:60", "unknown slice 'regon'; the simulated slices are region (eu, us"),
        ("fraud:amount@region=mars:60", "slice 'region' has no value 'mars'; its values: eu, us, apac"),
        ("fraud:amount@device=tablet:60", "its values: mobile, web"),
    ],
)  # fmt: skip
def test_bad_slice_drifts_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_args(parse("--slices", "--drift", text))
    message = str(info.value)
    assert message.startswith(f"--drift {text!r}") and problem in message and DRIFT_FORMAT in message
    with pytest.raises(ConfigError):
        parse_drift(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fraud", "expected 2 or 3 ':'-separated parts, got 1"),
        ("fraud:v2:1:2", "got 4"),
        (":v2", "MODEL is empty"),
        ("fraud:", "VERSION is empty"),
        ("fraud:v2:big", "CHANGE 'big' is not a number"),
        ("fraud:v2:-1", "CHANGE must be >= 0"),
        ("fraud:v2:nan", "CHANGE must be finite"),
        ("nope:v2", "unknown model 'nope'; known models: fraud, churn, eta"),
        ("fraud:v1", "version 'v1' is the version the model already runs"),
        ("fraud:" + "v" * 201, "at most 200"),
    ],
)  # fmt: skip
def test_bad_shadows_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_args(parse("--shadow", text))
    message = str(info.value)
    assert message.startswith(f"--shadow {text!r}") and problem in message and SHADOW_FORMAT in message
    with pytest.raises(ConfigError):
        parse_shadow(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fraud:v2", "expected 3 or 4 ':'-separated parts, got 2"),
        ("fraud:v2:1:2:3", "got 5"),
        (":v2:60", "MODEL is empty"),
        ("fraud::60", "VERSION is empty"),
        ("fraud:v2:", "START is empty"),
        ("fraud:v2:soon", "START 'soon' is not a number"),
        ("fraud:v2:60-later", "END 'later' is not a number"),
        ("fraud:v2:-5", "START must be >= 0"),
        ("fraud:v2:120-60", "END must be > START, got '120-60'"),
        ("fraud:v2:60:-1", "CHANGE must be >= 0"),
        ("nope:v2:60", "unknown model 'nope'"),
        ("eta:v1:60", "version 'v1' is the version the model already runs"),
    ],
)  # fmt: skip
def test_bad_rollouts_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_args(parse("--rollout", text))
    message = str(info.value)
    assert message.startswith(f"--rollout {text!r}") and problem in message and ROLLOUT_FORMAT in message
    with pytest.raises(ConfigError):
        parse_rollout(text)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (("--shadow", "eta:v2", "--shadow", "eta:v3"),
         "--shadow 'eta:v2' and --shadow 'eta:v3' both name model 'eta'; give each model one --shadow"),
        (("--rollout", "eta:v2:1", "--rollout", "eta:v3:2"), "give each model one --rollout at most"),
        (("--shadow", "eta:v2:0.5", "--rollout", "eta:v2:60:1"),
         "name the same version 'v2' of 'eta' with different CHANGE (0.5 and 1)"),
    ],
)  # fmt: skip
def test_conflicting_variants_are_rejected(argv: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_args(parse(*argv))
    assert problem in str(info.value)


def test_the_same_version_in_shadow_and_rollout_with_the_same_change_is_fine() -> None:
    cfg = config_from_args(parse("--shadow", "eta:v2", "--rollout", "eta:v2:60"))
    assert cfg.shadows[0].version == cfg.rollouts[0].version == "v2"


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"shadows": (ShadowSpec("nope", "v2"),)}, "shadow names unknown model 'nope'"),
        ({"shadows": (ShadowSpec("eta", "v2"), ShadowSpec("eta", "v3"))}, "has more than one shadow"),
        ({"rollouts": (RolloutSpec("eta", "v1", 1.0),)}, "rollout of 'eta': version 'v1' is the version"),
        ({"shadows": ("eta:v2",)}, "shadows must be ShadowSpec objects"),
        ({"shadows": (ShadowSpec("eta", "v2", 1.0),), "rollouts": (RolloutSpec("eta", "v2", 1.0),)},
         "one version is one model"),
        ({"slices": 1}, "slices must be True or False"),
        ({"attributions": "yes"}, "attributions must be True or False"),
    ],
)  # fmt: skip
def test_sim_config_checks_the_variants(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        SimConfig(**kwargs)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: ShadowSpec("", "v2"), "model must be a non-empty name"),
        (lambda: ShadowSpec("eta", ""), "version must be a string of 1 to 200 characters"),
        (lambda: ShadowSpec("eta", "v2", math.inf), "change must be a finite number >= 0"),
        (lambda: RolloutSpec("eta", "v2", -1.0), "start_seconds must be a number >= 0"),
        (lambda: RolloutSpec("eta", "v2", 5.0, 5.0), "end_seconds must be None"),
        (lambda: DriftSpec("fraud", ("amount",), 1.0, slice=("region",)), "(slice name, value) pair"),  # type: ignore[arg-type]
        (lambda: DriftSpec("fraud", ("amount",), 1.0, slice=("planet", "mars")), "unknown slice 'planet'"),
    ],
)  # fmt: skip
def test_invalid_specs_say_what_is_wrong(build: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert problem in str(info.value)


def test_the_cli_rejects_a_bad_shadow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--out", str(tmp_path / "e.jsonl"), "--shadow", "fraud:v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftstream simulate: error: --shadow 'fraud:v1'") and SHADOW_FORMAT in err
