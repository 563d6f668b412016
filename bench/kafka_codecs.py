"""Kafka compression codecs on whole HTML pages: CPU and size, and a broker round trip.

    .venv/bin/python -m bench.kafka_codecs [--pages 200] [--round-trip gzip,zstd] [--no-broker]

Real article pages from ``../shared/corpus`` (Zyte, and WCXB's article pages), each encoded as
the raw page the ingest DAGs produce, are grouped into batches as kafka-python's producer
groups them (up to its 16 KB ``batch_size``; a larger page is a batch of its own), then
compressed and decompressed with kafka-python's own codec functions: CPU ms per MB of pages
and the size ratio, per codec whose package is installed. Then the CRC-32C that every batch
carries, as kafka-python computes it (with the ``crc32c`` package, and its pure-Python
fallback). Then, unless ``--no-broker``, the same pages go through the running broker
(``newsflow stack up``): by default gzip with pure-Python CRCs (as before the ``crc32c`` and
``zstandard`` packages), gzip, and ``NEWSFLOW_KAFKA_COMPRESSION``; or the codecs of
``--round-trip``. Each is produced on a topic of its own with the workers' producer
(``make_producer``) and read back by a consumer that checks CRCs, as the workers' does,
``--repeat`` times, the fastest shown. CPU figures are this process's (its client threads
included), so they hold on a busy machine; docs/s are wall-clock. The broker's CPU is the
local stack's broker process, which serves whatever else runs against it at the time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka import codec as kafka_codec
from kafka.record import default_records
from kafka.record import util as record_util
from kafka.record._crc32c import crc as crc32c_pure_python

from bench.corpus import available, load, raw_page, subset
from newsflow.contracts import encode
from newsflow.kafka_io import MAX_MESSAGE_BYTES, make_admin, make_producer, security_config
from newsflow.settings import Settings

MB = 1024 * 1024
# kafka-python's default, which make_producer keeps: records accumulate per partition until
# the next would take a batch past this; a record larger than it is sent alone.
PRODUCER_BATCH_BYTES = 16_384


@dataclass(frozen=True)
class Codec:
    name: str
    package: str  # what provides it to kafka-python
    available: Callable[[], bool]
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]


CODECS = (
    Codec(
        "gzip",
        "standard library (level 9)",
        kafka_codec.has_gzip,
        kafka_codec.gzip_encode,
        kafka_codec.gzip_decode,
    ),
    Codec(
        "snappy",
        "python-snappy",
        kafka_codec.has_snappy,
        kafka_codec.snappy_encode,
        kafka_codec.snappy_decode,
    ),
    Codec("lz4", "lz4", kafka_codec.has_lz4, kafka_codec.lz4_encode, kafka_codec.lz4_decode),
    Codec(
        "zstd",
        "zstandard (level 3)",
        kafka_codec.has_zstd,
        kafka_codec.zstd_encode,
        kafka_codec.zstd_decode,
    ),
)


@dataclass(frozen=True)
class CodecResult:
    codec: Codec
    raw_bytes: int
    packed_bytes: int
    compress_seconds: float  # CPU, best of the repeats
    decompress_seconds: float

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.packed_bytes

    def ms_per_mb(self, seconds: float) -> float:
        return seconds * 1000 / (self.raw_bytes / MB)


@dataclass(frozen=True)
class RoundTrip:
    codec: str
    crc: str
    pages: int
    produce_seconds: float  # wall, send to the last acknowledgement
    consume_seconds: float  # wall, first poll to the last record
    producer_cpu: float
    consumer_cpu: float
    broker_cpu: float | None  # None: the broker's process was not found

    @property
    def docs_per_second(self) -> float:
        return self.pages / (self.produce_seconds + self.consume_seconds)


# --- the pages ------------------------------------------------------------------------------


def corpus_values(count: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``count`` article pages as raw-pages messages, evenly spread."""
    pages = [p for p in load("zyte")] + [p for p in load("wcxb") if p.page_type == "article"]
    messages = []
    for page in subset(pages, count):
        raw = raw_page(page, f"https://codecs.example/{page.set}/{page.id}", f"bench-{page.set}")
        messages.append((raw.id.encode(), encode(raw)))
    return messages


def producer_batches(
    values: Sequence[bytes], batch_bytes: int = PRODUCER_BATCH_BYTES
) -> list[bytes]:
    """The payloads the producer compresses: consecutive records up to ``batch_bytes``."""
    batches: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for value in values:
        if current and size + len(value) > batch_bytes:
            batches.append(b"".join(current))
            current, size = [], 0
        current.append(value)
        size += len(value)
    if current:
        batches.append(b"".join(current))
    return batches


# --- codecs and CRCs in this process --------------------------------------------------------


def measure_codec(codec: Codec, batches: Sequence[bytes], repeat: int) -> CodecResult:
    compress = decompress = float("inf")
    packed: list[bytes] = []
    for _ in range(repeat):
        started = time.process_time()
        packed = [codec.encode(batch) for batch in batches]
        compress = min(compress, time.process_time() - started)
        started = time.process_time()
        unpacked = [codec.decode(blob) for blob in packed]
        decompress = min(decompress, time.process_time() - started)
        if unpacked != list(batches):
            raise AssertionError(f"{codec.name} did not give the pages back")
    return CodecResult(
        codec,
        raw_bytes=sum(len(b) for b in batches),
        packed_bytes=sum(len(b) for b in packed),
        compress_seconds=compress,
        decompress_seconds=decompress,
    )


def crc_ms_per_mb(crc: Callable[[memoryview], int], repeat: int) -> float:
    data = memoryview(os.urandom(MB))
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        crc(data)
        best = min(best, time.process_time() - started)
    return best * 1000


def crc_implementation() -> str:
    return "C (crc32c package)" if record_util.crc32c_c is not None else "pure Python"


# --- through the broker ---------------------------------------------------------------------


def broker_pids(settings: Settings) -> list[int]:
    """The local stack's Kafka broker processes: Java running ``kafka.Kafka`` from its run dir."""
    marker = str(settings.run_dir)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "kafka.Kafka" in cmdline and marker in cmdline:
            pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: Sequence[int]) -> float | None:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total if pids else None


@contextlib.contextmanager
def pure_python_crc() -> Iterator[None]:
    """kafka-python's record batches as without the ``crc32c`` package (as before it)."""
    installed = default_records.calc_crc32c
    default_records.calc_crc32c = crc32c_pure_python
    try:
        yield
    finally:
        default_records.calc_crc32c = installed


def round_trip(
    settings: Settings, messages: Sequence[tuple[bytes, bytes]], codec: str, *, slow_crc: bool
) -> RoundTrip:
    """Produce ``messages`` on a topic of their own with ``codec``, then read them back;
    ``slow_crc``: with kafka-python's pure-Python CRC-32C."""
    with pure_python_crc() if slow_crc else contextlib.nullcontext():
        return _round_trip(settings, messages, codec, "pure Python" if slow_crc else "C")


def _round_trip(
    settings: Settings, messages: Sequence[tuple[bytes, bytes]], codec: str, crc: str
) -> RoundTrip:
    topic = f"bench-codecs-{uuid.uuid4().hex[:8]}-{codec}"
    admin = make_admin(settings)
    admin.create_topics(
        {
            topic: {
                "num_partitions": 1,
                "replication_factor": settings.topic_replication,
                "configs": {"max.message.bytes": str(MAX_MESSAGE_BYTES)},
            }
        },
        wait_for_metadata=True,
    )
    brokers = broker_pids(settings)
    try:
        coded = settings.model_copy(update={"kafka_compression": codec})
        producer = make_producer(coded, client_id="bench-codecs")
        broker_before = cpu_seconds(brokers)
        cpu, started = time.process_time(), time.perf_counter()
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush(timeout=120)
        for future in futures:
            future.get(timeout=60)
        produce_seconds = time.perf_counter() - started
        producer_cpu = time.process_time() - cpu
        producer.close()
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="bench-codecs",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
            max_poll_records=settings.worker_batch_size,
            **security_config(settings),
        )
        consumer.assign([TopicPartition(topic, 0)])
        received = 0
        cpu, started = time.process_time(), time.perf_counter()
        deadline = started + 120
        while received < len(messages) and time.perf_counter() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                received += sum(1 for record in records if record.value)
        consume_seconds = time.perf_counter() - started
        consumer_cpu = time.process_time() - cpu
        broker_after = cpu_seconds(brokers)
        consumer.close()
        if received < len(messages):
            raise RuntimeError(f"{codec}: read {received} of {len(messages)} pages back")
    finally:
        admin.delete_topics([topic])
        admin.close()
    broker_cpu = (
        broker_after - broker_before
        if broker_before is not None and broker_after is not None
        else None
    )
    return RoundTrip(
        codec,
        crc,
        len(messages),
        produce_seconds,
        consume_seconds,
        producer_cpu,
        consumer_cpu,
        broker_cpu,
    )


# --- output ---------------------------------------------------------------------------------


def print_codecs(
    results: Sequence[CodecResult], missing: Sequence[Codec], *, pages: int, batches: int
) -> None:
    raw = results[0].raw_bytes if results else 0
    print(f"\n{pages} pages in {batches} producer batches, {raw / MB:.1f} MB of messages")
    print(
        f"{'codec':<8}{'package':<28}{'compress ms/MB':>15}{'decompress ms/MB':>18}"
        f"{'ratio':>7}{'ms/page (both)':>16}"
    )
    for r in results:
        both = (r.compress_seconds + r.decompress_seconds) * 1000 / pages
        print(
            f"{r.codec.name:<8}{r.codec.package:<28}{r.ms_per_mb(r.compress_seconds):>15.1f}"
            f"{r.ms_per_mb(r.decompress_seconds):>18.1f}{r.ratio:>7.2f}{both:>16.2f}"
        )
    for codec in missing:
        print(f"{codec.name:<8}{codec.package:<28}  (not installed: pip install it to compare)")


def print_round_trips(trips: Sequence[RoundTrip]) -> None:
    columns = (
        ("produce docs/s", 16),
        ("consume docs/s", 16),
        ("round trip docs/s", 19),
        ("producer CPU ms/doc", 21),
        ("consumer CPU ms/doc", 21),
        ("broker CPU ms/doc", 19),
    )
    header = "".join(f"{name:>{width}}" for name, width in columns)
    print(f"\n{'codec':<8}{'CRC':<13}{header}")
    for t in trips:
        per_doc = 1000 / t.pages
        figures = (
            f"{t.pages / t.produce_seconds:.1f}",
            f"{t.pages / t.consume_seconds:.1f}",
            f"{t.docs_per_second:.1f}",
            f"{t.producer_cpu * per_doc:.2f}",
            f"{t.consumer_cpu * per_doc:.2f}",
            "-" if t.broker_cpu is None else f"{t.broker_cpu * per_doc:.2f}",
        )
        cells = "".join(f"{v:>{width}}" for v, (_, width) in zip(figures, columns, strict=True))
        print(f"{t.codec:<8}{t.crc:<13}{cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=200, help="corpus pages, evenly spread")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings")
    parser.add_argument(
        "--round-trip",
        default=None,
        help="codecs through the broker, comma-separated (default: gzip with pure-Python and "
        "with C CRCs, and NEWSFLOW_KAFKA_COMPRESSION)",
    )
    parser.add_argument("--no-broker", action="store_true", help="skip the broker round trip")
    args = parser.parse_args(argv)
    if not available():
        print("the shared corpus is absent (expected beside the repository)", file=sys.stderr)
        return 2
    settings = Settings()
    messages = corpus_values(args.pages)
    batches = producer_batches([value for _, value in messages])
    installed = [c for c in CODECS if c.available()]
    missing = [c for c in CODECS if not c.available()]
    results = [measure_codec(c, batches, args.repeat) for c in installed]
    print(f"{len(messages)} corpus pages (Zyte and WCXB article pages)")
    print_codecs(results, missing, pages=len(messages), batches=len(batches))
    fast = crc_ms_per_mb(record_util.calc_crc32c, args.repeat)
    slow = crc_ms_per_mb(crc32c_pure_python, 1)
    print(
        f"\nCRC-32C as kafka-python computes it: {crc_implementation()}, {fast:.2f} ms/MB "
        f"(its pure-Python fallback: {slow:.1f} ms/MB)"
    )
    if args.no_broker:
        return 0
    # By default: as before (gzip, CRCs in pure Python), gzip with C CRCs, the configured codec.
    wanted: list[tuple[str, bool]] = (
        [(c.strip(), False) for c in args.round_trip.split(",") if c.strip()]
        if args.round_trip
        else list(
            dict.fromkeys([("gzip", True), ("gzip", False), (settings.kafka_compression, False)])
        )
    )
    trips = [
        max(
            (round_trip(settings, messages, codec, slow_crc=slow) for _ in range(args.repeat)),
            key=lambda trip: trip.docs_per_second,
        )
        for codec, slow in wanted
    ]
    print(f"\nthrough the broker at {settings.kafka_bootstrap}, {len(messages)} pages each")
    print_round_trips(trips)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
