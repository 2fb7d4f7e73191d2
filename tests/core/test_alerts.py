"""The alert lifecycle (``stream/core/alerts.py``): threshold and detection state machines
as tables of inputs -> transitions, alert ids, and the published alert event."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from stream.core.alerts import AlertState, alert_event, alert_id, step_detection, step_threshold

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "alert.json"

WARN, CRIT = 0.1, 0.25  # with hysteresis 0.2: resolve below 0.08, de-escalate below 0.2


def run_threshold(values: list[float], hysteresis: float = 0.2, warning: float = WARN,
                  critical: float = CRIT) -> tuple[list[Any], list[AlertState]]:
    state = AlertState()
    transitions, states = [], []
    for i, v in enumerate(values):
        state, t = step_threshold(state, v, warning, critical, hysteresis=hysteresis, ts=float(i))
        transitions.append(t)
        states.append(state)
    return transitions, states


@pytest.mark.parametrize(
    ("values", "transitions", "severities"),
    [
        pytest.param([0.05, 0.12], [None, "firing"], [None, "warning"], id="fire_warning"),
        pytest.param([0.1], ["firing"], ["warning"], id="fire_at_exactly_warning"),
        pytest.param([0.3], ["firing"], ["critical"], id="straight_to_critical"),
        pytest.param([0.25], ["firing"], ["critical"], id="critical_at_exactly_critical"),
        pytest.param([0.12, 0.3], ["firing", "escalated"], ["warning", "critical"],
                     id="escalate"),
        pytest.param([0.3, 0.22, 0.2, 0.19], ["firing", None, None, "deescalated"],
                     ["critical", "critical", "critical", "warning"],
                     id="deescalate_only_below_critical_times_1_minus_h"),
        pytest.param([0.3, 0.19, 0.26], ["firing", "deescalated", "escalated"],
                     ["critical", "warning", "critical"], id="re_escalate"),
        pytest.param([0.12, 0.09, 0.11, 0.085, 0.099, 0.0801],
                     ["firing", None, None, None, None, None], ["warning"] * 6,
                     id="hover_between_warning_times_1_minus_h_and_warning"),
        pytest.param([0.12, 0.079], ["firing", "resolved"], ["warning", "warning"],
                     id="resolve"),
        pytest.param([0.3, 0.05], ["firing", "resolved"], ["critical", "critical"],
                     id="resolve_from_critical_keeps_last_severity"),
        pytest.param([0.3, 0.15, 0.01], ["firing", "deescalated", "resolved"],
                     ["critical", "warning", "warning"], id="deescalate_then_resolve"),
        pytest.param([0.05, 0.07, 0.0], [None, None, None], [None, None, None],
                     id="never_fires"),
    ],
)
def test_step_threshold_table(values, transitions, severities):
    got, states = run_threshold(values)
    assert got == transitions
    assert [s.severity for s in states] == severities


@pytest.mark.parametrize(
    ("values", "transitions", "episodes"),
    [
        ([0.12, 0.05, 0.12], ["firing", "resolved", "firing"], [1, 1, 2]),
        ([0.3, 0.0, 0.0, 0.5, 0.01, 0.2], ["firing", "resolved", None, "firing", "resolved",
                                            "firing"], [1, 1, 1, 2, 2, 3]),
        ([0.12, 0.3, 0.19, 0.11], ["firing", "escalated", "deescalated", None], [1, 1, 1, 1]),
    ],
)
def test_episode_increments_only_on_re_fire(values, transitions, episodes):
    got, states = run_threshold(values)
    assert got == transitions
    assert [s.episode for s in states] == episodes


@pytest.mark.parametrize(
    ("values", "transitions"),
    [
        ([0.12, 0.0999], ["firing", "resolved"]),  # no band: below warning resolves
        ([0.12, 0.1], ["firing", None]),  # at warning: holds
        ([0.3, 0.2499], ["firing", "deescalated"]),
        ([0.3, 0.25], ["firing", None]),
        ([0.12, 0.09, 0.12, 0.09], ["firing", "resolved", "firing", "resolved"]),  # it flaps
    ],
)
def test_hysteresis_zero(values, transitions):
    assert run_threshold(values, hysteresis=0.0)[0] == transitions


@pytest.mark.parametrize(
    ("values", "transitions"),
    [
        ([0.12, 0.09, 0.12, 0.09], ["firing", None, None, None]),
        ([0.12, 0.049], ["firing", "resolved"]),  # 0.1 * (1 - 0.5)
        ([0.12, 0.05], ["firing", None]),
        ([0.3, 0.13, 0.12], ["firing", None, "deescalated"]),  # 0.25 * 0.5 = 0.125
    ],
)
def test_wider_hysteresis(values, transitions):
    assert run_threshold(values, hysteresis=0.5)[0] == transitions


def test_threshold_state_records_since_and_clears_it():
    s, _ = step_threshold(AlertState(), 0.12, WARN, CRIT, hysteresis=0.2, ts=10.0)
    assert (s.status, s.since) == ("firing", 10.0)
    s, t = step_threshold(s, 0.3, WARN, CRIT, hysteresis=0.2, ts=20.0)
    assert t == "escalated"
    assert s.since == 10.0  # still the same episode
    s, t = step_threshold(s, 0.0, WARN, CRIT, hysteresis=0.2, ts=30.0)
    assert (t, s.status, s.since, s.episode) == ("resolved", "ok", None, 1)


def run_detection(detections: list[int], quiet: int) -> tuple[list[Any], list[AlertState]]:
    state = AlertState()
    transitions, states = [], []
    for i, d in enumerate(detections):
        state, t = step_detection(state, d, quiet=quiet, ts=float(i))
        transitions.append(t)
        states.append(state)
    return transitions, states


@pytest.mark.parametrize(
    ("detections", "quiet", "transitions", "episodes"),
    [
        pytest.param([0, 1], 3, [None, "firing"], [0, 1], id="fire"),
        pytest.param([2], 3, ["firing"], [1], id="several_detections_fire_once"),
        pytest.param([1, 1, 1, 0, 0], 3, ["firing", None, None, None, None], [1] * 5,
                     id="stays_firing_while_detections_continue"),
        pytest.param([1, 0, 0, 0], 3, ["firing", None, None, "resolved"], [1] * 4,
                     id="resolves_after_quiet"),
        pytest.param([1, 0, 0, 1, 0, 0, 0], 3,
                     ["firing", None, None, None, None, None, "resolved"], [1] * 7,
                     id="a_detection_restarts_the_quiet_count"),
        pytest.param([1, 0], 1, ["firing", "resolved"], [1, 1], id="quiet_1"),
        pytest.param([1, 0, 0, 1, 0, 0], 2,
                     ["firing", None, "resolved", "firing", None, "resolved"],
                     [1, 1, 1, 2, 2, 2], id="re_fire_increments_episode"),
        pytest.param([0, 0, 0], 2, [None, None, None], [0, 0, 0], id="nothing"),
    ],
)
def test_step_detection_table(detections, quiet, transitions, episodes):
    got, states = run_detection(detections, quiet)
    assert got == transitions
    assert [s.episode for s in states] == episodes
    for s, t in zip(states, got, strict=True):
        if t == "firing":
            assert (s.status, s.severity, s.quiet) == ("firing", "warning", 0)
        if t == "resolved":
            assert (s.status, s.since, s.quiet) == ("ok", None, 0)


def test_detection_since_is_the_firing_time():
    _, states = run_detection([0, 1, 0, 1], quiet=5)
    assert [s.since for s in states] == [None, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "state",
    [AlertState(), AlertState("firing", "critical", 3, 12.5, 0), AlertState("ok", "warning", 2)],
)
def test_alert_state_round_trip(state):
    assert AlertState.restore(json.loads(json.dumps(state.snapshot()))) == state


# -- alert ids -----------------------------------------------------------------------

BASE = ("feature_drift", "fraud", "v1", "amount", "psi")


def test_alert_id_is_a_stable_hash():
    text = "feature_drift\x1ffraud\x1fv1\x1famount\x1fpsi\x1f"
    assert alert_id(*BASE) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert alert_id(*BASE) == alert_id(*BASE)


@pytest.mark.parametrize(
    "other",
    [
        ("prediction_drift", "fraud", "v1", "amount", "psi"),
        ("feature_drift", "churn", "v1", "amount", "psi"),
        ("feature_drift", "fraud", "v2", "amount", "psi"),
        ("feature_drift", "fraud", None, "amount", "psi"),
        ("feature_drift", "fraud", "v1", "country", "psi"),
        ("feature_drift", "fraud", "v1", None, "psi"),
        ("feature_drift", "fraud", "v1", "amount", "adwin"),
        ("feature_drift", "fraud", "v1", "amount", "psi", "country=DE"),
    ],
)
def test_alert_id_differs_between_conditions(other):
    a, b = alert_id(*BASE), alert_id(*other)
    assert a != b
    assert len(b) == 16
    assert all(ch in "0123456789abcdef" for ch in b)


# -- alert events --------------------------------------------------------------------

REQUIRED = ("schema_version", "alert_id", "episode", "kind", "status", "severity", "model",
            "model_version", "feature", "detector", "value", "threshold", "window", "ts",
            "message")


@pytest.fixture(scope="module")
def alert_validator():
    """A validator for ``schemas/alert.json``, or None while the schema is not written."""
    if not SCHEMA.exists():
        return None
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def check_alert(event: dict[str, Any], validator: Any) -> None:
    assert set(REQUIRED) <= set(event)
    if validator is not None:
        errors = sorted(validator.iter_errors(json.loads(json.dumps(event))), key=str)
        assert not errors, [e.message for e in errors]


WINDOW = {"kind": "count", "index": 3, "start": 100.0, "end": 200.0, "count": 1000}


@pytest.mark.parametrize(
    ("state", "transition", "status", "severity"),
    [
        (AlertState("firing", "warning", 1, 5.0), "firing", "firing", "warning"),
        (AlertState("firing", "critical", 2, 5.0), "escalated", "firing", "critical"),
        (AlertState("firing", "warning", 2, 5.0), "deescalated", "firing", "warning"),
        (AlertState("ok", "critical", 4, None), "resolved", "resolved", "critical"),
    ],
)
@pytest.mark.parametrize(
    ("kind", "feature", "detector", "value", "threshold", "window"),
    [
        ("feature_drift", "amount", "psi", 0.31, 0.25, WINDOW),
        ("prediction_drift", "prediction.score", "adwin", None, None, WINDOW),
        ("backlog", None, "lag", 120.0, 10000.0, None),
    ],
)
def test_alert_event_fields(alert_validator, state, transition, status, severity, kind,
                            feature, detector, value, threshold, window):
    event = alert_event(state=state, transition=transition, kind=kind, model="fraud",
                        model_version="v1", feature=feature, detector=detector, value=value,
                        threshold=threshold, window=window, ts=200.0, message="something")
    check_alert(event, alert_validator)
    assert event["status"] == status
    assert event["severity"] == severity
    assert event["transition"] == transition
    assert event["episode"] == state.episode
    assert event["alert_id"] == alert_id(kind, "fraud", "v1", feature, detector)
    assert (event["feature"], event["detector"], event["value"], event["threshold"]) == (
        feature, detector, value, threshold)
    assert event["window"] == window
    assert event["schema_version"] == 1


def test_alert_schema_rejects_a_broken_event(alert_validator):
    """The validator is not vacuous: an event without an alert id or with episode 0 fails."""
    if alert_validator is None:
        pytest.skip("schemas/alert.json not written yet")
    event = alert_event(state=AlertState("firing", "warning", 1, 0.0), transition="firing",
                        kind="feature_drift", model="m", model_version=None, feature="x",
                        detector="psi", value=0.2, threshold=0.1, window=WINDOW, ts=0.0,
                        message="m")
    assert alert_validator.is_valid(event)
    assert not alert_validator.is_valid({k: v for k, v in event.items() if k != "alert_id"})
    assert not alert_validator.is_valid({**event, "episode": 0})
