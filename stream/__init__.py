"""driftstream: streaming drift detection for ML systems in production.

Producers publish prediction and feature events to Kafka; driftstream keeps reference
profiles, windowed histograms, PSI and ADWIN per model, version and feature, and publishes
drift alerts (firing/resolved) and window reports to Kafka and metrics to Prometheus.

The public surface is listed in ``__all__``; ``stream.core`` is the pure core, and
``stream.kafka`` the Kafka and Faust shell around it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.config import MonitorConfig, Settings, load_settings
    from stream.core.adwin import AdwinDetector
    from stream.core.alerts import AlertState, step_detection, step_threshold
    from stream.core.events import decode_message, normalize_event, normalize_label
    from stream.core.histogram import CategoricalBinning, NumericBinning
    from stream.core.monitor import ModelMonitor, MonitorOutput
    from stream.core.psi import psi, psi_noise_floor
    from stream.core.reference import ReferenceProfile
    from stream.core.registry import MonitorRegistry
    from stream.errors import (
        BrokerError,
        ConfigError,
        DriftstreamError,
        InvalidEvent,
        ProfileError,
        SnapshotError,
    )

#: Where each public name lives. They are imported on first use, so that a process
#: needing one module (an ingest child, ``driftstream lag``) does not load river & co.
_HOMES = {
    "MonitorConfig": "stream.config", "Settings": "stream.config",
    "load_settings": "stream.config",
    "AdwinDetector": "stream.core.adwin",
    "AlertState": "stream.core.alerts", "step_detection": "stream.core.alerts",
    "step_threshold": "stream.core.alerts",
    "decode_message": "stream.core.events", "normalize_event": "stream.core.events",
    "normalize_label": "stream.core.events",
    "CategoricalBinning": "stream.core.histogram", "NumericBinning": "stream.core.histogram",
    "ModelMonitor": "stream.core.monitor", "MonitorOutput": "stream.core.monitor",
    "psi": "stream.core.psi", "psi_noise_floor": "stream.core.psi",
    "ReferenceProfile": "stream.core.reference",
    "MonitorRegistry": "stream.core.registry",
    **dict.fromkeys(("BrokerError", "ConfigError", "DriftstreamError", "InvalidEvent",
                     "ProfileError", "SnapshotError"), "stream.errors"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__version__ = "0.1.0"

__all__ = [
    "AdwinDetector",
    "AlertState",
    "BrokerError",
    "CategoricalBinning",
    "ConfigError",
    "DriftstreamError",
    "InvalidEvent",
    "ModelMonitor",
    "MonitorConfig",
    "MonitorOutput",
    "MonitorRegistry",
    "NumericBinning",
    "ProfileError",
    "ReferenceProfile",
    "Settings",
    "SnapshotError",
    "__version__",
    "decode_message",
    "load_settings",
    "normalize_event",
    "normalize_label",
    "psi",
    "psi_noise_floor",
    "step_detection",
    "step_threshold",
]
