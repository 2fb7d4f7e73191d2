"""Kafka security settings: pass-through to aiokafka and Faust, and secrets that come only
from the environment or files and never show up in output."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faust
import pytest

from stream.config import KafkaSettings, Secret, load_settings
from stream.errors import ConfigError
from stream.kafka.security import client_kwargs, faust_credentials

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "S3cr3t-pa55word-do-not-log"
SASL_ENV = {
    "DRIFTSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "DRIFTSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
    "DRIFTSTREAM_KAFKA__SASL_USERNAME": "driftstream",
    "DRIFTSTREAM_KAFKA__SASL_PASSWORD": PASSWORD,
}


@pytest.mark.parametrize(("protocol", "mechanism"), [
    ("SASL_PLAINTEXT", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512")])
def test_sasl_reaches_aiokafka_and_faust(protocol: str, mechanism: str) -> None:
    k = KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism,  # type: ignore[arg-type]
                      sasl_username="u", sasl_password=Secret(PASSWORD))
    kw = client_kwargs(k)
    assert (kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_username"],
            kw["sasl_plain_password"]) == (protocol, mechanism, "u", PASSWORD)
    assert isinstance(kw.get("ssl_context"), ssl.SSLContext) == protocol.endswith("SSL")
    creds = faust_credentials(k)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("u", PASSWORD, mechanism)
    assert creds.protocol.value == protocol


def test_tls_context_and_hostname_check() -> None:
    k = KafkaSettings(security_protocol="SSL", ssl_check_hostname=False)
    kw = client_kwargs(k)
    assert kw["security_protocol"] == "SSL" and kw["ssl_context"].check_hostname is False
    assert isinstance(faust_credentials(k), faust.SSLCredentials)
    assert client_kwargs(KafkaSettings()) == {} and faust_credentials(KafkaSettings()) is None


def test_password_from_environment_or_file_but_never_the_config_file(tmp_path: Path) -> None:
    assert load_settings(env=SASL_ENV).kafka.secret("sasl_password") == PASSWORD
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    env = {k: v for k, v in SASL_ENV.items() if not k.endswith("SASL_PASSWORD")}
    env["DRIFTSTREAM_KAFKA__SASL_PASSWORD_FILE"] = str(secret_file)
    assert load_settings(env=env).kafka.secret("sasl_password") == PASSWORD
    toml = tmp_path / "driftstream.toml"
    toml.write_text(f'[kafka]\nsasl_password = "{PASSWORD}"\n')
    with pytest.raises(ConfigError, match="must not be written in a config file") as info:
        load_settings(toml, env={})
    assert PASSWORD not in str(info.value)
    assert "DRIFTSTREAM_KAFKA__SASL_PASSWORD" in str(info.value)


@pytest.mark.parametrize(("env", "message"), [
    ({"DRIFTSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}, "needs kafka.sasl_username"),
    ({"DRIFTSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "DRIFTSTREAM_KAFKA__SASL_USERNAME": "u"},
     "needs a password"),
    ({"DRIFTSTREAM_KAFKA__SASL_PASSWORD_FILE": "/nonexistent/secret"}, "cannot be read"),
    ({"DRIFTSTREAM_KAFKA__SSL_CAFILE": "/nonexistent/ca.pem"}, "is not a file"),
    ({"DRIFTSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL"}, "is not one of"),
])
def test_incomplete_security_settings_say_what_to_set(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_settings_repr_hides_secrets() -> None:
    settings = load_settings(env=SASL_ENV)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert "Secret('***')" in repr(settings.kafka)


@pytest.mark.broker
@pytest.mark.parametrize("command", [["worker"], ["lag"]])
def test_secrets_never_reach_the_logs(broker: Any, command: list[str], tmp_path: Path) -> None:
    """A worker (debug logging) and the lag monitor, configured for SASL against a broker
    that does not speak it: they fail, say so, and never print the password."""
    env = {**os.environ, **SASL_ENV, "PYTHONUNBUFFERED": "1",
           "DRIFTSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
           "DRIFTSTREAM_APP__LOG_LEVEL": "debug",
           "DRIFTSTREAM_APP__DATA_DIR": str(tmp_path / "data"),
           "DRIFTSTREAM_APP__ID": f"sec-{tmp_path.name[-8:]}",
           "DRIFTSTREAM_KAFKA__SESSION_TIMEOUT_SECONDS": "3",
           "DRIFTSTREAM_KAFKA__HEARTBEAT_INTERVAL_SECONDS": "0.5"}
    from stream.kafka.tansu import free_port

    env["DRIFTSTREAM_APP__WEB_PORT"] = str(free_port())
    proc = subprocess.Popen([sys.executable, "-m", "stream", *command], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=12)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    text = out.decode(errors="replace")
    assert len(text) > 100, text  # it did log (debug), so the check means something
    assert PASSWORD not in text
    time.sleep(0.1)
