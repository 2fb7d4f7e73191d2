"""Event volume as an SLI of one model: too many events, too few, or none at all.

A model whose traffic doubles, halves or stops is an incident even when every feature's
distribution looks fine, and silence looks like health. So the events of each model are
counted, in two clocks, by the same pure code in the live worker and in offline replay.

**Event time: too_big and too_small.** Events are counted into tumbling event-time
buckets, bucket ``k`` covering ``[k × bucket_seconds, (k + 1) × bucket_seconds)``. The
model's *watermark* is the largest event time seen; a bucket is *complete* once the
watermark reaches its end, so buckets are closed by later events, never by a clock. The
buckets between two buckets with events close with a count of 0: that is how "the
traffic dropped to zero" shows in event time, once traffic resumes. Only the bucket that
holds the watermark is open; an event for a bucket that already closed is *late*: counted
in :attr:`VolumeTracker.late`, never added. Within one :meth:`VolumeTracker.observe` call
the order of the events does not matter; across calls, an event whose bucket an earlier
call closed is late.

Closing a bucket judges it against the *baseline*: the mean count of the previous
``baseline_buckets`` buckets of the baseline history (the bucket being judged is not part
of it). ``ratio = count / baseline``. The first rule that matches wins:

1. **not judged**: the history holds fewer than ``min_baseline_buckets`` buckets, or its
   mean is 0 (there is no rate to compare with). The bucket joins the history.
2. **out of bounds**: ``ratio > spike_factor`` is ``too_big`` (critical above
   ``2 × spike_factor``); ``ratio < 1 / drop_factor`` is ``too_small`` (critical when the
   bucket has no event at all). The bucket is **not** added to the history, so an outage
   (or a flood) never becomes the new normal: after an hour at zero, recovering to the
   old rate is healthy, not a spike. The other side of it: a *lasting* change of level
   keeps its alert firing until someone looks; that is the point of the alert.
3. **healthy**: the bucket joins the history, and counts towards the ``quiet`` healthy
   buckets in a row after which a firing ``too_big`` / ``too_small`` resolves. Each
   detector counts its own healthy buckets (a zero bucket is healthy for ``too_big``).

Severity only goes up within an episode (``escalated``); it never de-escalates before it
resolves. The events are :func:`~stream.core.alerts.alert_event` dicts (``kind
"volume"``): ``value`` is the bucket's count, ``threshold`` the bound in events per
bucket that it crossed (``baseline × spike_factor``, ``× 2 × spike_factor`` when critical,
``baseline / drop_factor``; on ``resolved``, the warning bound), ``window`` the bucket
(``{"kind": "time", ...}``), and ``ts`` its end. Counts make buckets of a noisy low-rate
model noisy too: pick ``bucket_seconds`` so that a bucket holds tens of events.

**Bounded work on gaps.** An event far in the future closes every bucket before it. At
most ``baseline_buckets + 1`` empty buckets are closed one by one; after that the history
can no longer change (either the baseline is above 0, so every empty bucket is
``too_small`` and kept out of it, or the history is all zeros, which only a snapshot
restored under another policy can lead to, and nothing is judged), so every further
empty bucket is judged alike and the rest of the gap is applied in one step:
``too_small`` keeps firing, and a firing ``too_big`` counts the gap as healthy buckets
and resolves at the bucket where that count reaches ``quiet``. The result is the one of
closing each bucket, at a cost independent of the gap.

**Wall clock: the dead-man.** A model that stops sending altogether closes no bucket,
since only events move event time. So :meth:`VolumeTracker.check` takes a *wall-clock*
``now`` (epoch seconds), injected like every clock in the core: the shell calls it from
a timer (with ``SystemClock().now()``) even when nothing arrives, and replay drives it
with its own clock. ``observe(ts, now=...)`` records ``now`` as the last arrival. When
the model is *active* (at least ``min_baseline_buckets`` buckets with events in the
baseline history) and nothing arrived for more than ``deadman_seconds``, ``deadman``
fires (critical, ``value`` the silence in seconds, ``window`` null, ``ts`` now). It
resolves at the next ``observe`` with events; that resolution comes first in what
``observe`` returns, then the transitions of the buckets it closed, in bucket order
(``too_big`` before ``too_small``). After an outage both clocks speak: the dead-man
resolves as the traffic resumes, and the empty buckets of the gap then fire
``too_small`` in event time, until ``quiet`` healthy buckets resolve it. Pass ``now`` to
every ``observe``: without it the arrival is not recorded, and ``check`` may fire again.

>>> import numpy as np
>>> p = VolumePolicy(bucket_seconds=60, baseline_buckets=10, min_baseline_buckets=3, quiet=1)
>>> v = VolumeTracker("fraud", p)
>>> def minute(m, n):   # n events in event-time minute m
...     return np.full(n, m * 60.0 + 1.0)
>>> def seen(alerts):
...     return [(a["detector"], a["transition"], a["severity"]) for a in alerts]
>>> for m in range(4):   # 10 events a minute, arriving a minute apart on the wall clock
...     assert v.observe(minute(m, 10), now=1000.0 + 60 * m) == []
>>> round(v.baseline_rate, 4), v.rate_of_last_bucket   # minutes 0-2 closed, 3 is open
(0.1667, 0.16666666666666666)
>>> seen(v.observe(minute(4, 80), now=1240.0))         # closes minute 3: healthy
[]
>>> seen(v.observe(minute(5, 10), now=1300.0))         # closes minute 4: 8 × the baseline
[('too_big', 'firing', 'critical')]
>>> seen(v.observe(minute(6, 10), now=1360.0))
[('too_big', 'resolved', 'critical')]
>>> v.check(now=1500.0), seen(v.check(now=1700.0))     # nothing arrives at all
([], [('deadman', 'firing', 'critical')])
>>> seen(v.observe(minute(9, 10), now=1720.0))         # minutes 7 and 8 close empty
[('deadman', 'resolved', 'critical'), ('too_small', 'firing', 'critical')]
>>> VolumeTracker.restore(v.snapshot(), p).snapshot() == v.snapshot()
True
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stream.core.alerts import AlertState, Transition, alert_event, step_detection
from stream.errors import SnapshotError

__all__ = ["DETECTORS", "VolumePolicy", "VolumeTracker"]

_KIND = "driftstream.volume"
_VERSION = 1
#: The detectors of a model's volume alerts, in the order their transitions are returned.
DETECTORS = ("too_big", "too_small", "deadman")
_BUCKET_DETECTORS = ("too_big", "too_small")

_Severity = Literal["warning", "critical"]
Alert = dict[str, Any]


@dataclass(frozen=True)
class VolumePolicy:
    """How a model's event volume is judged; see the module docstring."""

    bucket_seconds: float = 60.0
    baseline_buckets: int = 30
    min_baseline_buckets: int = 5
    spike_factor: float = 3.0
    drop_factor: float = 3.0
    deadman_seconds: float = 300.0
    quiet: int = 2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"volume policy: {f.name} must be a number, got {value!r}")
            if f.type == "int" and not isinstance(value, int):
                raise ValueError(f"volume policy: {f.name} must be an integer, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"volume policy: {f.name} must be finite, got {value!r}")
        if self.bucket_seconds <= 0:
            raise ValueError(f"volume policy: bucket_seconds must be > 0, got {self.bucket_seconds}")
        if self.baseline_buckets < 1:
            raise ValueError(
                f"volume policy: baseline_buckets must be >= 1, got {self.baseline_buckets}")
        if not 1 <= self.min_baseline_buckets <= self.baseline_buckets:
            raise ValueError(
                "volume policy: min_baseline_buckets must be in [1, baseline_buckets], "
                f"got {self.min_baseline_buckets} (baseline_buckets {self.baseline_buckets})")
        if self.spike_factor <= 1:
            raise ValueError(f"volume policy: spike_factor must be > 1, got {self.spike_factor}")
        if self.drop_factor <= 1:
            raise ValueError(f"volume policy: drop_factor must be > 1, got {self.drop_factor}")
        if self.deadman_seconds <= 0:
            raise ValueError(
                f"volume policy: deadman_seconds must be > 0, got {self.deadman_seconds}")
        if self.quiet < 1:
            raise ValueError(f"volume policy: quiet must be >= 1, got {self.quiet}")


def _step(state: AlertState, severity: _Severity | None, *, quiet: int,
          ts: float) -> tuple[AlertState, Transition | None]:
    """:func:`~stream.core.alerts.step_detection` with a severity that only goes up.

    >>> s, t = _step(AlertState(), "warning", quiet=1, ts=0.0); t, s.severity
    ('firing', 'warning')
    >>> s, t = _step(s, "critical", quiet=1, ts=1.0); t, s.severity
    ('escalated', 'critical')
    >>> _step(s, "warning", quiet=1, ts=2.0)[1], _step(s, None, quiet=1, ts=2.0)[1]
    (None, 'resolved')
    """
    new, transition = step_detection(state, 0 if severity is None else 1, quiet=quiet, ts=ts)
    if severity is not None and new.severity != "critical" and severity == "critical":
        new = replace(new, severity="critical")
        transition = transition or "escalated"
    return new, transition


class VolumeTracker:
    """The event-volume SLI and alerts of one model (see the module docstring).

    Memory is bounded: ``baseline_buckets`` counts, one open bucket, three alert states.
    """

    def __init__(self, model: str, policy: VolumePolicy | None = None) -> None:
        self.model = model
        self.policy = policy or VolumePolicy()
        self._history: deque[int] = deque(maxlen=self.policy.baseline_buckets)
        self._open: int | None = None  # index of the open bucket (the watermark's)
        self._open_count = 0
        self._watermark: float | None = None
        self._last: tuple[int, int] | None = None  # (index, count) of the last closed bucket
        self._late = 0
        self._last_arrival: float | None = None
        self._alerts: dict[str, AlertState] = {d: AlertState() for d in DETECTORS}

    # -- signals ----------------------------------------------------------------------

    @property
    def baseline_rate(self) -> float | None:
        """The baseline in events per second; ``None`` before ``min_baseline_buckets``."""
        base = self._baseline()
        return None if base is None else base / self.policy.bucket_seconds

    @property
    def rate_of_last_bucket(self) -> float | None:
        """Events per second of the last closed bucket; ``None`` before one closed."""
        return None if self._last is None else self._last[1] / self.policy.bucket_seconds

    @property
    def late(self) -> int:
        """Events that arrived after their bucket had closed (not counted in it)."""
        return self._late

    @property
    def watermark(self) -> float | None:
        """The largest event time seen."""
        return self._watermark

    @property
    def last_arrival(self) -> float | None:
        """The wall-clock ``now`` of the last :meth:`observe` with events that was given one."""
        return self._last_arrival

    @property
    def active(self) -> bool:
        """Whether the dead-man watches the model: at least ``min_baseline_buckets``
        buckets with events in the baseline history."""
        return sum(1 for c in self._history if c > 0) >= self.policy.min_baseline_buckets

    def alert_state(self, detector: str) -> AlertState:
        """The state of one of :data:`DETECTORS`."""
        return self._alerts[detector]

    # -- input ------------------------------------------------------------------------

    def observe(self, ts: npt.ArrayLike, *, now: float | None = None) -> list[Alert]:
        """Count events with event times ``ts`` (epoch seconds) and close the buckets the
        watermark passed. ``now`` is the wall-clock arrival time, for the dead-man.

        Returns the alert transitions, in order: a dead-man resolution, then the closed
        buckets' transitions. Raises :class:`ValueError` on a negative or non-finite
        event time (events are validated before they get here).
        """
        times = np.asarray(ts, dtype=np.float64).ravel()
        out: list[Alert] = []
        if times.size == 0:
            return out
        if not np.all(np.isfinite(times)) or float(times.min()) < 0:
            raise ValueError("event times must be finite epoch seconds >= 0")
        silence = None
        if now is not None and self._last_arrival is not None:
            silence = now - self._last_arrival
        if now is not None:
            self._last_arrival = float(now)
        T = self.policy.bucket_seconds
        keys, counts = np.unique(np.floor(times / T), return_counts=True)
        buckets = [(int(k), int(c)) for k, c in zip(keys.tolist(), counts.tolist(), strict=True)]
        if self._open is None:
            self._open, self._open_count = buckets[0][0], 0
        late = sum(c for k, c in buckets if k < self._open)
        self._late += late
        batch_max = float(times.max())
        if self._watermark is None or batch_max > self._watermark:
            self._watermark = batch_max
        dead = self._alerts["deadman"]
        if dead.status == "firing":
            state = replace(dead, status="ok", since=None, quiet=0)
            self._alerts["deadman"] = state
            out.append(self._event(
                "deadman", state, "resolved", value=silence, threshold=self.policy.deadman_seconds,
                window=None, ts=float(now) if now is not None else self._watermark,
                message=f"events of model {self.model} arrive again"
                + (f" after {silence:.0f} s of silence" if silence is not None else "")))
        for k, c in buckets:
            if k < self._open:
                continue
            if k > self._open:
                self._close(self._open, self._open_count, out)
                self._close_empty(self._open + 1, k - self._open - 1, out)
                self._open, self._open_count = k, 0
            self._open_count += c
        return out

    def check(self, now: float) -> list[Alert]:
        """The dead-man at wall-clock time ``now`` (epoch seconds): fires when an active
        model sent nothing for more than ``deadman_seconds``. Call it from a timer."""
        state = self._alerts["deadman"]
        if state.status == "firing" or self._last_arrival is None or not self.active:
            return []
        silence = now - self._last_arrival
        if silence <= self.policy.deadman_seconds:
            return []
        state = AlertState("firing", "critical", state.episode + 1, now)
        self._alerts["deadman"] = state
        return [self._event(
            "deadman", state, "firing", value=silence, threshold=self.policy.deadman_seconds,
            window=None, ts=now,
            message=f"no events from model {self.model} for {silence:.0f} s "
                    f"(dead-man after {self.policy.deadman_seconds:g} s)")]

    # -- buckets ----------------------------------------------------------------------

    def _baseline(self) -> float | None:
        if len(self._history) < self.policy.min_baseline_buckets:
            return None
        return sum(self._history) / len(self._history)

    def _verdict(self, count: int) -> dict[str, _Severity | None] | None:
        """The severity per bucket detector of a bucket of ``count`` events (``None``:
        healthy), or ``None`` when the bucket is not judged (rule 1)."""
        base = self._baseline()
        if base is None or base <= 0:
            return None
        p = self.policy
        ratio = count / base
        big: _Severity | None = None
        if ratio > 2 * p.spike_factor:
            big = "critical"
        elif ratio > p.spike_factor:
            big = "warning"
        small: _Severity | None = None
        if ratio < 1 / p.drop_factor:
            small = "critical" if count == 0 else "warning"
        return {"too_big": big, "too_small": small}

    def _close(self, k: int, count: int, out: list[Alert]) -> None:
        self._last = (k, count)
        verdict = self._verdict(count)
        if verdict is None:
            self._history.append(count)
            return
        for det in _BUCKET_DETECTORS:
            state, t = _step(self._alerts[det], verdict[det], quiet=self.policy.quiet,
                             ts=self._end(k))
            self._alerts[det] = state
            if t is not None:
                out.append(self._bucket_event(det, state, t, k, count))
        if verdict["too_big"] is None and verdict["too_small"] is None:
            self._history.append(count)

    def _close_empty(self, k0: int, n: int, out: list[Alert]) -> None:
        """Close the ``n`` empty buckets from ``k0``: the first ``baseline_buckets + 1``
        one by one, the rest in one step (see *Bounded work on gaps*)."""
        explicit = min(n, self.policy.baseline_buckets + 1)
        for k in range(k0, k0 + explicit):
            self._close(k, 0, out)
        rest = n - explicit
        if rest <= 0:
            return
        k0 += explicit
        self._last = (k0 + rest - 1, 0)
        verdict = self._verdict(0)
        if verdict is None:  # the history is all zeros: it stays so
            self._history.extend(itertools.repeat(0, min(rest, self.policy.baseline_buckets)))
            return
        events: list[tuple[int, Alert]] = []
        for det in _BUCKET_DETECTORS:
            state = self._alerts[det]
            if verdict[det] is not None:  # already firing at this severity: a no-op
                state, t = _step(state, verdict[det], quiet=self.policy.quiet, ts=self._end(k0))
                if t is not None:
                    events.append((k0, self._bucket_event(det, state, t, k0, 0)))
            elif state.status == "firing":
                need = self.policy.quiet - state.quiet
                if rest >= need:
                    k = k0 + need - 1
                    state = replace(state, status="ok", since=None, quiet=0)
                    events.append((k, self._bucket_event(det, state, "resolved", k, 0)))
                else:
                    state = replace(state, quiet=state.quiet + rest)
            self._alerts[det] = state
        out.extend(e for _, e in sorted(events, key=lambda ke: ke[0]))
        if verdict["too_big"] is None and verdict["too_small"] is None:  # not when base > 0
            self._history.extend(itertools.repeat(0, min(rest, self.policy.baseline_buckets)))

    def _end(self, k: int) -> float:
        return (k + 1) * self.policy.bucket_seconds

    # -- alert events -----------------------------------------------------------------

    def _bucket_event(self, det: str, state: AlertState, t: Transition, k: int,
                      count: int) -> Alert:
        p = self.policy
        base = self._baseline()
        assert base is not None  # judged buckets have a baseline
        T = p.bucket_seconds
        window = {"kind": "time", "index": k, "start": k * T, "end": (k + 1) * T, "count": count}
        what = f"model {self.model} had {count} events in the {T:g} s from {k * T:g}"
        if det == "too_big":
            factor = p.spike_factor * (2 if state.severity == "critical" and t != "resolved" else 1)
            threshold = base * factor
            if t == "resolved":
                message = f"event volume of model {self.model} is back: {what}"
            else:
                message = (f"{what}, {count / base:.1f} × its baseline of {base:.1f} "
                           f"(more than {factor:g} ×)")
        else:
            threshold = base / p.drop_factor
            if t == "resolved":
                message = f"event volume of model {self.model} is back: {what}"
            else:
                message = (f"{what}, {count / base:.2f} × its baseline of {base:.1f} "
                           f"(less than 1/{p.drop_factor:g})")
        return self._event(det, state, t, value=float(count), threshold=threshold,
                           window=window, ts=(k + 1) * T, message=message)

    def _event(self, det: str, state: AlertState, t: Transition, *, value: float | None,
               threshold: float | None, window: dict[str, Any] | None, ts: float,
               message: str) -> Alert:
        return alert_event(state=state, transition=t, kind="volume", model=self.model,
                           model_version=None, feature=None, detector=det, value=value,
                           threshold=threshold, window=window, ts=ts, message=message)

    # -- snapshot ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state, JSON-safe; :meth:`restore` rebuilds it exactly."""
        return {
            "kind": _KIND,
            "version": _VERSION,
            "model": self.model,
            "history": list(self._history),
            "open": None if self._open is None else [self._open, self._open_count],
            "watermark": self._watermark,
            "last_closed": None if self._last is None else list(self._last),
            "late": self._late,
            "last_arrival": self._last_arrival,
            "alerts": {d: s.snapshot() for d, s in self._alerts.items()},
        }

    @classmethod
    def restore(cls, data: dict[str, Any], policy: VolumePolicy | None = None) -> VolumeTracker:
        """Rebuild a tracker from :meth:`snapshot`. Raises :class:`SnapshotError` on a wrong
        kind or version, on corrupt data, and when the snapshot's open bucket does not
        match ``policy.bucket_seconds``."""
        if not isinstance(data, dict) or data.get("kind") != _KIND or data.get("version") != _VERSION:
            got = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise SnapshotError(f"not a volume snapshot of version {_VERSION}: kind={got!r}")
        try:
            model = data["model"]
            if not isinstance(model, str):
                raise TypeError(f"model must be a string, got {model!r}")
            v = cls(model, policy)
            v._history.extend(_count(c) for c in data["history"])
            if data["open"] is not None:
                k, c = data["open"]
                v._open, v._open_count = _index(k), _count(c)
            if data["last_closed"] is not None:
                k, c = data["last_closed"]
                v._last = (_index(k), _count(c))
            v._watermark = _time(data["watermark"])
            v._late = _count(data["late"])
            v._last_arrival = _time(data["last_arrival"])
            alerts = data["alerts"]
            if not isinstance(alerts, dict) or set(alerts) != set(DETECTORS):
                raise ValueError(f"alerts must have the detectors {DETECTORS}")
            v._alerts = {d: _alert_state(alerts[d]) for d in DETECTORS}
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt volume snapshot: {exc!r}") from None
        if (v._open is None) != (v._watermark is None) or (
            v._watermark is not None
            and v._open != math.floor(v._watermark / v.policy.bucket_seconds)
        ):
            raise SnapshotError("corrupt volume snapshot: the open bucket is not the watermark's "
                                "(was it written with another bucket_seconds?)")
        return v


def _count(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise ValueError(f"expected a count, got {x!r}")
    return x


def _index(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"expected a bucket index, got {x!r}")
    return x


def _time(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError(f"expected epoch seconds, got {x!r}")
    return float(x)


def _alert_state(d: Any) -> AlertState:
    s = AlertState.restore(d)
    if s.status not in ("ok", "firing") or s.severity not in (None, "warning", "critical"):
        raise ValueError(f"bad alert state {d!r}")
    _count(s.episode)
    _count(s.quiet)
    return s
