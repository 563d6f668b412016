"""Runtime configuration, read once from ``NEWSFLOW_*`` environment variables.

Every process (CLI, workers, Airflow tasks) builds its settings here, so one variable changes
one behaviour everywhere. Credentials are ``SecretStr``: they never show up in logs or reprs.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    # A validation error must not echo its input: it may be a URL with a password in it.
    model_config = SettingsConfigDict(
        env_prefix="NEWSFLOW_", extra="ignore", hide_input_in_errors=True
    )

    # Where the local stack keeps its logs, data and downloaded distributions.
    run_dir: Path = PROJECT_ROOT / ".run"

    # host:port of one broker, or several comma-separated.
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    # A consumer silent this long leaves its group and its partitions move to the others. It
    # must lie within the broker's group.min/max.session.timeout.ms (6 s .. 30 min by default).
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    # Heartbeats to the group coordinator; unset, a third of the session timeout.
    kafka_heartbeat_interval_ms: int | None = Field(default=None, ge=100)
    # Static membership: set, a consumer joins its group as `<prefix>-<group id>`, and a process
    # restarted with the same prefix takes back its predecessor's partitions at once, without
    # waiting for the session timeout or a rebalance. One value per host and worker process
    # (two live consumers with one id fence each other); the local stack sets it per worker.
    kafka_group_instance_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    # How producers compress their batches (consumers read any). CPU is what a worker runs
    # short of, not bandwidth: zstd packs whole HTML pages as tightly as gzip for a fraction
    # of the CPU (python -m bench.kafka_codecs). lz4 and snappy need their packages installed.
    kafka_compression: Literal["zstd", "gzip", "lz4", "snappy", "none"] = "zstd"

    # One URL, or several comma-separated (the nodes of a cluster; requests go round them).
    # A user:password in it is moved to es_username/es_password, so the URL prints safely.
    es_url: str = "http://127.0.0.1:9200"
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_ca_certs: Path | None = None
    index_prefix: str = "newsflow"
    # Replicas of each index shard: 0 on one node, 1 on a cluster (a node may fail).
    es_replicas: int = Field(default=0, ge=0)

    airflow_url: str = "http://127.0.0.1:8080"
    airflow_username: str = "admin"
    airflow_password: SecretStr | None = None

    topic_raw_pages: str = "newsflow.raw-pages.v1"
    topic_articles: str = "newsflow.articles.v1"
    topic_dead_letters: str = "newsflow.dead-letters.v1"
    # The dedup stage's output and the index stage's input (the articles topic, its input,
    # has exactly one partition: one owner of the dedup state).
    topic_deduped_articles: str = "newsflow.deduped-articles.v1"
    # Alerts on new stories (alert stage's output, the webhook stage's input), keyed by watch.
    topic_alerts: str = "newsflow.alerts.v1"
    # Partitions of raw pages, deduped articles and alerts: 12 split evenly among 1, 2, 3, 4 or
    # 6 workers of a stage (3 split 2:1 between two). `newsflow init` adds partitions to an
    # existing topic that has fewer; Kafka cannot take them away.
    topic_partitions: int = Field(default=12, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    # With replication > 1: acks=all writes need this many in-sync replicas (capped at the
    # replication), so one broker down loses nothing and blocks nothing with 3 replicas.
    topic_min_insync_replicas: int = Field(default=2, ge=1)
    topic_retention_hours: int = Field(default=7 * 24, ge=1)
    dead_letter_retention_hours: int = Field(default=30 * 24, ge=1)

    outlets_file: Path = PROJECT_ROOT / "samples" / "outlets.yaml"
    user_agent: str = "NewsflowBot/0.1"
    contact_url: str = "https://github.com/newsflow/newsflow"
    fetch_timeout_seconds: float = Field(default=20.0, gt=0)
    max_page_bytes: int = Field(default=5 * 1024 * 1024, gt=0)

    # Ingest: politeness, state
    # Shared crawl state (seen/fetched URLs, feed health, per-host rate-limit slots, robots).
    # A secret: in production the URL carries the database password.
    state_db_url: SecretStr = SecretStr("postgresql+psycopg2://airflow@127.0.0.1:5433/newsflow")
    # At most one request per host:port every N seconds, across all processes (an outlet's
    # registry entry may ask for a different interval; robots.txt Crawl-delay can raise it).
    host_min_interval_seconds: float = Field(default=3.0, ge=0)
    # A fetch gives up with ``rate_limited`` instead of waiting longer than this for its slot.
    host_max_wait_seconds: float = Field(default=120.0, ge=0)
    max_retry_after_seconds: float = Field(default=3600.0, ge=0)
    respect_robots_txt: bool = True
    robots_cache_seconds: float = Field(default=3600.0, ge=0)
    max_crawl_delay_seconds: float = Field(default=60.0, ge=0)
    # At most this many requests in flight per host:port, across all crawling processes
    # (leases in the crawl state; a dead holder's lease expires after the fetch deadline).
    host_max_concurrency: int = Field(default=2, ge=1)
    # An article fetched less than this long ago is not fetched again (reason ``seen``).
    revisit_after_hours: float = Field(default=24.0, ge=0)
    # Feed health: errors in a row, and silence (multiple of its usual interval, and a floor).
    feed_max_consecutive_errors: int = Field(default=3, ge=1)
    feed_silence_factor: float = Field(default=3.0, gt=0)
    feed_min_silence_hours: float = Field(default=24.0, ge=0)

    # Dedup stage: its snapshot (engine state + next input offsets), written at most this often.
    dedup_state_dir: Path = PROJECT_ROOT / ".run" / "dedup"
    dedup_snapshot_every_seconds: float = Field(default=5.0, ge=0)
    dedup_window_days: float = Field(default=30, gt=0)
    # Without a usable snapshot the worker rebuilds its state from the articles topic, and
    # refuses to start when the log has lost articles of the window; true starts it anyway,
    # with the state the log still holds (copies of lost articles become originals).
    dedup_allow_partial_rebuild: bool = False

    # Search API (`newsflow api`, index/api.py). Keys are comma-separated secrets of at least
    # 32 characters; an admin key can also read. Without keys the API refuses to start unless
    # auth is explicitly "off", which `newsflow api` allows only on a loopback address (the
    # local stack sets it) and the app only for requests naming a loopback host.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_auth: Literal["on", "off"] = "on"
    api_read_keys: SecretStr | None = None
    api_admin_keys: SecretStr | None = None
    # Signs resume tokens; unset, a random per-process secret (tokens die with the process,
    # and replicas behind one load balancer need a shared value).
    api_token_secret: SecretStr | None = None
    api_max_page_size: int = Field(default=50, ge=1, le=500)
    api_max_query_length: int = Field(default=500, ge=1, le=10_000)
    # Request bodies (a watch is a few kB) larger than this are refused with 413, unread.
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # How long a resume token's point-in-time snapshot lives after its last page.
    api_page_keep_alive_seconds: int = Field(default=300, ge=10, le=3600)

    # Alerts (alert/): watches are re-read from Elasticsearch this often by each worker. A
    # story alerts as new while it has fewer than `alert_update_story_size` articles; a story
    # that alerted sends one `story_update` when it reaches that size.
    alert_watch_refresh_seconds: float = Field(default=2.0, ge=0)
    alert_update_story_size: int = Field(default=5, ge=2)
    # `inprocess` evaluates each watch's parsed query against the article (any cluster);
    # `percolator` asks Elasticsearch where it has the module, in-process otherwise.
    alert_matcher: Literal["inprocess", "percolator"] = "inprocess"
    # Webhooks are signed with each watch's own secret (alert/webhook.py); this one only signs
    # for watches stored before that. Loopback/private receivers only when explicitly allowed.
    alert_webhook_secret: SecretStr | None = None
    alert_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    alert_webhook_allow_private_network: bool = False

    # Enrich: each page is extracted in a child process, within a time and memory (address
    # space, per process) budget; an overrun kills the child and dead-letters the page
    # (`extract_timeout`, `extract_memory`). This many processes per worker share its pages;
    # 0 extracts in the worker's own process, without a budget. "auto": the CPUs this process
    # may run on (its affinity) divided by the enrich workers expected on the host, at least
    # one. Extraction is the worker's CPU-bound work and runs only in these processes; the
    # worker's own (Kafka, JSON) is light and overlaps them, so a worker alone on a 2-core
    # machine extracts on both cores, and two workers there take one core each. Each process
    # may take up to the memory budget: on a host with many cores and little memory, set it.
    enrich_extract_timeout_seconds: float = Field(default=20.0, gt=0)
    enrich_extract_memory_mb: int = Field(default=1024, ge=256)
    enrich_extract_processes: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    enrich_workers_per_host: int = Field(default=1, ge=1)
    # No page of a batch starts later than this after the batch began (the rest are read
    # again with the next batch), so a batch of slow pages never outlives the consumer's
    # poll interval (300 s): this plus one page's timeout must stay under it.
    enrich_batch_seconds: float = Field(default=120.0, gt=0)
    # The language model unpacked once per machine (about 70 MB): loading it packed costs every
    # extraction process about a second of CPU. Unwritable: each process unpacks its own.
    model_cache_dir: Path = Field(default_factory=lambda: _user_cache_dir() / "newsflow")

    # A batch is at most this many messages and this many bytes of their values (at least one
    # message): it stays in memory until committed, and a page may weigh 10 MB.
    worker_batch_size: int = Field(default=100, ge=1)
    worker_batch_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # A stage that allows it (enrich) reads and processes the next batch while the previous
    # one's outputs are being acknowledged, each batch still committed after its outputs and
    # in order (newsflow/runtime.py); false: every stage does one batch at a time.
    worker_pipelining: bool = True
    worker_max_retries: int = Field(default=3, ge=0)
    worker_retry_backoff_seconds: float = Field(default=0.5, ge=0)
    # /metrics and /health per worker: base port + the stage's offset in newsflow/topology.py
    # (enrich 9101 .. webhook 9105); 0 turns them off. A worker whose loop has not polled for
    # the gap reports unhealthy.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_base_port: int = Field(default=9101, ge=0, le=65535)
    worker_health_max_poll_gap: float = Field(default=300.0, gt=0)
    worker_lag_interval_seconds: float = Field(default=10.0, ge=0)
    # A partition with lag and no committed progress for this long makes /health unhealthy
    # (as does a batch that keeps failing transiently for this long): a wedge, not a busy spell.
    worker_stall_seconds: float = Field(default=120.0, gt=0)
    # A batch that fails transiently is re-read after a backoff that doubles on each failure
    # in a row, from 4 x worker_retry_backoff_seconds up to this: short, since a worker asleep
    # in its backoff is what delays recovery once Kafka or Elasticsearch is back.
    worker_rewind_max_backoff_seconds: float = Field(default=5.0, ge=0)
    # The maintenance DAG deletes articles fetched (and stories last seen) this long ago.
    index_retention_days: float = Field(default=90, gt=0)
    exporter_port: int = Field(default=9100, ge=0, le=65535)  # `newsflow exporter` (ingest)

    @model_validator(mode="after")
    def _es_credentials_out_of_the_url(self) -> Self:
        """Keep ``user:password@`` of ``NEWSFLOW_ES_URL`` out of everything that prints it
        (``stack status``, the demo, ``repr``): they become the secret fields instead."""
        urls: list[str] = []
        found: set[tuple[str, str]] = set()
        for url in (u.strip() for u in self.es_url.split(",")):
            bare, credentials = split_url_credentials(url)
            urls.append(bare)
            if credentials is not None:
                found.add(credentials)
        if not found:
            return self
        if len(found) > 1:
            raise ValueError("NEWSFLOW_ES_URL names different credentials for its nodes")
        ((username, password),) = found
        given = self.es_password.get_secret_value() if self.es_password is not None else None
        if (self.es_username or username) != username or (given or password) != password:
            raise ValueError(
                "NEWSFLOW_ES_URL carries credentials other than NEWSFLOW_ES_USERNAME/PASSWORD"
            )
        self.es_url = ",".join(urls)
        self.es_username = username
        self.es_password = SecretStr(password)
        return self

    @property
    def http_user_agent(self) -> str:
        return f"{self.user_agent} (+{self.contact_url})"


def split_url_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its ``user:password@``, and those (percent-decoded) if it had them."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=host))
    return bare, (unquote(username), unquote(password))


def _user_cache_dir() -> Path:
    """The XDG cache directory; the temporary one for a user without a home (a container
    running as an arbitrary uid), where ``Path.home()`` raises."""
    if cache := os.environ.get("XDG_CACHE_HOME"):
        return Path(cache)
    try:
        return Path.home() / ".cache"
    except RuntimeError:
        return Path(tempfile.gettempdir())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
