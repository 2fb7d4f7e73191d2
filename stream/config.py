"""One validated, frozen settings object, from a TOML file with environment overrides.

Precedence, lowest first: built-in defaults, the TOML file, environment variables.
Every setting has an environment name ``DRIFTSTREAM_<SECTION>__<KEY>`` (upper case), e.g.
``DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092``. Per-model overrides live in the file
only, under ``[models."<model>"]`` (monitor keys) and
``[models."<model>".features."<feature>"]`` (``psi_warning``, ``psi_critical``).

The defaults work for the quick start: an embedded broker on ``127.0.0.1:9092``.

>>> s = load_settings(env={"DRIFTSTREAM_MONITOR__WINDOW_SIZE": "500"})
>>> s.monitor.window_size, s.kafka.bootstrap_servers
(500, '127.0.0.1:9092')
>>> try:
...     load_settings(env={"DRIFTSTREAM_MONITOR__PSI_WARNING": "high"})
... except ConfigError as exc:
...     print(exc)
monitor.psi_warning (from DRIFTSTREAM_MONITOR__PSI_WARNING): expected a number, got 'high'
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args, get_type_hints

from stream.core.backlog import BacklogPolicy
from stream.core.lag import LagPolicy
from stream.errors import ConfigError

__all__ = [
    "AppSettings",
    "IngestSettings",
    "KafkaSettings",
    "LagSettings",
    "MetricsSettings",
    "MonitorConfig",
    "Secret",
    "Settings",
    "TopicSettings",
    "load_settings",
]

ENV_PREFIX = "DRIFTSTREAM_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Secret:
    """A secret setting: its ``repr`` and ``str`` never show the value.

    >>> s = Secret("hunter2")
    >>> s, str(s), s.reveal()
    (Secret('***'), '***', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "***" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


#: Settings that hold secrets: environment or ``<name>_file`` only.
SECRET_SETTINGS = frozenset({"kafka.sasl_password", "kafka.ssl_key_password"})


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach Kafka. The session settings default to values that suit a real
    cluster; ``driftstream demo`` and the tests lower them for the embedded broker."""

    bootstrap_servers: str = "127.0.0.1:9092"
    #: Consumer-group session timeout. Tansu holds every join for half of it.
    session_timeout_seconds: float = 10.0
    heartbeat_interval_seconds: float = 1.0
    rebalance_timeout_seconds: float = 10.0
    #: Work around the embedded Tansu broker's quirks (see ``stream/kafka/tansu.py``).
    #: Leave off against Apache Kafka.
    embedded_broker_compat: bool = False
    #: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``: passed to Faust and to
    #: every aiokafka client driftstream opens (``stream/kafka/security.py``).
    security_protocol: SecurityProtocol = "PLAINTEXT"
    #: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str = ""
    #: Secrets come from the environment (``DRIFTSTREAM_KAFKA__SASL_PASSWORD``) or from a
    #: file (``sasl_password_file``, e.g. a mounted secret), never from the config file or
    #: the command line, and are never printed.
    sasl_password: Secret = field(default_factory=lambda: Secret(""))
    sasl_password_file: str = ""
    #: TLS: CA bundle to verify the brokers, and a client certificate and key for mTLS.
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password: Secret = field(default_factory=lambda: Secret(""))
    ssl_key_password_file: str = ""
    ssl_check_hostname: bool = True

    def secret(self, name: str) -> str:
        """The value of secret ``name`` (``sasl_password`` or ``ssl_key_password``): from
        its ``<name>_file`` when set (trailing newline removed), else from the setting."""
        path = getattr(self, f"{name}_file")
        if path:
            try:
                return Path(path).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"kafka.{name}_file={path!r} cannot be read: "
                                  f"{exc.strerror}") from None
        value: Secret = getattr(self, name)
        return value.reveal()

    def validate(self) -> None:
        if self.security_protocol.startswith("SASL"):
            if not self.sasl_username:
                raise ConfigError(f"kafka.security_protocol={self.security_protocol} needs "
                                  "kafka.sasl_username (and a password: DRIFTSTREAM_KAFKA__"
                                  "SASL_PASSWORD or kafka.sasl_password_file)")
            if not self.secret("sasl_password"):
                raise ConfigError(f"kafka.security_protocol={self.security_protocol} needs a "
                                  "password: set DRIFTSTREAM_KAFKA__SASL_PASSWORD or "
                                  "kafka.sasl_password_file")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"kafka.{name}={path!r} is not a file")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError("kafka.ssl_certfile and kafka.ssl_keyfile go together (mTLS)")
        self.secret("sasl_password")  # the secret files exist and are readable
        self.secret("ssl_key_password")
        _positive("kafka.session_timeout_seconds", self.session_timeout_seconds)
        _positive("kafka.heartbeat_interval_seconds", self.heartbeat_interval_seconds)
        _positive("kafka.rebalance_timeout_seconds", self.rebalance_timeout_seconds)
        if self.heartbeat_interval_seconds >= self.session_timeout_seconds:
            raise ConfigError(
                "kafka.heartbeat_interval_seconds must be below kafka.session_timeout_seconds "
                f"(got {self.heartbeat_interval_seconds} >= {self.session_timeout_seconds}); "
                "a third of the session timeout is usual"
            )
        if not self.bootstrap_servers.strip():
            raise ConfigError("kafka.bootstrap_servers is empty; set it to host:port[,host:port]")


@dataclass(frozen=True)
class TopicSettings:
    """Topic names. Inputs are written by producers; the rest by driftstream."""

    predictions: str = "predictions"
    features: str = "features"
    labels: str = "labels"
    alerts: str = "alerts"
    reports: str = "driftstream-reports"
    references: str = "driftstream-references"
    dead_letter: str = "driftstream-dead-letter"
    #: Internal: validated events regrouped by model, so one worker owns each model.
    by_model: str = "driftstream-events-by-model"

    def validate(self) -> None:
        names = dataclasses.asdict(self)
        for key, value in names.items():
            if not value or any(c in value for c in " /\\,:"):
                raise ConfigError(f"topics.{key}={value!r} is not a valid Kafka topic name")
        if len(set(names.values())) != len(names):
            raise ConfigError(f"topic names must be distinct, got {names}")


@dataclass(frozen=True)
class AppSettings:
    """The Faust application."""

    #: Faust app id: prefix of consumer groups and changelog topics. Change it to start
    #: from empty state.
    id: str = "driftstream"
    #: Partitions of driftstream's own topics (by-model events and table changelogs).
    partitions: int = 4
    #: Where Faust keeps local table files.
    data_dir: str = "./driftstream-data"
    #: How often consumer offsets are committed (at-least-once: a crash replays at most
    #: this much).
    commit_interval_seconds: float = 2.0
    #: The monitors take envelopes in batches of at most this long; each changed model
    #: state is written to its changelog-backed table once per batch, always before the
    #: offsets of the events it reflects are committed. It bounds how long a closed
    #: window waits before its report and alerts are published.
    state_flush_seconds: float = 0.25
    #: Web server (Prometheus ``/metrics``, Faust's own pages). Loopback by default.
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    log_level: str = "info"
    #: After SIGTERM/SIGINT or a crash, exit anyway if the clean shutdown (final commit,
    #: producer flush) has not finished after this long, e.g. the broker is unreachable.
    shutdown_timeout_seconds: float = 30.0

    def validate(self) -> None:
        if not self.id or not self.id.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"app.id={self.id!r}: use letters, digits, '-' and '_'")
        _positive("app.partitions", self.partitions)
        _positive("app.commit_interval_seconds", self.commit_interval_seconds)
        _positive("app.state_flush_seconds", self.state_flush_seconds)
        _positive("app.shutdown_timeout_seconds", self.shutdown_timeout_seconds)
        if not 0 < self.web_port < 65536:
            raise ConfigError(f"app.web_port={self.web_port} is not a TCP port (1-65535)")


@dataclass(frozen=True)
class IngestSettings:
    """The bulk ingest stage that decodes and validates producers' events."""

    #: Most records taken from Kafka per fetch (one batch through the core).
    max_records: int = 5000
    #: Messages bigger than this are dead-lettered as ``oversize``.
    max_message_bytes: int = 1 << 20
    #: Dead-letter records keep at most this many bytes of the original message.
    dead_letter_max_bytes: int = 64 << 10
    #: Run the ingest stage in this many child processes of each worker (each one more
    #: member of the ingest group), so that decoding uses more cores than the worker's
    #: one; ``0`` runs it in the worker's process. About half of a busy worker's time is
    #: ingest: 1 or 2 per worker is the useful range (``stream/kafka/ingest_pool.py``).
    processes: int = 0

    def validate(self) -> None:
        _positive("ingest.max_records", self.max_records)
        if not 0 <= self.processes <= 64:
            raise ConfigError(
                f"ingest.processes must be between 0 (ingest in the worker's process) and "
                f"64, got {self.processes}")
        _positive("ingest.max_message_bytes", self.max_message_bytes)
        _positive("ingest.dead_letter_max_bytes", self.dead_letter_max_bytes)


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus exposition. Served by the worker's web server at ``/metrics``."""

    #: Keep per-feature series (PSI) for at most this many (model, feature) pairs;
    #: the rest are counted in ``driftstream_cap_overflow_total{cap="metric_series"}``.
    max_feature_series: int = 5000

    def validate(self) -> None:
        _positive("metrics.max_feature_series", self.max_feature_series)


@dataclass(frozen=True)
class LagSettings:
    """The pipeline-backlog SLI: consumer lag of driftstream's groups, sampled by the
    worker (for the partitions it owns) and by ``driftstream lag`` (for all of them).
    See ``stream/core/lag.py`` for the signals and the status precedence."""

    #: Seconds between two samples of the offsets.
    interval_seconds: float = 5.0
    #: Samples kept per partition (seconds); must cover ``stop_after_seconds``.
    window_seconds: float = 120.0
    #: A backlog with no committed progress for this long is ``STALLED``.
    stall_after_seconds: float = 30.0
    #: ... and ``STOPPED`` after this long when the consumer's liveness is unknown. A
    #: group with no member is ``STOPPED`` at once.
    stop_after_seconds: float = 60.0
    #: ``FALLING_BEHIND`` needs rates measured over at least this long.
    min_span_seconds: float = 10.0
    #: A lag up to this many records counts as caught up (``IDLE``).
    allowed_lag: int = 0
    #: Backlog-age alert thresholds (seconds).
    age_warning_seconds: float = 60.0
    age_critical_seconds: float = 300.0
    #: Time-to-drain alert: the freshness objective (warning) and the critical level.
    drain_warning_seconds: float = 300.0
    drain_critical_seconds: float = 1800.0
    #: Backlogs younger than this are not evaluated for time to drain (commit sawtooth).
    drain_min_age_seconds: float = 10.0
    #: Samples in a row without STALLED/STOPPED before the status alert resolves.
    resolve_after_samples: int = 2
    #: Sample lag inside the worker too (metrics only; alerts come from ``driftstream lag``).
    in_worker: bool = True
    #: Where ``driftstream lag --watch`` serves ``/metrics``.
    monitor_host: str = "127.0.0.1"
    monitor_port: int = 6067

    def policy(self) -> LagPolicy:
        """The status rules of :mod:`stream.core.lag` these settings describe."""
        return LagPolicy(window_seconds=self.window_seconds,
                         stall_after_seconds=self.stall_after_seconds,
                         stop_after_seconds=self.stop_after_seconds,
                         min_span_seconds=self.min_span_seconds, allowed_lag=self.allowed_lag)

    def backlog_policy(self) -> BacklogPolicy:
        """The backlog-alert thresholds of :mod:`stream.core.backlog`."""
        return BacklogPolicy(age_warning_seconds=self.age_warning_seconds,
                             age_critical_seconds=self.age_critical_seconds,
                             drain_warning_seconds=self.drain_warning_seconds,
                             drain_critical_seconds=self.drain_critical_seconds,
                             drain_min_age_seconds=self.drain_min_age_seconds,
                             quiet=self.resolve_after_samples)

    def validate(self) -> None:
        _positive("lag.interval_seconds", self.interval_seconds)
        _positive("lag.resolve_after_samples", self.resolve_after_samples)
        try:  # the policies check their own consistency; one place for each rule
            self.policy()
            self.backlog_policy()
        except ValueError as exc:
            raise ConfigError(f"[lag] settings: {exc}") from None
        if not 0 < self.monitor_port < 65536:
            raise ConfigError(f"lag.monitor_port={self.monitor_port} is not a TCP port (1-65535)")


WindowKind = Literal["count", "time"]
QualityTask = Literal["auto", "binary", "multiclass", "regression"]
LabelJoinStart = Literal["first_label", "always"]
#: Quality metrics that can carry an SLO: True when higher is better.
QUALITY_METRICS: Mapping[str, bool] = MappingProxyType({
    "accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True,
    "macro_f1": True, "r2": True, "log_loss": False, "brier": False, "mae": False,
    "rmse": False,
})


@dataclass(frozen=True)
class MonitorConfig:
    """How each model is monitored. Overridable per model in ``[models."<name>"]``."""

    #: ``count``: windows of ``window_size`` events evaluated every ``window_step``
    #: events (0, the default, means ``window_size``: tumbling windows). ``time``:
    #: event-time tumbling windows of ``window_seconds``.
    window_kind: WindowKind = "count"
    window_size: int = 1000
    window_step: int = 0
    window_seconds: float = 60.0
    #: Event-time windows close when the watermark (max event time seen minus this)
    #: passes their end; events for a closed window are counted as late.
    allowed_lateness_seconds: float = 5.0
    #: Events of a model version used to build its reference when none was published.
    warmup_events: int = 1000
    #: Quantile bins for numeric features (plus open outer bins and a missing bucket).
    numeric_bins: int = 10
    #: Top-K categories kept from the reference; the rest pool into "other".
    max_categories: int = 20
    psi_warning: float = 0.1
    psi_critical: float = 0.25
    #: Pseudo-count added to every bin before PSI (see ``stream/core/psi.py``).
    psi_smoothing: float = 0.5
    #: An alert resolves (or de-escalates) only once the value falls below
    #: ``threshold * (1 - hysteresis)``.
    hysteresis: float = 0.2
    #: Windows with fewer binned values than this do not change alert state.
    min_window_values: int = 100
    adwin_delta: float = 0.002
    #: ADWIN sees the mean of each run of this many values of a series (bounded cost).
    adwin_chunk: int = 32
    #: Chunk means kept to rebuild ADWIN after a restart (exact up to this many since
    #: its last detection).
    adwin_history: int = 256
    #: An ADWIN alert resolves after this many evaluations without a detection.
    adwin_quiet_evaluations: int = 3
    # -- data integrity (per feature, per window, against the reference) ---------------
    #: Numeric values outside [min - m·range, max + m·range] of the reference are out of
    #: range, for m = this margin.
    range_margin: float = 0.1
    #: Missing-rate alert: the increase of the missing rate over the reference's.
    missing_warning: float = 0.05
    missing_critical: float = 0.2
    #: Share of values of the wrong type (e.g. a number arriving as a string).
    type_mismatch_warning: float = 0.01
    type_mismatch_critical: float = 0.05
    #: Share of numeric values out of the reference's range.
    out_of_range_warning: float = 0.05
    out_of_range_critical: float = 0.2
    #: Share of categorical values never seen in the reference.
    unseen_warning: float = 0.05
    unseen_critical: float = 0.2
    #: A schema alert (unknown features, reference features that stopped arriving)
    #: resolves after this many windows without either.
    schema_quiet_evaluations: int = 3
    # -- feature attributions (prediction events' ``attributions``, per window) ---------
    #: NDCG of the window's feature-importance ranking against the reference's (see
    #: ``stream/core/attribution.py``): an alert fires below the warning and escalates
    #: below the critical value; it resolves once above 1 - (1 - warning)(1 - hysteresis).
    attribution_ndcg_warning: float = 0.9
    attribution_ndcg_critical: float = 0.8
    #: Absolute change of one feature's share of the total attribution.
    attribution_share_warning: float = 0.1
    attribution_share_critical: float = 0.2
    # -- volume (per model: event-time buckets against a trailing baseline) -------------
    volume_enabled: bool = True
    volume_bucket_seconds: float = 60.0
    volume_baseline_buckets: int = 30
    volume_min_baseline_buckets: int = 5
    #: Too big: more than factor × baseline events in a bucket; too small: fewer than
    #: baseline / factor.
    volume_spike_factor: float = 3.0
    volume_drop_factor: float = 3.0
    #: Dead-man timer: an active model silent for this long (wall clock) alerts.
    volume_deadman_seconds: float = 300.0
    # -- shadow deployments (stream/core/shadow.py) -----------------------------------
    #: Predictions whose ``deployment`` is this are a model's shadow side; the others are
    #: its production side. They are paired on ``event_id``.
    shadow_deployment: str = "shadow"
    #: Pairs per shadow comparison window.
    shadow_window_size: int = 500
    #: How long (event time) a prediction waits for its partner, and how many wait at
    #: most (the oldest are counted unpaired).
    shadow_pair_seconds: float = 300.0
    shadow_max_pending: int = 2000
    #: Classification: share of pairs whose predicted class differs.
    shadow_disagreement_warning: float = 0.05
    shadow_disagreement_critical: float = 0.15
    #: Regression: mean |shadow - production| over mean |production|.
    shadow_relative_diff_warning: float = 0.1
    shadow_relative_diff_critical: float = 0.25
    # -- slices (events' ``slices``: drift per slice value, see stream/core/slices.py) ---
    #: Slice names monitored on their own, e.g. ``["region", "device"]`` (environment:
    #: comma-separated). Each gets, per model version, the drift, PSI and integrity state
    #: of its ``max_slice_values`` busiest values; the rest are pooled and counted.
    slice_keys: tuple[str, ...] = ()
    max_slice_values: int = 10
    #: Events a slice value needs before it gets its own state (and warms up its own
    #: reference from its next ``warmup_events`` events).
    slice_min_events: int = 200
    #: Caps that bound memory whatever the input; overflow is counted, never dropped.
    max_models: int = 1000
    max_features: int = 200
    #: Per-feature threshold overrides: feature -> (warning, critical).
    feature_thresholds: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    # -- delayed labels and quality ---------------------------------------------------
    #: Keep predictions for the label join and compute quality.
    quality_enabled: bool = True
    #: When a model's predictions start waiting for labels: ``first_label`` (once the
    #: model's first label arrived, or its reference carries a quality), so a model that
    #: never gets labels costs nothing; ``always`` (from its first prediction).
    label_join_start: LabelJoinStart = "first_label"
    #: ``auto`` infers it from the first joined pairs: a numeric prediction ``value`` is
    #: regression; boolean or 0/1 labels are binary; anything else is multiclass.
    quality_task: QualityTask = "auto"
    #: ``count``: windows of ``quality_window_size`` joined pairs. ``time``: label-time
    #: tumbling windows of ``quality_window_seconds``, closed by the join's watermark.
    quality_window_kind: WindowKind = "count"
    quality_window_size: int = 500
    quality_window_seconds: float = 300.0
    #: Binary: a prediction without a label is positive when its score is >= this.
    quality_threshold: float = 0.5
    #: Windows with fewer joined pairs do not change quality alert state.
    quality_min_pairs: int = 50
    #: Alert when a metric is worse than the reference quality by more than this share
    #: (0.1: 10 % lower accuracy, 10 % higher MAE). The reference quality is the mean of
    #: the first ``quality_baseline_windows`` windows of a version. 0 disables.
    quality_margin: float = 0.1
    quality_baseline_windows: int = 3
    #: A quality alert resolves once the metric is back past its bound by this share.
    quality_hysteresis: float = 0.02
    #: ADWIN on the per-prediction error (0/1 loss, or absolute error).
    quality_adwin: bool = True
    #: How long (event time) a prediction waits for its label, and a label for its
    #: prediction; the bounds of the two waiting stores (the oldest are evicted, counted).
    label_ttl_seconds: float = 7 * 86400.0
    label_grace_seconds: float = 3600.0
    max_pending_predictions: int = 100_000
    max_early_labels: int = 10_000
    #: Absolute SLOs per quality metric: a floor for accuracy, precision, recall, f1,
    #: roc_auc, macro_f1, r2; a ceiling for log_loss, brier, mae, rmse (TOML table
    #: ``quality_slo``, file only).
    quality_slo: Mapping[str, float] = field(default_factory=dict)

    def validate(self, where: str = "monitor") -> None:
        if self.window_kind not in get_args(WindowKind):
            raise ConfigError(f"{where}.window_kind={self.window_kind!r}: use 'count' or 'time'")
        for name in ("window_size", "warmup_events", "numeric_bins",
                     "max_categories", "adwin_chunk", "adwin_history",
                     "adwin_quiet_evaluations", "max_models", "max_features",
                     "max_slice_values", "slice_min_events"):
            _positive(f"{where}.{name}", getattr(self, name))
        _positive(f"{where}.window_seconds", self.window_seconds)
        if self.window_step < 0 or self.window_size % self.step:
            raise ConfigError(
                f"{where}.window_size={self.window_size} must be a multiple of "
                f"{where}.window_step={self.window_step} (0 means tumbling windows)"
            )
        if not self.allowed_lateness_seconds >= 0:
            raise ConfigError(f"{where}.allowed_lateness_seconds must be >= 0")
        if self.numeric_bins < 2:
            raise ConfigError(f"{where}.numeric_bins must be at least 2")
        if not 0 < self.adwin_delta < 1:
            raise ConfigError(f"{where}.adwin_delta must be in (0, 1), got {self.adwin_delta}")
        if not 0 <= self.hysteresis < 1:
            raise ConfigError(f"{where}.hysteresis must be in [0, 1), got {self.hysteresis}")
        if not self.psi_smoothing > 0:
            raise ConfigError(f"{where}.psi_smoothing must be > 0 (0.5 is the default)")
        _thresholds(where, self.psi_warning, self.psi_critical)
        for feature, (warn, crit) in self.feature_thresholds.items():
            _thresholds(f"{where}.features.{feature}", warn, crit)
        for name in ("missing", "type_mismatch", "out_of_range", "unseen"):
            warn, crit = getattr(self, f"{name}_warning"), getattr(self, f"{name}_critical")
            if not 0 < warn <= crit <= 1:
                raise ConfigError(f"{where}.{name}_warning and {name}_critical must satisfy "
                                  f"0 < warning <= critical <= 1, got {warn} and {crit}")
        ndcg_warn, ndcg_crit = self.attribution_ndcg_warning, self.attribution_ndcg_critical
        if not 0 < ndcg_crit <= ndcg_warn <= 1:
            raise ConfigError(f"{where}.attribution_ndcg_warning and attribution_ndcg_critical "
                              "must satisfy 0 < critical <= warning <= 1 (NDCG alerts fire "
                              f"below them), got {ndcg_warn} and {ndcg_crit}")
        share_warn, share_crit = self.attribution_share_warning, self.attribution_share_critical
        if not 0 < share_warn <= share_crit <= 1:
            raise ConfigError(f"{where}.attribution_share_warning and attribution_share_critical "
                              "must satisfy 0 < warning <= critical <= 1, got "
                              f"{share_warn} and {share_crit}")
        for name in ("shadow_window_size", "shadow_pair_seconds", "shadow_max_pending"):
            _positive(f"{where}.{name}", getattr(self, name))
        if not self.shadow_deployment:
            raise ConfigError(f"{where}.shadow_deployment must not be empty")
        for name in ("shadow_disagreement", "shadow_relative_diff"):
            warn, crit = getattr(self, f"{name}_warning"), getattr(self, f"{name}_critical")
            if not 0 < warn <= crit:
                raise ConfigError(f"{where}.{name}_warning and {name}_critical must satisfy "
                                  f"0 < warning <= critical, got {warn} and {crit}")
        for key in self.slice_keys:
            if not key or len(key) > 200:
                raise ConfigError(f"{where}.slice_keys: {key!r} is not a slice name (1 to 200 "
                                  "characters, as events' slices carry them)")
        if len(set(self.slice_keys)) != len(self.slice_keys):
            raise ConfigError(f"{where}.slice_keys lists a slice twice: {list(self.slice_keys)}")
        if self.range_margin < 0:
            raise ConfigError(f"{where}.range_margin must be >= 0")
        for name in ("schema_quiet_evaluations", "volume_bucket_seconds", "volume_baseline_buckets",
                     "volume_min_baseline_buckets", "volume_deadman_seconds"):
            _positive(f"{where}.{name}", getattr(self, name))
        if self.volume_spike_factor <= 1 or self.volume_drop_factor <= 1:
            raise ConfigError(f"{where}.volume_spike_factor and volume_drop_factor must be > 1")
        if self.label_join_start not in get_args(LabelJoinStart):
            raise ConfigError(f"{where}.label_join_start={self.label_join_start!r}: use "
                              "'first_label' or 'always'")
        if self.quality_task not in get_args(QualityTask):
            raise ConfigError(f"{where}.quality_task={self.quality_task!r}: use one of "
                              f"{list(get_args(QualityTask))}")
        if self.quality_window_kind not in get_args(WindowKind):
            raise ConfigError(f"{where}.quality_window_kind={self.quality_window_kind!r}: "
                              "use 'count' or 'time'")
        for name in ("quality_window_size", "quality_window_seconds", "quality_min_pairs",
                     "quality_baseline_windows", "label_ttl_seconds", "max_pending_predictions",
                     "max_early_labels"):
            _positive(f"{where}.{name}", getattr(self, name))
        if not 0 <= self.quality_threshold <= 1:
            raise ConfigError(f"{where}.quality_threshold must be in [0, 1]")
        if not 0 <= self.quality_margin < 1 or not 0 <= self.quality_hysteresis < 1:
            raise ConfigError(f"{where}.quality_margin and quality_hysteresis must be in [0, 1)")
        if self.label_grace_seconds < 0:
            raise ConfigError(f"{where}.label_grace_seconds must be >= 0")
        for metric, bound in self.quality_slo.items():
            if metric not in QUALITY_METRICS:
                raise ConfigError(f"{where}.quality_slo.{metric}: unknown metric; known: "
                                  f"{sorted(QUALITY_METRICS)}")
            if not isinstance(bound, float):
                raise ConfigError(f"{where}.quality_slo.{metric} must be a number")

    @property
    def step(self) -> int:
        """Events between evaluations of a count window."""
        return self.window_step or self.window_size

    def thresholds(self, feature: str) -> tuple[float, float]:
        """(warning, critical) PSI thresholds for a feature."""
        return self.feature_thresholds.get(feature, (self.psi_warning, self.psi_critical))


@dataclass(frozen=True)
class Settings:
    """Everything driftstream reads. Build it with :func:`load_settings`."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    app: AppSettings = field(default_factory=AppSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    lag: LagSettings = field(default_factory=LagSettings)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    #: Per-model monitor settings, already merged over ``monitor``.
    models: Mapping[str, MonitorConfig] = field(default_factory=dict)

    def monitor_for(self, model: str) -> MonitorConfig:
        """The monitor settings that apply to ``model``."""
        return self.models.get(model, self.monitor)

    def with_overrides(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some keys replaced, validated (used by ``demo`` and tests).

        >>> Settings().with_overrides(app={"id": "t1"}).app.id
        't1'
        """
        changes = {}
        for section, values in sections.items():
            if section not in _SECTIONS:
                raise ConfigError(f"unknown section {section!r}; known: {sorted(_SECTIONS)}")
            current = getattr(self, section)
            known = {f.name for f in fields(current)}
            if set(values) - known:
                raise ConfigError(f"unknown setting(s) {sorted(set(values) - known)} in "
                                  f"[{section}]; known: {sorted(known)}")
            changes[section] = replace(current, **dict(values))
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        self.kafka.validate()
        self.topics.validate()
        self.app.validate()
        self.ingest.validate()
        self.metrics.validate()
        self.lag.validate()
        self.monitor.validate()
        for name, cfg in self.models.items():
            cfg.validate(f'models."{name}"')


_SECTIONS: dict[str, type[Any]] = {
    "kafka": KafkaSettings,
    "topics": TopicSettings,
    "app": AppSettings,
    "ingest": IngestSettings,
    "metrics": MetricsSettings,
    "lag": LagSettings,
    "monitor": MonitorConfig,
}


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load settings from an optional TOML file, then apply environment overrides.

    ``env`` defaults to ``os.environ``. ``DRIFTSTREAM_CONFIG`` names the file when
    ``path`` is not given.
    """
    env = os.environ if env is None else env
    if path is None and env.get(f"{ENV_PREFIX}CONFIG"):
        path = env[f"{ENV_PREFIX}CONFIG"]
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {str(p)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    unknown = set(data) - set(_SECTIONS) - {"models"}
    if unknown:
        raise ConfigError(
            f"unknown section(s) {sorted(unknown)} in {path}; known: {sorted(_SECTIONS)}, models"
        )
    for key in env:
        if key.startswith(ENV_PREFIX) and "__" in key and key != f"{ENV_PREFIX}CONFIG":
            section = key[len(ENV_PREFIX):].split("__", 1)[0].lower()
            if section not in _SECTIONS:
                raise ConfigError(
                    f"environment variable {key}: unknown section {section!r}; "
                    f"known: {sorted(_SECTIONS)}"
                )
    sections: dict[str, Any] = {}
    monitor_features: dict[str, Any] = {}
    monitor_slo: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = dict(data.get(name, {}))
        origin = {k: f"{path}" for k in values}
        prefix = f"{ENV_PREFIX}{name.upper()}__"
        for key, raw in env.items():
            if key.startswith(prefix):
                values[key[len(prefix):].lower()] = raw
                origin[key[len(prefix):].lower()] = key
        if name == "monitor":
            monitor_features = values.pop("features", {})
            monitor_slo = values.pop("quality_slo", {})
        sections[name] = _build(cls, values, name, origin)
    sections["monitor"] = _with_slo(
        _with_features(sections["monitor"], "monitor", monitor_features, path),
        "monitor", monitor_slo, path)
    models = MappingProxyType({
        model: _model_config(sections["monitor"], model, dict(raw), path)
        for model, raw in data.get("models", {}).items()
    })
    settings = Settings(**sections, models=models)
    settings.validate()
    return settings


def _model_config(base: MonitorConfig, model: str, raw: dict[str, Any], path: Any) -> MonitorConfig:
    where = f'models."{model}"'
    features = raw.pop("features", {})
    slo = raw.pop("quality_slo", {})
    cfg = _build(MonitorConfig, raw, where, {k: str(path) for k in raw}, base=base)
    return _with_slo(_with_features(cfg, where, features, path), where, slo, path)


def _with_slo(cfg: MonitorConfig, where: str, table: Any, path: Any) -> MonitorConfig:
    """``cfg`` with the quality SLOs of ``[<where>.quality_slo]`` merged over its own."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}.quality_slo must be a table of metric = bound (file only)")
    slo = dict(cfg.quality_slo)
    for metric, bound in table.items():
        slo[metric] = _coerce(float, bound, f"{where}.quality_slo.{metric}", str(path))
    merged: MonitorConfig = replace(cfg, quality_slo=MappingProxyType(slo))
    return merged


def _with_features(
    cfg: MonitorConfig, where: str, features: Mapping[str, Any], path: Any
) -> MonitorConfig:
    """``cfg`` with the per-feature thresholds of ``[<where>.features."<name>"]``."""
    thresholds = dict(cfg.feature_thresholds)
    for feature, values in features.items():
        extra = set(values) - {"psi_warning", "psi_critical"}
        if extra:
            raise ConfigError(
                f"{where}.features.{feature}: unknown keys {sorted(extra)}; "
                "only psi_warning and psi_critical can be set per feature"
            )
        key = f"{where}.features.{feature}"
        warn = _coerce(float, values.get("psi_warning", cfg.psi_warning),
                       f"{key}.psi_warning", str(path))
        crit = _coerce(float, values.get("psi_critical", cfg.psi_critical),
                       f"{key}.psi_critical", str(path))
        thresholds[feature] = (warn, crit)
    merged: MonitorConfig = replace(cfg, feature_thresholds=MappingProxyType(thresholds))
    return merged


def _build(
    cls: type[Any], values: dict[str, Any], where: str, origin: Mapping[str, str],
    base: Any = None,
) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.name not in ("feature_thresholds", "quality_slo")}
    unknown = set(values) - known
    if unknown:
        src = ", ".join(sorted(f"{k} (from {origin.get(k, '?')})" for k in unknown))
        raise ConfigError(f"unknown setting(s) in [{where}]: {src}; known: {sorted(known)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}", origin.get(k, "?")) for k, v in values.items()}
    return replace(base, **kwargs) if base is not None else cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str, origin: str) -> Any:
    want = hint if isinstance(hint, type) else None
    if want is Secret:
        if key in SECRET_SETTINGS and not origin.startswith(ENV_PREFIX):
            raise ConfigError(
                f"{key} must not be written in a config file ({origin}): set "
                f"{ENV_PREFIX}{key.replace('.', '__').upper()} or {key}_file")
        if not isinstance(value, str):
            raise ConfigError(f"{key} (from {origin}): expected a string")
        return Secret(value)
    try:
        if want is bool or hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if want is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if want is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if getattr(hint, "__origin__", None) is tuple:  # a list of strings
            if isinstance(value, str):  # from the environment: comma-separated
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError
            return tuple(value)
        if want is str or get_args(hint):
            if not isinstance(value, str):
                raise ValueError
            if get_args(hint) and value not in get_args(hint):
                raise LookupError(
                    f"{key} (from {origin}): {value!r} is not one of {list(get_args(hint))}"
                )
            return value
    except LookupError as exc:
        raise ConfigError(str(exc)) from None
    except (TypeError, ValueError):
        kind = {bool: "true or false", int: "an integer", float: "a number"}.get(
            want or str, "a string"
        )
        if getattr(hint, "__origin__", None) is tuple:
            kind = "a list of strings (environment: comma-separated)"
        raise ConfigError(f"{key} (from {origin}): expected {kind}, got {value!r}") from None
    return value


def _positive(key: str, value: float) -> None:
    if not value > 0:  # also refuses NaN
        raise ConfigError(f"{key} must be > 0, got {value}")


def _thresholds(where: str, warn: float, crit: float) -> None:
    if not 0 < warn <= crit:
        raise ConfigError(
            f"{where}: need 0 < psi_warning <= psi_critical, got {warn} and {crit}"
        )
