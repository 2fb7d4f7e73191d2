"""Decoding and validating the events producers publish (the contract in ``schemas/``).

This is the only place that turns bytes from a topic into events, for the live path and
for ``replay`` alike. A decoded event is a plain, JSON-safe ``dict`` in *normal form*:

- ``kind``: ``"prediction"`` or ``"feature"``;
- ``event_id``, ``model``: non-empty strings; ``model_version``: a string or ``None``;
- ``ts``: event time as float Unix epoch seconds (RFC 3339 strings are converted);
- ``features``: name -> finite number, string, boolean or ``None``;
- ``prediction`` (prediction events only): ``{"label", "score", "value", "scores"}``, each
  ``None`` when absent. A scalar prediction becomes ``label`` (string or boolean) or
  ``value`` (number); an object keeps its ``label``/``score`` and optional ``scores`` map;
- ``attributions``: feature name -> finite number (e.g. SHAP values) of a prediction
  event, at most :data:`MAX_ATTRIBUTIONS` of them, or ``None`` (absent, null or empty). A
  feature event's attributions are validated like before (``schemas/feature.json``) but
  not kept: attribution drift (``stream/core/attribution.py``) is about predictions;
- optional ``slices``, ``latency_ms``, ``deployment`` when present.

Anything else raises :class:`~stream.errors.InvalidEvent`, whose ``reason`` is a stable
code used for the dead-letter topic and the ``driftstream_dead_letters_total`` counter.

A message's value may carry one event (a JSON object), or many: a JSON array of events
or JSON Lines. A bad event inside such an envelope is rejected on its own; the others
go through.

>>> batch = decode_message(b'{"event_id": "e1", "model": "fraud", "ts": 1700000000,'
...                        b' "features": {"amount": 12.5}, "prediction": 0.93}', "prediction")
>>> batch.events[0]["prediction"]["value"], batch.rejects
(0.93, [])
>>> decode_message(b'{"event_id": "e1"', "prediction").rejects[0].reason
'invalid_json'
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

import orjson

from stream.errors import InvalidEvent

__all__ = [
    "MAX_ATTRIBUTIONS",
    "REASONS",
    "SCHEMA_VERSION",
    "DecodedBatch",
    "EventSink",
    "PlainEvent",
    "Rejection",
    "decode_message",
    "normalize_event",
    "normalize_label",
    "parse_ts",
    "plain_event",
    "sink_acceptor",
]

SCHEMA_VERSION: Final = 1

#: Every reason code an event can be rejected with (bounded label set for Prometheus).
REASONS: Final = (
    "empty_message",
    "oversize",
    "invalid_json",
    "non_finite_number",
    "not_an_object",
    "unsupported_schema_version",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "invalid_ts",
    "cap_exceeded",
    "internal_error",
)

#: Attributions a prediction event may carry (more is ``invalid_value``): a bound on the
#: work and memory one event can cause, well above ``monitor.max_features``.
MAX_ATTRIBUTIONS: Final = 1000

_MAX_ID_LEN: Final = 256
_MAX_NAME_LEN: Final = 200
#: Timestamps beyond this are almost certainly milliseconds (year 5138 in seconds).
_MAX_EPOCH_SECONDS: Final = 1e11

#: RFC 3339 date-time (``fromisoformat`` alone accepts much more: spaces, week dates...).
#: The offset is optional here so that its absence gets its own error message.
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


#: ``(event_id, model, model_version, ts, features, label, score, value)``
PlainEvent = tuple[str, str, str | None, float, dict[str, Any], Any, float | None, float | None]

@dataclass(frozen=True, slots=True)
class Rejection:
    """One event that could not be accepted.

    ``raw`` holds the event's bytes: the whole message value, or, for an event inside an
    envelope, that event re-encoded. ``index`` is its position in the envelope
    (``None`` for a single-event message).
    """

    reason: str
    detail: str
    raw: bytes
    index: int | None = None


@dataclass(slots=True)
class DecodedBatch:
    """The outcome of decoding one message: accepted events and rejections, in order."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Rejection] = field(default_factory=list)
    #: events handed to an :class:`EventSink` instead of ``events``
    sunk: int = 0


class EventSink(Protocol):
    """Where :func:`decode_message` puts accepted events, in order, when given one:
    events of the common shape as :data:`PlainEvent` fields, the others normalised."""

    def add_plain(self, fields: PlainEvent) -> None: ...

    def add_event(self, event: dict[str, Any]) -> None: ...


def _fail(reason: str, message: str) -> InvalidEvent:
    return InvalidEvent(reason, message)


def parse_ts(value: Any) -> float:
    """Event time as float epoch seconds, from epoch seconds or an RFC 3339 string.

    >>> parse_ts(1700000000)
    1700000000.0
    >>> parse_ts("2023-11-14T22:13:20Z")
    1700000000.0
    >>> parse_ts("2023-11-14T22:13:20")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream.errors.InvalidEvent: ts '2023-11-14T22:13:20' has no UTC offset; RFC 3339 requires one...
    >>> parse_ts(1700000000000)
    Traceback (most recent call last):
    ...
    stream.errors.InvalidEvent: ts 1700000000000 is not plausible epoch seconds (milliseconds? divide by 1000)
    """
    t = type(value)
    if t is float or t is int:
        ts = float(value) if -_MAX_EPOCH_SECONDS < value < _MAX_EPOCH_SECONDS * 1e6 else -1.0
        if not (0.0 <= ts < _MAX_EPOCH_SECONDS):
            raise _fail(
                "invalid_ts",
                f"ts {value!r} is not plausible epoch seconds (milliseconds? divide by 1000)",
            )
        return ts
    if t is str:
        if not _RFC3339.fullmatch(value):
            raise _fail("invalid_ts", f"ts {value!r} is not an RFC 3339 date-time")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _fail("invalid_ts", f"ts {value!r} is not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise _fail(
                "invalid_ts",
                f"ts {value!r} has no UTC offset; RFC 3339 requires one (append 'Z' for UTC)",
            )
        ts = parsed.timestamp()
        if not (0.0 <= ts < _MAX_EPOCH_SECONDS):
            raise _fail("invalid_ts", f"ts {value!r} is outside epoch seconds [0, 1e11)")
        return ts
    raise _fail("wrong_type", f"ts must be epoch seconds or an RFC 3339 string, not {t.__name__}")


def _name(obj: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail("missing_field", f"required field {key!r} is missing")
        return None
    if type(value) is not str:
        raise _fail("wrong_type", f"{key} must be a string, not {type(value).__name__}")
    limit = _MAX_ID_LEN if key == "event_id" else _MAX_NAME_LEN
    if not value or len(value) > limit:
        raise _fail("invalid_value", f"{key} must be 1 to {limit} characters long")
    return value


_FEATURE_TYPES: Final = frozenset({int, float, str, bool, type(None)})


def _features(value: Any, from_json: bool) -> dict[str, Any]:
    if type(value) is not dict:
        raise _fail("wrong_type", f"features must be an object, not {type(value).__name__}")
    # Fast path: one C-level pass over the types. orjson refuses NaN and infinities at
    # parse time, so values it decoded need no finiteness check.
    if from_json and _FEATURE_TYPES.issuperset(map(type, value.values())):
        return value
    for name, v in value.items():
        t = type(v)
        if t is float:
            # orjson never yields NaN or infinity, but a dict built in Python can.
            if v - v != 0.0:
                raise _fail("non_finite_number", f"feature {name!r} is {v!r}; send null instead")
        elif not (t is int or t is str or t is bool or v is None):
            raise _fail(
                "wrong_type",
                f"feature {name!r} is a {t.__name__}; features are numbers, strings, "
                "booleans or null",
            )
    return value


def _number(value: Any, what: str) -> float:
    t = type(value)
    if t is not float and t is not int:
        raise _fail("wrong_type", f"{what} must be a number, not {t.__name__}")
    try:
        f = float(value)
    except OverflowError:  # an int beyond float range (orjson never yields one)
        f = math.inf
    if not math.isfinite(f):
        raise _fail("non_finite_number", f"{what} is {value!r}; it must be finite")
    return f


def _prediction(value: Any) -> dict[str, Any]:
    t = type(value)
    if t is dict:
        label = value.get("label")
        if label is not None and type(label) not in (str, bool, int):
            raise _fail("wrong_type", "prediction.label must be a string, integer or boolean")
        score = value.get("score")
        if score is not None:
            score = _number(score, "prediction.score")
            if not 0.0 <= score <= 1.0:
                raise _fail(
                    "invalid_value",
                    f"prediction.score {score!r} is not a probability in [0, 1]; "
                    "send regression outputs as a scalar prediction",
                )
        scores = value.get("scores")
        if scores is not None:
            if type(scores) is not dict or not scores:
                raise _fail("wrong_type", "prediction.scores must be a non-empty object")
            scores = {str(k): _number(v, f"prediction.scores[{k!r}]") for k, v in scores.items()}
        if label is None and score is None and scores is None:
            raise _fail(
                "missing_field", "prediction object needs at least one of label, score, scores"
            )
        if label is None and scores is not None:
            label = max(scores, key=scores.__getitem__)
        return {"label": label, "score": score, "value": None, "scores": scores}
    if t is str or t is bool:
        return {"label": value, "score": None, "value": None, "scores": None}
    if t is int or t is float:
        return {"label": None, "score": None, "value": _number(value, "prediction"), "scores": None}
    if value is None:
        raise _fail("missing_field", "prediction events need a prediction")
    raise _fail("wrong_type", f"prediction must be a scalar or an object, not {t.__name__}")


def _check_version(obj: dict[str, Any]) -> None:
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or type(version) is not int:
        raise _fail(
            "unsupported_schema_version",
            f"schema_version {version!r} is not supported; this driftstream reads "
            f"schema_version {SCHEMA_VERSION}",
        )


def normalize_event(obj: Any, kind: str, *, from_json: bool = False) -> dict[str, Any]:
    """Validate one decoded JSON value as a ``kind`` event and return its normal form.

    ``from_json`` says ``obj`` came from ``orjson.loads`` (which never yields NaN or
    infinities), so float values need not be checked for finiteness.

    >>> normalize_event({"event_id": "a", "model": "m", "ts": 1.5, "features": {"x": 1},
    ...                  "prediction": {"label": "fraud", "score": 0.8}}, "prediction")["prediction"]
    {'label': 'fraud', 'score': 0.8, 'value': None, 'scores': None}
    >>> normalize_event({"event_id": "a", "model": "m", "ts": 1.5, "features": {"x": [1]}},
    ...                 "feature")
    Traceback (most recent call last):
    ...
    stream.errors.InvalidEvent: feature 'x' is a list; features are numbers, strings, booleans or null
    """
    if type(obj) is not dict:
        raise _fail("not_an_object", f"an event must be a JSON object, not {type(obj).__name__}")
    if "schema_version" in obj:
        _check_version(obj)
    # (the common shape's fast checks are plain_event's, which ingest tries first)
    event: dict[str, Any] = {
        "kind": kind,
        "event_id": _name(obj, "event_id"),
        "model": _name(obj, "model"),
        "model_version": _name(obj, "model_version", required=False),
    }
    ts = obj.get("ts")
    if (type(ts) is float or type(ts) is int) and 0.0 <= ts < _MAX_EPOCH_SECONDS:
        event["ts"] = float(ts)
    elif "ts" not in obj:
        raise _fail("missing_field", "required field 'ts' is missing")
    else:
        event["ts"] = parse_ts(ts)
    if "features" not in obj:
        raise _fail("missing_field", "required field 'features' is missing")
    event["features"] = _features(obj["features"], from_json)
    if kind == "prediction":
        event["prediction"] = _prediction(obj.get("prediction"))
    elif "prediction" in obj:
        raise _fail(
            "invalid_value",
            "a feature event must not carry a prediction; publish it to the predictions topic",
        )
    _optional(obj, event)
    return event


#: Fields that send an event down :func:`normalize_event`'s full path.
_OPTIONAL_FIELDS: Final = frozenset(
    {"schema_version", "slices", "attributions", "latency_ms", "deployment"})
_LABEL_TYPES: Final = (str, bool, int)


def plain_event(obj: Any, kind: str) -> PlainEvent | None:
    """The fields of a decoded JSON value that is a valid ``kind`` event of the common
    shape, or ``None`` when it is anything else (an invalid event, or one with optional
    fields): such values must go through :func:`normalize_event`, which says precisely
    what is wrong or returns their normal form.

    The fields are ``(event_id, model, model_version, ts, features, label, score,
    value)``, exactly what :func:`normalize_event` would put in the normal form
    (``label``, ``score`` and ``value`` are ``None`` for a feature event). It is the
    ingest stage's per-event work: no dict is built.

    >>> plain_event({"event_id": "a", "model": "m", "ts": 2, "features": {"x": 1.5},
    ...              "prediction": {"label": True, "score": 1}}, "prediction")
    ('a', 'm', None, 2.0, {'x': 1.5}, True, 1.0, None)
    >>> plain_event({"event_id": "a", "model": "m", "ts": 2, "features": {},
    ...              "prediction": 3}, "prediction")[5:]
    (None, None, 3.0)
    >>> plain_event({"event_id": "a", "model": "m", "ts": 2, "features": {},
    ...              "slices": {"region": "eu"}}, "feature") is None
    True
    """
    if type(obj) is not dict or not _OPTIONAL_FIELDS.isdisjoint(obj):
        return None
    eid, model, version = obj.get("event_id"), obj.get("model"), obj.get("model_version")
    ts, features = obj.get("ts"), obj.get("features")
    if not (
        type(eid) is str and 0 < len(eid) <= _MAX_ID_LEN
        and type(model) is str and 0 < len(model) <= _MAX_NAME_LEN
        and (version is None or (type(version) is str and 0 < len(version) <= _MAX_NAME_LEN))
        and (type(ts) is float or type(ts) is int) and 0.0 <= ts < _MAX_EPOCH_SECONDS
        and type(features) is dict and _FEATURE_TYPES.issuperset(map(type, features.values()))
    ):
        return None
    label: Any = None
    score: Any = None
    value: float | None = None
    if kind == "prediction":
        pred: Any = obj.get("prediction")
        t = type(pred)
        if t is dict:
            label, score = pred.get("label"), pred.get("score")
            if pred.get("scores") is not None or (label is None and score is None):
                return None
            if label is not None and type(label) not in _LABEL_TYPES:
                return None
            if score is not None:
                if not ((type(score) is float or type(score) is int) and 0.0 <= score <= 1.0):
                    return None
                score = float(score)
        elif t is str or t is bool:
            label = pred
        elif t is float or t is int:
            value = float(pred)
        else:
            return None
    elif "prediction" in obj:
        return None
    return eid, model, version, float(ts), features, label, score, value


def _optional(obj: dict[str, Any], event: dict[str, Any]) -> None:
    slices = obj.get("slices")
    if slices is not None:
        if type(slices) is not dict or any(type(v) is not str for v in slices.values()):
            raise _fail("wrong_type", "slices must be an object of string values")
        event["slices"] = slices
    attributions = obj.get("attributions")
    event["attributions"] = None
    if attributions is not None:
        # a feature event's are checked as schemas/feature.json says, and not kept
        kept = _attributions(attributions, bounded=event["kind"] == "prediction")
        if event["kind"] == "prediction":
            event["attributions"] = kept
    latency = obj.get("latency_ms")
    if latency is not None:
        event["latency_ms"] = _number(latency, "latency_ms")
    deployment = obj.get("deployment")
    if deployment is not None:
        if type(deployment) is not str or not deployment:
            raise _fail("wrong_type", "deployment must be a non-empty string")
        event["deployment"] = deployment


_FLOAT: Final = frozenset({float})


def _attributions(value: Any, *, bounded: bool = True) -> dict[str, float] | None:
    """Validated attributions: an object of finite numbers (booleans are not numbers), at
    most ``MAX_ATTRIBUTIONS`` keys when ``bounded``; ``None`` for an empty object.

    >>> _attributions({"amount": 0.4, "country": -1})
    {'amount': 0.4, 'country': -1.0}
    >>> _attributions({}) is None
    True
    >>> _attributions({"amount": True})
    Traceback (most recent call last):
    ...
    stream.errors.InvalidEvent: attributions['amount'] must be a number, not bool
    """
    if type(value) is not dict:
        raise _fail("wrong_type", "attributions must be an object of numbers")
    if bounded and len(value) > MAX_ATTRIBUTIONS:
        raise _fail("invalid_value", f"attributions has {len(value)} keys; at most "
                                     f"{MAX_ATTRIBUTIONS} are accepted")
    if not value:
        return None
    if _FLOAT.issuperset(map(type, value.values())) and all(map(math.isfinite, value.values())):
        return value  # all floats (what orjson gives for non-integral numbers), all finite
    return {k: _number(v, f"attributions[{k!r}]") for k, v in value.items()}


def normalize_label(obj: Any) -> dict[str, Any]:
    """Validate a label (delayed ground truth) event.

    >>> normalize_label({"event_id": "a", "model": "m", "label": True, "ts": 3})
    {'event_id': 'a', 'model': 'm', 'label': True, 'ts': 3.0}
    """
    if type(obj) is not dict:
        raise _fail("not_an_object", f"a label must be a JSON object, not {type(obj).__name__}")
    _check_version(obj)
    label = obj.get("label")
    if label is None:
        raise _fail("missing_field", "required field 'label' is missing")
    t = type(label)
    if t is float:
        label = _number(label, "label")
    elif t not in (str, bool, int):
        raise _fail("wrong_type", "label must be a string, number or boolean")
    if "ts" not in obj:
        raise _fail("missing_field", "required field 'ts' is missing")
    return {
        "event_id": _name(obj, "event_id"),
        "model": _name(obj, "model"),
        "label": label,
        "ts": parse_ts(obj["ts"]),
    }


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "infinity" in text or str(exc.doc[exc.pos:exc.pos + 9]).lstrip("-b'").startswith(
            ("NaN", "Infinity")
        ):
            raise _fail("non_finite_number", f"not valid JSON: {text}") from None
        raise _fail("invalid_json", f"not valid JSON: {text}") from None


def decode_message(
    value: bytes | None, kind: str, *, max_bytes: int = 1 << 20, sink: EventSink | None = None
) -> DecodedBatch:
    """Decode one Kafka message value: an event, a JSON array of events, or JSON Lines.

    Never raises on bad input: each bad event becomes a :class:`Rejection`. With a
    ``sink``, accepted events go to it (counted in ``sunk``) instead of ``events``.

    >>> b = decode_message(b'[{"event_id": "a", "model": "m", "ts": 1, "features": {}},'
    ...                    b' 7]', "feature")
    >>> len(b.events), b.rejects[0].reason, b.rejects[0].index
    (1, 'not_an_object', 1)
    >>> decode_message(b'x' * 10, "feature", max_bytes=4).rejects[0].reason
    'oversize'
    """
    batch = DecodedBatch()
    accept = _acceptor(kind, batch, sink)
    if not value:
        batch.rejects.append(Rejection("empty_message", "the message has no value", b""))
        return batch
    if len(value) > max_bytes:
        batch.rejects.append(
            Rejection(
                "oversize",
                f"the message is {len(value)} bytes, over ingest.max_message_bytes={max_bytes}",
                value,
            )
        )
        return batch
    try:
        obj = _loads(value)
    except InvalidEvent as exc:
        if exc.reason == "invalid_json" and b"\n" in value.strip():
            return _decode_lines(value, accept, batch)
        batch.rejects.append(Rejection(exc.reason, str(exc), value))
        return batch
    if type(obj) is list:
        if not obj:
            batch.rejects.append(Rejection("empty_message", "the envelope is an empty array", value))
            return batch
        for i, item in enumerate(obj):
            try:
                accept(item)
            except InvalidEvent as exc:
                batch.rejects.append(Rejection(exc.reason, str(exc), _reencode(item), i))
        return batch
    try:
        accept(obj)
    except InvalidEvent as exc:
        batch.rejects.append(Rejection(exc.reason, str(exc), value))
    return batch


def _decode_lines(value: bytes, accept: Callable[[Any], None],
                  batch: DecodedBatch) -> DecodedBatch:
    for i, line in enumerate(value.splitlines()):
        if not line.strip():
            continue
        try:
            accept(_loads(line))
        except InvalidEvent as exc:
            batch.rejects.append(Rejection(exc.reason, str(exc), line, i))
    return batch


def sink_acceptor(kind: str, sink: EventSink) -> Callable[[Any], None]:
    """A function that validates one decoded ``kind`` value and hands it to ``sink``:
    an event of the common shape as :func:`plain_event` fields, anything else valid in
    normal form. It raises :class:`~stream.errors.InvalidEvent` for an invalid value."""
    normalize = _normalizer(kind)
    add_plain, add_event = sink.add_plain, sink.add_event
    if kind == "label":
        return lambda obj: add_event(normalize(obj))

    def accept(obj: Any) -> None:
        fields = plain_event(obj, kind)
        if fields is not None:
            add_plain(fields)
        else:
            add_event(normalize(obj))
    return accept


def _acceptor(kind: str, batch: DecodedBatch,
              sink: EventSink | None) -> Callable[[Any], None]:
    """Validates one decoded value and puts it where it goes; raises ``InvalidEvent``."""
    if sink is None:
        normalize = _normalizer(kind)

        def accept(obj: Any) -> None:
            batch.events.append(normalize(obj))
        return accept
    put = sink_acceptor(kind, sink)

    def accept_into_sink(obj: Any) -> None:
        put(obj)
        batch.sunk += 1
    return accept_into_sink


def _normalizer(kind: str) -> Callable[[Any], dict[str, Any]]:
    """The validator of one decoded ``kind`` event (values decoded by orjson)."""
    if kind == "label":
        return normalize_label
    return functools.partial(normalize_event, kind=kind, from_json=True)


def _reencode(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:  # pragma: no cover - orjson.loads output always re-encodes
        return repr(item).encode()
