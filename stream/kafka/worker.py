"""Running the Faust worker (``driftstream worker``)."""

from __future__ import annotations

import logging
import sys

from stream.config import Settings
from stream.kafka.app import create_app
from stream.kafka.topics import ensure_topics

__all__ = ["run_worker"]


def run_worker(settings: Settings) -> int:
    """Create the topics that are missing, then run a worker until SIGINT/SIGTERM."""
    import asyncio

    import faust

    asyncio.run(ensure_topics(settings))
    drift = create_app(settings)
    logging.getLogger("stream").setLevel(settings.app.log_level.upper())
    worker = faust.Worker(
        drift.app,
        loglevel=settings.app.log_level,
        logfile=None,
        stdout=sys.stdout,
        stderr=sys.stderr,
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
    return 0
