"""The ingest fast path: ``plain_event`` + ``ColumnsBuilder`` give exactly what the
general path (``normalize_event`` + the column definition) gives, on random inputs."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from stream.core.columns import ColumnsBuilder, columns_from_events
from stream.core.events import decode_message, normalize_event, plain_event
from stream.errors import InvalidEvent
from stream.kafka.ingest import ENVELOPE_MAX_EVENTS, Record, route


def oracle_columns(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The definition of a columnar batch, one comprehension per column."""
    feats = [e["features"] for e in events]
    out: dict[str, Any] = {
        "n": len(events),
        "event_id": [e.get("event_id") for e in events],
        "model_version": [e.get("model_version") for e in events],
        "ts": [e["ts"] for e in events],
        "features": {n: [f.get(n) for f in feats] for n in sorted(set().union(*feats))},
        "prediction": None,
    }
    if any(e.get("prediction") for e in events):
        out["prediction"] = {part: [e["prediction"][part] if e.get("prediction") else None
                                    for e in events] for part in ("label", "score", "value")}
    attrs = [e.get("attributions") or {} for e in events]
    if any(attrs):
        out["attributions"] = {n: [a.get(n) for a in attrs]
                               for n in sorted(set().union(*attrs))}
    tags = [e.get("slices") or {} for e in events]
    if any(tags):
        out["slices"] = {k: [t.get(k) for t in tags] for k in sorted(set().union(*tags))}
    if any(e.get("deployment") for e in events):
        out["deployment"] = [e.get("deployment") for e in events]
    return out


NAMES = ["a", "b", "c", "d"]


def random_value(rng: random.Random) -> Any:
    return rng.choice([rng.random(), rng.randint(-5, 5), "x", "y", True, False, None])


def random_features(rng: random.Random, shared: list[str]) -> dict[str, Any]:
    r = rng.random()
    if r < 0.7:  # the usual case: the same names, in varying order
        names = rng.sample(shared, len(shared))
    elif r < 0.8:
        names = []
    else:
        names = rng.sample(NAMES, rng.randint(1, len(NAMES)))
    return {n: random_value(rng) for n in names}


def random_normalised(rng: random.Random, shared: list[str], i: int) -> dict[str, Any]:
    kind = rng.choice(["prediction", "feature"])
    obj: dict[str, Any] = {"event_id": f"e{i}", "model": "m", "ts": 1000.0 + i,
                           "features": random_features(rng, shared)}
    if rng.random() < 0.5:
        obj["model_version"] = rng.choice(["v1", "v2"])
    if kind == "prediction":
        obj["prediction"] = rng.choice([{"label": True, "score": 0.3}, {"score": 0.9}, "fraud",
                                        2.5, {"scores": {"a": 0.2, "b": 0.8}}])
    if rng.random() < 0.1:
        obj["attributions"] = {n: rng.random() for n in rng.sample(NAMES, rng.randint(0, 3))}
    if rng.random() < 0.1:
        obj["slices"] = {"region": rng.choice(["eu", "us"])}
    if rng.random() < 0.1:
        obj["deployment"] = rng.choice(["shadow", "production"])
    return normalize_event(obj, kind)


@pytest.mark.parametrize("seed", range(40))
def test_builder_equals_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    shared = rng.sample(NAMES, rng.randint(1, len(NAMES)))
    events = [random_normalised(rng, shared, i) for i in range(rng.randint(0, 60))]
    assert columns_from_events(events) == oracle_columns(events)
    # the common shape through ``append``, the rest through ``append_event``, mixed
    b = ColumnsBuilder()
    for e in events:
        if not (e.get("attributions") or e.get("slices") or e.get("deployment")):
            p = e.get("prediction")
            if p:
                b.append(e["event_id"], e["model_version"], e["ts"], e["features"],
                         p["label"], p["score"], p["value"])
            else:
                b.append(e["event_id"], e["model_version"], e["ts"], e["features"],
                         prediction=False)
        else:
            b.append_event(e)
    assert len(b) == len(events)
    assert b.build() == oracle_columns(events)


def random_object(rng: random.Random, i: int) -> Any:
    """Mostly valid events, with one random field made odd half of the time."""
    obj: dict[str, Any] = {"event_id": f"e{i}", "model": rng.choice(["m1", "m2"]),
                           "ts": rng.choice([1700000000.5, 1700000000, 5]),
                           "features": {"x": rng.random(), "y": "u"}}
    if rng.random() < 0.5:
        obj["prediction"] = rng.choice([
            {"label": True, "score": 0.25}, {"label": 3}, {"score": 1}, "yes", False, 7, 0.5,
        ])
    if rng.random() < 0.5:
        field = rng.choice(["event_id", "model", "model_version", "ts", "features",
                            "prediction", "extra", "optional", "root"])
        odd = rng.choice([None, "", "x" * 300, 3, -1.0, 2e11, True, [1], {}, {"x": [1]},
                          {"x": None, "y": False}, "2024-01-01T00:00:00Z",
                          {"label": [1]}, {"score": 1.5}, {"score": True}, {"label": None},
                          {"scores": {"a": 0.1}}, {"label": "a", "scores": {}}])
        if field == "root":
            return rng.choice([odd, [obj], "event"])
        if field == "optional":
            obj[rng.choice(["schema_version", "slices", "attributions", "latency_ms",
                            "deployment"])] = rng.choice([1, None, {"region": "eu"}, 12.5])
        elif field == "extra":
            obj["unknown_field"] = odd
        elif odd is None and rng.random() < 0.5:
            obj.pop(field, None)
        else:
            obj[field] = odd
    return obj


@pytest.mark.parametrize("kind", ["prediction", "feature"])
def test_plain_event_agrees_with_normalize_event(kind: str) -> None:
    rng = random.Random(kind)
    fast = 0
    for i in range(4000):
        obj = orjson.loads(orjson.dumps(random_object(rng, i)))
        try:
            e = normalize_event(obj, kind, from_json=True)
        except InvalidEvent:
            e = None
        f = plain_event(obj, kind)
        if f is None:
            continue
        fast += 1
        # whatever the fast path accepts, the full path accepts with the same fields
        assert e is not None, obj
        p = e.get("prediction") or {"label": None, "score": None, "value": None, "scores": None}
        assert f == (e["event_id"], e["model"], e["model_version"], e["ts"], e["features"],
                     p["label"], p["score"], p["value"]), obj
        assert p["scores"] is None
        assert type(f[3]) is float and (f[6] is None or type(f[6]) is float)
        assert not (e.get("attributions") or e.get("slices") or e.get("deployment"))
    assert fast > 1000  # the fast path is exercised, not bypassed


def oracle_route(records: list[Record], kinds: dict[str, str]) -> list[tuple[str, int, bytes]]:
    """Envelopes from the general decoder and the column definition."""
    from stream.kafka.topics import partition_for

    by_model: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        for e in decode_message(rec.value, kinds[rec.topic]).events:
            by_model.setdefault(e["model"], []).append(e)
    out = []
    for model, events in by_model.items():
        for i in range(0, len(events), ENVELOPE_MAX_EVENTS):
            cols = oracle_columns(events[i:i + ENVELOPE_MAX_EVENTS])
            out.append((model, partition_for(model, 4),
                        orjson.dumps({"type": "columns", "model": model, "columns": cols})))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_route_equals_the_general_path(seed: int) -> None:
    rng = random.Random(seed)
    # feature events alone too: their columns have no prediction
    kinds = {"p": "prediction", "f": "feature"} if seed % 4 else {"f": "feature"}
    records = []
    for i in range(rng.choice([50, 1200])):
        topic = rng.choice(list(kinds))
        obj = random_object(rng, i)
        if topic == "p" and isinstance(obj, dict) and "prediction" not in obj:
            obj["prediction"] = 0.5
        r = rng.random()
        if r < 0.05:
            value = b'{"event_id": '
        elif r < 0.2:  # an envelope: a JSON array or JSON Lines of several events
            items = [obj, *(random_object(rng, 10_000 * (i + 1) + j) for j in range(5))]
            if topic == "p":
                for item in items:
                    if isinstance(item, dict):
                        item.setdefault("prediction", 0.25)
            value = (orjson.dumps(items) if rng.random() < 0.5
                     else b"\n".join(orjson.dumps(item) for item in items) + b"\n{oops\n")
        else:
            value = orjson.dumps(obj)
        records.append(Record(topic, 0, i, value))
    out = route(records, kinds=kinds, partitions=4, max_message_bytes=1 << 20,
                dead_letter_max_bytes=1000, now=0.0)
    assert out.envelopes == oracle_route(records, kinds)
    rejected = sum(len(decode_message(r.value, kinds[r.topic]).rejects) for r in records)
    assert len(out.dead_letters) == rejected > 0
    assert [d["source"].get("index") for d in out.dead_letters] == [
        rej.index for r in records for rej in decode_message(r.value, kinds[r.topic]).rejects]
    assert sum(out.accepted.values()) == sum(
        len(decode_message(r.value, kinds[r.topic]).events) for r in records)


@pytest.mark.parametrize("features", [
    [{"a": 1, "b": 2}, {"a": 3, "c": 4}],        # same size, other names
    [{"a": 1, "b": 2}, {"b": 3, "a": 4}],        # same names, other order
    [{"a": 1}, {"a": 2, "b": 3}],                # first event with one name
    [{"a": 1, "b": 2}, {}, {"a": 5, "b": 6}],    # an event without features
    [{"a": 1, "b": 2}, {"a": 3, "b": 4, "c": 5}],
])
def test_builder_shapes(features: list[dict[str, Any]]) -> None:
    events = [{"event_id": str(i), "model_version": None, "ts": float(i), "features": f}
              for i, f in enumerate(features)]
    b = ColumnsBuilder()
    for e in events:
        b.append(e["event_id"], None, e["ts"], e["features"], prediction=False)
    assert b.build() == oracle_columns(events)
