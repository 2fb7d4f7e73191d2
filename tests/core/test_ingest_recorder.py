"""What an ingest child records reaches the worker's metrics unchanged (through JSON)."""

from __future__ import annotations

import orjson

from stream.kafka.ingest_pool import IngestRecorder
from stream.metrics import Metrics


def test_counters_and_observations_cross_as_json() -> None:
    rec = IngestRecorder()
    rec.ingested.labels(topic="p").inc(300)
    rec.ingested.labels(topic="p").inc(200)
    rec.ingested.labels(topic="l").inc(7)
    rec.dead_letters.labels(topic="p", reason="invalid_json").inc()
    rec.dead_letters.labels(topic="p", reason="invalid_json").inc()
    for v in (0.004, 0.03, 0.2):
        rec.batch_seconds.labels(stage="ingest").observe(v)
    m = Metrics()
    IngestRecorder.apply(m, orjson.loads(orjson.dumps(rec.drain())))
    get = m.registry.get_sample_value
    assert get("driftstream_ingested_events_total", {"topic": "p"}) == 500
    assert get("driftstream_ingested_events_total", {"topic": "l"}) == 7
    assert get("driftstream_dead_letters_total", {"topic": "p", "reason": "invalid_json"}) == 2
    assert get("driftstream_batch_processing_seconds_count", {"stage": "ingest"}) == 3
    assert get("driftstream_batch_processing_seconds_sum", {"stage": "ingest"}) == 0.234
    assert get("driftstream_batch_processing_seconds_bucket",
               {"stage": "ingest", "le": "0.005"}) == 1
    # drained: a second report adds only what is new
    rec.ingested.labels(topic="p").inc(1)
    IngestRecorder.apply(m, rec.drain())
    assert get("driftstream_ingested_events_total", {"topic": "p"}) == 501


def test_unknown_families_are_ignored() -> None:
    m = Metrics()
    IngestRecorder.apply(m, [["processed", {"outcome": "windowed"}, 5],
                             ["ingested", {"topic": "p"}, 1]])
    assert m.registry.get_sample_value("driftstream_processed_events_total",
                                       {"outcome": "windowed"}) is None
    assert m.registry.get_sample_value("driftstream_ingested_events_total", {"topic": "p"}) == 1
