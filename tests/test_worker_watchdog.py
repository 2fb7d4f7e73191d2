"""The worker's shutdown watchdog (``stream.kafka.worker.DriftWorker``), without a broker:
whatever starts the shutdown, the process exits after ``shutdown_timeout``, even when it
cannot write its message. (Against a real broker: tests/integration/test_shutdown.py.)"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from typing import Any

import faust
import pytest

from stream.kafka.worker import DriftWorker


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], threading.Event]:
    """``os._exit`` replaced: records the status instead of ending the test run."""
    statuses: list[int] = []
    called = threading.Event()

    def fake_exit(status: int) -> None:
        statuses.append(status)
        called.set()
    monkeypatch.setattr(os, "_exit", fake_exit)
    return statuses, called


def _worker(timeout: float) -> DriftWorker:
    w = DriftWorker.__new__(DriftWorker)  # no app, no loop: only the watchdog is exercised
    w.shutdown_timeout = timeout
    return w


def test_a_shutdown_without_a_signal_that_hangs_exits_with_status_1(
        exits: tuple[list[int], threading.Event], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    statuses, called = exits
    release = threading.Event()

    def hanging_shutdown(self: Any) -> None:  # a crash, then a flush to a dead broker
        release.wait(5)
    monkeypatch.setattr(faust.Worker, "stop_and_shutdown", hanging_shutdown)
    done = threading.Thread(target=_worker(0.1).stop_and_shutdown, daemon=True)
    done.start()
    assert called.wait(3), "the watchdog did not fire"
    release.set()
    assert statuses == [1]
    assert "did not finish within 0.1 s" in capsys.readouterr().err


def test_a_signal_arms_the_watchdog_once_with_128_plus_the_signal(
        exits: tuple[list[int], threading.Event], monkeypatch: pytest.MonkeyPatch) -> None:
    statuses, called = exits
    monkeypatch.setattr(faust.Worker, "_schedule_shutdown", lambda self, sig: None)
    monkeypatch.setattr(faust.Worker, "stop_and_shutdown", lambda self: None)
    w = _worker(0.1)
    w._schedule_shutdown(signal.SIGTERM)
    w._schedule_shutdown(signal.SIGINT)  # a second signal does not re-arm it
    w.stop_and_shutdown()  # nor does the shutdown that follows
    assert called.wait(3)
    threading.Event().wait(0.3)
    assert statuses == [128 + signal.SIGTERM]


def test_it_exits_even_when_stderr_cannot_be_written(
        exits: tuple[list[int], threading.Event], monkeypatch: pytest.MonkeyPatch) -> None:
    statuses, _ = exits
    closed = io.StringIO()
    closed.close()  # writing raises ValueError, as a closed pipe raises BrokenPipeError
    monkeypatch.setattr(sys, "stderr", closed)
    _worker(0.1)._hard_exit(143)
    assert statuses == [143]
