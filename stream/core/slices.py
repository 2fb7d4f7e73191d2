"""Which values of a slice key get their own drift state: the top K by traffic.

Events may carry ``slices`` (slice name -> string value, e.g. ``{"region": "eu"}``). For
each configured slice key of a (model, version), a :class:`SliceSelector` decides, event
by event, which values are *tracked* (they get their own
:class:`~stream.core.monitor.ModelMonitor`: reference, windows, PSI, integrity, alerts) and
which are *pooled*: counted, and monitored only as part of the global state.

**Selection.** A value is tracked from the event at which it has been seen
``min_events`` times, while fewer than ``max_values`` values are tracked. Until the slots
are full, untracked values are counted with the Space-Saving algorithm (Metwally et al.,
2005) in ``32 * max_values`` counters (a lazy min-heap makes an eviction O(log n)), and a
value is promoted only on its *guaranteed* count (its counter minus the overestimate it
inherited), so a long tail of rare values can neither grow the counters nor claim a slot.
Any value with more than ``1 / (32 * max_values)`` of the untracked events is counted
(Space-Saving's guarantee), and the values that reach ``min_events`` first are the ones
with the most traffic. Slice keys are meant to have few values (region, device, tier): a
key with millions of values (a user id) costs a heap operation per event until the slots
fill, and only its values above that share can ever get one. A tracked value keeps its
slot: its Prometheus series and state are stable (a slice that goes quiet simply stops
closing windows). Once the slots are full, later values are pooled at the cost of a set
lookup.

**Batch invariance.** Decisions are taken in event order, so :meth:`SliceSelector.route`
gives the same rows whatever the batching: ``replay`` reproduces the live path.

**Bounded labels.** Only tracked values (at most ``max_values`` per key) ever name a
slice in alerts, reports or metrics; pooled values are counted, never named.

>>> sel = SliceSelector("region", max_values=2, min_events=2)
>>> sel.route(["eu", "us", "eu", "apac", "us", "apac", "eu", None])
{'eu': [2, 6], 'us': [4]}
>>> sel.tracked, sel.pooled_events, sel.missing_events
(['eu', 'us'], 4, 1)
>>> SliceSelector.restore(sel.snapshot()).snapshot() == sel.snapshot()
True
"""

from __future__ import annotations

import heapq
from typing import Any

from stream.errors import SnapshotError

__all__ = ["SliceSelector", "slice_label"]

_SNAPSHOT_KIND = "driftstream.slices"
_SNAPSHOT_VERSION = 1
#: Space-Saving counters per tracked slot.
_CANDIDATES_PER_SLOT = 32


def slice_label(key: str, value: str) -> dict[str, str]:
    """The ``slice`` object of alerts and reports (``schemas/alert.json``).

    >>> slice_label("region", "eu")
    {'key': 'region', 'value': 'eu'}
    """
    return {"key": key, "value": value}


class SliceSelector:
    """Tracked and pooled values of one slice key of one (model, version)."""

    def __init__(self, key: str, *, max_values: int, min_events: int) -> None:
        if max_values < 1 or min_events < 1:
            raise ValueError(f"slice key {key!r}: max_values and min_events must be >= 1, "
                             f"got {max_values} and {min_events}")
        self.key = key
        self.max_values = max_values
        self.min_events = min_events
        #: Tracked values, in the order they were promoted.
        self.tracked: list[str] = []
        self._tracked: set[str] = set()
        #: Space-Saving counters of untracked values: value -> [count, overestimate, seq of
        #: its last event], and a lazy min-heap over them (O(log n) per event).
        self._counts: dict[str, list[int]] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._seq = 0
        #: Events whose value is not tracked (not counted in a slice of their own).
        self.pooled_events = 0
        #: Events without this slice key.
        self.missing_events = 0

    @property
    def capacity(self) -> int:
        """Space-Saving counters kept until every slot is taken."""
        return _CANDIDATES_PER_SLOT * self.max_values

    @property
    def full(self) -> bool:
        return len(self.tracked) >= self.max_values

    def route(self, values: list[str | None]) -> dict[str, list[int]]:
        """The rows (indices into ``values``) that go to each tracked value's state, in
        order; promotes values and counts the pooled and missing events on the way."""
        rows: dict[str, list[int]] = {}
        tracked = self._tracked
        full = self.full
        pooled = missing = 0
        for i, v in enumerate(values):
            if v in tracked:
                rows.setdefault(v, []).append(i)
            elif v is None:
                missing += 1
            elif full:  # once every slot is taken, a set lookup per event
                pooled += 1
            elif self._count(v) >= self.min_events:
                del self._counts[v]
                self.tracked.append(v)
                tracked.add(v)
                rows[v] = [i]  # the promoting event is the slice's first
                full = self.full
                if full:
                    self._counts, self._heap = {}, []
            else:
                pooled += 1
        self.pooled_events += pooled
        self.missing_events += missing
        return rows

    def _count(self, value: str) -> int:
        """Count one event of an untracked value; its guaranteed count so far (this event
        included)."""
        counts = self._counts
        c = counts.get(value)
        if c is None:
            if len(counts) >= self.capacity:
                # evict the smallest counter (the least recently counted among equals):
                # heap entries are (count, seq) of a counter at some time, stale ones skipped
                while True:
                    n, seq, victim = heapq.heappop(self._heap)
                    cv = counts.get(victim)
                    if cv is not None and cv[0] == n and cv[2] == seq:
                        break
                floor = counts.pop(victim)[0]
                c = counts[value] = [floor, floor, 0]
            else:
                c = counts[value] = [0, 0, 0]
        c[0] += 1
        c[2] = self._seq = self._seq + 1
        heapq.heappush(self._heap, (c[0], c[2], value))
        if len(self._heap) > 4 * self.capacity:
            self._rebuild_heap()
        return c[0] - c[1]

    def _rebuild_heap(self) -> None:
        self._heap = [(c, seq, v) for v, (c, _, seq) in self._counts.items()]
        heapq.heapify(self._heap)

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe, versioned state."""
        return {"kind": _SNAPSHOT_KIND, "version": _SNAPSHOT_VERSION, "key": self.key,
                "max_values": self.max_values, "min_events": self.min_events,
                "tracked": list(self.tracked),
                "counts": [[v, c, e, q] for v, (c, e, q) in self._counts.items()],
                "seq": self._seq,
                "pooled_events": self.pooled_events, "missing_events": self.missing_events}

    @classmethod
    def restore(cls, data: dict[str, Any], *, max_values: int | None = None,
                min_events: int | None = None) -> SliceSelector:
        """Rebuild from :meth:`snapshot`. New caps may be given: a lower ``max_values``
        keeps the values already tracked (their state exists) but promotes no more."""
        if data.get("kind") != _SNAPSHOT_KIND or data.get("version") != _SNAPSHOT_VERSION:
            raise SnapshotError(
                f"not a slice snapshot of version {_SNAPSHOT_VERSION}: kind={data.get('kind')!r}"
                f" version={data.get('version')!r}; upgrade the worker or change app.id")
        try:
            sel = cls(str(data["key"]), max_values=max_values or int(data["max_values"]),
                      min_events=min_events or int(data["min_events"]))
            sel.tracked = [str(v) for v in data["tracked"]]
            sel._tracked = set(sel.tracked)
            if not sel.full:
                sel._counts = {str(v): [int(c), int(e), int(q)] for v, c, e, q in data["counts"]}
                sel._rebuild_heap()
            sel._seq = int(data["seq"])
            sel.pooled_events = int(data["pooled_events"])
            sel.missing_events = int(data["missing_events"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt slice snapshot: {exc!r}") from None
        return sel
