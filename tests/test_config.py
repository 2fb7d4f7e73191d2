"""Settings (``stream/config.py``): defaults, TOML file, environment overrides and their
precedence, coercion of environment strings, the error messages (key, origin, what is
expected), validation, per-model and per-feature overrides, and immutability.

Every test passes ``env=`` explicitly, so the developer's own ``DRIFTSTREAM_*`` variables
never leak in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream.config import (
    AppSettings,
    IngestSettings,
    KafkaSettings,
    MetricsSettings,
    MonitorConfig,
    Settings,
    TopicSettings,
    load_settings,
)
from stream.errors import ConfigError, DriftstreamError

SECTIONS = ["app", "ingest", "kafka", "metrics", "monitor", "topics"]


WriteToml = Callable[..., Path]


@pytest.fixture
def toml(tmp_path: Path) -> WriteToml:
    """Write TOML text to a file and return its path."""

    def write(text: str, name: str = "driftstream.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


# -- defaults ------------------------------------------------------------------------


def test_defaults_load_and_validate() -> None:
    s = load_settings(env={})
    assert s == Settings()
    s.validate()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka.embedded_broker_compat is False
    assert s.monitor.window_kind == "count"
    assert (s.monitor.window_size, s.monitor.window_step, s.monitor.step) == (1000, 0, 1000)
    assert (s.monitor.psi_warning, s.monitor.psi_critical) == (0.1, 0.25)
    assert s.models == {}
    assert s.monitor_for("anything") is s.monitor


@pytest.mark.parametrize(
    "cls", [KafkaSettings, TopicSettings, AppSettings, IngestSettings, MetricsSettings, MonitorConfig]
)
def test_every_section_default_validates(cls: type[Any]) -> None:
    cls().validate()


def test_unrelated_environment_variables_are_ignored() -> None:
    s = load_settings(env={"PATH": "/bin", "DRIFTSTREAM_CONFIG": "", "KAFKA__X": "1"})
    assert s == Settings()


# -- file and environment ------------------------------------------------------------


def test_file_values_are_read(toml: WriteToml) -> None:
    path = toml(
        """
        [kafka]
        bootstrap_servers = "broker:9092"
        embedded_broker_compat = true
        session_timeout_seconds = 30
        [topics]
        alerts = "my-alerts"
        [app]
        id = "ds-prod"
        partitions = 8
        [monitor]
        window_kind = "time"
        window_seconds = 30.5
        psi_warning = 0.15
        """
    )
    s = load_settings(path, env={})
    assert s.kafka.bootstrap_servers == "broker:9092"
    assert s.kafka.embedded_broker_compat is True
    assert s.kafka.session_timeout_seconds == 30.0
    assert isinstance(s.kafka.session_timeout_seconds, float)
    assert s.topics.alerts == "my-alerts"
    assert (s.app.id, s.app.partitions) == ("ds-prod", 8)
    assert (s.monitor.window_kind, s.monitor.window_seconds) == ("time", 30.5)
    assert s.monitor.psi_warning == 0.15
    # untouched keys keep their defaults
    assert s.monitor.psi_critical == 0.25
    assert s.topics.predictions == "predictions"


def test_environment_beats_the_file(toml: WriteToml) -> None:
    path = toml('[kafka]\nbootstrap_servers = "file:9092"\n[monitor]\nwindow_size = 400\n')
    s = load_settings(path, env={"DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS": "env:9092"})
    assert s.kafka.bootstrap_servers == "env:9092"
    assert s.monitor.window_size == 400  # from the file, no env override
    s = load_settings(path, env={"DRIFTSTREAM_MONITOR__WINDOW_SIZE": "800"})
    assert s.monitor.window_size == 800
    assert s.kafka.bootstrap_servers == "file:9092"


def test_driftstream_config_names_the_file(toml: WriteToml) -> None:
    path = toml("[app]\nid = 'from-env-file'\n", name="other.toml")
    s = load_settings(env={"DRIFTSTREAM_CONFIG": str(path)})
    assert s.app.id == "from-env-file"


def test_explicit_path_beats_driftstream_config(toml: WriteToml) -> None:
    explicit = toml("[app]\nid = 'explicit'\n", name="a.toml")
    named = toml("[app]\nid = 'named'\n", name="b.toml")
    assert load_settings(explicit, env={"DRIFTSTREAM_CONFIG": str(named)}).app.id == "explicit"


def test_load_settings_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTSTREAM_APP__WEB_PORT", "7077")
    monkeypatch.delenv("DRIFTSTREAM_CONFIG", raising=False)
    assert load_settings().app.web_port == 7077


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "does not exist"),
        ("[monitor\n", "is not valid TOML"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    if text:
        path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value)


def test_missing_file_named_by_driftstream_config(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"DRIFTSTREAM_CONFIG": str(missing)})


# -- coercion from environment strings -----------------------------------------------


@pytest.mark.parametrize(
    ("var", "raw", "section", "key", "expected"),
    [
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "true", "kafka", "embedded_broker_compat", True),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "TRUE", "kafka", "embedded_broker_compat", True),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "1", "kafka", "embedded_broker_compat", True),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "yes", "kafka", "embedded_broker_compat", True),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "on", "kafka", "embedded_broker_compat", True),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "false", "kafka", "embedded_broker_compat", False),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "0", "kafka", "embedded_broker_compat", False),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "No", "kafka", "embedded_broker_compat", False),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "off", "kafka", "embedded_broker_compat", False),
        ("APP__PARTITIONS", "12", "app", "partitions", 12),
        ("INGEST__MAX_RECORDS", "250", "ingest", "max_records", 250),
        ("METRICS__MAX_FEATURE_SERIES", "7", "metrics", "max_feature_series", 7),
        ("MONITOR__PSI_WARNING", "0.05", "monitor", "psi_warning", 0.05),
        ("MONITOR__PSI_CRITICAL", "1", "monitor", "psi_critical", 1.0),
        ("KAFKA__SESSION_TIMEOUT_SECONDS", "45", "kafka", "session_timeout_seconds", 45.0),
        ("MONITOR__WINDOW_KIND", "time", "monitor", "window_kind", "time"),
        ("MONITOR__WINDOW_KIND", "count", "monitor", "window_kind", "count"),
        ("APP__LOG_LEVEL", "debug", "app", "log_level", "debug"),
        ("TOPICS__ALERTS", "drift-alerts", "topics", "alerts", "drift-alerts"),
    ],
)
def test_environment_strings_are_coerced(
    var: str, raw: str, section: str, key: str, expected: Any
) -> None:
    s = load_settings(env={f"DRIFTSTREAM_{var}": raw})
    value = getattr(getattr(s, section), key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("var", "raw", "key", "expected"),
    [
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "maybe", "kafka.embedded_broker_compat", "true or false"),
        ("KAFKA__EMBEDDED_BROKER_COMPAT", "", "kafka.embedded_broker_compat", "true or false"),
        ("APP__PARTITIONS", "four", "app.partitions", "an integer"),
        ("APP__PARTITIONS", "2.5", "app.partitions", "an integer"),
        ("MONITOR__WINDOW_SIZE", "", "monitor.window_size", "an integer"),
        ("MONITOR__PSI_WARNING", "high", "monitor.psi_warning", "a number"),
        ("KAFKA__SESSION_TIMEOUT_SECONDS", "10s", "kafka.session_timeout_seconds", "a number"),
    ],
)
def test_bad_environment_values_name_key_origin_and_expectation(
    var: str, raw: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={f"DRIFTSTREAM_{var}": raw})
    message = str(info.value)
    assert message == f"{key} (from DRIFTSTREAM_{var}): expected {expected}, got {raw!r}"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[app]\npartitions = true\n", "app.partitions", "an integer"),
        ("[app]\npartitions = '4'\n", None, None),  # a string of digits is accepted
        ("[kafka]\nembedded_broker_compat = 'sometimes'\n", "kafka.embedded_broker_compat",
         "true or false"),
        ("[kafka]\nbootstrap_servers = 9092\n", "kafka.bootstrap_servers", "a string"),
        ("[monitor]\npsi_warning = true\n", "monitor.psi_warning", "a number"),
        ("[monitor]\npsi_warning = [0.1]\n", "monitor.psi_warning", "a number"),
    ],
)
def test_file_values_are_type_checked_with_file_as_origin(
    toml: WriteToml, text: str, key: str | None, expected: str | None
) -> None:
    path = toml(text)
    if key is None:
        assert load_settings(path, env={}).app.partitions == 4
        return
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith(f"{key} (from {path}): expected {expected}, got ")


def test_literal_error_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"DRIFTSTREAM_MONITOR__WINDOW_KIND": "sliding"})
    message = str(info.value)
    assert message.startswith("monitor.window_kind (from DRIFTSTREAM_MONITOR__WINDOW_KIND)")
    assert "'count'" in message and "'time'" in message
    assert "expected a string" not in message


def test_literal_rejects_other_values() -> None:
    # Whatever the wording, an unknown window kind is refused and named.
    with pytest.raises(ConfigError, match=r"monitor\.window_kind \(from DRIFTSTREAM_MONITOR__WINDOW_KIND\)"):
        load_settings(env={"DRIFTSTREAM_MONITOR__WINDOW_KIND": "Count"})


def test_integer_settings_refuse_fractional_file_values(toml: WriteToml) -> None:
    path = toml("[monitor]\nwindow_size = 2.5\nnumeric_bins = 10\n")
    with pytest.raises(ConfigError, match=r"monitor\.window_size .*expected an integer"):
        load_settings(path, env={})


# -- unknown sections and keys -------------------------------------------------------


def test_unknown_section_lists_known_sections(toml: WriteToml) -> None:
    path = toml("[monitors]\nwindow_size = 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "monitors" in message and str(path) in message
    for name in [*SECTIONS, "models"]:
        assert name in message


@pytest.mark.parametrize(
    ("text", "env", "where", "origin"),
    [
        ("[monitor]\nwindowsize = 5\n", {}, "[monitor]", "FILE"),
        ("", {"DRIFTSTREAM_MONITOR__WINDOWSIZE": "5"}, "[monitor]",
         "DRIFTSTREAM_MONITOR__WINDOWSIZE"),
        ('[models."fraud"]\nwindowsize = 5\n', {}, '[models."fraud"]', "FILE"),
    ],
)
def test_unknown_key_lists_known_keys(
    toml: WriteToml, text: str, env: dict[str, str], where: str, origin: str
) -> None:
    path = toml(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env)
    message = str(info.value)
    origin = str(path) if origin == "FILE" else origin
    assert f"unknown setting(s) in {where}: windowsize (from {origin})" in message
    known = [f.name for f in dataclasses.fields(MonitorConfig)
             if f.name not in ("feature_thresholds", "quality_slo")]
    assert f"known: {sorted(known)}" in message


def test_unknown_kafka_key_lists_kafka_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"DRIFTSTREAM_KAFKA__BOOTSTRAP": "x:1"})
    message = str(info.value)
    assert "bootstrap (from DRIFTSTREAM_KAFKA__BOOTSTRAP)" in message
    assert "'bootstrap_servers'" in message and "'session_timeout_seconds'" in message


def test_unknown_environment_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match="DRIFTSTREAM_MONITORS__WINDOW_SIZE"):
        load_settings(env={"DRIFTSTREAM_MONITORS__WINDOW_SIZE": "5"})


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"KAFKA__HEARTBEAT_INTERVAL_SECONDS": "10"},
         r"kafka\.heartbeat_interval_seconds must be below kafka\.session_timeout_seconds"),
        ({"KAFKA__HEARTBEAT_INTERVAL_SECONDS": "11", "KAFKA__SESSION_TIMEOUT_SECONDS": "10"},
         r"heartbeat_interval_seconds must be below"),
        ({"KAFKA__SESSION_TIMEOUT_SECONDS": "0"}, r"kafka\.session_timeout_seconds must be > 0"),
        ({"KAFKA__BOOTSTRAP_SERVERS": "  "}, r"kafka\.bootstrap_servers is empty"),
        ({"MONITOR__WINDOW_STEP": "300"},
         r"monitor\.window_size=1000 must be a multiple of monitor\.window_step=300"),
        ({"MONITOR__WINDOW_STEP": "-5"}, r"monitor\.window_step=-5"),
        ({"MONITOR__WINDOW_STEP": "2000"}, r"multiple of monitor\.window_step=2000"),
        ({"MONITOR__PSI_WARNING": "0.3"}, r"need 0 < psi_warning <= psi_critical, got 0\.3 and 0\.25"),
        ({"MONITOR__PSI_WARNING": "0"}, r"need 0 < psi_warning"),
        ({"MONITOR__PSI_WARNING": "nan"}, r"need 0 < psi_warning"),
        ({"TOPICS__ALERTS": "bad topic"}, r"topics\.alerts='bad topic' is not a valid Kafka topic"),
        ({"TOPICS__REPORTS": "a/b"}, r"topics\.reports='a/b'"),
        ({"TOPICS__LABELS": "a:b"}, r"topics\.labels='a:b'"),
        ({"TOPICS__FEATURES": ""}, r"topics\.features=''"),
        ({"TOPICS__ALERTS": "predictions"}, r"topic names must be distinct"),
        ({"APP__PARTITIONS": "0"}, r"app\.partitions must be > 0, got 0"),
        ({"APP__ID": "drift stream"}, r"app\.id='drift stream'"),
        ({"APP__WEB_PORT": "70000"}, r"app\.web_port=70000 is not a TCP port"),
        ({"APP__COMMIT_INTERVAL_SECONDS": "-1"}, r"app\.commit_interval_seconds must be > 0"),
        ({"INGEST__MAX_RECORDS": "0"}, r"ingest\.max_records must be > 0"),
        ({"INGEST__MAX_MESSAGE_BYTES": "-1"}, r"ingest\.max_message_bytes must be > 0"),
        ({"METRICS__MAX_FEATURE_SERIES": "0"}, r"metrics\.max_feature_series must be > 0"),
        ({"MONITOR__WINDOW_SIZE": "0"}, r"monitor\.window_size must be > 0"),
        ({"MONITOR__WARMUP_EVENTS": "-1"}, r"monitor\.warmup_events must be > 0"),
        ({"MONITOR__MAX_MODELS": "0"}, r"monitor\.max_models must be > 0"),
        ({"MONITOR__WINDOW_SECONDS": "0"}, r"monitor\.window_seconds must be > 0"),
        ({"MONITOR__ALLOWED_LATENESS_SECONDS": "-1"}, r"monitor\.allowed_lateness_seconds must be >= 0"),
        ({"MONITOR__NUMERIC_BINS": "1"}, r"monitor\.numeric_bins must be at least 2"),
        ({"MONITOR__HYSTERESIS": "1"}, r"monitor\.hysteresis must be in \[0, 1\), got 1\.0"),
        ({"MONITOR__HYSTERESIS": "-0.1"}, r"monitor\.hysteresis must be in \[0, 1\)"),
        ({"MONITOR__HYSTERESIS": "nan"}, r"monitor\.hysteresis must be in \[0, 1\)"),
        ({"MONITOR__ADWIN_DELTA": "1"}, r"monitor\.adwin_delta must be in \(0, 1\)"),
        ({"MONITOR__PSI_SMOOTHING": "nan"}, r"monitor\.psi_smoothing must be > 0"),
        ({"MONITOR__PSI_SMOOTHING": "0"}, r"monitor\.psi_smoothing must be > 0"),
    ],
)
def test_validation_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_settings(env={f"DRIFTSTREAM_{k}": v for k, v in env.items()})


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("MONITOR__WINDOW_SECONDS", "monitor.window_seconds"),
        ("MONITOR__ALLOWED_LATENESS_SECONDS", "monitor.allowed_lateness_seconds"),
        ("KAFKA__SESSION_TIMEOUT_SECONDS", "kafka.session_timeout_seconds"),
        ("APP__STATE_FLUSH_SECONDS", "app.state_flush_seconds"),
    ],
)
def test_nan_durations_are_refused(var: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(env={f"DRIFTSTREAM_{var}": "nan"})


@pytest.mark.parametrize(
    ("size", "step", "expected_step"),
    [(1000, 0, 1000), (1000, 250, 250), (1000, 1000, 1000), (90, 30, 30), (7, 1, 1)],
)
def test_window_step(size: int, step: int, expected_step: int) -> None:
    s = load_settings(env={"DRIFTSTREAM_MONITOR__WINDOW_SIZE": str(size),
                           "DRIFTSTREAM_MONITOR__WINDOW_STEP": str(step)})
    assert s.monitor.step == expected_step
    assert s.monitor.window_step == step


def test_window_step_zero_means_tumbling() -> None:
    cfg = MonitorConfig(window_size=640, window_step=0)
    cfg.validate()
    assert cfg.step == cfg.window_size == 640


def test_validation_errors_are_driftstream_errors() -> None:
    with pytest.raises(DriftstreamError):
        load_settings(env={"DRIFTSTREAM_APP__PARTITIONS": "0"})


# -- per-model and per-feature overrides ---------------------------------------------


MODELS_TOML = """
[monitor]
window_size = 500
psi_warning = 0.12
psi_critical = 0.3

[models."fraud"]
window_step = 250
psi_critical = 0.4

[models."fraud".features."amount"]
psi_warning = 0.2
psi_critical = 0.5

[models."fraud".features."country"]
psi_warning = 0.15

[models."churn"]
window_kind = "time"
window_seconds = 120
"""


def test_model_overrides_merge_over_monitor(toml: WriteToml) -> None:
    s = load_settings(toml(MODELS_TOML), env={})
    fraud = s.monitor_for("fraud")
    assert fraud is s.models["fraud"]
    # inherited from [monitor]
    assert fraud.window_size == 500
    assert fraud.psi_warning == 0.12
    # overridden in [models."fraud"]
    assert (fraud.window_step, fraud.step) == (250, 250)
    assert fraud.psi_critical == 0.4
    churn = s.monitor_for("churn")
    assert (churn.window_kind, churn.window_seconds, churn.window_size) == ("time", 120.0, 500)
    assert churn.feature_thresholds == {}
    # models without a section use [monitor] itself
    assert s.monitor_for("eta") is s.monitor
    assert s.monitor.window_step == 0 and s.monitor.psi_critical == 0.3


@pytest.mark.parametrize(
    ("model", "feature", "expected"),
    [
        ("fraud", "amount", (0.2, 0.5)),  # both set per feature
        ("fraud", "country", (0.15, 0.4)),  # critical from [models."fraud"]
        ("fraud", "device", (0.12, 0.4)),  # no feature section: model thresholds
        ("churn", "amount", (0.12, 0.3)),  # per-feature thresholds do not leak across models
        ("eta", "amount", (0.12, 0.3)),  # no model section: [monitor]
    ],
)
def test_per_feature_thresholds(toml: WriteToml, model: str, feature: str,
                                expected: tuple[float, float]) -> None:
    s = load_settings(toml(MODELS_TOML), env={})
    assert s.monitor_for(model).thresholds(feature) == expected


def test_environment_overrides_reach_models_through_monitor(toml: WriteToml) -> None:
    s = load_settings(toml(MODELS_TOML), env={"DRIFTSTREAM_MONITOR__WINDOW_SIZE": "1000",
                                              "DRIFTSTREAM_MONITOR__PSI_WARNING": "0.11"})
    assert s.monitor.window_size == 1000
    assert s.models["fraud"].window_size == 1000
    assert s.models["fraud"].thresholds("device") == (0.11, 0.4)
    # a model's own file value beats the general environment value
    assert s.models["fraud"].psi_critical == 0.4


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[models."fraud".features."amount"]\npsi_warn = 0.2\n',
         r'models\."fraud"\.features\.amount: unknown keys \[\'psi_warn\'\]; only psi_warning '
         r"and psi_critical"),
        ('[models."fraud".features."amount"]\nwindow_size = 10\n', r"unknown keys \['window_size'\]"),
        ('[models."fraud".features."amount"]\npsi_warning = 0.5\n',
         r'models\."fraud"\.features\.amount: need 0 < psi_warning <= psi_critical, got 0\.5 and 0\.25'),
        ('[models."fraud".features."amount"]\npsi_critical = 0.05\n',
         r'features\.amount: need 0 < psi_warning <= psi_critical'),
        ('[models."fraud"]\nwindow_step = 300\n',
         r'models\."fraud"\.window_size=1000 must be a multiple of models\."fraud"\.window_step=300'),
        ('[models."fraud"]\nhysteresis = 1.5\n', r'models\."fraud"\.hysteresis must be in \[0, 1\)'),
        ('[models."fraud"]\npsi_warning = "x"\n',
         r'models\."fraud"\.psi_warning \(from .*\): expected a number'),
    ],
)
def test_model_section_errors(toml: WriteToml, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_settings(toml(text), env={})


@pytest.mark.parametrize("value", ['"high"', "true"])
def test_per_feature_threshold_types_are_checked(toml: WriteToml, value: str) -> None:
    path = toml(f'[models."fraud".features."amount"]\npsi_warning = {value}\npsi_critical = 2.0\n')
    with pytest.raises(ConfigError, match=r"features\.amount\.psi_warning .*expected a number"):
        load_settings(path, env={})


def test_monitor_level_feature_thresholds_are_not_silently_ignored(toml: WriteToml) -> None:
    path = toml('[monitor.features."amount"]\npsi_warning = 0.3\npsi_critical = 0.6\n')
    try:
        s = load_settings(path, env={})
    except ConfigError:
        return  # refusing it is fine too
    assert s.monitor.thresholds("amount") == (0.3, 0.6)


def test_monitor_config_thresholds_method() -> None:
    cfg = MonitorConfig(feature_thresholds={"amount": (0.2, 0.4)})
    cfg.validate()
    assert cfg.thresholds("amount") == (0.2, 0.4)
    assert cfg.thresholds("other") == (0.1, 0.25)
    with pytest.raises(ConfigError, match=r"m\.features\.amount"):
        MonitorConfig(feature_thresholds={"amount": (0.4, 0.2)}).validate("m")


# -- immutability and with_overrides -------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        (None, "monitor", MonitorConfig()),
        ("kafka", "bootstrap_servers", "x:1"),
        ("monitor", "window_size", 5),
        ("topics", "alerts", "a"),
        ("app", "id", "x"),
    ],
)
def test_settings_are_frozen(section: str | None, key: str, value: Any) -> None:
    s = load_settings(env={})
    target = s if section is None else getattr(s, section)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(target, key, value)


def test_nested_mappings_are_read_only(toml: WriteToml) -> None:
    s = load_settings(toml(MODELS_TOML), env={})
    with pytest.raises(TypeError):
        s.models["new"] = MonitorConfig()  # type: ignore[index]
    with pytest.raises(TypeError):
        s.models["fraud"].feature_thresholds["amount"] = (9.0, 9.0)  # type: ignore[index]


def test_with_overrides_returns_a_validated_copy() -> None:
    s = load_settings(env={})
    t = s.with_overrides(app={"id": "t1"}, kafka={"session_timeout_seconds": 3.0,
                                                  "heartbeat_interval_seconds": 0.5})
    assert (t.app.id, t.kafka.session_timeout_seconds) == ("t1", 3.0)
    assert (s.app.id, s.kafka.session_timeout_seconds) == ("driftstream", 10.0)
    assert t.app.partitions == s.app.partitions


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"kafka": {"heartbeat_interval_seconds": 20.0}}, r"heartbeat_interval_seconds must be below"),
        ({"monitor": {"window_step": 3}}, r"multiple of monitor\.window_step=3"),
        ({"topics": {"alerts": "predictions"}}, r"topic names must be distinct"),
        ({"monitor": {"psi_smoothing": math.nan}}, r"psi_smoothing must be > 0"),
        ({"app": {"web_port": 0}}, r"app\.web_port=0"),
    ],
)
def test_with_overrides_validates(overrides: dict[str, dict[str, Any]], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Settings().with_overrides(**overrides)


def test_with_overrides_unknown_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="idd"):
        Settings().with_overrides(app={"idd": "x"})


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ("2", 2), ("64", 64)])
def test_ingest_processes_from_the_environment(raw: str, expected: int) -> None:
    s = load_settings(env={"DRIFTSTREAM_INGEST__PROCESSES": raw})
    assert s.ingest.processes == expected


@pytest.mark.parametrize("raw", ["-1", "65"])
def test_ingest_processes_out_of_range(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"ingest.processes must be between 0 .* got"):
        load_settings(env={"DRIFTSTREAM_INGEST__PROCESSES": raw})
