"""A worker stops on SIGTERM in bounded time, even when its broker has gone away."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from stream.kafka.tansu import EmbeddedBroker
from tests.integration.harness import WorkerProcess, make_env

pytestmark = pytest.mark.broker


def test_sigterm_with_the_broker_gone_exits_within_the_shutdown_timeout(
        unique: str, tmp_path: Any) -> None:
    own_broker = EmbeddedBroker()  # its own: this test kills it
    own_broker.start()
    try:
        env = make_env(own_broker.bootstrap, unique, tmp_path / "data",
                       DRIFTSTREAM_APP__SHUTDOWN_TIMEOUT_SECONDS="3")
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        worker.wait_ready()
        time.sleep(2.0)  # let the groups join
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
