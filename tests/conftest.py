"""Shared fixtures: the embedded broker (started once per session) and unique names.

Broker tests never skip: if the embedded broker cannot start, they fail with the reason
and the remedy (see :class:`stream.kafka.tansu.EmbeddedBroker`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stream.errors import BrokerError
from stream.kafka.tansu import EmbeddedBroker, apply_tansu_compat


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A started embedded Tansu broker on a free loopback port, with the compat shims on.

    The broker is memory-only and shared by the whole session: use :func:`unique` names
    for topics and group ids.
    """
    apply_tansu_compat()
    embedded = EmbeddedBroker(host="127.0.0.1")
    try:
        embedded.start()
    except BrokerError as exc:
        pytest.fail(f"the embedded Kafka broker could not start: {exc}", pytrace=False)
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def unique() -> str:
    """A short string unique to this test (10 hex digits), for topic names and group ids."""
    return uuid.uuid4().hex[:10]
