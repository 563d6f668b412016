"""Development tooling, never shipped in the runtime wheel or image: the local stack (Kafka,
Elasticsearch, PostgreSQL, Airflow and the workers on 127.0.0.1, without Docker), the demo,
the Airflow API client it uses, and the sample outlets' web site."""
