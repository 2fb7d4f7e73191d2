"""Consumer lag as a pipeline-backlog SLI: offset lag, backlog age, rates, time to drain
and a status, from a sliding window of offset samples.

A stopped pipeline produces no drift alerts, and silence looks like health. So the
backlog of each partition a consumer group reads is sampled every few seconds, by the
worker itself and by the independent ``driftstream lag`` monitor (a dead or frozen worker
cannot report its own lag), and both run the same pure code below.

Kafka meanings, exactly (aiokafka's words): the *highwater* is the offset of the next
record to be written; the *committed* offset is the next record the group will read
after a restart; the *position* is the next record this consumer instance will fetch.

Signals of one partition (:class:`LagReading`):

- **offset lag** ``highwater - committed``, clamped at 0 (offsets are not read
  atomically, so a naive difference can be negative; it never is here). A group that
  never committed reads from the log start, so its lag is ``highwater - earliest``: no
  ``-1`` sentinel.
- **position lag** ``highwater - position`` (in the worker only): tells "processed, not
  yet committed" apart from "not processed".
- **backlog age** ``now - timestamp of the record at the committed offset``: how old the
  oldest unprocessed record is. 0 when the partition is caught up (an idle topic is not
  a stale one); unknown (``None``, not exported) when the record was not read.
- **arrival rate** and **processing rate** (records/s): the highwater's and the
  committed offset's progress across the window.
- **time to drain** ``lag / (processing - arrival)`` while draining, ``inf`` when the
  backlog is not shrinking, 0 when there is none.
- **status**, with this precedence (the first rule that matches wins):

  1. ``IDLE``: caught up now (lag ≤ ``allowed_lag``). Nothing to process, so nothing is
     late, whatever happened earlier in the window.
  2. ``STOPPED``: there has been a backlog continuously for ``stop_after_seconds``
     without a commit, or for ``stall_after_seconds`` while the group has no member at
     all (seen by the outside monitor). The first rule does not rely on the broker: a
     killed worker's member lingers until its session times out (on some brokers until
     the next rebalance), and a hung worker may keep heartbeating. The second needs the
     stall too, so that the empty group of a rolling restart does not page.
  3. ``STALLED``: there has been a backlog *continuously* for ``stall_after_seconds``
     and the committed offset has not moved. Only this trailing stretch counts: a
     zero lag earlier in the window never masks a stall now (Burrow #745).
  4. ``REWOUND``: the committed offset went backwards in the window and has not yet
     come back to where it was.
  5. ``FALLING_BEHIND``: over at least ``min_span_seconds``, records arrived faster than
     they were committed and the lag grew.
  6. ``OK``: a backlog that is being worked off.

>>> policy = LagPolicy(window_seconds=60, stall_after_seconds=20, stop_after_seconds=40)
>>> tracker = LagTracker(policy)
>>> key = ("g", "predictions", 0)
>>> tracker.observe(key, OffsetSample(at=0.0, highwater=100, committed=100)).status
<PartitionStatus.IDLE: 'idle'>
>>> r = tracker.observe(key, OffsetSample(at=10.0, highwater=300, committed=200, head_ts=7.0))
>>> r.status, r.offset_lag, r.backlog_age_seconds, r.arrival_rate, r.processing_rate
(<PartitionStatus.FALLING_BEHIND: 'falling_behind'>, 100, 3.0, 20.0, 10.0)
>>> for t in (20.0, 30.0):   # producers go on; the consumer commits nothing more
...     r = tracker.observe(key, OffsetSample(at=t, highwater=300 + 20 * int(t), committed=200))
>>> r.status, r.offset_lag
(<PartitionStatus.STALLED: 'stalled'>, 700)
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "LagPolicy",
    "LagReading",
    "LagTracker",
    "OffsetSample",
    "PartitionStatus",
    "evaluate",
    "offset_lag",
    "worst_status",
]


class PartitionStatus(enum.Enum):
    """The backlog status of one partition, from best to worst for :func:`worst_status`."""

    IDLE = "idle"
    OK = "ok"
    FALLING_BEHIND = "falling_behind"
    REWOUND = "rewound"
    STALLED = "stalled"
    STOPPED = "stopped"


_SEVERITY = {s: i for i, s in enumerate(PartitionStatus)}


def worst_status(statuses: Sequence[PartitionStatus]) -> PartitionStatus:
    """The worst of several partitions' statuses (``IDLE`` when there are none).

    >>> worst_status([PartitionStatus.OK, PartitionStatus.STALLED, PartitionStatus.IDLE])
    <PartitionStatus.STALLED: 'stalled'>
    """
    return max(statuses, key=_SEVERITY.__getitem__, default=PartitionStatus.IDLE)


@dataclass(frozen=True)
class OffsetSample:
    """One reading of a partition's offsets, taken at wall-clock time ``at`` (epoch s).

    ``committed`` is ``None`` when the group has never committed on the partition;
    ``earliest`` is then where it will start (the log start offset). ``position`` is known
    only inside the consuming worker. ``head_ts`` is the timestamp (epoch s) of the record
    at the committed offset, when it was read. ``consumer_alive`` is whether the group has
    a live member: ``False`` when the group has none, ``True`` inside a worker (alive by
    definition while it can sample), ``None`` when unknown.
    """

    at: float
    highwater: int
    committed: int | None
    earliest: int = 0
    position: int | None = None
    head_ts: float | None = None
    consumer_alive: bool | None = None

    @property
    def next_offset(self) -> int:
        """The next record the group will read: the committed offset, else the log start."""
        return self.committed if self.committed is not None else self.earliest


def offset_lag(highwater: int, next_offset: int) -> int:
    """``highwater - next_offset``, never negative.

    >>> offset_lag(120, 100), offset_lag(100, 103)
    (20, 0)
    """
    return max(0, highwater - next_offset)


@dataclass(frozen=True)
class LagPolicy:
    """How the status is decided. ``window_seconds`` of samples are kept per partition; it
    must cover ``stop_after_seconds``, which must be at least ``stall_after_seconds``."""

    window_seconds: float = 120.0
    stall_after_seconds: float = 30.0
    stop_after_seconds: float = 60.0
    min_span_seconds: float = 10.0
    allowed_lag: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.stall_after_seconds <= self.stop_after_seconds <= self.window_seconds:
            raise ValueError(
                "lag policy needs 0 < stall_after_seconds <= stop_after_seconds <= window_seconds, "
                f"got {self.stall_after_seconds}, {self.stop_after_seconds}, {self.window_seconds}"
            )
        if self.min_span_seconds <= 0 or self.allowed_lag < 0:
            raise ValueError("lag policy needs min_span_seconds > 0 and allowed_lag >= 0")


@dataclass(frozen=True)
class LagReading:
    """The signals and status of one partition at ``at``; see the module docstring."""

    at: float
    status: PartitionStatus
    reason: str
    highwater: int
    committed: int | None
    offset_lag: int
    position_lag: int | None
    backlog_age_seconds: float | None
    arrival_rate: float | None
    processing_rate: float | None
    drain_seconds: float | None
    stuck_seconds: float
    #: Whether the group had a live member at the last sample (``None``: unknown).
    consumer_alive: bool | None = None


def _stuck_since(samples: Sequence[OffsetSample], allowed: int) -> float | None:
    """Start of the trailing stretch in which there was a backlog and the committed
    offset did not move; ``None`` when the latest sample has no backlog."""
    last = samples[-1]
    since: float | None = None
    for s in reversed(samples):
        if s.next_offset != last.next_offset or offset_lag(s.highwater, s.next_offset) <= allowed:
            break
        since = s.at
    return since


def _rewound(samples: Sequence[OffsetSample]) -> bool:
    high = -1
    rewound_from: int | None = None
    for s in samples:
        if s.committed is None:
            continue
        if s.committed < high and rewound_from is None:
            rewound_from = high
        high = max(high, s.committed)
    last = samples[-1].committed
    return rewound_from is not None and last is not None and last < rewound_from


def evaluate(samples: Sequence[OffsetSample], now: float, policy: LagPolicy) -> LagReading:
    """The reading of one partition from its samples (oldest first) at time ``now``.

    A pure function: same samples, same clock, same answer, live or in a test.

    >>> p = LagPolicy(window_seconds=60, stall_after_seconds=10, stop_after_seconds=30)
    >>> s = [OffsetSample(0.0, 50, 40), OffsetSample(20.0, 90, 40)]
    >>> evaluate(s, 20.0, p).status.name
    'STALLED'
    >>> evaluate(s, 40.0, p).status.name                         # 40 s without a commit
    'STOPPED'
    >>> dead = [OffsetSample(0.0, 50, 40, consumer_alive=False)]
    >>> evaluate(dead, 0.0, p).status.name                       # a restart, perhaps
    'OK'
    >>> evaluate(dead, 10.0, p).reason
    'a backlog of 10 records, no progress for 10 s and no member in the group'
    """
    if not samples:
        raise ValueError("evaluate() needs at least one sample")
    last = samples[-1]
    first = samples[0]
    lag = offset_lag(last.highwater, last.next_offset)
    position_lag = (
        offset_lag(last.highwater, last.position) if last.position is not None else None
    )
    span = last.at - first.at
    arrival = processing = None
    if span > 0:
        arrival = max(0.0, (last.highwater - first.highwater) / span)
        processing = (last.next_offset - first.next_offset) / span
    if lag == 0:
        drain: float | None = 0.0
    elif processing is None or arrival is None:
        drain = None
    elif processing > arrival:
        drain = lag / (processing - arrival)
    else:
        drain = math.inf
    if lag == 0:
        age: float | None = 0.0
    elif last.head_ts is not None:
        age = max(0.0, now - last.head_ts)
    else:
        age = None
    since = _stuck_since(samples, policy.allowed_lag)
    stuck = now - since if since is not None else 0.0

    if lag <= policy.allowed_lag:
        status, reason = PartitionStatus.IDLE, "caught up"
    elif last.consumer_alive is False and stuck >= policy.stall_after_seconds:
        status = PartitionStatus.STOPPED
        reason = (f"a backlog of {lag} records, no progress for {stuck:.0f} s and no "
                  "member in the group")
    elif stuck >= policy.stop_after_seconds:
        status = PartitionStatus.STOPPED
        reason = f"a backlog of {lag} records and no commit for {stuck:.0f} s"
    elif stuck >= policy.stall_after_seconds:
        status = PartitionStatus.STALLED
        reason = f"a backlog of {lag} records and no progress for {stuck:.0f} s"
    elif _rewound(samples):
        status, reason = PartitionStatus.REWOUND, "the committed offset went backwards"
    elif (
        span >= policy.min_span_seconds
        and arrival is not None
        and processing is not None
        and arrival > processing
        and lag > offset_lag(first.highwater, first.next_offset)
    ):
        status = PartitionStatus.FALLING_BEHIND
        reason = (
            f"records arrive at {arrival:.1f}/s and are processed at {processing:.1f}/s; "
            f"the backlog is {lag} records"
        )
    else:
        status, reason = PartitionStatus.OK, f"a backlog of {lag} records, draining"
    if last.consumer_alive is False and status in (PartitionStatus.OK,
                                                   PartitionStatus.FALLING_BEHIND):
        reason += "; the group has no member"
    return LagReading(
        at=now,
        status=status,
        reason=reason,
        highwater=last.highwater,
        committed=last.committed,
        offset_lag=lag,
        position_lag=position_lag,
        backlog_age_seconds=age,
        arrival_rate=arrival,
        processing_rate=processing,
        drain_seconds=drain,
        stuck_seconds=stuck,
        consumer_alive=last.consumer_alive,
    )


class LagTracker:
    """Sliding windows of :class:`OffsetSample` per partition key (any hashable, e.g.
    ``(group, topic, partition)``), and the latest :class:`LagReading` of each.

    Memory is bounded by the number of partitions times the samples in
    ``policy.window_seconds``; :meth:`forget` drops a partition (revoked, or its topic
    deleted).
    """

    def __init__(self, policy: LagPolicy | None = None) -> None:
        self.policy = policy or LagPolicy()
        self._samples: dict[Hashable, deque[OffsetSample]] = {}
        self._readings: dict[Hashable, LagReading] = {}

    def observe(self, key: Hashable, sample: OffsetSample) -> LagReading:
        """Add ``sample`` to ``key``'s window and evaluate it at ``sample.at``.

        A sample older than the previous one for the same key is ignored (the clock must
        not go backwards); its reading is the previous one.
        """
        window = self._samples.setdefault(key, deque())
        if window and sample.at < window[-1].at:
            return self._readings[key]
        window.append(sample)
        horizon = sample.at - self.policy.window_seconds
        # Keep one sample at or before the horizon, so the window always spans it.
        while len(window) >= 2 and window[1].at <= horizon:
            window.popleft()
        reading = evaluate(window, sample.at, self.policy)
        self._readings[key] = reading
        return reading

    def forget(self, key: Hashable) -> None:
        self._samples.pop(key, None)
        self._readings.pop(key, None)

    def tracked(self) -> list[Hashable]:
        return list(self._readings)

    def readings(self) -> Iterator[tuple[Hashable, LagReading]]:
        yield from self._readings.items()

    def __len__(self) -> int:
        return len(self._readings)
