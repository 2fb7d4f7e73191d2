"""Offline replay: the live path's core over files, for backtesting thresholds.

``replay`` runs exactly the code the worker runs after Kafka: the same decoder and router
(:func:`stream.kafka.ingest.route`, including the JSON round trip of envelopes), the same
:class:`~stream.core.registry.MonitorRegistry`, the same settings. Given the same events
in the same per-model order, it writes the same window reports and alerts as the live
path, byte for byte once serialised with orjson.

Kafka only orders events within a partition. Producers that key by model (as
``driftstream simulate`` does) keep each model's events in order, and then live and
replay agree; a dump of a topic in offset order replays what the worker saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.config import Settings
from stream.core.reference import ReferenceProfile, profiles_by_version
from stream.core.registry import MonitorRegistry
from stream.files import read_jsonl_lines, write_jsonl
from stream.kafka.ingest import Record, route

__all__ = ["ReplayResult", "build_profiles", "replay_files", "replay_lines", "write_jsonl"]

#: Lines per batch; any value gives the same results (the core is batch invariant).
BATCH_LINES = 5000


@dataclass
class ReplayResult:
    reports: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    rejected_by_cap: int = 0


def build_profiles(events: list[dict[str, Any]], settings: Settings) -> list[ReferenceProfile]:
    """One reference profile per (model, model_version) found in ``events``."""
    profiles = []
    for (model, version), group in profiles_by_version(events).items():
        cfg = settings.monitor_for(model)
        profiles.append(ReferenceProfile.build(
            group, model, version, numeric_bins=cfg.numeric_bins,
            max_categories=cfg.max_categories, max_features=cfg.max_features, source="file"))
    return profiles


def replay_lines(
    lines: Iterable[tuple[int, bytes]],
    settings: Settings,
    *,
    references: Iterable[ReferenceProfile] = (),
    kind: str = "prediction",
    source: str = "replay",
    batch_lines: int = BATCH_LINES,
) -> ReplayResult:
    """Replay message values (one per line: an event, an array, or JSON Lines) of
    ``kind`` events; ``source`` names the topic in dead-letter records."""
    registry = MonitorRegistry(settings.monitor_for, max_models=settings.monitor.max_models)
    for profile in references:
        registry.set_reference(profile)
    result = ReplayResult()
    pending: list[Record] = []

    def flush() -> None:
        routed = route(
            pending, kinds={source: kind}, partitions=settings.app.partitions,
            max_message_bytes=settings.ingest.max_message_bytes,
            dead_letter_max_bytes=settings.ingest.dead_letter_max_bytes, now=0.0)
        result.dead_letters += routed.dead_letters
        for _, _, value in routed.envelopes:
            env = orjson.loads(value)
            result.events += env["columns"]["n"]
            handled = registry.handle(env)
            result.reports += handled.output.reports
            result.alerts += handled.output.alerts
            result.rejected_by_cap += handled.rejected
        pending.clear()

    for line_no, raw in lines:
        pending.append(Record(source, 0, line_no, raw))
        if len(pending) >= batch_lines:
            flush()
    flush()
    return result


def replay_files(
    events_path: str | Path,
    settings: Settings,
    *,
    references: Iterable[ReferenceProfile] = (),
    kind: str = "prediction",
) -> ReplayResult:
    return replay_lines(read_jsonl_lines(events_path), settings, references=references,
                        kind=kind, source=str(events_path))
