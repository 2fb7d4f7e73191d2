"""The traffic simulator: determinism, the event contract, injected drift, labels,
envelopes, the sinks (with a fake producer) and the CLI option parsing."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.core.events import decode_message, normalize_event, normalize_label
from stream.errors import ConfigError
from stream.kafka.ingest import Record, route
from stream.simulate import (
    DRIFT_FORMAT,
    LABEL_DELAY_DISTRIBUTIONS,
    DriftSpec,
    NumericFeature,
    SimConfig,
    Simulator,
    add_arguments,
    config_from_args,
    default_models,
    encode_messages,
    parse_drift,
    produce,
    simulate_to_file,
    write_jsonl,
)

START = 1_700_000_000.0
RATE = 1000.0
AT = 10.0  # drift onset: events 0..9999 are before it, 10000..19999 after
N = 20_000


def make(**kw: Any) -> Simulator:
    kw.setdefault("start_ts", START)
    kw.setdefault("rate", RATE)
    return Simulator(SimConfig(**kw))


def split(events: list[dict[str, Any]], model: str, at: float = AT) -> tuple[list[Any], list[Any]]:
    mine = [e for e in events if e["model"] == model]
    return (
        [e for e in mine if e["ts"] - START < at],
        [e for e in mine if e["ts"] - START >= at],
    )


def feature_values(events: list[dict[str, Any]], name: str) -> list[Any]:
    return [e["features"][name] for e in events]


def numeric(events: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([v for v in feature_values(events, name) if v is not None], dtype=float)


def spec(model: str, feature: str) -> Any:
    return next(m for m in default_models() if m.name == model).feature(feature)


@pytest.fixture(scope="module")
def plain() -> list[dict[str, Any]]:
    return make().batch(N)


@pytest.fixture(scope="module")
def drifted() -> list[dict[str, Any]]:
    drifts = (
        DriftSpec("fraud", ("amount", "country"), at_seconds=AT, magnitude=2.0),
        DriftSpec("eta", ("prediction",), at_seconds=AT, magnitude=1.5),
    )
    return make(drifts=drifts).batch(N)


@pytest.fixture(scope="module")
def labelled() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sim = make(labels=True, label_coverage=0.9, accuracy_drop_at_seconds=AT, accuracy_drop=0.3)
    events = sim.batch(N)
    return events, sim.due_labels(math.inf)


# ------------------------------------------------------------------ determinism, contract


def test_same_seed_same_events_and_different_seed_different(plain: list[dict[str, Any]]) -> None:
    assert make().batch(N) == plain
    other = make(seed=8).batch(N)
    assert other != plain
    assert [e["ts"] for e in other] == [e["ts"] for e in plain]


def test_event_ids_unique_and_ts_advances_by_one_over_rate(plain: list[dict[str, Any]]) -> None:
    assert len({e["event_id"] for e in plain}) == N
    ts = np.array([e["ts"] for e in plain])
    assert np.allclose(np.diff(ts), 1 / RATE, rtol=0, atol=1e-6)  # float spacing at 1.7e9
    assert ts[0] == START


def test_every_event_follows_the_contract_and_all_prediction_forms_appear(
    plain: list[dict[str, Any]],
) -> None:
    forms: Counter[str] = Counter()
    for raw in plain[:5000]:
        event = normalize_event(orjson.loads(orjson.dumps(raw)), "prediction")
        p = event["prediction"]
        if p["score"] is not None:
            assert isinstance(p["label"], bool) and 0.0 <= p["score"] <= 1.0
            forms["binary"] += 1
        elif p["scores"] is not None:
            assert set(p["scores"]) == {"stay", "downgrade", "churn"}
            assert p["label"] == max(p["scores"], key=p["scores"].__getitem__)
            forms["multiclass"] += 1
        else:
            assert isinstance(p["value"], float)
            forms["regression"] += 1
    assert set(forms) == {"binary", "multiclass", "regression"}
    shares = Counter(e["model"] for e in plain)
    assert shares["fraud"] > shares["eta"] > shares["churn"]  # weights 0.5 / 0.3 / 0.2


def test_features_mix_types_with_some_missing(plain: list[dict[str, Any]]) -> None:
    fraud = [e for e in plain if e["model"] == "fraud"]
    assert isinstance(fraud[0]["features"]["country"], str)
    assert isinstance(fraud[0]["features"]["txn_count_24h"], int)
    missing = sum(v is None for v in feature_values(fraud, "distance_from_home_km"))
    assert 0.01 < missing / len(fraud) < 0.06  # natural missing rate 3 %
    assert all(v is not None for v in feature_values(fraud, "amount"))


# ------------------------------------------------------------------ drift


def test_numeric_drift_shifts_the_mean_by_magnitude_std(drifted: list[dict[str, Any]]) -> None:
    before, after = split(drifted, "fraud")
    std = spec("fraud", "amount").std
    shift = numeric(after, "amount").mean() - numeric(before, "amount").mean()
    assert shift / std == pytest.approx(2.0, abs=0.15)


def test_undrifted_features_stay_within_noise(drifted: list[dict[str, Any]]) -> None:
    for model in default_models():
        before, after = split(drifted, model.name)
        for f in model.features:
            if not isinstance(f, NumericFeature) or (model.name, f.name) == ("fraud", "amount"):
                continue
            diff = numeric(after, f.name).mean() - numeric(before, f.name).mean()
            assert abs(diff) < 0.12 * f.std, (model.name, f.name, diff / f.std)


def test_events_before_the_onset_are_unchanged(
    plain: list[dict[str, Any]], drifted: list[dict[str, Any]]
) -> None:
    cut = int(AT * RATE)
    assert drifted[:cut] == plain[:cut]
    assert drifted[cut:] != plain[cut:]


def test_categorical_drift_moves_mass_to_the_rare_category(drifted: list[dict[str, Any]]) -> None:
    before, after = split(drifted, "fraud")
    share_before = Counter(feature_values(before, "country"))["NG"] / len(before)
    share_after = Counter(feature_values(after, "country"))["NG"] / len(after)
    assert share_before == pytest.approx(0.03, abs=0.01)
    # magnitude 2 moves min(0.9, 2 * 0.5) = 0.9 of the mass: 0.03 * 0.1 + 0.9
    assert share_after == pytest.approx(0.903, abs=0.02)
    assert Counter(feature_values(after, "device")) != {}  # other categoricals untouched
    dev_b = Counter(feature_values(before, "device"))["mobile"] / len(before)
    dev_a = Counter(feature_values(after, "device"))["mobile"] / len(after)
    assert abs(dev_a - dev_b) < 0.03


def test_prediction_drift_shifts_the_output(drifted: list[dict[str, Any]]) -> None:
    before, after = split(drifted, "eta")
    b = np.array([e["prediction"] for e in before])
    a = np.array([e["prediction"] for e in after])
    assert (a.mean() - b.mean()) / b.std() == pytest.approx(1.5, abs=0.2)
    # features themselves did not move
    d = numeric(after, "distance_km").mean() - numeric(before, "distance_km").mean()
    assert abs(d) < 0.1 * spec("eta", "distance_km").std


def test_unit_factor_multiplies_values() -> None:
    drift = DriftSpec("eta", ("distance_km",), at_seconds=1.0, magnitude=0.0, unit_factor=1000.0)
    events = make(drifts=(drift,)).batch(3000)
    before, after = split(events, "eta", at=1.0)
    ratio = numeric(after, "distance_km").mean() / numeric(before, "distance_km").mean()
    assert 800 < ratio < 1250
    with pytest.raises(ConfigError, match="categorical"):
        SimConfig(drifts=(DriftSpec("eta", ("city",), 1.0, unit_factor=10.0),))


def test_drift_with_an_end_recovers(plain: list[dict[str, Any]]) -> None:
    """``end_seconds`` bounds a drift (a unit change here): after it the events are the
    undrifted ones again."""
    drifts = (
        DriftSpec("eta", ("distance_km",), 5.0, magnitude=0.0, unit_factor=1000.0, end_seconds=AT),
        DriftSpec("fraud", ("country", "prediction"), 5.0, magnitude=2.0, end_seconds=AT),
    )
    events = make(drifts=drifts).batch(N)
    window = [i for i, e in enumerate(plain) if 5.0 <= e["ts"] - START < AT]
    assert events[: window[0]] == plain[: window[0]]
    assert events[window[-1] + 1 :] == plain[window[-1] + 1 :]
    eta = [(events[i], plain[i]) for i in window if plain[i]["model"] == "eta"]
    ratio = np.mean([a["features"]["distance_km"] / b["features"]["distance_km"] for a, b in eta])
    assert ratio == pytest.approx(1000.0, rel=0.01)
    with pytest.raises(ConfigError, match=r"end_seconds must be None \(until the end\) or a number >"):
        DriftSpec("fraud", ("amount",), 5.0, end_seconds=5.0)


def test_invalid_drifts_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        SimConfig(drifts=(DriftSpec("nope", ("amount",), 1.0),))
    with pytest.raises(ConfigError, match="unknown feature 'amnt'"):
        SimConfig(drifts=(DriftSpec("fraud", ("amnt",), 1.0),))
    with pytest.raises(ConfigError, match="at_seconds"):
        DriftSpec("fraud", ("amount",), -1.0)


# ------------------------------------------------------------------ labels


def test_labels_are_delayed_per_the_distribution_and_cover_the_configured_share(
    labelled: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    events, labels = labelled
    by_id = {e["event_id"]: e for e in events}
    assert len(labels) >= 5000
    delays = np.array([lab["ts"] - by_id[lab["event_id"]]["ts"] for lab in labels])
    assert (delays >= 0).all()
    assert delays.mean() == pytest.approx(30.0, rel=0.15)
    assert len(labels) / len(events) == pytest.approx(0.9, abs=0.02)
    assert [lab["ts"] for lab in labels] == sorted(lab["ts"] for lab in labels)
    for lab in labels[:200]:
        normalize_label(lab)
        assert lab["model"] == by_id[lab["event_id"]]["model"]


def test_due_labels_hands_out_only_due_labels_once() -> None:
    sim = make(labels=True)
    sim.batch(2000)
    pending = sim.pending_labels
    first = sim.due_labels(START + 20.0)
    assert first and all(lab["ts"] <= START + 20.0 for lab in first)
    assert sim.pending_labels == pending - len(first)
    assert sim.due_labels(START + 20.0) == []
    assert make().batch(10) and make().due_labels(math.inf) == []  # labels off


def agreement(events: list[dict[str, Any]], truth: dict[str, Any]) -> float:
    hits = [
        e["prediction"]["label"] == truth[e["event_id"]] for e in events if e["event_id"] in truth
    ]
    return float(np.mean(hits))


def test_accuracy_drop_lowers_agreement_after_the_drop(
    labelled: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    events, labels = labelled
    truth = {lab["event_id"]: lab["label"] for lab in labels}
    for model, min_drop in (("fraud", 0.15), ("churn", 0.1)):
        before, after = split(events, model)
        a_before, a_after = agreement(before, truth), agreement(after, truth)
        assert a_before - a_after > min_drop, (model, a_before, a_after)
    before, after = split(events, "eta")

    def mae(evs: list[dict[str, Any]]) -> float:
        return float(
            np.mean(
                [abs(e["prediction"] - truth[e["event_id"]]) for e in evs if e["event_id"] in truth]
            )
        )

    assert mae(after) > 1.5 * mae(before)


def test_binary_labels_are_consistent_with_the_score(
    labelled: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    events, labels = labelled
    truth = {lab["event_id"]: lab["label"] for lab in labels}
    before, _ = split(events, "fraud")
    covered = [e for e in before if e["event_id"] in truth]
    positives = np.mean([truth[e["event_id"]] for e in covered])
    mean_score = np.mean([e["prediction"]["score"] for e in covered])
    assert positives == pytest.approx(mean_score, abs=0.015)  # calibrated before the drop


def test_regression_accuracy_drop_pushes_labels_far_off() -> None:
    """For a regression, a corrupted label is ``value + N(0, noise) +- 4 * noise``: the
    share of large errors jumps from the noise's tail to about ``accuracy_drop``."""
    sim = make(labels=True, label_coverage=1.0, accuracy_drop_at_seconds=AT, accuracy_drop=0.3)
    events = sim.batch(N)
    truth = {lab["event_id"]: lab["label"] for lab in sim.due_labels(math.inf)}
    noise = next(m for m in default_models() if m.name == "eta").noise

    def far_share(evs: list[dict[str, Any]]) -> float:
        errors = np.array([truth[e["event_id"]] - e["prediction"] for e in evs])
        assert np.isfinite(errors).all()
        return float(np.mean(np.abs(errors) > 2.4 * noise))

    before, after = split(events, "eta")
    assert far_share(before) < 0.04
    assert far_share(after) == pytest.approx(0.3 * 0.95 + 0.7 * 0.016, abs=0.04)
    assert all(isinstance(truth[e["event_id"]], float) for e in after)


# ------------------------------------------------------------------ label delay distributions


def delays_of(dist: str, mean: float = 20.0, seed: int = 7, n: int = N, rate: float = RATE,
              **kw: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    kw.setdefault("label_coverage", 1.0)
    sim = make(labels=True, label_delay_mean_seconds=mean, label_delay_distribution=dist,
               seed=seed, rate=rate, **kw)
    events = sim.batch(n)
    labels = sim.due_labels(math.inf)
    ts = {e["event_id"]: e["ts"] for e in events}
    return np.array([lab["ts"] - ts[lab["event_id"]] for lab in labels]), labels


@pytest.mark.parametrize("dist", LABEL_DELAY_DISTRIBUTIONS)
def test_every_delay_distribution_has_the_configured_mean(dist: str) -> None:
    delays, labels = delays_of(dist)
    assert len(delays) == N and (delays >= 0).all()
    # 20000 delays: the standard error of the mean is 0.7% (exponential) and 0.9%
    # (lognormal, whose std is 1.31 times its mean) of it; 5% is over 5 of them.
    assert delays.mean() == pytest.approx(20.0, rel=0.05)
    assert [lab["ts"] for lab in labels] == sorted(lab["ts"] for lab in labels)
    for lab in labels[:100]:
        normalize_label(lab)


def test_each_delay_distribution_has_its_shape() -> None:
    exp, _ = delays_of("exponential")
    assert np.median(exp) == pytest.approx(20.0 * math.log(2), rel=0.05)
    assert exp.std() == pytest.approx(20.0, rel=0.05)
    logn, _ = delays_of("lognormal")
    logs = np.log(logn)
    assert logs.std() == pytest.approx(1.0, rel=0.05)  # sigma 1.0
    assert np.median(logn) == pytest.approx(20.0 / math.sqrt(math.e), rel=0.05)
    assert logs.mean() == pytest.approx(math.log(20.0) - 0.5, abs=0.03)
    fixed, _ = delays_of("fixed")
    assert fixed.std() == pytest.approx(0.0, abs=1e-5)


def test_fixed_delay_is_exactly_the_mean() -> None:
    # at 8 events/s every ts is a multiple of 1/8: exact in binary, so is ts + 12.5
    delays, labels = delays_of("fixed", mean=12.5, n=2000, rate=8.0)
    assert len(labels) == 2000 and set(delays.tolist()) == {12.5}


def test_the_delay_distribution_changes_the_delays_only() -> None:
    kw = {"accuracy_drop_at_seconds": 2.0, "n": 5000}  # some labels corrupted, too
    runs = {d: delays_of(d, label_coverage=0.8, **kw) for d in LABEL_DELAY_DISTRIBUTIONS}

    def content(labels: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        return sorted((lab["event_id"], lab["label"]) for lab in labels)

    expected = content(runs["exponential"][1])
    assert len(expected) == pytest.approx(0.8 * 5000, rel=0.05)
    for dist, (_, labels) in runs.items():
        assert content(labels) == expected, dist
    assert not np.allclose(runs["lognormal"][0], runs["exponential"][0])
    # the events themselves never depend on the labels' settings
    assert make(labels=True, label_delay_distribution="lognormal").batch(500) == make().batch(500)


@pytest.mark.parametrize("dist", LABEL_DELAY_DISTRIBUTIONS)
def test_delays_are_deterministic_for_a_seed(dist: str) -> None:
    a, labels_a = delays_of(dist, n=3000, seed=5)
    b, labels_b = delays_of(dist, n=3000, seed=5)
    assert labels_a == labels_b and a.tolist() == b.tolist()
    c, _ = delays_of(dist, n=3000, seed=6)
    if dist == "fixed":
        assert c.tolist() == pytest.approx(a.tolist(), abs=1e-5)
    else:
        assert c.tolist() != a.tolist()


def test_the_default_delay_distribution_is_exponential() -> None:
    assert SimConfig().label_delay_distribution == "exponential"
    default = make(labels=True)
    explicit = make(labels=True, label_delay_distribution="exponential")
    assert default.batch(3000) == explicit.batch(3000)
    assert default.due_labels(math.inf) == explicit.due_labels(math.inf)


@pytest.mark.parametrize("bad", ["gamma", "Exponential", "", None, 1])
def test_an_unknown_delay_distribution_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        SimConfig(label_delay_distribution=bad)
    message = str(info.value)
    assert "label_delay_distribution" in message
    assert "exponential, fixed, lognormal" in message and repr(bad) in message


def test_label_heap_is_bounded() -> None:
    sim = Simulator(
        SimConfig(start_ts=START, labels=True, label_coverage=1.0), max_pending_labels=100
    )
    sim.batch(500)
    assert sim.pending_labels == 100
    assert sim.labels_dropped == 400


# ------------------------------------------------------------------ reference, realtime


def test_reference_events_are_undrifted_and_do_not_advance_the_stream() -> None:
    drift = DriftSpec("fraud", ("amount",), at_seconds=0.0, magnitude=3.0)
    sim = make(drifts=(drift,))
    ref = sim.reference_events("fraud", 4000)
    assert ref == sim.reference_events("fraud", 4000)
    assert sim.batch(100) == make(drifts=(drift,)).batch(100)
    assert {e["model"] for e in ref} == {"fraud"} and len({e["event_id"] for e in ref}) == 4000
    assert all(e["ts"] < START for e in ref)
    amount = spec("fraud", "amount")
    assert abs(numeric(ref, "amount").mean() - amount.mean) < 0.15 * amount.std
    for e in ref[:100]:
        normalize_event(e, "prediction")
    with pytest.raises(ConfigError, match="unknown model"):
        sim.reference_events("nope", 1)


def test_batch_with_now_spreads_events_up_to_now() -> None:
    sim = make()
    events = sim.batch(4, now=START + 2.0)
    assert [e["ts"] for e in events] == [START + 0.5, START + 1.0, START + 1.5, START + 2.0]
    later = sim.batch(2, now=START + 1.0)  # a clock going backwards never reorders
    assert [e["ts"] for e in later] == [START + 2.0, START + 2.0]


# ------------------------------------------------------------------ envelopes, sinks


def test_envelopes_decode_fully_and_keep_per_model_order(plain: list[dict[str, Any]]) -> None:
    events = plain[:3000]
    messages = encode_messages(events, envelope=25)
    decoded: dict[str, list[str]] = {}
    for key, value in messages:
        assert value.startswith(b"[")
        batch = decode_message(value, "prediction")
        assert batch.rejects == [] and 1 <= len(batch.events) <= 25
        assert {e["model"] for e in batch.events} == {key.decode()}
        decoded.setdefault(key.decode(), []).extend(e["event_id"] for e in batch.events)
    for model, ids in decoded.items():
        assert ids == [e["event_id"] for e in events if e["model"] == model]
    assert sum(map(len, decoded.values())) == 3000
    singles = encode_messages(events[:5])
    assert [orjson.loads(v) for _, v in singles] == events[:5]


def test_write_jsonl_and_simulate_to_file(tmp_path: Path) -> None:
    events = make().batch(50)
    path = tmp_path / "e.jsonl"
    assert write_jsonl(path, events) == 50
    assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == events
    out = simulate_to_file(
        SimConfig(start_ts=START, labels=True), tmp_path / "s.jsonl", max_events=300
    )
    assert out["events"] == 300 and out["labels"] > 200
    assert len((tmp_path / "s.labels.jsonl").read_bytes().splitlines()) == out["labels"]
    with pytest.raises(ConfigError, match="--max-events"):
        simulate_to_file(SimConfig(), tmp_path / "x.jsonl")


class FakeProducer:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def test_produce_fast_sends_enveloped_events_and_all_labels() -> None:
    made: list[FakeProducer] = []

    def factory(bootstrap: str) -> FakeProducer:
        made.append(FakeProducer(bootstrap))
        return made[-1]

    config = SimConfig(start_ts=START, labels=True, envelope=10)
    counts = await produce("h:1", config, max_events=2500, realtime=False, producer_factory=factory)
    (producer,) = made
    assert producer.started and producer.stopped and producer.bootstrap == "h:1"
    preds = [(k, v) for t, k, v in producer.sent if t == "predictions"]
    labels = [(k, v) for t, k, v in producer.sent if t == "labels"]
    assert counts["messages"] == len(preds) and counts["labels"] == len(labels)
    decoded = [e for _, v in preds for e in decode_message(v, "prediction").events]
    assert counts["events"] == len(decoded) == 2500
    assert min(e["ts"] for e in decoded) == START
    assert all(k.decode() == orjson.loads(v)[0]["model"] for k, v in preds)
    assert len(labels) == pytest.approx(0.9 * 2500, rel=0.05)


async def test_produce_sends_labels_to_the_labels_topic_and_ingest_routes_them() -> None:
    made: list[FakeProducer] = []

    def factory(bootstrap: str) -> FakeProducer:
        made.append(FakeProducer(bootstrap))
        return made[-1]

    config = SimConfig(start_ts=START, labels=True, label_coverage=1.0, envelope=5,
                       label_delay_distribution="fixed", label_delay_mean_seconds=0.5)
    counts = await produce("h:1", config, max_events=600, realtime=False,
                           predictions_topic="my-preds", labels_topic="my-labels",
                           producer_factory=factory)
    sent = made[0].sent
    assert {t for t, _, _ in sent} == {"my-preds", "my-labels"}
    labels = [(k, v) for t, k, v in sent if t == "my-labels"]
    assert counts["labels"] == len(labels) == 600
    ids = {e["event_id"] for t, _, v in sent if t == "my-preds" for e in orjson.loads(v)}
    for key, value in labels:
        batch = decode_message(value, "label")
        assert batch.rejects == [] and len(batch.events) == 1
        (lab,) = batch.events
        assert key.decode() == lab["model"] and lab["event_id"] in ids
    # what ingest makes of them: one labels envelope per model, nothing dead-lettered
    records = [Record(t, 0, i, v) for i, (t, _, v) in enumerate(sent)]
    out = route(records, kinds={"my-preds": "prediction", "my-labels": "label"}, partitions=4,
                max_message_bytes=1 << 20, dead_letter_max_bytes=100, now=0.0)
    assert out.dead_letters == [] and out.accepted == {"my-preds": 600, "my-labels": 600}
    envs = [orjson.loads(v) for _, _, v in out.envelopes]
    routed = [eid for env in envs if env["type"] == "labels" for eid in env["labels"]["event_id"]]
    assert sorted(routed) == sorted(ids)


async def test_produce_realtime_stamps_wall_clock_time() -> None:
    made: list[FakeProducer] = []

    def factory(bootstrap: str) -> FakeProducer:
        made.append(FakeProducer(bootstrap))
        return made[-1]

    progress: list[dict[str, int]] = []
    t0 = time.time()
    counts = await produce(
        "h:1",
        SimConfig(rate=500.0),
        duration_seconds=0.2,
        on_progress=progress.append,
        producer_factory=factory,
    )
    t1 = time.time()
    ts = [orjson.loads(v)["ts"] for _, _, v in made[0].sent]
    assert 50 <= counts["events"] == len(ts) <= 110
    assert t0 <= min(ts) and max(ts) <= t1
    assert progress[-1] == counts


# ------------------------------------------------------------------ CLI options


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_config_from_args_parses_every_option() -> None:
    args = parse(
        "--rate", "50", "--seed", "3", "--drift", "fraud:amount,country:60:1.5",
        "--drift", "eta:prediction:30", "--labels", "--label-delay", "12",
        "--label-delay-distribution", "lognormal",
        "--accuracy-drop-at", "90", "--envelope", "20", "--duration", "10",
    )  # fmt: skip
    cfg = config_from_args(args)
    assert (cfg.rate, cfg.seed, cfg.labels, cfg.envelope) == (50.0, 3, True, 20)
    assert cfg.label_delay_mean_seconds == 12.0 and cfg.accuracy_drop_at_seconds == 90.0
    assert cfg.label_delay_distribution == "lognormal"
    assert cfg.drifts == (
        DriftSpec("fraud", ("amount", "country"), 60.0, 1.5),
        DriftSpec("eta", ("prediction",), 30.0, 1.0),
    )
    assert args.bootstrap == "127.0.0.1:9092" and args.duration == 10.0
    assert config_from_args(parse("--reference-out", "r.jsonl")).models == default_models()
    defaults = config_from_args(parse())
    assert (defaults.rate, defaults.seed, defaults.drifts, defaults.labels) == (300.0, 7, (), False)
    assert defaults.label_delay_distribution == "exponential"
    for dist in LABEL_DELAY_DISTRIBUTIONS:
        assert config_from_args(parse("--label-delay-distribution", dist)).label_delay_distribution == dist


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fraud:amount", "3 or 4"),
        ("fraud:amount:60:1:2", "3 or 4"),
        (":amount:60", "MODEL is empty"),
        ("fraud::60", "FEATURE is empty"),
        ("fraud:amount,:60", "FEATURE is empty"),
        ("fraud:amount:soon", "AT_SECONDS 'soon' is not a number"),
        ("fraud:amount:60:big", "MAGNITUDE 'big' is not a number"),
        ("fraud:amount:-5", "AT_SECONDS must be >= 0"),
        ("fraud:amount:inf", "finite"),
        ("nope:amount:60", "unknown model 'nope'"),
        ("fraud:amnt:60", "unknown feature 'amnt'"),
    ],
)
def test_bad_drift_strings_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_args(parse("--drift", text))
    message = str(info.value)
    assert message.startswith(f"--drift {text!r}") and problem in message
    assert DRIFT_FORMAT in message
    assert "MODEL:FEATURE[,FEATURE][@SLICE=VALUE]:AT_SECONDS[:MAGNITUDE]" in message
    with pytest.raises(ConfigError):
        parse_drift(text)


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (("--rate", "0"), "--rate"),
        (("--envelope", "0"), "--envelope"),
        (("--label-delay", "-1"), "--label-delay"),
        (("--label-delay-distribution", "gamma"),
         "--label-delay-distribution must be one of exponential, fixed, lognormal"),
        (("--accuracy-drop-at", "-1"), "--accuracy-drop-at"),
        (("--seed", "-1"), "--seed"),
        (("--model", "nope"), "--model"),
        (("--reference-out", "r.jsonl", "--model", "fraud", "--reference-events", "0"),
         "--reference-events"),
    ],
)  # fmt: skip
def test_bad_options_name_the_option(argv: tuple[str, ...], option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        config_from_args(parse(*argv))
