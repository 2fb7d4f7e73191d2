"""The JSON Schemas in ``schemas/``: well-formed, self-consistent, and in agreement with the
decoder in ``stream/core/events.py`` (a schema-valid input event is one driftstream accepts,
and the other way round)."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from stream.core.events import (
    MAX_ATTRIBUTIONS,
    REASONS,
    decode_message,
    normalize_event,
    normalize_label,
)
from stream.errors import InvalidEvent

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
BASE_URI = "https://driftstream.dev/schemas/"
NAMES = (
    "prediction",
    "feature",
    "label",
    "prediction-envelope",
    "feature-envelope",
    "alert",
    "window-report",
    "quality-report",
    "shadow-report",
    "dead-letter",
    "reference",
    "control",
)
SCHEMAS: dict[str, dict[str, Any]] = {
    name: json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8")) for name in NAMES
}
REGISTRY: Registry = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values()
)


@cache
def validator(name: str, *, formats: bool = True) -> Draft202012Validator:
    checker = Draft202012Validator.FORMAT_CHECKER if formats else None
    return Draft202012Validator(SCHEMAS[name], registry=REGISTRY, format_checker=checker)


def schema_accepts(kind: str, obj: Any) -> bool:
    return validator(kind).is_valid(obj)


def decoder_verdict(kind: str, obj: Any) -> str | None:
    """``None`` when ``stream.core.events`` accepts ``obj``, else the rejection reason."""
    try:
        if kind == "label":
            normalize_label(obj)
        else:
            normalize_event(obj, kind)
    except InvalidEvent as exc:
        return exc.reason
    return None


# --------------------------------------------------------------------------- well-formed


def test_every_schema_file_is_covered() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{BASE_URI}{name}.json"
    assert schema["title"] and schema["description"]
    assert schema["examples"], f"{name}.json has no examples"


def _subschemas_with_properties(node: Any, path: str = "#") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield path, node["properties"]
        for key, value in node.items():
            if key not in ("examples", "default", "const", "enum"):
                yield from _subschemas_with_properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _subschemas_with_properties(value, f"{path}/{i}")


@pytest.mark.parametrize("name", NAMES)
def test_every_property_has_a_description(name: str) -> None:
    undocumented = [
        f"{path}/properties/{prop}"
        for path, properties in _subschemas_with_properties(SCHEMAS[name])
        for prop, sub in properties.items()
        # anyOf branches that only narrow an already documented property are exempt.
        if "/anyOf/" not in path and not sub.get("description")
    ]
    assert not undocumented


@pytest.mark.parametrize("name", NAMES)
def test_examples_validate(name: str) -> None:
    for example in SCHEMAS[name]["examples"]:
        validator(name).validate(example)


def test_input_examples_are_accepted_by_the_decoder() -> None:
    for kind in ("prediction", "feature", "label"):
        for example in SCHEMAS[kind]["examples"]:
            assert decoder_verdict(kind, example) is None, example
        envelope = SCHEMAS.get(f"{kind}-envelope")
        for example in envelope["examples"] if envelope else ():
            batch = decode_message(orjson.dumps(example), kind)
            assert batch.rejects == [] and len(batch.events) == len(example)


def test_shared_definitions_do_not_drift_apart() -> None:
    pred, feat, label = (SCHEMAS[n]["$defs"] for n in ("prediction", "feature", "label"))
    for key in ("schema_version", "event_id", "model", "ts"):
        assert pred[key] == feat[key] == label[key], key
    for key in ("model_version", "features", "slices"):
        assert pred[key] == feat[key], key
    # Attributions are monitored on predictions only, so only there are they bounded; a
    # feature event's are checked as before and not kept (stream/core/events.py).
    assert {k: v for k, v in pred["attributions"].items() if k not in ("description",
                                                                       "maxProperties")} == {
        k: v for k, v in feat["attributions"].items() if k != "description"}
    assert pred["attributions"]["maxProperties"] == MAX_ATTRIBUTIONS

    def shape(props: dict[str, Any]) -> dict[str, Any]:
        return {k: {a: b for a, b in v.items() if a != "description"} for k, v in props.items()}

    pred_props = dict(SCHEMAS["prediction"]["properties"])
    del pred_props["prediction"]
    assert shape(pred_props) == shape(SCHEMAS["feature"]["properties"])
    assert SCHEMAS["alert"]["$defs"]["window"] == SCHEMAS["window-report"]["$defs"]["window"]


# ------------------------------------------------------------------ input event contract

_BASE: dict[str, Any] = {
    "event_id": "e1",
    "model": "fraud",
    "ts": 1_700_000_000,
    "features": {"amount": 12.5, "country": "DE", "new": False, "age": None, "n": 3},
}


def pred(**changes: Any) -> dict[str, Any]:
    """A valid prediction event with ``changes`` applied (a value of ``...`` drops the key)."""
    event = {**_BASE, "prediction": 0.93, **changes}
    return {k: v for k, v in event.items() if v is not ...}


def feat(**changes: Any) -> dict[str, Any]:
    event = {**_BASE, **changes}
    return {k: v for k, v in event.items() if v is not ...}


def lab(**changes: Any) -> dict[str, Any]:
    event = {"event_id": "e1", "model": "fraud", "label": "fraud", "ts": 1_700_000_000, **changes}
    return {k: v for k, v in event.items() if v is not ...}


OK = None  # expected verdict of an accepted event

# (id, kind, event, expected: None when valid, else the decoder's reason code).
#
# Every case must get the same verdict from the schema and from the decoder. Left out on
# purpose, because JSON Schema cannot express the decoder's rule or the decoder is looser
# than RFC 3339 (see test_schema_is_stricter_than_the_decoder_on_ts_strings):
# - ``schema_version: 1.0`` and ``prediction.label: 1.0``: JSON Schema's ``const: 1`` and
#   ``type: integer`` accept 1.0, the decoder wants a JSON integer;
# - ts strings that fit the pattern but are not calendar dates ("2023-02-30T00:00:00Z"):
#   only a ``date-time`` format checker catches them, and jsonschema has none unless
#   ``rfc3339-validator`` is installed;
# - ts strings that are ISO 8601 but not RFC 3339 ("2023-11-14 22:13:20Z", "+0100",
#   "2023-11-14T22:13Z", ...), or before 1970: the decoder accepts them today;
# - NaN and infinity: not JSON, so never in a schema's domain.
CASES: list[tuple[str, str, Any, str | None]] = [
    # prediction: accepted
    ("p-regression", "prediction", pred(), OK),
    ("p-label-score", "prediction", pred(prediction={"label": "fraud", "score": 0.93}), OK),
    ("p-int-label", "prediction", pred(prediction={"label": 1, "score": 1}), OK),
    ("p-bool-label", "prediction", pred(prediction={"label": True}), OK),
    ("p-score-only", "prediction", pred(prediction={"score": 0}), OK),
    ("p-multiclass", "prediction", pred(prediction={"scores": {"a": 0.7, "b": 0.3}}), OK),
    ("p-null-label-with-score", "prediction", pred(prediction={"label": None, "score": 0.2}),
     OK),
    ("p-extra-prediction-key", "prediction", pred(prediction={"label": "x", "raw": [1]}), OK),
    ("p-scalar-string", "prediction", pred(prediction="fraud"), OK),
    ("p-scalar-bool", "prediction", pred(prediction=False), OK),
    ("p-empty-features", "prediction", pred(features={}), OK),
    ("p-ts-rfc3339-z", "prediction", pred(ts="2023-11-14T22:13:20Z"), OK),
    ("p-ts-rfc3339-offset", "prediction", pred(ts="2023-11-14T22:13:20.123+05:30"), OK),
    ("p-ts-zero", "prediction", pred(ts=0), OK),
    ("p-ts-just-below-ms", "prediction", pred(ts=99_999_999_999.5), OK),
    ("p-event-id-256", "prediction", pred(event_id="x" * 256), OK),
    ("p-model-200", "prediction", pred(model="m" * 200), OK),
    ("p-schema-version-1", "prediction", pred(schema_version=1), OK),
    ("p-all-optional", "prediction",
     pred(model_version="v3", slices={"region": "eu"}, attributions={"amount": -0.2},
          latency_ms=4.5, deployment="shadow"), OK),
    ("p-optional-nulls", "prediction",
     pred(model_version=None, slices=None, attributions=None, latency_ms=None,
          deployment=None), OK),
    ("p-unknown-field", "prediction", pred(trace_id="abc", extra={"nested": [1, 2]}), OK),
    ("p-attributions", "prediction",
     pred(attributions={"amount": 0.41, "country": -0.12, "n": 0, "not_a_feature": 3}), OK),
    ("p-attributions-empty", "prediction", pred(attributions={}), OK),
    ("p-attributions-max", "prediction",
     pred(attributions={f"f{i}": 0.001 * i for i in range(MAX_ATTRIBUTIONS)}), OK),
    # prediction: rejected
    ("p-not-object", "prediction", [pred()], "not_an_object"),
    ("p-string", "prediction", "event", "not_an_object"),
    ("p-schema-version-2", "prediction", pred(schema_version=2), "unsupported_schema_version"),
    ("p-schema-version-str", "prediction", pred(schema_version="1"),
     "unsupported_schema_version"),
    ("p-schema-version-bool", "prediction", pred(schema_version=True),
     "unsupported_schema_version"),
    ("p-schema-version-null", "prediction", pred(schema_version=None),
     "unsupported_schema_version"),
    ("p-no-event-id", "prediction", pred(event_id=...), "missing_field"),
    ("p-null-model", "prediction", pred(model=None), "missing_field"),
    ("p-int-event-id", "prediction", pred(event_id=7), "wrong_type"),
    ("p-empty-model", "prediction", pred(model=""), "invalid_value"),
    ("p-event-id-257", "prediction", pred(event_id="x" * 257), "invalid_value"),
    ("p-model-201", "prediction", pred(model="m" * 201), "invalid_value"),
    ("p-empty-model-version", "prediction", pred(model_version=""), "invalid_value"),
    ("p-int-model-version", "prediction", pred(model_version=3), "wrong_type"),
    ("p-no-ts", "prediction", pred(ts=...), "missing_field"),
    ("p-null-ts", "prediction", pred(ts=None), "wrong_type"),
    ("p-ts-ms", "prediction", pred(ts=1_700_000_000_000), "invalid_ts"),
    ("p-ts-1e11", "prediction", pred(ts=1e11), "invalid_ts"),
    ("p-ts-negative", "prediction", pred(ts=-1), "invalid_ts"),
    ("p-ts-no-offset", "prediction", pred(ts="2023-11-14T22:13:20"), "invalid_ts"),
    ("p-ts-date-only", "prediction", pred(ts="2023-11-14"), "invalid_ts"),
    ("p-ts-words", "prediction", pred(ts="yesterday"), "invalid_ts"),
    ("p-ts-bool", "prediction", pred(ts=True), "wrong_type"),
    ("p-ts-list", "prediction", pred(ts=[1_700_000_000]), "wrong_type"),
    ("p-no-features", "prediction", pred(features=...), "missing_field"),
    ("p-null-features", "prediction", pred(features=None), "wrong_type"),
    ("p-features-list", "prediction", pred(features=[1, 2]), "wrong_type"),
    ("p-feature-list-value", "prediction", pred(features={"x": [1]}), "wrong_type"),
    ("p-feature-object-value", "prediction", pred(features={"x": {"y": 1}}), "wrong_type"),
    ("p-no-prediction", "prediction", pred(prediction=...), "missing_field"),
    ("p-null-prediction", "prediction", pred(prediction=None), "missing_field"),
    ("p-list-prediction", "prediction", pred(prediction=[0.1, 0.9]), "wrong_type"),
    ("p-empty-prediction-object", "prediction", pred(prediction={}), "missing_field"),
    ("p-prediction-value-key", "prediction", pred(prediction={"value": 3.2}), "missing_field"),
    ("p-prediction-all-null", "prediction", pred(prediction={"label": None, "score": None}),
     "missing_field"),
    ("p-score-1.5", "prediction", pred(prediction={"score": 1.5}), "invalid_value"),
    ("p-score-negative", "prediction", pred(prediction={"score": -0.1}), "invalid_value"),
    ("p-score-string", "prediction", pred(prediction={"score": "0.9"}), "wrong_type"),
    ("p-score-bool", "prediction", pred(prediction={"score": True}), "wrong_type"),
    ("p-float-label", "prediction", pred(prediction={"label": 1.5}), "wrong_type"),
    ("p-list-label", "prediction", pred(prediction={"label": ["a"]}), "wrong_type"),
    ("p-empty-scores", "prediction", pred(prediction={"scores": {}}), "wrong_type"),
    ("p-scores-list", "prediction", pred(prediction={"scores": [0.5, 0.5]}), "wrong_type"),
    ("p-scores-string-value", "prediction", pred(prediction={"scores": {"a": "x"}}),
     "wrong_type"),
    ("p-slice-number", "prediction", pred(slices={"region": 3}), "wrong_type"),
    ("p-slices-list", "prediction", pred(slices=["eu"]), "wrong_type"),
    ("p-attribution-string", "prediction", pred(attributions={"x": "high"}), "wrong_type"),
    ("p-attribution-bool", "prediction", pred(attributions={"x": True}), "wrong_type"),
    ("p-attribution-null-value", "prediction", pred(attributions={"x": None}), "wrong_type"),
    ("p-attribution-list-value", "prediction", pred(attributions={"x": [0.1, 0.2]}),
     "wrong_type"),
    ("p-attributions-list", "prediction", pred(attributions=[0.1, 0.2]), "wrong_type"),
    ("p-attributions-number", "prediction", pred(attributions=0.5), "wrong_type"),
    ("p-attributions-over-cap", "prediction",
     pred(attributions={f"f{i}": 0.001 * i for i in range(MAX_ATTRIBUTIONS + 1)}),
     "invalid_value"),
    ("p-latency-string", "prediction", pred(latency_ms="4ms"), "wrong_type"),
    ("p-empty-deployment", "prediction", pred(deployment=""), "wrong_type"),
    ("p-deployment-number", "prediction", pred(deployment=1), "wrong_type"),
    # feature
    ("f-minimal", "feature", feat(), OK),
    ("f-all-optional", "feature",
     feat(schema_version=1, model_version="v3", slices={"r": "eu"}, attributions={"x": 1},
          latency_ms=3, deployment="production", ts="2023-11-14T22:13:20-05:00"), OK),
    ("f-unknown-field", "feature", feat(source="batch"), OK),
    ("f-attribution-string", "feature", feat(attributions={"x": "high"}), "wrong_type"),
    ("f-with-prediction", "feature", feat(prediction=0.93), "invalid_value"),
    ("f-with-null-prediction", "feature", feat(prediction=None), "invalid_value"),
    ("f-no-features", "feature", feat(features=...), "missing_field"),
    ("f-feature-list-value", "feature", feat(features={"x": [1]}), "wrong_type"),
    ("f-ts-ms", "feature", feat(ts=1_700_000_000_000), "invalid_ts"),
    ("f-ts-no-offset", "feature", feat(ts="2023-11-14T22:13:20"), "invalid_ts"),
    ("f-schema-version-2", "feature", feat(schema_version=2), "unsupported_schema_version"),
    ("f-not-object", "feature", 7, "not_an_object"),
    # label
    ("l-string", "label", lab(), OK),
    ("l-int", "label", lab(label=1), OK),
    ("l-float", "label", lab(label=21.5), OK),
    ("l-bool", "label", lab(label=False), OK),
    ("l-rfc3339", "label", lab(ts="2023-11-14T22:13:20+01:00"), OK),
    ("l-extra-fields", "label", lab(schema_version=1, model_version="v3", note="late"), OK),
    ("l-no-label", "label", lab(label=...), "missing_field"),
    ("l-null-label", "label", lab(label=None), "missing_field"),
    ("l-list-label", "label", lab(label=[1]), "wrong_type"),
    ("l-object-label", "label", lab(label={"y": 1}), "wrong_type"),
    ("l-no-ts", "label", lab(ts=...), "missing_field"),
    ("l-ts-ms", "label", lab(ts=1_700_000_000_000), "invalid_ts"),
    ("l-ts-no-offset", "label", lab(ts="2023-11-14T22:13:20"), "invalid_ts"),
    ("l-no-event-id", "label", lab(event_id=...), "missing_field"),
    ("l-empty-model", "label", lab(model=""), "invalid_value"),
    ("l-schema-version-2", "label", lab(schema_version=2), "unsupported_schema_version"),
    ("l-not-object", "label", [lab()], "not_an_object"),
]


@pytest.mark.parametrize(
    ("kind", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_schema_verdict(kind: str, event: Any, expected: str | None) -> None:
    errors = [e.message for e in validator(kind).iter_errors(event)]
    assert (not errors) == (expected is None), errors


@pytest.mark.parametrize(
    ("kind", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_schema_and_decoder_agree(kind: str, event: Any, expected: str | None) -> None:
    verdict = decoder_verdict(kind, event)
    assert verdict == expected
    assert schema_accepts(kind, event) == (verdict is None)


def test_case_ids_are_unique_and_both_verdicts_are_covered() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)
    for kind in ("prediction", "feature", "label"):
        verdicts = {c[3] is None for c in CASES if c[1] == kind}
        assert verdicts == {True, False}, kind


@pytest.mark.parametrize("kind", ["prediction", "feature", "label"])
def test_envelope_items_get_the_single_event_verdict(kind: str) -> None:
    items = [event for _, k, event, _ in CASES if k == kind]
    batch = decode_message(orjson.dumps(items), kind)
    rejected = {r.index for r in batch.rejects}
    assert rejected == {i for i, item in enumerate(items) if not schema_accepts(kind, item)}
    assert len(batch.events) == len(items) - len(rejected)
    if kind != "label":
        envelope = validator(f"{kind}-envelope")
        assert not envelope.is_valid(items)
        assert envelope.is_valid([item for i, item in enumerate(items) if i not in rejected])


@pytest.mark.parametrize("kind", ["prediction", "feature"])
def test_envelope_shape(kind: str) -> None:
    envelope = validator(f"{kind}-envelope")
    single = SCHEMAS[kind]["examples"][0]
    assert envelope.is_valid([single])
    assert not envelope.is_valid([])  # minItems 1
    assert not envelope.is_valid(single)  # an envelope is an array
    other = SCHEMAS["feature" if kind == "prediction" else "prediction"]["examples"][0]
    assert not envelope.is_valid([single, other])


@pytest.mark.parametrize(
    "ts",
    [
        "2023-11-14T22:13:20",  # no offset: must fail even without a format checker
        "2023-11-14 22:13:20Z",  # space separator (ISO 8601, not RFC 3339's grammar)
        "20231114T221320Z",  # ISO 8601 basic format
        "2023-11-14T22:13Z",  # no seconds
        "2023-11-14T22:13:20+0100",  # offset without colon
        "2023-11-14T22:13:20+01",  # offset without minutes
        "2023-11-14T22:13:20,5Z",  # comma decimal separator
        "2023-W46-2T22:13:20Z",  # ISO week date
        "1969-12-31T23:59:59Z",  # before the epoch: negative seconds
        "2023-11-14t22:13:20z",  # lower case: RFC 3339 allows it, the decoder does not
        "2023-11-14T23:59:60Z",  # leap second: RFC 3339 allows it, the decoder does not
    ],
)
def test_schema_is_stricter_than_the_decoder_on_ts_strings(ts: str) -> None:
    # The schema must never accept what the decoder rejects. These strings are outside the
    # agreement list because the decoder (datetime.fromisoformat) accepts some of them;
    # schema-valid producers never send them.
    for kind, event in (("prediction", pred(ts=ts)), ("label", lab(ts=ts))):
        assert not validator(kind, formats=False).is_valid(event)
        assert not schema_accepts(kind, event)


# ------------------------------------------------------------------ driftstream's outputs


def test_dead_letter_reasons_are_the_decoder_reasons() -> None:
    assert tuple(SCHEMAS["dead-letter"]["properties"]["reason"]["enum"]) == REASONS


def test_dead_letter_examples_are_consistent() -> None:
    for example in SCHEMAS["dead-letter"]["examples"]:
        raw = base64.b64decode(example["value_b64"], validate=True)
        if not example["truncated"]:
            assert len(raw) == example["size"]


def test_dead_letter_rejections() -> None:
    dead_letter = validator("dead-letter")
    example = SCHEMAS["dead-letter"]["examples"][0]
    assert not dead_letter.is_valid({**example, "reason": "bad_vibes"})
    assert not dead_letter.is_valid({**example, "value_b64": "not base64!"})
    assert not dead_letter.is_valid({**example, "source": {**example["source"], "index": -1}})
    assert not dead_letter.is_valid({k: v for k, v in example.items() if k != "source"})


def test_alert_rejections() -> None:
    alert = validator("alert")
    example = SCHEMAS["alert"]["examples"][0]
    assert alert.is_valid({**example, "slice": {"key": "country", "value": "DE"}})
    assert alert.is_valid({k: v for k, v in example.items() if k != "slice"})
    assert alert.is_valid({**example, "added_later": 1})  # additive fields are allowed
    assert not alert.is_valid({**example, "alert_id": "3F9A0C12D4E5B678"})  # lower-case hex
    assert not alert.is_valid({**example, "alert_id": "3f9a0c12"})
    assert not alert.is_valid({**example, "episode": 0})
    assert not alert.is_valid({**example, "kind": "concept_drift"})
    assert not alert.is_valid({**example, "status": "acknowledged"})
    assert not alert.is_valid({**example, "schema_version": 2})
    assert not alert.is_valid({**example, "window": {**example["window"], "kind": "session"}})
    assert not alert.is_valid({k: v for k, v in example.items() if k != "model"})


def test_window_report_rejections() -> None:
    report = validator("window-report")
    example = SCHEMAS["window-report"]["examples"][0]
    stats = example["features"]["amount"]
    assert not report.is_valid({**example, "window": None})
    assert not report.is_valid({**example, "type": "alert"})
    assert not report.is_valid({**example, "reference": {"source": "kafka", "events": 1}})
    for broken in ({**stats, "severity": "high"}, {**stats, "type": "text"},
                   {k: v for k, v in stats.items() if k != "noise_floor"}):
        assert not report.is_valid({**example, "features": {"amount": broken}})
        assert not report.is_valid({**example, "prediction": {"score": broken}})


def _check_binning(binning: dict[str, Any]) -> None:
    """The cross-field rules reference.json states but JSON Schema cannot express."""
    if binning["type"] == "numeric":
        edges = binning["edges"]
        assert all(a < b for a, b in itertools.pairwise(edges))
        assert len(binning["counts"]) == len(edges) + 2
    else:
        assert len(binning["counts"]) == len(binning["categories"]) + 2


def test_reference_examples_are_consistent() -> None:
    for example in SCHEMAS["reference"]["examples"]:
        binnings = [*example["features"].values(), *example["prediction"].values()]
        for binning in binnings:
            _check_binning(binning)
            assert sum(binning["counts"]) <= example["events"]  # mismatches: not binned


def test_reference_rejections() -> None:
    reference = validator("reference")
    example = SCHEMAS["reference"]["examples"][0]
    numeric = example["features"]["amount"]
    categorical = example["features"]["country"]
    for broken in (
        {**numeric, "type": "categorical"},  # discriminator must match the shape
        {**categorical, "type": "numeric"},
        {**numeric, "counts": [1.5, 2, 3, 4, 5]},
        {**numeric, "counts": [-1, 2, 3, 4, 5]},
        {**numeric, "edges": [5.0, 5.0, 80.0]},  # edges are distinct
        {**categorical, "categories": ["DE", "DE", "ES"]},
        {k: v for k, v in numeric.items() if k != "min"},
    ):
        assert not reference.is_valid({**example, "features": {"x": broken}})
    assert not reference.is_valid({**example, "kind": "driftstream.profile"})
    assert not reference.is_valid({**example, "version": 2})
    assert not reference.is_valid({**example, "source": "kafka"})


# ------------------------------------------- what driftstream writes matches its schemas


def _drifting_events(n: int, shift: float) -> list[dict[str, Any]]:
    """Normalised prediction events; ``shift`` moves ``x`` and the score."""
    raw = [
        {
            "event_id": str(i),
            "model": "fraud",
            "model_version": "v1",
            "ts": float(i),
            "features": {"x": float(i % 10) + shift, "c": "ab"[i % 2], "gone": None,
                         **({"new": 1} if shift else {})},
            "prediction": {"label": "ab"[i % 2], "score": min(1.0, (i % 10) / 10 + shift)},
        }
        for i in range(n)
    ]
    return [normalize_event(e, "prediction") for e in raw]


@pytest.mark.parametrize("window_kind", ["count", "time"])
def test_monitor_reports_and_alerts_match_their_schemas(window_kind: str) -> None:
    from stream.config import MonitorConfig
    from stream.core.monitor import ModelMonitor

    cfg = MonitorConfig(window_kind=window_kind, window_size=100, window_seconds=100.0,
                        allowed_lateness_seconds=0.0, warmup_events=200, min_window_values=50)
    monitor = ModelMonitor("fraud", "v1", cfg)
    normal = _drifting_events(400, 0.0)
    drifted = _drifting_events(300, 50.0)
    out = monitor.process(normal)  # warm-up, then windows like the reference
    out.extend(monitor.process([{**e, "ts": e["ts"] + 400} for e in drifted]))  # fires
    out.extend(monitor.process(normal[:50]))  # late for time windows
    out.extend(monitor.process([{**e, "ts": e["ts"] + 700} for e in normal]))  # resolves
    assert {a["status"] for a in out.alerts} == {"firing", "resolved"}
    assert any(r["unknown_features"] for r in out.reports)
    for report in out.reports:
        validator("window-report").validate(report)
    for alert in out.alerts:
        validator("alert").validate(alert)
    assert monitor.reference is not None
    validator("reference").validate(monitor.reference.snapshot())


def test_reference_profile_snapshot_matches_its_schema() -> None:
    from stream.core.reference import ReferenceProfile

    events = _drifting_events(300, 0.0)
    events += [{**e, "model_version": None, "prediction": {**e["prediction"], "score": None,
                                                           "value": 3.5}} for e in events[:50]]
    profile = ReferenceProfile.build(events, "fraud", None, numeric_bins=4, max_categories=1,
                                     max_features=2)
    snapshot = profile.snapshot()
    validator("reference").validate(snapshot)
    for binning in [*snapshot["features"].values(), *snapshot["prediction"].values()]:
        _check_binning(binning)


def test_dead_letter_records_match_their_schema() -> None:
    from stream.core.deadletter import dead_letter_record

    message = b'[{"event_id": "a", "model": "m", "ts": 1, "features": {}}, 7, {"ts": 1e13}]'
    rejects = decode_message(message, "feature").rejects
    rejects += decode_message(b"", "feature").rejects
    rejects += decode_message(b"x" * 10, "feature", max_bytes=4).rejects
    assert [r.reason for r in rejects] == [
        "not_an_object", "missing_field", "empty_message", "oversize"
    ]
    for offset, rejection in enumerate(rejects):
        record = dead_letter_record(rejection, topic="features", partition=0, offset=offset,
                                    now=1_700_000_000.5, max_bytes=5)
        validator("dead-letter").validate(record)


def test_quality_monitor_reports_and_alerts_match_their_schemas() -> None:
    """What the quality monitor writes validates: reports of every task, and its alerts."""
    from stream.config import MonitorConfig
    from stream.core.columns import columns_from_events
    from stream.core.events import normalize_event
    from stream.core.quality_monitor import QualityMonitor

    cfg = MonitorConfig(quality_window_size=50, quality_min_pairs=10, quality_baseline_windows=1,
                        quality_slo={"accuracy": 0.7, "mae": 1.0})
    reports, alerts = [], []
    for task, pred, truth in (
            ("binary", lambda i: {"label": i % 2 == 0, "score": (i % 10) / 10},
             lambda i, bad: (i % 2 == 0) != bad),
            ("multiclass", lambda i: "abc"[i % 3], lambda i, bad: "abc"[(i + bad) % 3]),
            ("regression", lambda i: float(i % 7), lambda i, bad: float(i % 7) + 3.0 * bad)):
        qm = QualityMonitor(task, cfg)
        events = [normalize_event({"event_id": str(i), "model": task, "model_version": "v1",
                                   "ts": float(i), "features": {}, "prediction": pred(i)},
                                  "prediction") for i in range(200)]
        qm.add_predictions(columns_from_events(events))
        out = qm.add_labels({"event_id": [str(i) for i in range(200)],
                             "label": [truth(i, i >= 100) for i in range(200)],
                             "ts": [float(i + 5) for i in range(200)]})
        assert {r["task"] for r in out.reports} == {task}
        reports += out.reports
        alerts += out.alerts
    assert len(reports) == 12 and alerts
    for report in reports:
        validator("quality-report").validate(report)
    for alert in alerts:
        validator("alert").validate(alert)
