"""Topic layout and the routing of models to partitions.

Producers' message keys are not trusted: the ingest stage routes every event by its
``model`` to a partition of the internal by-model topic, computed here. The same function
places a model's state in the changelog partition of its table, so the worker that owns a
model's events owns its state.

>>> partition_for("fraud", 4) == partition_for("fraud", 4)
True
>>> model_of(state_key("fraud", "v2"))
'fraud'
"""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import murmur2

from stream.core.reference import reference_key

__all__ = ["ensure_topics", "model_of", "partition_for", "state_key"]


def partition_for(model: str, partitions: int) -> int:
    """The by-model partition of ``model``: Kafka's default partitioner (murmur2) applied
    to the model name, so a producer that keys by model lands on the same partition."""
    return int(murmur2(model.encode("utf-8")) & 0x7FFFFFFF) % partitions


def state_key(model: str, model_version: str | None) -> str:
    """The key of a (model, model_version) in the state and reference tables."""
    return reference_key(model, model_version)


def model_of(key: str) -> str:
    """The model a state or reference key belongs to."""
    return key.split("\x1f", 1)[0]


async def ensure_topics(settings: Any) -> list[str]:
    """Create the topics driftstream uses that do not exist yet; returns those created.

    Input and by-model topics get ``app.partitions`` partitions; the references topic is
    compacted (latest profile per model version). Existing topics are left untouched.
    Faust creates its own changelog topics.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    t, n = settings.topics, settings.app.partitions
    wanted: dict[str, tuple[int, dict[str, str]]] = {
        t.predictions: (n, {}),
        t.features: (n, {}),
        t.labels: (n, {}),
        t.by_model: (n, {}),
        t.alerts: (1, {}),
        t.reports: (n, {}),
        t.dead_letter: (1, {}),
        t.references: (1, {"cleanup.policy": "compact"}),
    }
    from stream.kafka.security import client_kwargs

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers,
                                client_id=f"{settings.app.id}-admin",
                                **client_kwargs(settings.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=parts, replication_factor=1, topic_configs=cfg)
            for name, (parts, cfg) in wanted.items() if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
        return [m.name for m in missing]
    finally:
        await admin.close()
