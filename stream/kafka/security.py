"""Kafka security settings, passed through to Faust and to every aiokafka client.

``kafka.security_protocol`` selects plaintext, TLS, SASL or SASL over TLS; SASL uses
``PLAIN`` or ``SCRAM-SHA-256/512``. Secrets (the SASL password, the TLS key password) come
from the environment or from files, never from the config file or the command line (see
``stream/config.py``), and are revealed only here, when a client is built.

>>> from stream.config import KafkaSettings, Secret
>>> kw = client_kwargs(KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u",
...                                  sasl_password=Secret("p"), sasl_mechanism="SCRAM-SHA-512"))
>>> kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_username"]
('SASL_PLAINTEXT', 'SCRAM-SHA-512', 'u')
>>> client_kwargs(KafkaSettings())
{}
"""

from __future__ import annotations

import ssl
from typing import Any

from stream.config import KafkaSettings

__all__ = ["client_kwargs", "faust_credentials", "ssl_context"]


def ssl_context(k: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of ``SSL`` and ``SASL_SSL`` (system CAs unless ``ssl_cafile``)."""
    if not k.security_protocol.endswith("SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    ctx: ssl.SSLContext = create_ssl_context(
        cafile=k.ssl_cafile or None, certfile=k.ssl_certfile or None,
        keyfile=k.ssl_keyfile or None, password=k.secret("ssl_key_password") or None)
    ctx.check_hostname = k.ssl_check_hostname
    return ctx


def client_kwargs(k: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer``, ``AIOKafkaProducer`` and
    ``AIOKafkaAdminClient``; empty for plaintext."""
    if k.security_protocol == "PLAINTEXT":
        return {}
    kw: dict[str, Any] = {"security_protocol": k.security_protocol}
    ctx = ssl_context(k)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if k.security_protocol.startswith("SASL"):
        kw.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                  sasl_plain_password=k.secret("sasl_password"))
    return kw


def faust_credentials(k: KafkaSettings) -> Any:
    """Faust's ``broker_credentials`` for the settings (``None`` for plaintext)."""
    if k.security_protocol == "PLAINTEXT":
        return None
    import faust

    ctx = ssl_context(k)
    if k.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=k.sasl_username,
                                     password=k.secret("sasl_password"),
                                     mechanism=k.sasl_mechanism, ssl_context=ctx)
    return faust.SSLCredentials(ctx)
