"""The alert lifecycle: firing and resolved transitions, with hysteresis and escalation.

Alerts are published on *transitions* only. Two state machines cover every detector:

- :func:`step_threshold` for a value against warning and critical thresholds (PSI, and
  later quality metrics). It fires at ``value >= warning`` (or straight to critical), and
  escalates to critical at ``value >= critical``. It de-escalates only once the value is
  below ``critical * (1 - hysteresis)``, and resolves only once it is below
  ``warning * (1 - hysteresis)``, so a value hovering at a threshold does not flap.
- :func:`step_detection` for point detections (ADWIN): it fires on a detection and
  resolves after ``quiet`` evaluations in a row without one.

State lives in :class:`AlertState`, part of each model's snapshot, so a restarted worker
does not fire again what is already firing.

>>> s = AlertState()
>>> s, t = step_threshold(s, 0.12, 0.1, 0.25, hysteresis=0.2); t, s.severity
('firing', 'warning')
>>> s, t = step_threshold(s, 0.09, 0.1, 0.25, hysteresis=0.2); t   # above 0.08: holds
>>> s, t = step_threshold(s, 0.30, 0.1, 0.25, hysteresis=0.2); t, s.severity
('escalated', 'critical')
>>> s, t = step_threshold(s, 0.05, 0.1, 0.25, hysteresis=0.2); t, s.status
('resolved', 'ok')
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from stream.core.slices import slice_label

__all__ = [
    "AlertState",
    "Transition",
    "alert_event",
    "alert_id",
    "slice_id",
    "step_bound",
    "step_detection",
    "step_threshold",
]

Transition = Literal["firing", "escalated", "deescalated", "resolved"]
Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class AlertState:
    """Where one alert condition stands. ``episode`` counts the times it started firing;
    ``severity`` is the current one while firing, the last one once resolved."""

    status: Literal["ok", "firing"] = "ok"
    severity: Severity | None = None
    episode: int = 0
    since: float | None = None
    quiet: int = 0

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def restore(cls, data: dict[str, Any]) -> AlertState:
        return cls(**data)


def step_threshold(
    state: AlertState,
    value: float,
    warning: float,
    critical: float,
    *,
    hysteresis: float,
    ts: float | None = None,
) -> tuple[AlertState, Transition | None]:
    """Advance a threshold alert by one evaluation of ``value``."""
    resolve_below = warning * (1.0 - hysteresis)
    if state.status == "ok":
        if value >= critical:
            severity: Severity = "critical"
        elif value >= warning:
            severity = "warning"
        else:
            return state, None
        return AlertState("firing", severity, state.episode + 1, ts), "firing"
    if value < resolve_below:
        return replace(state, status="ok", since=None), "resolved"
    if state.severity == "warning" and value >= critical:
        return replace(state, severity="critical"), "escalated"
    if state.severity == "critical" and value < critical * (1.0 - hysteresis):
        return replace(state, severity="warning"), "deescalated"
    return state, None


def step_detection(
    state: AlertState, detections: int, *, quiet: int, ts: float | None = None
) -> tuple[AlertState, Transition | None]:
    """Advance a detection alert: fire on ``detections > 0``, resolve after ``quiet``
    evaluations in a row without one.

    >>> s, t = step_detection(AlertState(), 1, quiet=2); t
    'firing'
    >>> s, t = step_detection(s, 0, quiet=2); t
    >>> s, t = step_detection(s, 0, quiet=2); t
    'resolved'
    """
    if detections > 0:
        if state.status == "ok":
            return AlertState("firing", "warning", state.episode + 1, ts, 0), "firing"
        return replace(state, quiet=0), None
    if state.status == "firing":
        if state.quiet + 1 >= quiet:
            return replace(state, status="ok", since=None, quiet=0), "resolved"
        return replace(state, quiet=state.quiet + 1), None
    return state, None


def step_bound(
    state: AlertState,
    value: float,
    bound: float,
    *,
    higher_is_better: bool,
    hysteresis: float,
    severity: Severity = "warning",
    ts: float | None = None,
) -> tuple[AlertState, Transition | None]:
    """Advance an alert on a quality metric against a bound (an SLO floor for accuracy, a
    ceiling for an error): fire when the value is on the wrong side of ``bound``, resolve
    only once it is back past it by ``hysteresis × |bound|``.

    >>> s, t = step_bound(AlertState(), 0.85, 0.9, higher_is_better=True, hysteresis=0.02); t
    'firing'
    >>> s, t = step_bound(s, 0.91, 0.9, higher_is_better=True, hysteresis=0.02); t  # < 0.918
    >>> s, t = step_bound(s, 0.93, 0.9, higher_is_better=True, hysteresis=0.02); t
    'resolved'
    >>> step_bound(AlertState(), 4.0, 3.0, higher_is_better=False, hysteresis=0.0)[1]
    'firing'
    """
    sign = 1.0 if higher_is_better else -1.0
    margin = sign * (value - bound)  # > 0: on the good side
    if state.status == "ok":
        if margin < 0:
            return AlertState("firing", severity, state.episode + 1, ts), "firing"
        return state, None
    if margin > hysteresis * abs(bound):
        return replace(state, status="ok", since=None), "resolved"
    return state, None


def alert_id(
    kind: str,
    model: str | None,
    model_version: str | None,
    feature: str | None,
    detector: str,
    slice_: str | None = None,
    scope: str | None = None,
) -> str:
    """A stable id for one alert condition (16 hex characters), the same across restarts
    and replays, so consumers can dedupe on ``(alert_id, episode, status, severity)``.

    ``scope`` names what a condition is about when it is not a model: for backlog alerts,
    the consumer group and topic.

    >>> alert_id("feature_drift", "fraud", "v1", "amount", "psi")
    '41a2883bf13c8af7'
    >>> alert_id("backlog", None, None, None, "status", scope="g\x1fpredictions")
    'bfd57892210e613d'
    """
    parts: tuple[str | None, ...] = (kind, model, model_version, feature, detector, slice_)
    if scope is not None:
        parts += (scope,)
    text = "\x1f".join(str(p) if p is not None else "" for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert_event(
    *,
    state: AlertState,
    transition: Transition,
    kind: str,
    model: str | None,
    model_version: str | None,
    feature: str | None,
    detector: str,
    value: float | None,
    threshold: float | None,
    window: dict[str, Any] | None,
    ts: float,
    message: str,
    slice_: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The alert event published on the alerts topic (``schemas/alert.json``).

    ``slice_`` is the (slice key, value) a sliced monitor's alert is about; the event then
    carries ``slice`` and its condition has its own ``alert_id``."""
    resolved = transition == "resolved"
    event = {
        "schema_version": 1,
        "alert_id": alert_id(kind, model, model_version, feature, detector,
                             slice_id(slice_)),
        "episode": state.episode,
        "kind": kind,
        "status": "resolved" if resolved else "firing",
        "severity": state.severity or "warning",
        "transition": transition,
        "model": model,
        "model_version": model_version,
        "feature": feature,
        "detector": detector,
        "value": value,
        "threshold": threshold,
        "window": window,
        "ts": ts,
        "message": message,
    }
    if slice_ is not None:
        event["slice"] = slice_label(*slice_)
    return event


def slice_id(slice_: tuple[str, str] | None) -> str | None:
    """The part of an ``alert_id`` that names a slice (``None`` for the whole model).

    >>> slice_id(("region", "eu")), slice_id(None)
    ('region=eu', None)
    """
    return None if slice_ is None else f"{slice_[0]}={slice_[1]}"

