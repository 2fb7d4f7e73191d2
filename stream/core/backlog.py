"""Backlog alerts: the firing/resolved lifecycle of a consumer group's backlog on a topic.

Each (group, topic) has three alert conditions, evaluated on the
:class:`~stream.core.lag.LagReading` of its partitions at every sample:

- ``backlog_age``: the oldest unprocessed record (the largest backlog age of the
  partitions) is older than ``age_warning_seconds`` / ``age_critical_seconds``.
- ``time_to_drain``: at the current rates, the backlog will not be gone within the
  freshness objective (``drain_warning_seconds``; critical at ``drain_critical_seconds``,
  and a backlog that is not shrinking at all is critical). A backlog younger than
  ``drain_min_age_seconds`` is not evaluated: a few seconds of lag is the normal sawtooth
  between two commits, and its rates are noise.
- ``status``: a partition is ``STALLED`` or ``STOPPED``. Critical, because a stopped
  pipeline emits nothing else: no drift alert, no window report. It resolves after
  ``quiet`` samples in a row without one.

Threshold conditions use :func:`~stream.core.alerts.step_threshold`, with hysteresis, so
the alerts follow the same lifecycle as drift alerts.

>>> from stream.core.lag import LagReading, PartitionStatus
>>> def reading(status, age):
...     return LagReading(at=0.0, status=status, reason="test", highwater=10, committed=0,
...                       offset_lag=10, position_lag=None, backlog_age_seconds=age,
...                       arrival_rate=1.0, processing_rate=0.0, drain_seconds=float("inf"),
...                       stuck_seconds=90.0)
>>> alerts = BacklogAlerts(BacklogPolicy(age_warning_seconds=60, age_critical_seconds=300))
>>> fired = alerts.evaluate("g", "predictions", {0: reading(PartitionStatus.STOPPED, 90.0)}, ts=100.0)
>>> sorted((a["detector"], a["severity"]) for a in fired)
[('backlog_age', 'warning'), ('status', 'critical'), ('time_to_drain', 'critical')]
>>> alerts.evaluate("g", "predictions", {0: reading(PartitionStatus.STOPPED, 95.0)}, ts=105.0)
[]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from stream.core.alerts import AlertState, Transition, alert_event, alert_id, step_threshold
from stream.core.lag import LagReading, PartitionStatus, worst_status
from stream.errors import SnapshotError

__all__ = ["BacklogAlerts", "BacklogPolicy", "backlog_summary"]

_DOWN = (PartitionStatus.STALLED, PartitionStatus.STOPPED)


@dataclass(frozen=True)
class BacklogPolicy:
    """Thresholds of the backlog alerts (seconds); see the module docstring."""

    age_warning_seconds: float = 60.0
    age_critical_seconds: float = 300.0
    drain_warning_seconds: float = 300.0
    drain_critical_seconds: float = 1800.0
    drain_min_age_seconds: float = 10.0
    hysteresis: float = 0.2
    quiet: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.age_warning_seconds <= self.age_critical_seconds:
            raise ValueError("backlog policy needs 0 < age_warning_seconds <= age_critical_seconds")
        if not 0 < self.drain_warning_seconds <= self.drain_critical_seconds:
            raise ValueError(
                "backlog policy needs 0 < drain_warning_seconds <= drain_critical_seconds")
        if self.drain_min_age_seconds < 0:
            raise ValueError("backlog policy needs drain_min_age_seconds >= 0")
        if not 0 <= self.hysteresis < 1 or self.quiet < 1:
            raise ValueError("backlog policy needs 0 <= hysteresis < 1 and quiet >= 1")


def backlog_summary(group: str, topic: str, readings: Mapping[int, LagReading]) -> dict[str, Any]:
    """The roll-up of a topic's partitions: total lag, worst status, oldest backlog, and
    the partitions in the worst status. JSON-safe (``inf`` becomes ``None``).

    Ages roll up with ``max``, not ``sum``: the freshness of a topic is that of its
    stalest partition.
    """
    status = worst_status([r.status for r in readings.values()])
    ages = [r.backlog_age_seconds for r in readings.values() if r.backlog_age_seconds is not None]
    drains = [r.drain_seconds for r in readings.values() if r.drain_seconds is not None]
    drain = max(drains, default=None)
    return {
        "group": group,
        "topic": topic,
        "status": status.name,
        "partitions": sorted(p for p, r in readings.items() if r.status is status),
        "offset_lag": sum(r.offset_lag for r in readings.values()),
        "backlog_age_seconds": max(ages, default=None),
        "drain_seconds": None if drain is None or math.isinf(drain) else drain,
    }


class BacklogAlerts:
    """The alert states of every (group, topic) seen, and their transitions."""

    def __init__(self, policy: BacklogPolicy | None = None) -> None:
        self.policy = policy or BacklogPolicy()
        self._states: dict[tuple[str, str, str], AlertState] = {}

    def firing(self) -> int:
        """How many conditions are firing now."""
        return sum(1 for s in self._states.values() if s.status == "firing")

    def evaluate(
        self, group: str, topic: str, readings: Mapping[int, LagReading], *, ts: float
    ) -> list[dict[str, Any]]:
        """Advance the three conditions of (``group``, ``topic``) on the partitions'
        ``readings``; return the alert events of the transitions (``schemas/alert.json``)."""
        if not readings:
            return []
        p = self.policy
        summary = backlog_summary(group, topic, readings)
        age = summary["backlog_age_seconds"] or 0.0
        drains = [
            r.drain_seconds for r in readings.values()
            if r.drain_seconds is not None and (r.backlog_age_seconds or 0.0) >= p.drain_min_age_seconds
        ]
        drain = max(drains, default=0.0)
        down = PartitionStatus[summary["status"]] in _DOWN
        out: list[dict[str, Any]] = []

        age_msg = f"the oldest unprocessed record on {topic} for group {group} is {age:.0f} s old"
        t_age = self._step_threshold(
            (group, topic, "backlog_age"), age, p.age_warning_seconds, p.age_critical_seconds, ts)
        if t_age:
            out.append(self._event(group, topic, "backlog_age", t_age, age,
                                   (p.age_warning_seconds, p.age_critical_seconds), summary, ts,
                                   age_msg))

        t_drain = self._step_threshold(
            (group, topic, "time_to_drain"), drain, p.drain_warning_seconds,
            p.drain_critical_seconds, ts)
        if t_drain:
            text = "not draining" if math.isinf(drain) else f"{drain:.0f} s to drain"
            out.append(self._event(
                group, topic, "time_to_drain", t_drain, None if math.isinf(drain) else drain,
                (p.drain_warning_seconds, p.drain_critical_seconds), summary, ts,
                f"the backlog on {topic} for group {group} is {text} "
                f"(objective {p.drain_warning_seconds:.0f} s)"))

        t_status = self._step_status((group, topic, "status"), down, ts)
        if t_status:
            parts = ", ".join(str(x) for x in summary["partitions"])
            text = (f"partitions {parts} of {topic} are {summary['status']} for group {group}: "
                    + "; ".join(sorted({r.reason for r in readings.values() if r.status in _DOWN})))
            if not down:
                text = f"{topic} for group {group} is {summary['status']} again"
            out.append(self._event(group, topic, "status", t_status, None, None, summary, ts, text))
        return out

    def _step_threshold(
        self, key: tuple[str, str, str], value: float, warning: float, critical: float, ts: float
    ) -> Transition | None:
        state, transition = step_threshold(
            self._states.get(key, AlertState()), value, warning, critical,
            hysteresis=self.policy.hysteresis, ts=ts)
        self._states[key] = state
        return transition

    def _step_status(self, key: tuple[str, str, str], down: bool, ts: float) -> Transition | None:
        state = self._states.get(key, AlertState())
        transition: Transition | None = None
        if down:
            if state.status == "ok":
                state = AlertState("firing", "critical", state.episode + 1, ts, 0)
                transition = "firing"
            else:
                state = replace(state, quiet=0)
        elif state.status == "firing":
            if state.quiet + 1 >= self.policy.quiet:
                state, transition = replace(state, status="ok", since=None, quiet=0), "resolved"
            else:
                state = replace(state, quiet=state.quiet + 1)
        self._states[key] = state
        return transition

    def _event(
        self,
        group: str,
        topic: str,
        detector: str,
        transition: Transition,
        value: float | None,
        thresholds: tuple[float, float] | None,
        summary: dict[str, Any],
        ts: float,
        message: str,
    ) -> dict[str, Any]:
        state = self._states[(group, topic, detector)]
        threshold = None
        if thresholds is not None:
            threshold = thresholds[1] if state.severity == "critical" else thresholds[0]
        event = alert_event(
            state=state, transition=transition, kind="backlog", model=None, model_version=None,
            feature=None, detector=detector, value=value, threshold=threshold, window=None,
            ts=ts, message=message)
        event["alert_id"] = alert_id("backlog", None, None, None, detector, scope=f"{group}\x1f{topic}")
        event["pipeline"] = summary
        return event

    def recover(self, events: Iterable[dict[str, Any]]) -> int:
        """Take the states back from earlier backlog alert events (oldest first), e.g. read
        back from the alerts topic at start-up, so a restarted monitor neither fires again
        what is firing nor restarts episodes at 1. Returns the conditions recovered.

        >>> a = BacklogAlerts()
        >>> a.recover([{"kind": "backlog", "detector": "status", "status": "firing",
        ...             "severity": "critical", "episode": 4, "ts": 1.0,
        ...             "pipeline": {"group": "g", "topic": "t"}}])
        1
        >>> a.firing()
        1
        """
        seen = set()
        for e in events:
            pipe = e.get("pipeline")
            if e.get("kind") != "backlog" or not isinstance(pipe, dict):
                continue
            key = (pipe["group"], pipe["topic"], e["detector"])
            firing = e["status"] == "firing"
            self._states[key] = AlertState(
                "firing" if firing else "ok", e["severity"], int(e["episode"]),
                e["ts"] if firing else None)
            seen.add(key)
        return len(seen)

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state, so a restarted monitor does not fire again what is firing."""
        return {
            "kind": "driftstream.backlog_alerts",
            "version": 1,
            "states": [[g, t, d, s.snapshot()] for (g, t, d), s in sorted(self._states.items())],
        }

    @classmethod
    def restore(cls, data: dict[str, Any], policy: BacklogPolicy | None = None) -> BacklogAlerts:
        if data.get("kind") != "driftstream.backlog_alerts" or data.get("version") != 1:
            raise SnapshotError(
                f"not a backlog alert snapshot of version 1: kind={data.get('kind')!r}, "
                f"version={data.get('version')!r}")
        alerts = cls(policy)
        for g, t, d, s in data["states"]:
            alerts._states[(g, t, d)] = AlertState.restore(s)
        return alerts
