"""A worker stops on SIGTERM in bounded time, even when its broker has gone away."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from stream.kafka.tansu import EmbeddedBroker
from tests.integration.harness import REPO, WorkerProcess, make_env, produce

pytestmark = pytest.mark.broker


def _process_one_event(broker: EmbeddedBroker, worker: WorkerProcess,
                       output: Callable[[], str]) -> None:
    """Until the worker runs, not still recovering its tables (a broker gone during
    recovery is a crash, exit 1, not these tests' case): one event processed end to end."""
    worker.wait_ready()
    asyncio.run(produce(broker.bootstrap, worker.settings.topics.predictions, [
        orjson.dumps({"event_id": "e1", "model": "m", "ts": 1.0, "features": {"x": 1.0},
                      "prediction": 0.5})]))
    deadline = time.monotonic() + 60
    while worker.metric('driftstream_processed_events_total{outcome="warmup"}') < 1:
        assert time.monotonic() < deadline, output()
        worker.check_alive()
        time.sleep(0.2)


def test_sigterm_with_the_broker_gone_exits_within_the_shutdown_timeout(
        unique: str, tmp_path: Any) -> None:
    own_broker = EmbeddedBroker()  # its own: this test kills it
    own_broker.start()
    try:
        env = make_env(own_broker.bootstrap, unique, tmp_path / "data",
                       DRIFTSTREAM_APP__SHUTDOWN_TIMEOUT_SECONDS="3")
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        _process_one_event(own_broker, worker, worker.log_tail)
    finally:
        own_broker.stop()
    time.sleep(0.5)
    assert worker.proc is not None
    t0 = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(timeout=30)
    took = time.monotonic() - t0
    print(f"exit code {code} after {took:.1f} s")
    assert took < 3.0 + 5.0, (took, worker.log_tail())
    assert code is not None
    if code != 0:  # the clean stop could not finish: the watchdog ended it, and said why
        assert code == 128 + signal.SIGTERM
        assert "shutdown did not finish within 3 s" in worker.log_tail()


def test_sigterm_exits_even_when_the_worker_cannot_write_its_output(
        unique: str, tmp_path: Any) -> None:
    """The broker is gone, and so is whoever read the worker's output (its pipe is
    closed): the shutdown watchdog cannot write its message, and exits all the same."""
    own_broker = EmbeddedBroker()
    own_broker.start()
    reading = threading.Event()
    reading.set()
    try:
        env = make_env(own_broker.bootstrap, unique, tmp_path / "data",
                       DRIFTSTREAM_APP__SHUTDOWN_TIMEOUT_SECONDS="3")
        worker = WorkerProcess(env, tmp_path / "unused.log")
        worker.proc = proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "worker"], cwd=REPO,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        out = proc.stdout
        drained = bytearray()

        def drain() -> None:  # read until told to stop, so that the pipe never fills up
            while reading.is_set() and (chunk := out.read1(65536)):
                drained.extend(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        _process_one_event(own_broker, worker,
                           lambda: drained.decode(errors="replace")[-3000:])
    finally:
        own_broker.stop()
    reading.clear()
    out.close()  # the reader is gone: every write of the worker now fails (EPIPE)
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    assert took < 3.0 + 5.0, took
    assert code in (0, 128 + signal.SIGTERM), code
