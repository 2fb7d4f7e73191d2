"""driftstream: streaming drift detection for ML systems in production.

Producers publish prediction and feature events to Kafka; driftstream keeps reference
profiles, windowed histograms, PSI and ADWIN per model, version and feature, and publishes
drift alerts (firing/resolved) and window reports to Kafka and metrics to Prometheus.

The public surface is listed in ``__all__``; ``stream.core`` is the pure core, and
``stream.kafka`` the Kafka and Faust shell around it.
"""

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
