"""Clocks: the core never reads the wall clock itself; it is handed one.

>>> clock = ManualClock(100.0)
>>> clock.now()
100.0
>>> clock.advance(2.5)
>>> clock.now()
102.5
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Anything with ``now() -> float`` (Unix epoch seconds)."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock (``time.time()``)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to: for tests and for replay."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds!r}))")
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = float(now)
