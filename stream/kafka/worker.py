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
    with the broker gone it waits forever, and a worker that neither works nor exits is
    worse at 3 a.m. than one that exits and is restarted. Whatever starts the shutdown (a
    signal, or a crash), the process exits after ``app.shutdown_timeout_seconds`` anyway:
    with status 128 + signal after a signal, 1 otherwise. Whatever was not committed is
    processed again after the restart (at-least-once).
    """

    shutdown_timeout: float = 30.0
    _watchdog: threading.Timer | None = None

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        self._arm_watchdog(128 + int(sig))
        super()._schedule_shutdown(sig)

    def stop_and_shutdown(self) -> None:
        # also reached without a signal: when the app crashed, or stopped by itself
        self._arm_watchdog(1)
        super().stop_and_shutdown()

    def _arm_watchdog(self, status: int) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.shutdown_timeout, self._hard_exit,
                                             args=(status,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _hard_exit(self, status: int) -> None:
        try:
            sys.stderr.write(
                f"driftstream worker: the clean shutdown did not finish within "
                f"{self.shutdown_timeout:g} s (app.shutdown_timeout_seconds), probably "
                f"because the broker cannot be reached; exiting now with status {status}. "
                "Uncommitted events will be processed again after the restart.\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # stderr is closed or gone (its reader died): exit all the same
        finally:
            os._exit(status)


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
