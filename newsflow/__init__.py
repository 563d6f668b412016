"""The kernel every stage shares: message contracts, settings, the stage runtime and the
pipeline's topology, the Kafka and Elasticsearch clients, errors, metrics, URLs, dead letters,
and the pieces more than one stage needs (the outlets registry schema, the search query
language, the network address guard, byte decoding, API keys and errors).

It imports no stage (``ingest``, ``enrich``, ``index``, ``alert``), nor the wiring
(``pipeline``) or the dev tooling (``devstack``); ``make lint`` checks it.
"""
