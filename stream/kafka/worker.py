"""Running the Faust worker (``driftstream worker``)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import faust

from stream.config import Settings
from stream.kafka.app import create_app
from stream.kafka.gc_tuning import tune_gc
from stream.kafka.topics import ensure_topics

__all__ = ["run_worker"]


class DriftWorker(faust.Worker):
    """Faust's worker with a bounded shutdown.

    A clean stop commits offsets and flushes the producer, which waits for the broker;
    with the broker gone it waits forever, and a worker that ignores SIGTERM is worse at
    3 a.m. than one that exits. After ``app.shutdown_timeout_seconds`` the process exits
    anyway (status 128 + signal); whatever was not committed is processed again after
    the restart (at-least-once).
    """

    shutdown_timeout: float = 30.0

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self.shutdown_timeout, self._hard_exit, args=(sig,))
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(sig)

    def _hard_exit(self, sig: signal.Signals) -> None:
        sys.stderr.write(
            f"driftstream worker: the clean shutdown did not finish within "
            f"{self.shutdown_timeout:g} s (app.shutdown_timeout_seconds), probably because "
            "the broker cannot be reached; exiting now. Uncommitted events will be "
            "processed again after the restart.\n")
        sys.stderr.flush()
        os._exit(128 + int(sig))


def run_worker(settings: Settings) -> int:
    """Create the topics that are missing, then run a worker until SIGINT/SIGTERM."""
    import asyncio

    asyncio.run(ensure_topics(settings))
    drift = create_app(settings)
    logging.getLogger("stream").setLevel(settings.app.log_level.upper())
    worker: Any = DriftWorker(
        drift.app,
        loglevel=settings.app.log_level,
        logfile=None,
        stdout=sys.stdout,
        stderr=sys.stderr,
        quiet=True,
        redirect_stdouts=False,
    )
    worker.spinner = None  # its cursor escape codes garble logs and piped output
    worker.shutdown_timeout = settings.app.shutdown_timeout_seconds
    tune_gc()
    print(f"driftstream worker: app {settings.app.id!r} on {settings.kafka.bootstrap_servers}; "
          f"metrics at http://{settings.app.web_host}:{settings.app.web_port}/metrics", flush=True)
    worker.execute_from_commandline()
    return 0
