"""The Kafka shell around the pure core: topics, the bulk ingest stage, the Faust app,
and the embedded broker used by the quick start and the tests."""
