"""Labels through the ingest stage (pure: :func:`stream.kafka.ingest.route`, no broker).

Valid labels become ``{"type": "labels", ...}`` envelopes on their model's by-model
partition; invalid ones are dead-lettered like bad events, and the good labels around them
still go through."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from stream.config import Settings
from stream.core.events import normalize_label
from stream.kafka.ingest import ENVELOPE_MAX_EVENTS, IngestStage, Record, RoutedBatch, route
from stream.kafka.topics import partition_for
from stream.metrics import Metrics

PARTITIONS = 8
KINDS = {"predictions": "prediction", "features": "feature", "labels": "label"}


def run(records: list[Record], **kw: Any) -> RoutedBatch:
    kw.setdefault("max_message_bytes", 10_000)
    return route(records, kinds=KINDS, partitions=PARTITIONS, dead_letter_max_bytes=1000,
                 now=42.0, **kw)


def label(eid: str, model: str = "fraud", value: Any = True, ts: Any = 100.0) -> dict[str, Any]:
    return {"event_id": eid, "model": model, "label": value, "ts": ts}


def prediction(eid: str, model: str = "fraud", ts: float = 50.0) -> dict[str, Any]:
    return {"event_id": eid, "model": model, "ts": ts, "features": {"x": 1.0},
            "prediction": {"label": True, "score": 0.9}}


def rec(value: Any, offset: int, topic: str = "labels", partition: int = 3) -> Record:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return Record(topic, partition, offset, raw)


def decoded(out: RoutedBatch) -> list[tuple[str, int, dict[str, Any]]]:
    return [(m, p, orjson.loads(v)) for m, p, v in out.envelopes]


def label_rows(out: RoutedBatch, model: str | None = None) -> list[tuple[Any, Any, Any]]:
    """Every routed label as (event_id, label, ts), envelope after envelope."""
    rows: list[tuple[Any, Any, Any]] = []
    for m, _, env in decoded(out):
        if env["type"] == "labels" and (model is None or m == model):
            cols = env["labels"]
            rows += zip(cols["event_id"], cols["label"], cols["ts"], strict=True)
    return rows


# ------------------------------------------------------------------ valid labels


def test_valid_labels_become_label_envelopes_per_model_on_its_partition() -> None:
    records = [
        rec(label("f1", value=True, ts=10), 0),                              # fast path
        rec(label("c1", "churn", "stay", "2023-11-14T22:13:20Z"), 1),         # RFC 3339 ts
        rec([label("f2", value=False, ts=11.5), label("e1", "eta", 21.5, 12)], 2),  # array
        rec(b"\n".join(orjson.dumps(x) for x in (label("f3", value=1, ts=13),
                                                 label("c2", "churn", "churn", 14))), 3),  # JSONL
        rec({"schema_version": 1, **label("f4", ts=15)}, 4),
    ]
    out = run(records)
    assert out.dead_letters == []
    assert out.accepted == {"labels": 7}
    envs = decoded(out)
    # one envelope per model, models in order of first appearance
    assert [(m, p) for m, p, _ in envs] == [
        (m, partition_for(m, PARTITIONS)) for m in ("fraud", "churn", "eta")
    ]
    for model, _, env in envs:
        assert set(env) == {"type", "model", "labels"}
        assert env["type"] == "labels" and env["model"] == model
        assert set(env["labels"]) == {"event_id", "label", "ts"}
    fraud, churn, eta = (env["labels"] for _, _, env in envs)
    assert fraud == {"event_id": ["f1", "f2", "f3", "f4"], "label": [True, False, 1, True],
                     "ts": [10.0, 11.5, 13.0, 15.0]}
    assert churn == {"event_id": ["c1", "c2"], "label": ["stay", "churn"],
                     "ts": [1_700_000_000.0, 14.0]}
    assert eta == {"event_id": ["e1"], "label": [21.5], "ts": [12.0]}
    # the columns are exactly the normalised labels
    for eid, lab, ts in label_rows(out):
        assert normalize_label({"event_id": eid, "model": "x", "label": lab, "ts": ts})["ts"] == ts


def test_the_partition_depends_on_the_model_only() -> None:
    models = [f"model-{i}" for i in range(20)]
    out = run([rec(label(f"e{i}", m), i) for i, m in enumerate(models)])
    assert [(m, p) for m, p, _ in out.envelopes] == [(m, partition_for(m, PARTITIONS)) for m in models]
    assert len({p for _, p, _ in out.envelopes}) > 1


# ------------------------------------------------------------------ invalid labels

GOOD_BEFORE = label("ok-before", ts=1)
GOOD_AFTER = label("ok-after", ts=2)


@pytest.mark.parametrize(
    ("value", "reason", "index"),
    [
        (b'{"event_id": "x", "model": "fraud", "ts": 1}', "missing_field", None),  # no label
        (b'{"event_id": "x", "model": "fraud", "label": true}', "missing_field", None),  # no ts
        (b'{"model": "fraud", "label": true, "ts": 1}', "missing_field", None),  # no event_id
        (b'{"label": true, "event_id": "x", "ts": 1}', "missing_field", None),  # no model
        (b'{"event_id": "x", "model": "fraud", "label": [1], "ts": 1}', "wrong_type", None),
        (b'{"event_id": "x", "model": "fraud", "label": {"a": 1}, "ts": 1}', "wrong_type", None),
        (b'{"event_id": 7, "model": "fraud", "label": true, "ts": 1}', "wrong_type", None),
        (b'{"event_id": "x", "model": "fraud", "label": true, "ts": true}', "wrong_type", None),
        (b'{"event_id": "", "model": "fraud", "label": true, "ts": 1}', "invalid_value", None),
        (b'{"event_id": "x", "model": "fraud", "label": true, "ts": 1700000000000}',
         "invalid_ts", None),
        (b'{"event_id": "x", "model": "fraud", "label": true, "ts": "2023-11-14T22:13:20"}',
         "invalid_ts", None),
        (b'{"schema_version": 2, "event_id": "x", "model": "fraud", "label": true, "ts": 1}',
         "unsupported_schema_version", None),
        (b'{"event_id": "x", "model": "fraud", "label": NaN, "ts": 1}', "non_finite_number", None),
        (b'{"event_id": "x", "model": "fraud", "label": tru', "invalid_json", None),
        (b"not json at all", "invalid_json", None),
        (b"7", "not_an_object", None),
        (b'"a label"', "not_an_object", None),
        (b"[]", "empty_message", None),
        (b"", "empty_message", None),
        (None, "empty_message", None),
        (b"[" + b" " * 20_000 + b"]", "oversize", None),
    ],
)  # fmt: skip
def test_an_invalid_label_is_dead_lettered_and_its_neighbours_go_through(
    value: bytes | None, reason: str, index: int | None
) -> None:
    out = run([rec(GOOD_BEFORE, 10), rec(value, 11), rec(GOOD_AFTER, 12)])
    (dead,) = out.dead_letters
    assert dead["reason"] == reason, dead["detail"]
    assert dead["source"] == {"topic": "labels", "partition": 3, "offset": 11, "index": index}
    assert dead["ts"] == 42.0 and dead["schema_version"] == 1
    raw = value or b""
    assert dead["size"] == len(raw)
    assert base64.b64decode(dead["value_b64"]) == raw[:1000]
    assert [r[0] for r in label_rows(out)] == ["ok-before", "ok-after"]
    assert out.accepted == {"labels": 2}


def test_a_bad_element_of_a_json_array_is_dead_lettered_alone() -> None:
    value = orjson.dumps([label("a"), {"event_id": "b", "model": "fraud", "ts": 1}, label("c"),
                          "oops", label("d", "churn", "stay")])
    out = run([rec(value, 20, partition=5)])
    assert [(d["reason"], d["source"]["index"], d["source"]["offset"], d["source"]["partition"])
            for d in out.dead_letters] == [("missing_field", 1, 20, 5), ("not_an_object", 3, 20, 5)]
    # the element itself, re-encoded, is kept
    assert orjson.loads(base64.b64decode(out.dead_letters[1]["value_b64"])) == "oops"
    assert [r[0] for r in label_rows(out, "fraud")] == ["a", "c"]
    assert [r[0] for r in label_rows(out, "churn")] == ["d"]
    assert out.accepted == {"labels": 3}


def test_json_lines_with_bad_lines() -> None:
    lines = [
        orjson.dumps(label("a")),
        b'{"event_id": "b", "model": "fraud", "label": true',  # cut short
        orjson.dumps(label("c", value=[1])),
        b"",  # blank lines are skipped, not rejected
        orjson.dumps(label("d")),
    ]
    out = run([rec(b"\n".join(lines), 30)])
    assert [(d["reason"], d["source"]["index"], d["source"]["offset"]) for d in out.dead_letters] == [
        ("invalid_json", 1, 30), ("wrong_type", 2, 30)]
    assert base64.b64decode(out.dead_letters[0]["value_b64"]) == lines[1]
    assert [r[0] for r in label_rows(out)] == ["a", "d"]
    assert out.accepted == {"labels": 2}


def test_only_bad_labels_give_no_envelope_and_no_accepted_count() -> None:
    out = run([rec(b"nope", 0), rec(b"[1, 2]", 1)])
    assert out.envelopes == [] and out.accepted == {}
    assert [(d["source"]["offset"], d["source"]["index"]) for d in out.dead_letters] == [
        (0, None), (1, 0), (1, 1)]


# ------------------------------------------------------------------ envelope size, mixing


def test_many_labels_of_one_model_are_split_into_envelopes_in_order() -> None:
    n = 2 * ENVELOPE_MAX_EVENTS + 137
    records = [rec(label(f"e{i:05d}", ts=1000 + i), i) for i in range(n - 300)]
    records.append(rec([label(f"e{i:05d}", ts=1000 + i) for i in range(n - 300, n)], n))
    records.insert(10, rec(label("other", "churn", "stay"), 99_999))
    out = run(records, max_message_bytes=1 << 20)
    envs = decoded(out)
    fraud = [env for m, _, env in envs if m == "fraud"]
    assert [len(env["labels"]["event_id"]) for env in fraud] == [500, 500, 137]
    assert all(len(env["labels"]["label"]) == len(env["labels"]["ts"]) == len(env["labels"]["event_id"])
               for env in fraud)
    assert [eid for env in fraud for eid in env["labels"]["event_id"]] == [f"e{i:05d}" for i in range(n)]
    assert [ts for env in fraud for ts in env["labels"]["ts"]] == [1000.0 + i for i in range(n)]
    assert {p for m, p, _ in envs if m == "fraud"} == {partition_for("fraud", PARTITIONS)}
    assert [m for m, _, _ in envs] == ["fraud", "fraud", "fraud", "churn"]
    assert out.accepted == {"labels": n + 1}


def test_predictions_and_labels_in_one_batch_go_in_separate_envelopes() -> None:
    records = [
        rec(label("f0"), 0),  # a label first: its model still gets its events envelope first
        rec(prediction("f1"), 0, topic="predictions"),
        rec(prediction("c1", "churn"), 1, topic="predictions"),
        rec(label("f1", value=False), 1),
        rec(label("c1", "churn", "stay"), 2),
        rec({"event_id": "f2", "model": "fraud", "ts": 60, "features": {"x": 2.0}}, 0,
            topic="features"),
        rec(b"bad", 2, topic="predictions"),
        rec(b"bad", 3),
        rec([prediction("e1", "eta"), prediction("f3")], 3, topic="predictions"),
    ]
    out = run(records)
    envs = decoded(out)
    assert [(m, env["type"]) for m, _, env in envs] == [
        ("fraud", "columns"), ("fraud", "labels"),
        ("churn", "columns"), ("churn", "labels"),
        ("eta", "columns"),
    ]
    assert all(p == partition_for(m, PARTITIONS) for m, p, _ in envs)
    fraud_cols = envs[0][2]["columns"]
    assert fraud_cols["event_id"] == ["f1", "f2", "f3"] and fraud_cols["n"] == 3
    assert envs[1][2]["labels"] == {"event_id": ["f0", "f1"], "label": [True, False],
                                    "ts": [100.0, 100.0]}
    assert envs[3][2]["labels"]["event_id"] == ["c1"]
    assert out.accepted == {"labels": 3, "predictions": 4, "features": 1}
    assert [(d["source"]["topic"], d["source"]["offset"], d["reason"]) for d in out.dead_letters] == [
        ("predictions", 2, "invalid_json"), ("labels", 3, "invalid_json")]
    # the same batch routes to the same bytes (deterministic)
    assert run(records).envelopes == out.envelopes


def test_a_label_is_never_mistaken_for_an_event_and_vice_versa() -> None:
    # a prediction on the labels topic lacks "label"; a label on the predictions topic
    # lacks "features": both are dead-lettered on the topic they came in on
    out = run([rec(prediction("p"), 0), rec(label("l"), 0, topic="predictions")])
    assert out.envelopes == []
    assert [(d["source"]["topic"], d["reason"]) for d in out.dead_letters] == [
        ("labels", "missing_field"), ("predictions", "missing_field")]


# ------------------------------------------------------------------ the stage


def test_the_stage_consumes_the_labels_topic() -> None:
    settings = Settings()
    stage = IngestStage(settings, Metrics())
    t = settings.topics
    assert stage.kinds == {t.predictions: "prediction", t.features: "feature", t.labels: "label"}


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, partition))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def test_the_stage_publishes_label_envelopes_on_the_by_model_topic() -> None:
    settings = Settings()
    t = settings.topics
    stage = IngestStage(settings, Metrics())
    producer = FakeProducer()
    stage.producer = producer
    batch = {("tp", 0): [Record(t.labels, 0, 0, orjson.dumps(label("a"))),
                         Record(t.labels, 0, 1, b"{")]}
    await stage._handle(batch)
    (env_topic, value, key, partition), (dl_topic, dl_value, _, _) = producer.sent
    assert (env_topic, key, partition) == (t.by_model, b"fraud",
                                           partition_for("fraud", settings.app.partitions))
    assert orjson.loads(value)["labels"]["event_id"] == ["a"]
    assert dl_topic == t.dead_letter and orjson.loads(dl_value)["source"]["topic"] == t.labels
    sample = stage.metrics.registry.get_sample_value
    assert sample("driftstream_ingested_events_total", {"topic": t.labels}) == 1
    assert sample("driftstream_dead_letters_total", {"topic": t.labels, "reason": "invalid_json"}) == 1
