"""The event-volume SLI (``stream/core/volume.py``): too_big / too_small in event time, the
dead-man on an injected wall clock, late events, an unpoisoned baseline, bounded work on
gaps (checked against a naive bucket-by-bucket oracle), exact snapshots, and alerts that
follow ``schemas/alert.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from stream.core.alerts import alert_id
from stream.core.clock import ManualClock
from stream.core.volume import DETECTORS, VolumePolicy, VolumeTracker
from stream.errors import SnapshotError

T = 60.0
T0 = 60 * 28_333_334.0  # 1_700_000_040.0, a bucket boundary
K0 = int(T0 // T)  # bucket index of T0
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "alert.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
POLICY = VolumePolicy(bucket_seconds=T, baseline_buckets=10, min_baseline_buckets=5,
                      spike_factor=3.0, drop_factor=3.0, deadman_seconds=300.0, quiet=2)
#: (detector, transition, severity, bucket index relative to T0 or None)
Seen = tuple[str, str, str, int | None]


def checked(alerts: list[dict[str, Any]], model: str = "m") -> list[dict[str, Any]]:
    """Validate every alert against the schema and the volume conventions."""
    for a in alerts:
        VALIDATOR.validate(a)
        assert a["kind"] == "volume"
        assert (a["model"], a["model_version"], a["feature"]) == (model, None, None)
        assert a["alert_id"] == alert_id("volume", model, None, None, a["detector"])
        assert a["detector"] in DETECTORS
        if a["detector"] == "deadman":
            assert a["window"] is None
        else:
            w = a["window"]
            assert w["kind"] == "time"
            assert (w["start"], w["end"]) == (w["index"] * T, (w["index"] + 1) * T)
            assert a["ts"] == w["end"] and a["value"] == w["count"]
    return alerts


def seen(alerts: list[dict[str, Any]]) -> list[Seen]:
    return [(a["detector"], a["transition"], a["severity"],
             a["window"]["index"] - K0 if a["window"] else None) for a in checked(alerts)]


def bucket_ts(i: int, n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``n`` event times spread over bucket ``i`` (relative to T0), shuffled."""
    ts = T0 + i * T + (np.arange(n) + 0.5) * (T / max(n, 1))
    return np.random.default_rng(i).permutation(ts)


def feed(v: VolumeTracker, counts: list[int], start: int = 0,
         clock: ManualClock | None = None) -> list[Seen]:
    """One ``observe`` per bucket with events (an empty bucket is just no call), a wall
    clock moving one bucket per bucket when given."""
    out: list[Seen] = []
    for i, c in enumerate(counts, start):
        if clock is not None and i > start:
            clock.advance(T)
        if c:
            out += seen(v.observe(bucket_ts(i, c), now=clock.now() if clock else None))
    return out


# -- the bucket detectors, table style ---------------------------------------------------

CASES: list[tuple[str, list[int], list[Seen]]] = [
    ("steady", [10] * 12, []),
    ("spike: warning, resolves after quiet=2 healthy buckets",
     [10] * 6 + [40] + [10] * 3,
     [("too_big", "firing", "warning", 6), ("too_big", "resolved", "warning", 8)]),
    ("spike above 2 × factor: critical", [10] * 6 + [70] + [10] * 3,
     [("too_big", "firing", "critical", 6), ("too_big", "resolved", "critical", 8)]),
    ("spike escalates", [10] * 6 + [40, 70] + [10] * 3,
     [("too_big", "firing", "warning", 6), ("too_big", "escalated", "critical", 7),
      ("too_big", "resolved", "critical", 9)]),
    ("exactly spike_factor × baseline does not fire", [10] * 6 + [30] + [10] * 2, []),
    ("quiet counts healthy buckets in a row", [10] * 6 + [40, 10, 40, 10, 10, 10],
     [("too_big", "firing", "warning", 6), ("too_big", "resolved", "warning", 10)]),
    ("partial drop: warning", [30] * 6 + [5] + [30] * 3,
     [("too_small", "firing", "warning", 6), ("too_small", "resolved", "warning", 8)]),
    ("exactly baseline / drop_factor does not fire", [30] * 6 + [10] + [30] * 2, []),
    ("drop to zero (events stop, then resume): critical", [30] * 6 + [0, 0, 0] + [30] * 3,
     [("too_small", "firing", "critical", 6), ("too_small", "resolved", "critical", 10)]),
    ("a partial drop, then none: escalates", [30] * 6 + [5, 0] + [30] * 3,
     [("too_small", "firing", "warning", 6), ("too_small", "escalated", "critical", 7),
      ("too_small", "resolved", "critical", 9)]),
    ("nothing judged before min_baseline_buckets", [10] * 4 + [100] + [10] * 2, []),
    ("the bucket after min_baseline_buckets is judged", [10] * 5 + [100] + [10] * 3,
     [("too_big", "firing", "critical", 5), ("too_big", "resolved", "critical", 7)]),
    ("a long low stretch is not the new normal: recovery is healthy",
     [10] * 6 + [1] * 20 + [10] * 4,
     [("too_small", "firing", "warning", 6), ("too_small", "resolved", "warning", 27)]),
    ("a long outage: recovery does not fire too_big", [10] * 6 + [0] * 20 + [10] * 4,
     [("too_small", "firing", "critical", 6), ("too_small", "resolved", "critical", 27)]),
    ("a flood is not the new normal either", [10] * 6 + [100] * 12 + [10] * 3,
     [("too_big", "firing", "critical", 6), ("too_big", "resolved", "critical", 19)]),
]


@pytest.mark.parametrize(("name", "counts", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bucket_alerts(name: str, counts: list[int], expected: list[Seen]) -> None:
    assert feed(VolumeTracker("m", POLICY), counts) == expected


def test_steady_noisy_traffic_never_alerts() -> None:
    rng = np.random.default_rng(7)
    v = VolumeTracker("m", POLICY)
    assert feed(v, [int(c) for c in rng.poisson(100, 300)]) == []
    assert v.baseline_rate == pytest.approx(100 / T, rel=0.1)
    assert v.late == 0


def test_outage_is_kept_out_of_the_baseline() -> None:
    v = VolumeTracker("m", POLICY)
    feed(v, [12] * 10)
    before = v.baseline_rate
    assert before == pytest.approx(12 / T)
    feed(v, [0] * 40 + [12], start=10)  # closes 40 empty buckets
    assert v.baseline_rate == before
    assert v.rate_of_last_bucket == 0.0
    assert v.alert_state("too_small").status == "firing"


def test_rates_and_when_a_bucket_closes() -> None:
    v = VolumeTracker("m", POLICY)
    assert (v.baseline_rate, v.rate_of_last_bucket, v.watermark) == (None, None, None)
    v.observe(bucket_ts(0, 6))
    assert v.rate_of_last_bucket is None  # bucket 0 holds the watermark: still open
    v.observe(np.array([T0 + T]))  # the watermark reaches bucket 0's end: it closes
    assert v.rate_of_last_bucket == 6 / T
    assert v.watermark == T0 + T
    assert v.observe(np.array([])) == []


def test_late_events_are_counted_not_added() -> None:
    v = VolumeTracker("m", POLICY)
    feed(v, [10] * 4)  # bucket 3 open
    assert v.observe(bucket_ts(1, 7)) == []
    assert v.late == 7
    v.observe(np.array([T0 + 3 * T + 1.0]))  # before the watermark, but its bucket is open
    assert v.late == 7
    v.observe(bucket_ts(4, 1))
    assert v.rate_of_last_bucket == 11 / T  # bucket 3: 10 + 1, none of the late ones
    # Within one call, order does not matter: bucket 4's events are not late because
    # the same call holds a later event.
    w = VolumeTracker("m", POLICY)
    w.observe(np.array([T0 + 5 * T, T0 + 4 * T, T0 + 4 * T + 1]))
    assert (w.late, w.rate_of_last_bucket) == (0, 2 / T)


def test_bad_event_times_are_rejected() -> None:
    v = VolumeTracker("m", POLICY)
    for bad in ([np.nan], [np.inf], [-1.0]):
        with pytest.raises(ValueError, match="finite epoch seconds"):
            v.observe(np.array(bad))


# -- the dead-man ------------------------------------------------------------------------


def test_deadman_fires_on_the_wall_clock_while_nothing_arrives() -> None:
    clock = ManualClock(1_000_000.0)
    v = VolumeTracker("m", POLICY)
    assert feed(v, [10] * 8, clock=clock) == []
    last = clock.now()
    assert v.active and v.last_arrival == last
    fired: list[Seen] = []
    for _ in range(20):  # a timer every 30 s; no observe at all
        clock.advance(30.0)
        out = v.check(clock.now())
        fired += seen(out)
        if out:
            assert out[0]["value"] == clock.now() - last
            assert out[0]["threshold"] == 300.0 and out[0]["ts"] == clock.now()
            assert clock.now() - last == 330.0  # > 300, not at 300
    assert fired == [("deadman", "firing", "critical", None)]  # once
    assert v.alert_state("deadman").episode == 1
    # Traffic resumes: the resolution comes first, then the empty buckets close.
    clock.advance(5.0)
    out = v.observe(bucket_ts(20, 10), now=clock.now())
    assert seen(out) == [("deadman", "resolved", "critical", None),
                         ("too_small", "firing", "critical", 8)]
    assert out[0]["value"] == clock.now() - last and out[0]["ts"] == clock.now()
    assert v.check(clock.now() + 60) == []


def test_deadman_needs_an_active_model_and_an_arrival_time() -> None:
    clock = ManualClock(5000.0)
    young = VolumeTracker("m", POLICY)
    feed(young, [10] * 5, clock=clock)  # 4 closed buckets: no baseline yet
    assert not young.active
    assert young.check(clock.now() + 10_000) == []
    silent = VolumeTracker("m", POLICY)
    feed(silent, [0] * 8 + [10], clock=clock)  # closed buckets, but no events in them
    assert silent.check(clock.now() + 10_000) == []
    no_clock = VolumeTracker("m", POLICY)
    feed(no_clock, [10] * 10)  # active, but never told when events arrived
    assert no_clock.active and no_clock.last_arrival is None
    assert no_clock.check(1e10) == []


def test_deadman_fires_again_as_a_new_episode() -> None:
    clock = ManualClock(0.0)
    v = VolumeTracker("m", POLICY)
    feed(v, [10] * 8, clock=clock)
    for episode in (1, 2):
        clock.advance(301.0)
        assert [a["episode"] for a in checked(v.check(clock.now()))] == [episode]
        out = checked(v.observe(np.array([T0 + (7 + episode) * T]), now=clock.now()))
        assert [(a["detector"], a["transition"]) for a in out][:1] == [("deadman", "resolved")]


# -- bounded work on gaps, against a naive oracle ----------------------------------------


def oracle(counts: dict[int, int], p: VolumePolicy) -> list[tuple[Any, ...]]:
    """Every bucket closed one by one, as the module docstring says."""
    hist: list[int] = []
    st: dict[str, list[Any]] = {d: ["ok", None, 0] for d in ("too_big", "too_small")}
    out: list[tuple[Any, ...]] = []
    for k in range(min(counts), max(counts)):  # the last bucket stays open
        c = counts.get(k, 0)
        h = hist[-p.baseline_buckets:]
        if len(h) < p.min_baseline_buckets or sum(h) == 0:
            hist.append(c)
            continue
        base = sum(h) / len(h)
        r = c / base
        sev = {"too_big": "critical" if r > 2 * p.spike_factor else "warning"
               if r > p.spike_factor else None,
               "too_small": ("critical" if c == 0 else "warning") if r < 1 / p.drop_factor else None}
        for d in ("too_big", "too_small"):
            status, severity, q = st[d]
            if sev[d] is not None:
                if status == "ok":
                    st[d] = ["firing", sev[d], 0]
                    out.append((d, "firing", sev[d], k, c))
                else:
                    st[d][2] = 0
                    if sev[d] == "critical" and severity != "critical":
                        st[d][1] = "critical"
                        out.append((d, "escalated", "critical", k, c))
            elif status == "firing":
                if q + 1 >= p.quiet:
                    st[d] = ["ok", severity, 0]
                    out.append((d, "resolved", severity, k, c))
                else:
                    st[d][2] = q + 1
        if sev["too_big"] is None and sev["too_small"] is None:
            hist.append(c)
    return out


GAPPY = VolumePolicy(bucket_seconds=T, baseline_buckets=5, min_baseline_buckets=3, quiet=15)


@pytest.mark.parametrize("seed", range(12))
def test_gaps_match_closing_every_bucket(seed: int) -> None:
    """quiet > baseline_buckets + 1, so too_big resolves inside the bulk part of gaps."""
    rng = np.random.default_rng(seed)
    counts: dict[int, int] = {}
    k = 0
    for _ in range(12):
        kind = rng.integers(4)
        n = int(rng.integers(1, 8))
        for _ in range(n):
            counts[k] = int(rng.choice([10, 10, 11, 9, 100, 40, 2])) if kind else 10
            k += 1
        k += int(rng.choice([0, 0, 3, 7, 30, 60]))  # a gap of empty buckets
    counts[k] = 10
    v = VolumeTracker("m", GAPPY)
    got: list[tuple[Any, ...]] = []
    keys = sorted(counts)
    for chunk in np.array_split(np.array(keys), int(rng.integers(1, 6))):
        ts = np.concatenate([bucket_ts(int(i), counts[int(i)]) for i in chunk])
        got += [(a["detector"], a["transition"], a["severity"], a["window"]["index"] - K0,
                 a["window"]["count"]) for a in checked(v.observe(ts))]
    assert got == oracle(counts, GAPPY)


def test_spike_then_long_gap_resolves_in_the_bulk_part() -> None:
    counts = {i: 10 for i in range(6)} | {6: 100} | {200: 10}
    v = VolumeTracker("m", GAPPY)
    got = [(a["detector"], a["transition"], a["severity"], a["window"]["index"] - K0,
            a["window"]["count"])
           for a in checked(v.observe(np.concatenate([bucket_ts(i, c) for i, c in counts.items()])))]
    assert got == oracle(counts, GAPPY)
    assert ("too_big", "resolved", "critical", 21, 0) in got  # 6 + quiet buckets, in bulk


class CountingTracker(VolumeTracker):
    """Counts the buckets closed one by one, and fails fast past a bound."""

    closed = 0

    def _close(self, k: int, count: int, out: list[dict[str, Any]]) -> None:
        self.closed += 1
        assert self.closed <= 100, "closing a gap bucket by bucket"
        super()._close(k, count, out)


def test_a_huge_gap_costs_bounded_work() -> None:
    v = CountingTracker("m", POLICY)
    feed(v, [10] * 8)
    v.closed = 0
    start = time.perf_counter()
    out = seen(v.observe(np.array([9e10])))  # ~1.5e9 empty buckets later
    assert time.perf_counter() - start < 0.5
    assert v.closed == 1 + POLICY.baseline_buckets + 1  # the open bucket, then the cap
    assert out == [("too_small", "firing", "critical", 8)]  # bucket 7 (10 events) is healthy
    assert v.alert_state("too_small").status == "firing"
    assert v.rate_of_last_bucket == 0.0
    assert v.baseline_rate == 10 / T
    # Before a baseline exists, the gap's first empty buckets complete it, then fire.
    w = VolumeTracker("m", POLICY)
    feed(w, [10] * 3)
    assert seen(w.observe(np.array([9e10]))) == [("too_small", "firing", "critical", 5)]
    assert w.baseline_rate == 30 / 5 / T  # [10, 10, 10, 0, 0]


# -- snapshots ---------------------------------------------------------------------------


def drive(v: VolumeTracker, clock: ManualClock, start: int, counts: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, c in enumerate(counts, start):
        clock.advance(T)
        out += v.check(clock.now())
        if c:
            out += v.observe(bucket_ts(i, c), now=clock.now())
        else:
            clock.advance(400.0)  # long enough for the dead-man
            out += v.check(clock.now())
    return checked(out)


def test_snapshot_round_trip_then_identical_behaviour() -> None:
    clock = ManualClock(1e6)
    v = VolumeTracker("m", POLICY)
    first = drive(v, clock, 0, [10] * 7 + [40, 10, 0, 0, 5])
    assert {a["detector"] for a in first} == set(DETECTORS)
    v.observe(bucket_ts(2, 3))  # a late count
    snap = v.snapshot()
    assert snap["kind"] == "driftstream.volume" and snap["version"] == 1
    w = VolumeTracker.restore(json.loads(json.dumps(snap)), POLICY)
    assert w.snapshot() == snap
    assert (w.late, w.baseline_rate, w.rate_of_last_bucket, w.watermark, w.last_arrival) == (
        v.late, v.baseline_rate, v.rate_of_last_bucket, v.watermark, v.last_arrival)
    rest = [0, 10, 10, 80, 10, 10, 10, 0, 10]
    c1, c2 = ManualClock(clock.now()), ManualClock(clock.now())
    a, b = drive(v, c1, 12, rest), drive(w, c2, 12, rest)
    assert a == b and len(a) >= 4
    assert v.snapshot() == w.snapshot()


def good_snapshot() -> dict[str, Any]:
    v = VolumeTracker("m", POLICY)
    feed(v, [10] * 8, clock=ManualClock(100.0))
    snap: dict[str, Any] = json.loads(json.dumps(v.snapshot()))
    return snap


def corrupt(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    snap = good_snapshot()
    node = snap
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return snap


BAD_SNAPSHOTS = [
    ("wrong kind", corrupt(("kind",), "driftstream.quality")),
    ("newer version", corrupt(("version",), 2)),
    ("missing field", corrupt(("history",), KeyError)),
    ("negative count", corrupt(("history",), [10, -1])),
    ("count as a string", corrupt(("late",), "3")),
    ("count as a bool", corrupt(("late",), True)),
    ("open bucket not a pair", corrupt(("open",), [1])),
    ("watermark as a string", corrupt(("watermark",), "now")),
    ("open bucket without a watermark", corrupt(("watermark",), None)),
    ("open bucket not the watermark's", corrupt(("open", 0), 5)),
    ("missing detector", corrupt(("alerts", "deadman"), KeyError)),
    ("unknown alert field", corrupt(("alerts", "too_big", "color"), "red")),
    ("bad alert status", corrupt(("alerts", "too_big", "status"), "burning")),
    ("model not a string", corrupt(("model",), 3)),
]


@pytest.mark.parametrize(("name", "snap"), BAD_SNAPSHOTS, ids=[b[0] for b in BAD_SNAPSHOTS])
def test_bad_snapshots_raise(name: str, snap: dict[str, Any]) -> None:
    with pytest.raises(SnapshotError):
        VolumeTracker.restore(snap, POLICY)


def test_snapshot_of_another_bucket_size_or_not_a_dict_raises() -> None:
    VolumeTracker.restore(good_snapshot(), POLICY)  # the fixture itself is fine
    with pytest.raises(SnapshotError, match="bucket_seconds"):
        VolumeTracker.restore(good_snapshot(), VolumePolicy(bucket_seconds=7.0))
    with pytest.raises(SnapshotError):
        VolumeTracker.restore([], POLICY)  # type: ignore[arg-type]


def test_fresh_tracker_round_trips() -> None:
    v = VolumeTracker("m")
    assert VolumeTracker.restore(json.loads(json.dumps(v.snapshot()))).snapshot() == v.snapshot()


# -- the policy --------------------------------------------------------------------------

BAD_POLICIES = [
    ({"bucket_seconds": 0}, "bucket_seconds"),
    ({"bucket_seconds": float("inf")}, "bucket_seconds"),
    ({"bucket_seconds": "60"}, "bucket_seconds"),
    ({"baseline_buckets": 0, "min_baseline_buckets": 0}, "baseline_buckets"),
    ({"baseline_buckets": 5.5}, "baseline_buckets"),
    ({"min_baseline_buckets": 0}, "min_baseline_buckets"),
    ({"min_baseline_buckets": 31}, "min_baseline_buckets"),
    ({"spike_factor": 1.0}, "spike_factor"),
    ({"drop_factor": 0.5}, "drop_factor"),
    ({"deadman_seconds": -1}, "deadman_seconds"),
    ({"deadman_seconds": float("nan")}, "deadman_seconds"),
    ({"quiet": 0}, "quiet"),
    ({"quiet": True}, "quiet"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_POLICIES, ids=[str(b[0]) for b in BAD_POLICIES])
def test_policy_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VolumePolicy(**kwargs)


def test_default_policy() -> None:
    p = VolumePolicy()
    assert (p.bucket_seconds, p.baseline_buckets, p.min_baseline_buckets, p.spike_factor,
            p.drop_factor, p.deadman_seconds, p.quiet) == (60.0, 30, 5, 3.0, 3.0, 300.0, 2)


# -- the alert events --------------------------------------------------------------------


def test_alert_fields() -> None:
    clock = ManualClock(0.0)
    v = VolumeTracker("fraud", POLICY)
    feed(v, [12] * 6, clock=clock)
    big = checked(v.observe(bucket_ts(6, 80)) + v.observe(bucket_ts(7, 12)), "fraud")
    assert len(big) == 1
    assert (big[0]["value"], big[0]["threshold"], big[0]["ts"]) == (80.0, 12 * 6.0, (K0 + 7) * T)
    assert big[0]["window"] == {"kind": "time", "index": K0 + 6, "start": (K0 + 6) * T,
                                "end": (K0 + 7) * T, "count": 80}
    assert "fraud" in big[0]["message"]
    small = checked(v.observe(bucket_ts(8, 12)) + v.observe(bucket_ts(9, 2))
                    + v.observe(bucket_ts(10, 12)), "fraud")
    assert [(a["detector"], a["transition"], a["value"], a["threshold"]) for a in small] == [
        ("too_big", "resolved", 12.0, 36.0), ("too_small", "firing", 2.0, 4.0)]
