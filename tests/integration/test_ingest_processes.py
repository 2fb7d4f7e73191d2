"""``ingest.processes``: the ingest stage in child processes of a worker, on the real
broker. Events go through, the children's counters reach the worker's /metrics, a killed
child is restarted and loses nothing, and no child outlives its worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import WorkerProcess, alive, make_env, produce
from tests.integration.test_drift_loop import encode, make_events

pytestmark = pytest.mark.broker


def total(worker: WorkerProcess, prefix: str) -> float:
    try:
        m = worker.metrics()
    except OSError:
        return -1.0
    return sum(v for k, v in m.items() if k.startswith(prefix))


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` running the ingest stage."""
    out = []
    for kid in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{kid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(kid))
    return out


def wait_for(check: Any, timeout: float, what: str, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        worker.check_alive()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; log:\n{worker.log_tail()}")


async def test_two_ingest_processes(broker: Any, unique: str, tmp_path: Any) -> None:
    env = make_env(broker.bootstrap, unique, tmp_path / "data",
                   DRIFTSTREAM_INGEST__PROCESSES="2",
                   DRIFTSTREAM_INGEST__MAX_RECORDS="500",
                   DRIFTSTREAM_LAG__INTERVAL_SECONDS="1",
                   DRIFTSTREAM_MONITOR__WINDOW_SIZE="200",
                   DRIFTSTREAM_MONITOR__WARMUP_EVENTS="500")
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    try:
        worker.wait_ready()
        assert worker.proc is not None
        wait_for(lambda: total(worker, "driftstream_ingest_processes") == 2, 30,
                 "two ingest processes", worker)
        kids = children(worker.proc.pid)
        assert len(kids) == 2, kids

        s = worker.settings
        first = encode(make_events(3000, seed=3, model="fraud", version="v1"))
        await produce(s.kafka.bootstrap_servers, s.topics.predictions,
                      [*first[:1500], b'{"event_id": "bad"}', *first[1500:]])
        wait_for(lambda: total(worker, "driftstream_processed_events_total") >= 3000, 60,
                 "the first 3000 events processed", worker)
        # the children's counters reached the worker's registry (at least once: a
        # rebalance while the second child joins may have a batch read twice)
        wait_for(lambda: total(worker, "driftstream_ingested_events_total") >= 3000, 10,
                 "ingested >= 3000", worker)
        m = worker.metrics()
        topic = s.topics.predictions
        assert m[f'driftstream_dead_letters_total{{reason="missing_field",topic="{topic}"}}'] >= 1
        assert m['driftstream_batch_processing_seconds_count{stage="ingest"}'] > 0

        # the worker's backlog SLI covers the input partitions its children hold, with
        # their fetch positions (all read: no position lag)
        group = f"{s.app.id}-ingest"

        def position_lags() -> dict[str, float]:
            try:
                metrics = worker.metrics()
            except OSError:
                return {}
            return {k: v for k, v in metrics.items()
                    if k.startswith("driftstream_consumer_position_lag_records")
                    and f'group="{group}"' in k and f'topic="{topic}"' in k}

        wait_for(lambda: len(position_lags()) == s.app.partitions
                 and not any(position_lags().values()), 30,
                 "position lag 0 on every input partition", worker)

        # a child killed mid-stream is started again; nothing is lost
        os.kill(kids[0], signal.SIGKILL)
        second = encode(make_events(3000, seed=4, model="fraud", version="v1", start=3000))
        await produce(s.kafka.bootstrap_servers, s.topics.predictions, second)
        wait_for(lambda: total(worker, "driftstream_ingest_process_restarts_total") == 1, 30,
                 "one restart", worker)
        wait_for(lambda: total(worker, "driftstream_ingest_processes") == 2, 30,
                 "two ingest processes again", worker)
        wait_for(lambda: total(worker, "driftstream_processed_events_total") >= 6000, 60,
                 "all 6000 events processed", worker)
        assert not alive(kids[0])
        kids = children(worker.proc.pid)
        assert len(kids) == 2, kids
    finally:
        assert worker.stop() == 0, worker.log_tail()
    # a clean stop takes the children with it
    deadline = time.monotonic() + 10
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kids), kids


async def test_children_leave_when_the_worker_is_killed(broker: Any, unique: str,
                                                        tmp_path: Any) -> None:
    env = make_env(broker.bootstrap, unique, tmp_path / "data",
                   DRIFTSTREAM_INGEST__PROCESSES="1")
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    worker.wait_ready()
    assert worker.proc is not None
    wait_for(lambda: total(worker, "driftstream_ingest_processes") == 1, 30,
             "one ingest process", worker)
    kids = children(worker.proc.pid)
    assert len(kids) == 1
    worker.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(kids[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(kids[0]), "an orphaned ingest process would keep reading the input"
