"""Reading events from files: JSON Lines in the topics' schema, or CSV with column choice.

Used by ``driftstream reference`` (to build profiles) and ``driftstream replay``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from stream.core.events import DecodedBatch, Rejection, decode_message, normalize_event
from stream.errors import InvalidEvent, ProfileError

__all__ = ["read_csv_events", "read_jsonl_lines", "read_reference_events", "write_jsonl"]


def read_jsonl_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number starting at 1, raw bytes) of the non-blank lines of a file."""
    with open(path, "rb") as fh:
        for i, line in enumerate(fh, 1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield i, line


def decode_auto(raw: bytes) -> DecodedBatch:
    """Decode a line that may hold prediction or feature events: an event is a prediction
    event when it has a ``prediction`` field."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return decode_message(raw, "prediction")
    items = obj if isinstance(obj, list) else [obj]
    batch = DecodedBatch()
    for i, item in enumerate(items):
        kind = "prediction" if isinstance(item, dict) and "prediction" in item else "feature"
        try:
            batch.events.append(normalize_event(item, kind))
        except InvalidEvent as exc:
            batch.rejects.append(Rejection(exc.reason, str(exc), orjson.dumps(item),
                                           i if isinstance(obj, list) else None))
    return batch


def read_csv_events(
    path: str | Path,
    *,
    model: str,
    model_version: str | None = None,
    columns: list[str] | None = None,
    prediction_column: str | None = None,
    ts_column: str | None = None,
) -> list[dict[str, Any]]:
    """Events from a CSV file: each selected column is a feature (all columns but the
    prediction and time columns by default). Cells that parse as numbers are numbers,
    empty cells are missing, anything else is a string."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        wanted = columns or [c for c in header if c not in (prediction_column, ts_column)]
        unknown = [c for c in [*wanted, prediction_column, ts_column] if c and c not in header]
        if unknown:
            raise ProfileError(f"{path}: no column(s) {unknown}; the header has {header}")
        events = []
        for i, row in enumerate(reader):
            e: dict[str, Any] = {
                "kind": "prediction" if prediction_column else "feature",
                "event_id": f"csv-{i}",
                "model": model,
                "model_version": model_version,
                "ts": _ts(path, row, ts_column, i) if ts_column else 0.0,
                "features": {c: _cell(row[c]) for c in wanted},
            }
            if prediction_column:
                v = _cell(row[prediction_column])
                e["prediction"] = {
                    "label": v if isinstance(v, str) else None,
                    "score": None,
                    "value": v if isinstance(v, float) else None,
                    "scores": None,
                }
            events.append(e)
        return events


def _ts(path: str | Path, row: dict[str, str], column: str, i: int) -> float:
    raw = row[column]
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ProfileError(
            f"{path}: line {i + 2}: column {column!r} must hold epoch seconds, got {raw!r}"
        ) from None


def _cell(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        f = float(text)
    except ValueError:
        return text
    return f if f == f and f not in (float("inf"), float("-inf")) else text


def read_reference_events(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """Valid events of a JSON Lines file, and the number of lines rejected."""
    events: list[dict[str, Any]] = []
    bad = 0
    for _, raw in read_jsonl_lines(path):
        batch = decode_auto(raw)
        events += batch.events
        bad += len(batch.rejects)
    return events, bad


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON Lines (one object per line); return how many."""
    count = 0
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count
