"""The pure core: no Kafka, no Faust, no wall clock. Everything here is plain data in,
plain data out, and is what both the live worker and ``replay`` run.

One concept per module:

- ``events``: decoding and validating producers' events (the contract in ``schemas/``);
- ``columns``: from events to per-series value columns;
- ``histogram``: binnings frozen from a reference, vectorised counting;
- ``reference``: reference profiles (build, snapshot, restore);
- ``psi``: the Population Stability Index and its noise floor;
- ``adwin``: river's ADWIN behind a bounded-cost, snapshot-able adapter;
- ``alerts``: the firing/resolved lifecycle with hysteresis;
- ``monitor``: windows, PSI, ADWIN, data integrity and alerts of one (model, version);
- ``attribution``: feature-attribution drift (importance, NDCG of its ranking, shares);
- ``quality_monitor``: the label join and quality windows of one model;
- ``volume``: the event volume of one model and its dead-man timer;
- ``registry``: many monitors, routing of envelopes, caps;
- ``labeljoin``: delayed labels joined to predictions, with TTL, grace and bounds;
- ``quality``: model-quality metrics of joined pairs (the numbers of scikit-learn);
- ``deadletter``: dead-letter records;
- ``lag``: consumer lag signals and the backlog status of a partition;
- ``backlog``: backlog alerts of a consumer group on a topic;
- ``clock``: injectable clocks.
"""
