"""Joining delayed labels (ground truth) to the predictions of one model.

A :class:`LabelJoin` pairs each prediction with the label that carries the same
``event_id``, whichever of the two arrives first. The shell keeps one join per model and
routes labels to it by ``model``; nothing here knows about Kafka or Faust.

**Event time.** The only clock is the *watermark*: the largest event ``ts`` this join has
seen, predictions and labels alike, or a ``now`` handed to :meth:`LabelJoin.advance`. It
never goes backwards and the wall clock is never read, so ``replay`` and the live path
give the same results. Events are processed one at a time in the order given, and the
watermark moves at the exact event that carries it, so the results do not depend on how a
stream is cut into batches either. (Runs of events with new ids are taken in bulk, with
numpy and C-level dict operations, whenever that gives exactly the same results.)

**Predictions** wait in the *pending* store for their label, for at most ``ttl_seconds``:
a pending prediction *expires* as soon as ``watermark - ts > ttl_seconds``, whatever the
order in which predictions arrived (a heap ordered by ``(ts, arrival)`` finds the next one
to expire in O(log n); entries whose ``ts`` is out of arrival order expire on time too). A
prediction that is already that old when it arrives is counted expired at once.

**Labels** join their pending prediction. A label whose prediction is not pending (not
arrived yet) waits as an *early label* for at most ``grace_seconds``: it expires as soon
as ``watermark - ts > grace_seconds`` and is then counted ``labels_without_prediction``
(so is a label already that old on arrival). A prediction arriving while its early label
waits joins it at once.

**Duplicates.** The ids of the last ``max_joined_ids`` joins are remembered (oldest
forgotten first). A label for a remembered id, or a second early label for an id, is a
``duplicate_labels`` and ignored (the first one is kept). A prediction whose id is pending
or remembered is a ``duplicate_predictions`` and ignored (the first one is kept). An id
forgotten from the joined set is treated as new: a late duplicate label for it waits as
an early label and ends up in ``labels_without_prediction``.

**Bounds.** Past ``max_pending`` pending predictions the oldest (smallest ``ts``, then
earliest arrival: the next to expire) is evicted (``evicted_predictions``); past
``max_early_labels`` early labels, likewise (``evicted_labels``). Nothing disappears
without a counter::

    predictions == pending + joined + expired_predictions + evicted_predictions
                   + duplicate_predictions
    labels == early_labels + joined + labels_without_prediction + evicted_labels
              + duplicate_labels

:meth:`LabelJoin.coverage` is ``joined / (joined + expired_predictions +
evicted_predictions)``: the share of predictions that got their label within the TTL,
among those whose fate is decided.

**Chunked persistence.** The state can reach 100k pending predictions and 100k joined
ids, too much to rewrite on every batch. Pending predictions, early labels and joined ids
are therefore kept in *chunks* of up to ``chunk_size`` entries, filled in arrival order,
each with an integer id (one increasing sequence shared by the three stores). After each
batch the shell writes :meth:`LabelJoin.take_dirty` (every chunk changed since the last
call, ``None`` for a chunk to delete) and :meth:`LabelJoin.header_snapshot` (parameters,
counters, watermark, chunk ids: a few hundred bytes plus one integer per chunk), and
:meth:`LabelJoin.restore` rebuilds the exact same state from them. Write cost per batch:
the header, plus each chunk touched, rewritten whole (at most ``chunk_size`` entries),
once however many of its entries changed. Appends touch the open chunk of each store; a
join, expiry or eviction touches the chunk that held the entry, so labels arriving about
in prediction order touch a few chunks, and labels for predictions scattered across the
whole store touch up to ``min(batch size, pending / chunk_size)`` chunks. Forgetting old
joined ids costs nothing until a whole chunk of them is forgotten (it is then deleted).

>>> j = LabelJoin(ttl_seconds=100, grace_seconds=10)
>>> len(j.add_predictions(["a", "b", "c"], [0.0, 1.0, 2.0], "v1", y_pred=[1, 0, 1]))
0
>>> out = j.add_labels(["b", "x"], [0, 1], [5.0, 6.0])   # "x": no prediction (yet)
>>> out.event_id, out.y_true, out.y_pred, out.latency_seconds.tolist()
(['b'], [0], [0], [4.0])
>>> j.pending, j.early_labels
(2, 1)
>>> j.advance(150.0)   # "a" and "c" get no label within the TTL; "x" waited too long
>>> j.counters["expired_predictions"], j.counters["labels_without_prediction"]
(2, 1)
>>> round(j.coverage(), 3)
0.333
>>> store = {}
>>> for cid, snap in j.take_dirty().items():
...     if snap is None:
...         store.pop(cid, None)
...     else:
...         store[cid] = snap
>>> LabelJoin.restore(j.header_snapshot(), store.values()).counters == j.counters
True
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter
from typing import Any, Final, Generic, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from stream.errors import SnapshotError

__all__ = ["COUNTERS", "Joined", "Label", "LabelJoin"]

#: A label (or a predicted class): a class name, an integer or boolean class, or a number.
Label: TypeAlias = str | int | float | bool
#: A batch column: a sequence or a 1-D numpy array.
Column: TypeAlias = Sequence[Any] | npt.NDArray[Any]

#: The keys of :attr:`LabelJoin.counters`.
COUNTERS: Final = (
    "predictions",
    "labels",
    "joined",
    "expired_predictions",
    "labels_without_prediction",
    "duplicate_labels",
    "duplicate_predictions",
    "evicted_predictions",
    "evicted_labels",
)

_KIND: Final = "driftstream.labeljoin"
_CHUNK_KIND: Final = "driftstream.labeljoin.chunk"
_VERSION: Final = 1
_PENDING: Final = "pending"
_EARLY: Final = "early_labels"
_JOINED: Final = "joined_ids"


@dataclass(frozen=True, eq=False)
class Joined:
    """The (prediction, label) pairs joined by one call, in the order they were joined.

    ``score`` and ``value`` are ``NaN`` where the prediction had none. ``latency_seconds``
    is ``label_ts - prediction_ts``; it is negative only when producers' clocks disagree.
    The arrays are read-only.
    """

    event_id: list[str]
    model_version: list[str | None]
    y_true: list[Label]
    y_pred: list[Label | None]
    score: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    prediction_ts: npt.NDArray[np.float64]
    label_ts: npt.NDArray[np.float64]
    latency_seconds: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.event_id)


# The stored records are plain tuples, not NamedTuples: the garbage collector stops tracking
# a plain tuple of atoms (numbers, strings, None) the first time it sees it, while it keeps
# traversing NamedTuple instances, 100k of them a store, in every full collection.

#: A pending prediction: ``(ts, seq, model_version, y_pred, score, value)``.
_Prediction: TypeAlias = tuple[float, int, str | None, Label | None, float | None, float | None]
#: An early label: ``(ts, seq, label)``.
_EarlyLabel: TypeAlias = tuple[float, int, Label]

# fields of the records, and C-level getters of them for the batch paths
_TS: Final = 0
_SEQ: Final = 1
_MODEL_VERSION: Final = 2
_Y_PRED: Final = 3
_SCORE: Final = 4
_VALUE: Final = 5
_LABEL: Final = 2  # of an early label
_get_ts: Final = itemgetter(_TS)
_get_seq: Final = itemgetter(_SEQ)
_get_model_version: Final = itemgetter(_MODEL_VERSION)
_get_y_pred: Final = itemgetter(_Y_PRED)
_get_score: Final = itemgetter(_SCORE)
_get_value: Final = itemgetter(_VALUE)

R = TypeVar("R", _Prediction, _EarlyLabel)


class _Store(Generic[R]):
    """Entries keyed by event id, in chunks filled in arrival order, with an expiry heap.

    The heap holds ``(ts, seq, event_id)``; an entry removed otherwise (joined) stays in
    it until it reaches the top or the heap is rebuilt (once it holds twice the live
    entries), so every operation is O(log n) amortised.
    """

    def __init__(self, chunk_size: int, alloc: Callable[[], int], dirty: set[int]) -> None:
        self.chunk_size = chunk_size
        self.chunks: dict[int, dict[str, R]] = {}
        self.where: dict[str, int] = {}
        self.open_id: int | None = None
        self.open_fill = 0  # entries appended to the open chunk, removed ones included
        self._alloc = alloc
        self._dirty = dirty
        self._heap: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.where

    def add(self, event_id: str, rec: R) -> None:
        if self.open_id is None or self.open_fill >= self.chunk_size:
            self.open_id = self._alloc()
            self.open_fill = 0
            self.chunks[self.open_id] = {}
        self.chunks[self.open_id][event_id] = rec
        self.open_fill += 1
        self.where[event_id] = self.open_id
        self._dirty.add(self.open_id)
        heapq.heappush(self._heap, (rec[_TS], rec[_SEQ], event_id))

    def add_many(self, event_ids: list[str], recs: list[R],
                 alloc: Callable[[], int] | None = None) -> None:
        """:meth:`add` of each entry in turn (``alloc``: where new chunk ids come from)."""
        m, k = len(event_ids), 0
        alloc = alloc or self._alloc
        while k < m:
            if self.open_id is None or self.open_fill >= self.chunk_size:
                self.open_id = alloc()
                self.open_fill = 0
                self.chunks[self.open_id] = {}
            take = min(self.chunk_size - self.open_fill, m - k)
            part = event_ids[k:k + take]
            self.chunks[self.open_id].update(zip(part, recs[k:k + take], strict=True))
            self.where.update(dict.fromkeys(part, self.open_id))
            self.open_fill += take
            self._dirty.add(self.open_id)
            k += take
        rows: list[Any] = recs  # tuples: (ts, seq, ...)
        deque(map(heapq.heappush, repeat(self._heap),
                  zip(map(_get_ts, rows), map(_get_seq, rows), event_ids, strict=True)), maxlen=0)

    def remove_many(self, event_ids: list[str]) -> None:
        """:meth:`remove` of each entry (all stored) in turn, in a store no entry is added to
        meanwhile."""
        cids = list(map(self.where.pop, event_ids))
        deque(map(dict.pop, map(self.chunks.__getitem__, cids), event_ids), maxlen=0)
        touched = set(cids)
        self._dirty.update(touched)
        for cid in touched:
            if not self.chunks[cid]:
                del self.chunks[cid]
                if cid == self.open_id:
                    self.open_id, self.open_fill = None, 0
        if len(self._heap) > 2 * len(self.where) + 64:
            self.rebuild_heap()

    def empties_open_chunk(self, watermark: float, limit: float) -> bool:
        """Whether expiring at ``watermark`` would remove every entry of the open chunk."""
        if self.open_id is None:
            return False
        oldest = self.oldest_ts()
        if oldest is None or not watermark - oldest > limit:
            return False
        rows: Iterable[Any] = self.chunks[self.open_id].values()  # tuples: (ts, seq, ...)
        return bool(watermark - max(map(_get_ts, rows)) > limit)

    def remove(self, event_id: str) -> R:
        cid = self.where.pop(event_id)
        chunk = self.chunks[cid]
        rec = chunk.pop(event_id)
        self._dirty.add(cid)
        if not chunk:
            del self.chunks[cid]
            if cid == self.open_id:
                self.open_id, self.open_fill = None, 0
        if len(self._heap) > 2 * len(self.where) + 64:
            self.rebuild_heap()
        return rec

    def _live(self, seq: int, event_id: str) -> bool:
        cid = self.where.get(event_id)
        return cid is not None and self.chunks[cid][event_id][_SEQ] == seq

    def oldest_ts(self) -> float | None:
        """The ``ts`` of the next entry to expire (``None`` when empty)."""
        heap = self._heap
        while heap:
            ts, seq, event_id = heap[0]
            if self._live(seq, event_id):
                return ts
            heapq.heappop(heap)
        return None

    def pop_oldest(self) -> None:
        """Remove the entry with the smallest ``(ts, seq)``; the store must not be empty."""
        while True:
            _, seq, event_id = heapq.heappop(self._heap)
            if self._live(seq, event_id):
                self.remove(event_id)
                return

    def rebuild_heap(self) -> None:
        self._heap = [(r[_TS], r[_SEQ], e) for c in self.chunks.values() for e, r in c.items()]
        heapq.heapify(self._heap)

    def load(self, cid: int, items: list[tuple[str, R]]) -> None:
        chunk: dict[str, R] = {}
        for event_id, rec in items:
            if event_id in self.where or event_id in chunk:
                raise SnapshotError(f"event id {event_id!r} is stored twice")
            chunk[event_id] = rec
            self.where[event_id] = cid
        if not chunk:
            raise SnapshotError(f"chunk {cid} is empty: it should have been deleted")
        self.chunks[cid] = chunk


class _IdLog:
    """The recently joined ids: append-only chunks, forgotten oldest first.

    Forgetting does not rewrite the oldest chunk: ``skip`` (in the header) counts the ids
    forgotten from it, and the chunk is deleted once all of them are."""

    def __init__(self, chunk_size: int, alloc: Callable[[], int], dirty: set[int]) -> None:
        self.chunk_size = chunk_size
        self.chunks: dict[int, list[str]] = {}
        self.ids: set[str] = set()
        self.skip = 0
        self.last_id: int | None = None
        self._alloc = alloc
        self._dirty = dirty

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.ids

    def append(self, event_id: str) -> None:
        if self.last_id is None or len(self.chunks[self.last_id]) >= self.chunk_size:
            self.last_id = self._alloc()
            self.chunks[self.last_id] = []
        self.chunks[self.last_id].append(event_id)
        self.ids.add(event_id)
        self._dirty.add(self.last_id)

    def extend(self, event_ids: list[str], new_ids: list[int]) -> None:
        """:meth:`append` of each id in turn; ``new_ids``: the ids of the chunks to open."""
        m, k = len(event_ids), 0
        fresh = iter(new_ids)
        while k < m:
            if self.last_id is None or len(self.chunks[self.last_id]) >= self.chunk_size:
                self.last_id = next(fresh)
                self.chunks[self.last_id] = []
            chunk = self.chunks[self.last_id]
            take = min(self.chunk_size - len(chunk), m - k)
            chunk.extend(event_ids[k:k + take])
            self._dirty.add(self.last_id)
            k += take
        self.ids.update(event_ids)

    def forget_to(self, limit: int) -> None:
        """:meth:`forget_oldest` until at most ``limit`` ids are remembered."""
        excess = len(self.ids) - limit
        while excess > 0:
            cid = next(iter(self.chunks))
            ids = self.chunks[cid]
            take = min(excess, len(ids) - self.skip)
            self.ids.difference_update(ids[self.skip:self.skip + take])
            self.skip += take
            excess -= take
            if self.skip == len(ids):
                del self.chunks[cid]
                self.skip = 0
                self._dirty.add(cid)
                if cid == self.last_id:
                    self.last_id = None

    def forget_oldest(self) -> None:
        cid = next(iter(self.chunks))
        ids = self.chunks[cid]
        self.ids.discard(ids[self.skip])
        self.skip += 1
        if self.skip == len(ids):
            del self.chunks[cid]
            self.skip = 0
            self._dirty.add(cid)
            if cid == self.last_id:
                self.last_id = None


class LabelJoin:
    """The join of delayed labels to the predictions of one model (see the module doc).

    Parameters
    ----------
    ttl_seconds
        How long (event time) a prediction waits for its label.
    grace_seconds
        How long (event time) a label that arrived before its prediction waits for it.
    max_pending, max_early_labels
        Bounds of the two waiting stores; past them the oldest entries are evicted.
    max_joined_ids
        How many recently joined ids are remembered to recognise duplicates.
    chunk_size
        Entries per persisted chunk.
    """

    def __init__(
        self,
        ttl_seconds: float = 7 * 86400.0,
        grace_seconds: float = 3600.0,
        max_pending: int = 100_000,
        max_early_labels: int = 10_000,
        max_joined_ids: int = 100_000,
        chunk_size: int = 1000,
    ) -> None:
        if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            raise ValueError(f"ttl_seconds must be a finite number > 0, not {ttl_seconds!r}")
        if not (math.isfinite(grace_seconds) and grace_seconds >= 0):
            raise ValueError(f"grace_seconds must be a finite number >= 0, not {grace_seconds!r}")
        for name, n in (("max_pending", max_pending), ("max_early_labels", max_early_labels),
                        ("max_joined_ids", max_joined_ids), ("chunk_size", chunk_size)):
            if type(n) is not int or n < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {n!r}")
        self.ttl_seconds = float(ttl_seconds)
        self.grace_seconds = float(grace_seconds)
        self.max_pending = max_pending
        self.max_early_labels = max_early_labels
        self.max_joined_ids = max_joined_ids
        self.chunk_size = chunk_size
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._watermark: float | None = None
        self._seq = 0
        self._next_chunk_id = 0
        self._dirty: set[int] = set()
        self._written: set[int] = set()  # chunks the shell holds (returned by take_dirty)
        self._pending: _Store[_Prediction] = _Store(chunk_size, self._alloc, self._dirty)
        self._early: _Store[_EarlyLabel] = _Store(chunk_size, self._alloc, self._dirty)
        self._joined = _IdLog(chunk_size, self._alloc, self._dirty)

    def _alloc(self) -> int:
        cid = self._next_chunk_id
        self._next_chunk_id += 1
        return cid

    # -- state ------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """Totals since the join was created (a copy; keys: :data:`COUNTERS`)."""
        return dict(self._counts)

    @property
    def pending(self) -> int:
        """Predictions waiting for their label."""
        return len(self._pending)

    @property
    def early_labels(self) -> int:
        """Labels waiting for their prediction."""
        return len(self._early)

    @property
    def watermark(self) -> float | None:
        """The event-time clock (``None`` before the first event)."""
        return self._watermark

    def coverage(self) -> float | None:
        """The share of predictions that got their label within the TTL, among those whose
        fate is decided (joined, expired or evicted); ``None`` before any.

        >>> j = LabelJoin(ttl_seconds=10)
        >>> j.coverage() is None
        True
        >>> _ = j.add_predictions(["a", "b"], [0.0, 0.0])
        >>> _ = j.add_labels(["a"], ["yes"], [3.0])
        >>> j.advance(20.0)
        >>> j.coverage()
        0.5
        """
        c = self._counts
        decided = c["joined"] + c["expired_predictions"] + c["evicted_predictions"]
        return c["joined"] / decided if decided else None

    # -- processing -------------------------------------------------------------------

    def add_predictions(
        self,
        event_ids: Column,
        ts: Column,
        model_version: str | Column | None = None,
        y_pred: Column | None = None,
        score: Column | None = None,
        value: Column | None = None,
    ) -> Joined:
        """Add a batch of predictions, in order; returns those joined to an early label.

        ``model_version`` may be one string (or ``None``) for the whole batch; ``y_pred``,
        ``score`` and ``value`` may be ``None`` (all missing) and their entries ``None``
        or ``NaN`` (missing).

        >>> j = LabelJoin()
        >>> _ = j.add_labels(["e1"], [True], [100.0])
        >>> out = j.add_predictions(["e1", "e2"], [90.0, 95.0], "v2", score=[0.8, None])
        >>> out.event_id, out.model_version, out.score.tolist(), out.latency_seconds.tolist()
        (['e1'], ['v2'], [0.8], [10.0])
        >>> j.pending
        1
        """
        ids = _ids(event_ids)
        n = len(ids)
        times = _times(ts, n)
        if model_version is None or isinstance(model_version, str):
            versions: list[Any] = [model_version] * n
        else:
            versions = _versions(_as_list(model_version, n, "model_version"))
        preds = [None] * n if y_pred is None else _opt_labels(_as_list(y_pred, n, "y_pred"))
        scores = [None] * n if score is None else _numbers(_as_list(score, n, "score"))
        values = [None] * n if value is None else _numbers(_as_list(value, n, "value"))

        cols = (ids, times, versions, preds, scores, values)
        pairs: list[tuple[Any, ...]] = []
        if n < self._fast_min_run:
            self._predictions_slow(cols, 0, n, pairs)
            return _joined(pairs)
        t, w = self._clock(times)
        for a, b, fast in self._runs(ids, (self._pending.where.keys(), self._early.where.keys(),
                                           self._joined.ids)):
            if not (fast and self._predictions_fast(cols, t, w, a, b)):
                self._predictions_slow(cols, a, b, pairs)
        return _joined(pairs)

    def add_labels(self, event_ids: Column, labels: Column, ts: Column) -> Joined:
        """Add a batch of labels, in order; returns those joined to a pending prediction.

        >>> j = LabelJoin(grace_seconds=60)
        >>> _ = j.add_predictions(["e1"], [0.0], "v1", y_pred=["cat"])
        >>> out = j.add_labels(["e1", "e1", "e9"], ["dog", "dog", "cat"], [30.0, 31.0, 32.0])
        >>> out.event_id, out.y_true, out.y_pred
        (['e1'], ['dog'], ['cat'])
        >>> j.counters["duplicate_labels"], j.early_labels
        (1, 1)
        """
        ids = _ids(event_ids)
        n = len(ids)
        times = _times(ts, n)
        labs = _labels(_as_list(labels, n, "labels"))

        cols = (ids, labs, times)
        pairs: list[tuple[Any, ...]] = []
        if n < self._fast_min_run:
            self._labels_slow(cols, 0, n, pairs)
            return _joined(pairs)
        t, w = self._clock(times)
        for a, b, fast in self._runs(ids, (self._early.where.keys(), self._joined.ids)):
            if not (fast and self._labels_fast(cols, t, w, a, b, pairs)):
                self._labels_slow(cols, a, b, pairs)
        return _joined(pairs)

    def advance(self, now: float) -> None:
        """Move the watermark to ``now`` (event time; an earlier ``now`` is ignored) and
        expire what is due.

        >>> j = LabelJoin(ttl_seconds=60)
        >>> _ = j.add_predictions(["a"], [0.0])
        >>> j.advance(60.0); j.pending
        1
        >>> j.advance(60.5); j.pending, j.counters["expired_predictions"]
        (0, 1)
        """
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite number of seconds, not {now!r}")
        self._see(now)

    def _see(self, t: float) -> float:
        """Move the watermark to ``t`` if later, expire what is due; the watermark."""
        if self._watermark is not None and t <= self._watermark:
            return self._watermark
        self._watermark = wm = t
        c = self._counts
        for store, limit, counter in ((self._pending, self.ttl_seconds, "expired_predictions"),
                                      (self._early, self.grace_seconds, "labels_without_prediction")):
            while (oldest := store.oldest_ts()) is not None and wm - oldest > limit:
                store.pop_oldest()
                c[counter] += 1
        return wm

    def _remember(self, event_id: str) -> None:
        self._counts["joined"] += 1
        self._joined.append(event_id)
        while len(self._joined) > self.max_joined_ids:
            self._joined.forget_oldest()

    # -- batch processing -------------------------------------------------------------
    #
    # A batch is cut into runs. A *simple* event has an id that occurs for the first time
    # in the batch and is not in the stores it is checked against at the start of the
    # batch (predictions: pending, early labels, joined ids; labels: early labels, joined
    # ids): events before it in the batch can only add their own ids to those stores, so
    # its fate depends on the clock alone. A run of at least ``_fast_min_run`` simple
    # events goes through the fast path (a few numpy and C-level dict operations), unless
    # one of a few rare conditions under which the order of events within the run would
    # matter holds (an eviction, an entry added in the run expiring in it, the open chunk
    # of a store being emptied by expiry while entries are added to it); every other event
    # goes through the per-event loop, the reference semantics. The event-time clock
    # before each event is the running maximum of the batch's ``ts`` whichever way.

    #: The shortest run of simple events the fast path takes (shorter ones: the loop).
    _fast_min_run = 16

    def _clock(self, times: list[float]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The batch's ``ts`` and the watermark after each event, as arrays."""
        t = np.array(times, dtype=np.float64)
        w = np.maximum.accumulate(t)
        if self._watermark is not None:
            np.maximum(w, self._watermark, out=w)
        return t, w

    def _runs(self, ids: list[str], known: Iterable[Any]) -> list[tuple[int, int, bool]]:
        """``ids`` cut into ranges ``[a, b)``: runs for the fast path (``True``) and the rest.
        ``known``: the stores (key views or sets) whose ids make an event not simple."""
        n = len(ids)
        first = dict(zip(reversed(ids), range(n - 1, -1, -1), strict=True))  # id -> first position
        keys = first.keys()
        hits: set[str] = set()
        for store in known:
            hits |= keys & store
        if len(first) == n and not hits:
            return [(0, n, True)]
        simple = np.zeros(n + 2, dtype=np.int8)
        simple[np.fromiter(first.values(), dtype=np.intp, count=len(first)) + 1] = 1
        if hits:
            simple[[first[e] + 1 for e in hits]] = 0
        edges = np.flatnonzero(np.diff(simple)).tolist()  # run starts and ends, alternately
        out: list[tuple[int, int, bool]] = []
        pos = 0
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if b - a >= self._fast_min_run:
                if a > pos:
                    out.append((pos, a, False))
                out.append((a, b, True))
                pos = b
        if pos < n:
            out.append((pos, n, False))
        return out

    def _predictions_slow(self, cols: tuple[list[Any], ...], a: int, b: int,
                          pairs: list[tuple[Any, ...]]) -> None:
        """Predictions ``[a, b)`` of a batch, one at a time (the reference semantics)."""
        c = self._counts
        pending, early, joined = self._pending, self._early, self._joined
        ttl = self.ttl_seconds
        for eid, t, mv, yp, sc, va in zip(*(col[a:b] for col in cols), strict=True):
            c["predictions"] += 1
            wm = self._see(t)
            if eid in pending or eid in joined:
                c["duplicate_predictions"] += 1
            elif wm - t > ttl:
                c["expired_predictions"] += 1
            elif eid in early:
                lab = early.remove(eid)
                pairs.append((eid, mv, lab[_LABEL], yp, sc, va, t, lab[_TS]))
                self._remember(eid)
            else:
                self._seq += 1
                pending.add(eid, (t, self._seq, mv, yp, sc, va))
                if len(pending) > self.max_pending:
                    pending.pop_oldest()
                    c["evicted_predictions"] += 1

    def _predictions_fast(self, cols: tuple[list[Any], ...], t: npt.NDArray[np.float64],
                          w: npt.NDArray[np.float64], a: int, b: int) -> bool:
        """Predictions ``[a, b)``, simple, in bulk; ``False`` (and nothing done) when the
        run needs the per-event loop.

        A simple prediction expires on arrival or waits; with no eviction and none of the
        waiting ones expiring within the run, the state after the run is: the entries due
        at its last watermark expired, then the waiting ones appended in order."""
        pending, ttl = self._pending, self.ttl_seconds
        ts_run, w_run = t[a:b], w[a:b]
        keep = (w_run - ts_run) <= ttl  # not expired on arrival
        n_add = int(np.count_nonzero(keep))
        if len(pending) + n_add > self.max_pending:
            return False
        w_last = float(w_run[-1])
        if n_add and (w_last - float(ts_run[keep].min()) > ttl
                      or pending.empties_open_chunk(w_last, ttl)):
            return False
        m = b - a
        c = self._counts
        c["predictions"] += m
        c["expired_predictions"] += m - n_add
        self._see(w_last)
        if n_add:
            mask = None if n_add == m else keep.tolist()
            ids, times, versions, preds, scores, values = (
                col[a:b] if mask is None else list(compress(col[a:b], mask)) for col in cols)
            seq = self._seq
            self._seq += n_add
            recs: list[_Prediction] = list(zip(times, range(seq + 1, seq + 1 + n_add), versions,
                                               preds, scores, values, strict=True))
            pending.add_many(ids, recs)
        return True

    def _labels_slow(self, cols: tuple[list[Any], ...], a: int, b: int,
                     pairs: list[tuple[Any, ...]]) -> None:
        """Labels ``[a, b)`` of a batch, one at a time (the reference semantics)."""
        c = self._counts
        pending, early, joined = self._pending, self._early, self._joined
        grace = self.grace_seconds
        for eid, lab, t in zip(*(col[a:b] for col in cols), strict=True):
            c["labels"] += 1
            wm = self._see(t)
            if eid in joined or eid in early:
                c["duplicate_labels"] += 1
            elif eid in pending:
                p = pending.remove(eid)
                pairs.append((eid, p[_MODEL_VERSION], lab, p[_Y_PRED], p[_SCORE], p[_VALUE], p[_TS], t))
                self._remember(eid)
            elif wm - t > grace:
                c["labels_without_prediction"] += 1
            else:
                self._seq += 1
                early.add(eid, (t, self._seq, lab))
                if len(early) > self.max_early_labels:
                    early.pop_oldest()
                    c["evicted_labels"] += 1

    def _labels_fast(self, cols: tuple[list[Any], ...], t: npt.NDArray[np.float64],
                     w: npt.NDArray[np.float64], a: int, b: int,
                     pairs: list[tuple[Any, ...]]) -> bool:
        """Labels ``[a, b)``, simple, in bulk; ``False`` (and nothing done) when the run
        needs the per-event loop.

        A simple label joins when its prediction is pending at the start of the run and
        has not expired by the label's watermark; otherwise it is too old or waits. With
        no eviction and none of the waiting ones expiring within the run, the state after
        it is: the joined predictions removed, the joined ids and the waiting labels
        appended (their new chunks numbered in the order the events opened them), then the
        entries due at the last watermark expired."""
        ids_all, labs_all, times_all = cols
        pending, early, log = self._pending, self._early, self._joined
        ttl, grace = self.ttl_seconds, self.grace_seconds
        m = b - a
        ids = ids_all[a:b]
        ts_run, w_run = t[a:b], w[a:b]
        cids = np.fromiter(map(pending.where.get, ids, repeat(-1, m)), dtype=np.int64, count=m)
        join = cids >= 0
        recs: list[_Prediction] = []
        if join.any():
            pos = np.flatnonzero(join)
            recs = list(map(dict.__getitem__, map(pending.chunks.__getitem__, cids[pos].tolist()),
                            compress(ids, join.tolist())))
            alive = (w_run[pos] - np.fromiter(map(_get_ts, recs), np.float64, len(recs))) <= ttl
            if not alive.all():
                join[pos[~alive]] = False
                recs = list(compress(recs, alive.tolist()))
        rest = ~join
        late = rest & ((w_run - ts_run) > grace)
        wait = rest & ~late
        n_wait = int(np.count_nonzero(wait))
        w_last = float(w_run[-1])
        if n_wait and (len(early) + n_wait > self.max_early_labels
                       or w_last - float(ts_run[wait].min()) > grace
                       or early.empties_open_chunk(w_last, grace)):
            return False

        c = self._counts
        c["labels"] += m
        c["labels_without_prediction"] += int(np.count_nonzero(late))
        new_log, new_early = self._alloc_in_order(np.flatnonzero(join), np.flatnonzero(wait))
        if recs:
            mask = join.tolist()
            j_ids = list(compress(ids, mask))
            pending.remove_many(j_ids)
            pairs.extend(zip(j_ids, map(_get_model_version, recs), compress(labs_all[a:b], mask),
                             map(_get_y_pred, recs), map(_get_score, recs), map(_get_value, recs),
                             map(_get_ts, recs), compress(times_all[a:b], mask), strict=True))
            c["joined"] += len(j_ids)
            log.extend(j_ids, new_log)
            log.forget_to(self.max_joined_ids)
        if n_wait:
            mask = wait.tolist()
            seq = self._seq
            self._seq += n_wait
            waiting: list[_EarlyLabel] = list(zip(
                compress(times_all[a:b], mask), range(seq + 1, seq + 1 + n_wait),
                compress(labs_all[a:b], mask), strict=True))
            early.add_many(list(compress(ids, mask)), waiting, iter(new_early).__next__)
        self._see(w_last)
        return True

    def _alloc_in_order(self, joins: npt.NDArray[np.intp],
                        waits: npt.NDArray[np.intp]) -> tuple[list[int], list[int]]:
        """The ids of the chunks the joined-id log and the early labels open for appends at
        positions ``joins`` and ``waits`` (sorted), allocated in the order of the events."""
        cs = self.chunk_size
        log, early = self._joined, self._early
        fill_log = cs if log.last_id is None else len(log.chunks[log.last_id])
        fill_early = cs if early.open_id is None else early.open_fill
        opens = sorted([(i, 0) for i in joins[cs - fill_log::cs].tolist()]
                       + [(i, 1) for i in waits[cs - fill_early::cs].tolist()])
        new: tuple[list[int], list[int]] = ([], [])
        for _, store in opens:
            new[store].append(self._alloc())
        return new

    # -- persistence ------------------------------------------------------------------

    def take_dirty(self) -> dict[int, dict[str, Any] | None]:
        """The chunks changed since the last call, by id: a JSON-safe snapshot to store
        under that id, or ``None`` to delete it. A chunk created and emptied between two
        calls is not reported at all. Write this and :meth:`header_snapshot` together.

        >>> j = LabelJoin(chunk_size=2)
        >>> _ = j.add_predictions(["a", "b", "c"], [0.0, 1.0, 2.0])
        >>> {cid: snap["event_id"] for cid, snap in j.take_dirty().items()}
        {0: ['a', 'b'], 1: ['c']}
        >>> _ = j.add_labels(["a", "b"], [1, 0], [3.0, 3.0])
        >>> j.take_dirty()   # chunk 0 is empty; chunk 2 holds the joined ids
        {0: None, 2: {...'store': 'joined_ids', 'event_id': ['a', 'b']}}
        >>> j.take_dirty()
        {}
        """
        out: dict[int, dict[str, Any] | None] = {}
        for cid in sorted(self._dirty):
            snap = self._chunk_snapshot(cid)
            if snap is not None:
                out[cid] = snap
                self._written.add(cid)
            elif cid in self._written:
                out[cid] = None
                self._written.discard(cid)
        self._dirty.clear()
        return out

    def _chunk_snapshot(self, cid: int) -> dict[str, Any] | None:
        head = {"kind": _CHUNK_KIND, "version": _VERSION, "id": cid}
        if cid in self._pending.chunks:
            chunk = self._pending.chunks[cid]
            ts, seq, mv, yp, sc, va = (list(col) for col in zip(*chunk.values(), strict=True))
            return {**head, "store": _PENDING, "event_id": list(chunk), "ts": ts, "seq": seq,
                    "model_version": mv, "y_pred": yp, "score": sc, "value": va}
        if cid in self._early.chunks:
            early = self._early.chunks[cid]
            ts, seq, lab = (list(col) for col in zip(*early.values(), strict=True))
            return {**head, "store": _EARLY, "event_id": list(early), "ts": ts, "seq": seq,
                    "label": lab}
        if cid in self._joined.chunks:
            return {**head, "store": _JOINED, "event_id": list(self._joined.chunks[cid])}
        return None

    def header_snapshot(self) -> dict[str, Any]:
        """The JSON-safe state that is not in chunks: parameters, counters, watermark and
        which chunks make up each store. Small: one integer per chunk besides constants."""
        return {
            "kind": _KIND,
            "version": _VERSION,
            "params": {
                "ttl_seconds": self.ttl_seconds,
                "grace_seconds": self.grace_seconds,
                "max_pending": self.max_pending,
                "max_early_labels": self.max_early_labels,
                "max_joined_ids": self.max_joined_ids,
                "chunk_size": self.chunk_size,
            },
            "counters": dict(self._counts),
            "watermark": self._watermark,
            "seq": self._seq,
            "next_chunk_id": self._next_chunk_id,
            _PENDING: {"chunks": list(self._pending.chunks), "open": self._pending.open_id,
                       "open_fill": self._pending.open_fill},
            _EARLY: {"chunks": list(self._early.chunks), "open": self._early.open_id,
                     "open_fill": self._early.open_fill},
            _JOINED: {"chunks": list(self._joined.chunks), "skip": self._joined.skip},
        }

    @staticmethod
    def chunk_ids(header: dict[str, Any]) -> list[int]:
        """The ids of the chunks a :meth:`header_snapshot` refers to (to load them).

        >>> j = LabelJoin(chunk_size=2)
        >>> _ = j.add_predictions(["a", "b", "c"], [1.0, 2.0, 3.0])
        >>> sorted(j.take_dirty()) == LabelJoin.chunk_ids(j.header_snapshot())
        True
        """
        return sorted(int(cid) for store in (_PENDING, _EARLY, _JOINED)
                      for cid in header[store]["chunks"])

    @classmethod
    def restore(cls, header: dict[str, Any], chunks: Iterable[dict[str, Any]]) -> LabelJoin:
        """Rebuild a join from :meth:`header_snapshot` and every chunk stored from
        :meth:`take_dirty` (in any order). Raises :class:`~stream.errors.SnapshotError`
        on a wrong kind or version, a missing or unexpected chunk, a corrupt field, or
        counters that disagree with the chunks (a header and chunks of different times).
        """
        _check_kind(header, _KIND, "label join header")
        try:
            j = cls(**header["params"])
            counts = header["counters"]
            if set(counts) != set(COUNTERS):
                raise SnapshotError(f"label join counters must be {list(COUNTERS)}, not {list(counts)}")
            j._counts = {k: int(counts[k]) for k in COUNTERS}
            wm = header["watermark"]
            j._watermark = None if wm is None else float(wm)
            j._seq = int(header["seq"])
            j._next_chunk_id = int(header["next_chunk_id"])

            by_id: dict[int, dict[str, Any]] = {}
            for snap in chunks:
                _check_kind(snap, _CHUNK_KIND, "label join chunk")
                cid = int(snap["id"])
                if cid in by_id:
                    raise SnapshotError(f"label join chunk {cid} given twice")
                by_id[cid] = snap

            def take(store: str) -> list[tuple[int, dict[str, Any]]]:
                out = []
                for cid in header[store]["chunks"]:
                    snap = by_id.pop(int(cid), None)
                    if snap is None or snap["store"] != store:
                        raise SnapshotError(f"label join chunk {cid} of {store} is missing")
                    out.append((int(cid), snap))
                return out

            for cid, snap in take(_PENDING):
                cols = _columns(snap, ("event_id", "ts", "seq", "model_version", "y_pred",
                                       "score", "value"), j.chunk_size)
                j._pending.load(cid, [
                    (_id(e), (_time(t), int(s), _version(mv), _opt_label(yp), _number(sc),
                              _number(va)))
                    for e, t, s, mv, yp, sc, va in zip(*cols, strict=True)
                ])
            for cid, snap in take(_EARLY):
                cols = _columns(snap, ("event_id", "ts", "seq", "label"), j.chunk_size)
                j._early.load(cid, [(_id(e), (_time(t), int(s), _label(lab)))
                                    for e, t, s, lab in zip(*cols, strict=True)])
            log = j._joined
            for cid, snap in take(_JOINED):
                (ids,) = _columns(snap, ("event_id",), j.chunk_size)
                log.chunks[cid] = [_id(e) for e in ids]
                log.last_id = cid
            if by_id:
                raise SnapshotError(f"label join chunks {sorted(by_id)} are not in the header")

            for store, name in ((j._pending, _PENDING), (j._early, _EARLY)):
                open_id = header[name]["open"]
                store.open_id = None if open_id is None else int(open_id)
                store.open_fill = int(header[name]["open_fill"])
                if store.open_id is not None and store.open_id not in store.chunks:
                    raise SnapshotError(f"open chunk {open_id} of {name} is missing")
                if not 0 <= store.open_fill <= j.chunk_size:
                    raise SnapshotError(f"open_fill {store.open_fill} of {name} is out of range")
                store.rebuild_heap()
            log.skip = int(header[_JOINED]["skip"])
            first = next(iter(log.chunks.values()), None)
            if not 0 <= log.skip < (1 if first is None else len(first)):
                raise SnapshotError(f"joined ids: skip {log.skip} is out of range")
            live = [e for i, ids in enumerate(log.chunks.values()) for e in ids[log.skip if i == 0 else 0:]]
            log.ids = set(live)
            if len(log.ids) != len(live):
                raise SnapshotError("joined ids: an id is stored twice")
            if j._pending.where.keys() & j._early.where.keys():
                raise SnapshotError("an event id is both pending and an early label")
            if any(cid >= j._next_chunk_id for cid in (*j._pending.chunks, *j._early.chunks,
                                                       *log.chunks)):
                raise SnapshotError("a chunk id is not below next_chunk_id")
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"corrupt label join snapshot: {exc!r}") from None

        c = j._counts
        if (c["predictions"] != j.pending + c["joined"] + c["expired_predictions"]
                + c["evicted_predictions"] + c["duplicate_predictions"]
                or c["labels"] != j.early_labels + c["joined"] + c["labels_without_prediction"]
                + c["evicted_labels"] + c["duplicate_labels"]):
            raise SnapshotError(
                "label join counters disagree with the stored entries: the header and the "
                "chunks were not written after the same batch"
            )
        j._written = {*j._pending.chunks, *j._early.chunks, *log.chunks}
        return j


# -- helpers ------------------------------------------------------------------------------


def _check_kind(data: Any, kind: str, what: str) -> None:
    if not isinstance(data, dict) or data.get("kind") != kind or data.get("version") != _VERSION:
        got = (data.get("kind"), data.get("version")) if isinstance(data, dict) else type(data).__name__
        raise SnapshotError(f"not a {what} snapshot of version {_VERSION}: got {got!r}")


def _columns(snap: dict[str, Any], names: tuple[str, ...], chunk_size: int) -> list[list[Any]]:
    cols = [snap[name] for name in names]
    n = len(cols[0])
    if any(type(col) is not list or len(col) != n for col in cols) or not 0 < n <= chunk_size:
        raise SnapshotError(f"label join chunk {snap['id']}: empty, too long or columns of unequal length")
    return cols


def _joined(pairs: list[tuple[Any, ...]]) -> Joined:
    eid, mv, yt, yp, sc, va, pts, lts = (list(col) for col in zip(*pairs, strict=True)) if pairs \
        else ([] for _ in range(8))

    def arr(xs: list[Any]) -> npt.NDArray[np.float64]:
        a = np.array(xs, dtype=np.float64)  # None -> NaN
        a.setflags(write=False)
        return a

    p, lab = arr(pts), arr(lts)
    latency = lab - p
    latency.setflags(write=False)
    return Joined(eid, mv, yt, yp, arr(sc), arr(va), p, lab, latency)


def _as_list(values: Any, n: int | None, name: str) -> list[Any]:
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence or a 1-D array, not {type(values).__name__}")
    out = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries but event_ids has {n}")
    return out


# The column validators below check the types of a whole column at C speed and return it
# as it is when no entry needs converting; otherwise (or to raise the exact error of the
# first bad entry) they apply the per-entry function.

_NONE: Final = type(None)
_FINITE: Final = math.isfinite


def _all_finite_or_none(xs: list[Any]) -> bool:
    """Whether every entry of ``xs`` (floats and ``None``) is ``None`` or finite."""
    return int(np.count_nonzero(np.isfinite(np.array(xs, dtype=np.float64)))) + xs.count(None) \
        == len(xs)


def _ids(event_ids: Column) -> list[str]:
    ids = _as_list(event_ids, None, "event_ids")
    if set(map(type, ids)) <= {str}:
        return ids
    return [_id(e) for e in ids]


def _id(e: Any) -> str:
    if not isinstance(e, str):
        raise TypeError(f"an event id must be a string, not {type(e).__name__}")
    return str(e)


def _times(ts: Column, n: int) -> list[float]:
    tl = _as_list(ts, n, "ts")
    types = set(map(type, tl))
    if types <= {float, int}:
        try:
            out = list(map(float, tl)) if int in types else tl
        except OverflowError:
            pass
        else:
            if all(map(_FINITE, out)):
                return out
    return [_time(t) for t in tl]


def _time(t: Any) -> float:
    if isinstance(t, str | bytes | bool) or t is None:
        raise TypeError(f"ts must be a number of epoch seconds, not {t!r}")
    x = float(t)
    if not math.isfinite(x):
        raise ValueError(f"ts must be finite, not {x!r}")
    return x


def _versions(vs: list[Any]) -> list[str | None]:
    if set(map(type, vs)) <= {str, _NONE}:
        return vs
    return [_version(v) for v in vs]


def _opt_labels(vs: list[Any]) -> list[Label | None]:
    types = set(map(type, vs))
    if types <= {str, bool, int, _NONE}:
        return vs
    if types <= {float, _NONE} and _all_finite_or_none(vs):
        return vs
    return [_opt_label(v) for v in vs]


def _labels(vs: list[Any]) -> list[Label]:
    types = set(map(type, vs))
    if types <= {str, bool, int} or (types == {float} and all(map(_FINITE, vs))):
        return vs
    return [_label(v) for v in vs]


def _numbers(vs: list[Any]) -> list[float | None]:
    if set(map(type, vs)) <= {float, _NONE} and _all_finite_or_none(vs):
        return vs
    return [_number(v) for v in vs]


def _version(v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise TypeError(f"model_version must be a string or None, not {type(v).__name__}")
    return None if v is None else str(v)


def _label(v: Any) -> Label:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bool | int):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        raise ValueError(f"a label must be finite, not {v!r}")
    raise TypeError(f"a label must be a string, number or boolean, not {type(v).__name__}")


def _opt_label(v: Any) -> Label | None:
    if v is None or (isinstance(v, float | np.floating) and not math.isfinite(v)):
        return None
    return _label(v)


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if not isinstance(v, int | float):
        raise TypeError(f"score and value must be numbers or None, not {type(v).__name__}")
    v = float(v)
    return v if math.isfinite(v) else None
