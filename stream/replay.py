"""Offline replay: the live path's core over files, for backtesting thresholds.

``replay`` runs exactly the code the worker runs after Kafka: the same decoder and router
(:func:`stream.kafka.ingest.route`, including the JSON round trip of envelopes), the same
:class:`~stream.core.registry.MonitorRegistry`, the same settings. Given the same events
in the same per-model order, it writes the same window reports and alerts as the live
path, byte for byte once serialised with orjson.

Kafka only orders events within a partition. Producers that key by model (as
``driftstream simulate`` does) keep each model's events in order, and then live and
replay agree; a dump of a topic in offset order replays what the worker saw.

**Labels.** Given a labels file too, replay merges the two streams by event time
(predictions by ``ts``, labels by theirs; each file's own order is kept, and a prediction
goes first on a tie) and feeds them in that order. Quality windows are cut in join order,
so replay gives the live path's quality windows and metrics whenever each label reaches
the worker after its prediction, which is what delayed ground truth does, and a model's
labels are produced in order (keyed by model). The join's point-in-time counts in a report
(``pending_predictions``, ``early_labels``, the running totals) depend on how the two
topics interleaved on arrival, which event time only approximates.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.config import Settings
from stream.core.deadletter import dead_letter_record
from stream.core.events import Rejection, parse_ts
from stream.core.reference import ReferenceProfile, profiles_by_version
from stream.core.registry import MonitorRegistry
from stream.errors import InvalidEvent
from stream.files import read_jsonl_lines, write_jsonl
from stream.kafka.ingest import Record, route

__all__ = ["ReplayResult", "build_profiles", "reference_quality", "replay_files", "replay_lines",
           "write_jsonl"]

#: Lines per batch; any value gives the same results (the core is batch invariant).
BATCH_LINES = 5000


@dataclass
class ReplayResult:
    reports: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    quality_reports: list[dict[str, Any]] = field(default_factory=list)
    shadow_reports: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    labels: int = 0
    rejected_by_cap: int = 0
    label_join: dict[str, int] = field(default_factory=dict)


def build_profiles(events: list[dict[str, Any]], settings: Settings) -> list[ReferenceProfile]:
    """One reference profile per (model, model_version) found in ``events``."""
    profiles = []
    for (model, version), group in profiles_by_version(events).items():
        cfg = settings.monitor_for(model)
        profiles.append(ReferenceProfile.build(
            group, model, version, numeric_bins=cfg.numeric_bins,
            max_categories=cfg.max_categories, max_features=cfg.max_features, source="file"))
    return profiles


def _first_ts(raw: bytes) -> float:
    """The event time that orders a line in the merge: its (first) event's ``ts``; lines
    that do not decode sort first (they are dead-lettered anyway)."""
    try:
        obj = orjson.loads(raw)
        if isinstance(obj, list):
            obj = obj[0] if obj else {}
        return parse_ts(obj["ts"]) if isinstance(obj, dict) and "ts" in obj else -math.inf
    except (orjson.JSONDecodeError, InvalidEvent, TypeError, IndexError):
        return -math.inf


def reference_quality(
    events: list[dict[str, Any]], labels: list[dict[str, Any]], settings: Settings,
) -> dict[tuple[str, str | None], dict[str, Any]]:
    """The model quality of labelled reference events, per (model, model_version):
    ``{"task", "pairs", "metrics"}``, computed by the live path's quality code on all the
    pairs at once (one window). Versions without any labelled event are left out."""
    from dataclasses import replace

    from stream.core.columns import columns_from_events
    from stream.core.quality_monitor import QualityMonitor

    out: dict[tuple[str, str | None], dict[str, Any]] = {}
    labelled = {(lab["model"], lab["event_id"]) for lab in labels}
    for (model, version), group in profiles_by_version(events).items():
        mine = [e for e in group if (model, e["event_id"]) in labelled]
        if not mine:
            continue
        cfg = replace(settings.monitor_for(model), quality_window_size=len(mine),
                      quality_window_kind="count", quality_min_pairs=1, quality_adwin=False,
                      quality_slo={}, quality_margin=0.0, label_ttl_seconds=1e12,
                      label_grace_seconds=1e12, max_pending_predictions=len(mine) + 1)
        qm = QualityMonitor(model, cfg)
        qm.add_predictions(columns_from_events(mine))
        ids = {e["event_id"] for e in mine}
        mine_labels = [lab for lab in labels if lab["model"] == model and lab["event_id"] in ids]
        result = qm.add_labels({"event_id": [lab["event_id"] for lab in mine_labels],
                                "label": [lab["label"] for lab in mine_labels],
                                "ts": [lab["ts"] for lab in mine_labels]})
        for report in result.reports:
            metrics = {k: v for k, v in report["metrics"].items() if k != "n" and v is not None}
            out[(model, version)] = {"task": report["task"], "pairs": report["metrics"]["n"],
                                     "metrics": metrics}
    return out


def replay_lines(
    lines: Iterable[tuple[int, bytes]],
    settings: Settings,
    *,
    references: Iterable[ReferenceProfile] = (),
    kind: str = "prediction",
    source: str = "replay",
    batch_lines: int = BATCH_LINES,
    labels: Iterable[tuple[int, bytes]] | None = None,
    labels_source: str = "labels",
) -> ReplayResult:
    """Replay message values (one per line: an event, an array, or JSON Lines) of
    ``kind`` events, and optionally of labels; ``source`` and ``labels_source`` name the
    topics in dead-letter records."""
    registry = MonitorRegistry(settings.monitor_for, max_models=settings.monitor.max_models)
    for profile in references:
        registry.set_reference(profile)
    result = ReplayResult()
    pending: list[Record] = []
    kinds = {source: kind, labels_source: "label"}

    def flush() -> None:
        routed = route(
            pending, kinds=kinds, partitions=settings.app.partitions,
            max_message_bytes=settings.ingest.max_message_bytes,
            dead_letter_max_bytes=settings.ingest.dead_letter_max_bytes, now=0.0)
        result.dead_letters += routed.dead_letters
        for _, _, value in routed.envelopes:
            env = orjson.loads(value)
            if env["type"] == "labels":
                result.labels += len(env["labels"]["event_id"])
            else:
                result.events += env["columns"]["n"]
            handled = registry.handle(env)
            result.reports += handled.output.reports
            result.alerts += (handled.output.alerts + handled.quality.alerts
                              + handled.volume_alerts + handled.shadow.alerts)
            result.quality_reports += handled.quality.reports
            result.shadow_reports += handled.shadow.reports
            result.rejected_by_cap += handled.rejected
            for outcome, n in handled.label_join.items():
                result.label_join[outcome] = result.label_join.get(outcome, 0) + n
            for label in handled.rejected_labels:
                result.dead_letters.append(dead_letter_record(
                    Rejection("cap_exceeded", f"label for model {label['model']!r}: "
                              f"monitor.max_models={settings.monitor.max_models} reached",
                              orjson.dumps(label)),
                    topic=labels_source, partition=0, offset=0, now=0.0,
                    max_bytes=settings.ingest.dead_letter_max_bytes))
        pending.clear()

    records: Iterable[Record] = (Record(source, 0, n, raw) for n, raw in lines)
    if labels is not None:
        label_records = (Record(labels_source, 0, n, raw) for n, raw in labels)
        records = heapq.merge(records, label_records,
                              key=lambda r: (_first_ts(r.value or b""), r.topic == labels_source))
    for rec in records:
        if pending and (len(pending) >= batch_lines or pending[-1].topic != rec.topic):
            flush()  # one kind per batch, so the merged order is the processing order
        pending.append(rec)
    flush()
    return result


def replay_files(
    events_path: str | Path,
    settings: Settings,
    *,
    references: Iterable[ReferenceProfile] = (),
    kind: str = "prediction",
    labels_path: str | Path | None = None,
) -> ReplayResult:
    return replay_lines(
        read_jsonl_lines(events_path), settings, references=references, kind=kind,
        source=str(events_path),
        labels=read_jsonl_lines(labels_path) if labels_path is not None else None,
        labels_source=str(labels_path) if labels_path is not None else "labels")
