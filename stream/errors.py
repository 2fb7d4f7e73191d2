"""The exception hierarchy: one root, narrow subclasses whose messages say what to do.

Every error driftstream raises on purpose derives from :class:`DriftstreamError`, so an
operator's wrapper can catch the whole family in one place.

>>> issubclass(ConfigError, DriftstreamError)
True
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ConfigError",
    "DriftstreamError",
    "InvalidEvent",
    "ProfileError",
    "SnapshotError",
]


class DriftstreamError(Exception):
    """Root of every error raised by driftstream."""


class ConfigError(DriftstreamError, ValueError):
    """A setting is missing, malformed or out of range. The message names the setting,
    where it came from (file or environment variable) and the accepted values."""


class InvalidEvent(DriftstreamError, ValueError):
    """An event does not follow the topic's JSON Schema.

    ``reason`` is a short, stable machine-readable code (it becomes the ``reason`` label
    of ``driftstream_dead_letters_total``); the message explains it to a human.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SnapshotError(DriftstreamError, ValueError):
    """A state snapshot cannot be restored: unknown version, wrong kind or corrupt field.

    The state tables are rebuilt from the changelog; a snapshot written by a newer
    driftstream cannot be read by an older one, so upgrade the worker, or reset the
    application's state by changing ``app.id``."""


class ProfileError(DriftstreamError, ValueError):
    """A reference profile cannot be built or loaded (empty file, unknown column, ...)."""


class BrokerError(DriftstreamError, RuntimeError):
    """The Kafka broker (embedded or remote) cannot be started or reached."""
