"""The backlog status function and signals, table style, on a manual clock."""

from __future__ import annotations

import math

import pytest

from stream.core.lag import (
    LagPolicy,
    LagTracker,
    OffsetSample,
    PartitionStatus,
    evaluate,
    offset_lag,
    worst_status,
)

S = PartitionStatus
POLICY = LagPolicy(window_seconds=120, stall_after_seconds=30, stop_after_seconds=60,
                   min_span_seconds=10)


def series(*rows: tuple[float, int, int | None], alive: bool | None = None) -> list[OffsetSample]:
    """Samples from (at, highwater, committed) rows."""
    return [OffsetSample(at, hw, c, consumer_alive=alive) for at, hw, c in rows]


CASES = [
    # name, samples, now, expected status
    ("empty topic", series((0, 0, None)), 0, S.IDLE),
    ("idle topic, caught up for long", series((0, 500, 500), (50, 500, 500), (100, 500, 500)), 100,
     S.IDLE),
    ("normal: traffic, commits keep up", series((0, 100, 90), (10, 200, 190), (20, 300, 295)), 20,
     S.OK),
    ("falling behind: arrivals outpace commits",
     series((0, 100, 90), (10, 300, 150), (20, 500, 210)), 20, S.FALLING_BEHIND),
    ("falling behind needs min span", series((0, 100, 90), (5, 300, 150)), 5, S.OK),
    ("stalled: backlog and no commit for 30 s", series((0, 100, 50), (15, 200, 50), (30, 300, 50)),
     30, S.STALLED),
    ("stalled needs a continuous backlog",
     series((0, 100, 100), (15, 100, 100), (25, 110, 100), (30, 120, 100)), 30, S.FALLING_BEHIND),
    ("stopped: no commit for 60 s",
     series((0, 100, 50), (30, 200, 50), (60, 300, 50)), 60, S.STOPPED),
    ("no member and stuck past the stall time: stopped",
     series((0, 100, 50), (30, 200, 50), alive=False), 30, S.STOPPED),
    ("no member but not stuck for long (a rolling restart): not stopped",
     series((0, 100, 50), (10, 200, 50), alive=False), 10, S.FALLING_BEHIND),
    ("a member that heartbeats but commits nothing for 60 s is stopped",
     series((0, 100, 50), (30, 200, 50), (60, 300, 50), alive=True), 60, S.STOPPED),
    ("... and stalled before that", series((0, 100, 50), (45, 200, 50), alive=True), 45, S.STALLED),
    ("dead consumer with nothing to do is idle", series((0, 100, 100), alive=False), 0, S.IDLE),
    ("rewound: committed went backwards",
     series((0, 1000, 900), (10, 1010, 1000), (20, 1020, 400)), 20, S.REWOUND),
    ("rewind recovered", series((0, 1000, 900), (10, 1010, 400), (20, 1020, 1010)), 20, S.OK),
    ("a stall after a rewind is a stall",
     series((0, 1000, 900), (10, 1010, 400), (25, 1020, 400), (40, 1030, 400)), 40, S.STALLED),
    ("never committed: lag from the log start",
     [OffsetSample(0, 100, None, earliest=40)], 0, S.OK),
    ("caught up earlier never masks stopped now (Burrow #745)",
     series((0, 100, 100), (10, 110, 100), (40, 200, 100), (75, 300, 100)), 75, S.STOPPED),
    ("clock moved on without a new sample", series((0, 100, 50), (10, 120, 50)), 70, S.STOPPED),
]


@pytest.mark.parametrize(("name", "samples", "now", "expected"), CASES, ids=[c[0] for c in CASES])
def test_status_table(name: str, samples: list[OffsetSample], now: float, expected: S) -> None:
    reading = evaluate(samples, now, POLICY)
    assert reading.status is expected, reading.reason


def test_offset_lag_is_never_negative_and_has_no_sentinel() -> None:
    assert offset_lag(100, 120) == 0
    r = evaluate([OffsetSample(0, 100, None, earliest=30)], 0, POLICY)
    assert r.offset_lag == 70 and r.committed is None


def test_signals_of_a_draining_partition() -> None:
    s = [OffsetSample(0, 1000, 0), OffsetSample(10, 1100, 500, position=900, head_ts=4.0)]
    r = evaluate(s, 10, POLICY)
    assert r.offset_lag == 600
    assert r.position_lag == 200
    assert r.arrival_rate == pytest.approx(10.0)
    assert r.processing_rate == pytest.approx(50.0)
    assert r.drain_seconds == pytest.approx(600 / 40)
    assert r.backlog_age_seconds == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("samples", "drain"),
    [
        ([OffsetSample(0, 100, 100)], 0.0),                            # caught up
        ([OffsetSample(0, 100, 50)], None),                            # one sample: no rate yet
        ([OffsetSample(0, 100, 50), OffsetSample(10, 200, 100)], math.inf),  # equal rates
        ([OffsetSample(0, 100, 50), OffsetSample(10, 300, 60)], math.inf),   # not draining
    ],
)
def test_time_to_drain(samples: list[OffsetSample], drain: float | None) -> None:
    assert evaluate(samples, samples[-1].at, POLICY).drain_seconds == drain


def test_idle_partition_has_age_zero_not_stale() -> None:
    s = [OffsetSample(0, 100, 100, head_ts=None), OffsetSample(3600, 100, 100)]
    assert evaluate(s, 3600, POLICY).backlog_age_seconds == 0.0


def test_backlog_age_unknown_without_head_record() -> None:
    assert evaluate([OffsetSample(0, 100, 50)], 5, POLICY).backlog_age_seconds is None


def test_backlog_age_never_negative_with_clock_skew() -> None:
    assert evaluate([OffsetSample(0, 100, 50, head_ts=10.0)], 5, POLICY).backlog_age_seconds == 0.0


def test_transitions_through_a_tracker() -> None:
    """IDLE → ... → STALLED → STOPPED → (resume) ... → IDLE, on one partition."""
    tracker = LagTracker(POLICY)
    key = ("g", "t", 0)
    seen = []
    hw = committed = 0
    for t in range(0, 200, 5):
        hw += 50                                 # producers never stop
        if t < 20 or t >= 100:
            committed = min(hw, committed + 200)  # consumer works, except 20 <= t < 100
        seen.append(tracker.observe(key, OffsetSample(float(t), hw, committed)).status)
    order = [s for i, s in enumerate(seen) if i == 0 or s is not seen[i - 1]]
    assert order[0] is S.IDLE and order[-1] is S.IDLE, order
    assert order.index(S.STALLED) + 1 == order.index(S.STOPPED), order
    # The backlog starts at t=20 with the commits stuck: stalled at t=50, stopped at t=80.
    assert seen.index(S.STALLED) * 5 == 50 and seen.index(S.STOPPED) * 5 == 80, seen


def test_tracker_window_is_bounded_and_keeps_the_horizon() -> None:
    tracker = LagTracker(POLICY)
    for t in range(0, 1000):
        tracker.observe("k", OffsetSample(float(t), 10, 10))
    window = tracker._samples["k"]
    assert len(window) <= POLICY.window_seconds + 2
    assert window[0].at <= 999 - POLICY.window_seconds


def test_tracker_ignores_samples_from_the_past_and_forgets() -> None:
    tracker = LagTracker(POLICY)
    first = tracker.observe("k", OffsetSample(10.0, 10, 5))
    assert tracker.observe("k", OffsetSample(5.0, 99, 0)) is first
    tracker.forget("k")
    assert len(tracker) == 0 and tracker.tracked() == []


def test_worst_status_order() -> None:
    assert worst_status([S.IDLE, S.OK]) is S.OK
    assert worst_status([S.STALLED, S.STOPPED, S.REWOUND]) is S.STOPPED
    assert worst_status([]) is S.IDLE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stall_after_seconds": 0},
        {"stall_after_seconds": 70, "stop_after_seconds": 60},
        {"stop_after_seconds": 200, "window_seconds": 120},
        {"min_span_seconds": 0},
        {"allowed_lag": -1},
    ],
)
def test_policy_rejects_inconsistent_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="lag policy needs"):
        LagPolicy(**kwargs)  # type: ignore[arg-type]


def test_evaluate_needs_a_sample() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        evaluate([], 0, POLICY)


def test_a_backlog_nobody_consumes_says_so_before_it_is_stopped() -> None:
    r = evaluate([OffsetSample(0, 100, 50, consumer_alive=False)], 0, POLICY)
    assert r.status is S.OK and r.consumer_alive is False
    assert r.reason.endswith("; the group has no member")
    assert evaluate([OffsetSample(0, 100, 50)], 0, POLICY).consumer_alive is None
