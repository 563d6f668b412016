"""What the Kafka clients cost: batches checked by C CRC-32C, and compressed with a cheap codec
that every producer of the pipeline uses alike (``NEWSFLOW_KAFKA_COMPRESSION``)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest
from kafka import codec as kafka_codec
from kafka.record import util as record_util
from kafka.record._crc32c import crc as crc32c_pure_python
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from pydantic import ValidationError

from bench.kafka_codecs import producer_batches
from newsflow import kafka_io
from newsflow.settings import Settings


def test_kafka_python_checks_crcs_in_c() -> None:
    """Without the ``crc32c`` package kafka-python checks every batch in pure Python, about
    100 ms per MB: a tenth of an enrich worker's CPU."""
    assert record_util.crc32c_c is not None, "the crc32c package is not importable"
    data = memoryview(os.urandom(4096))
    assert record_util.calc_crc32c(data) == crc32c_pure_python(data)
    assert record_util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # CRC-32C check


def test_zstd_is_the_default_codec_and_kafka_python_has_it() -> None:
    assert Settings.model_fields["kafka_compression"].default == "zstd"
    assert kafka_codec.has_zstd()
    page = b"<html><body>" + b"<p>words and words</p>" * 5000 + b"</body></html>"
    packed = kafka_codec.zstd_encode(page)
    assert len(packed) * 20 < len(page)
    assert kafka_codec.zstd_decode(packed) == page


def test_a_zstd_batch_carries_a_crc_its_reader_verifies() -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=DefaultRecordBatchBuilder.CODEC_ZSTD,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    value = b"<p>page</p>" * 1000
    builder.append(0, timestamp=None, key=b"k", value=value, headers=[])
    batch = DefaultRecordBatch(builder.build())
    assert batch.compression_type == DefaultRecordBatch.CODEC_ZSTD
    assert batch.validate_crc()
    assert [record.value for record in batch] == [value]


class _FakeProducer:
    DEFAULT_CONFIG: ClassVar[dict[str, Any]] = {"kafka_client": None}  # read by open_client

    def __init__(self, **config: Any) -> None:
        self.config = config


def _producer_config(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    monkeypatch.setattr(kafka_io, "KafkaProducer", _FakeProducer)
    producer: Any = kafka_io.make_producer(settings)
    config: dict[str, Any] = producer.config
    return config


def test_producers_compress_with_the_configured_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _producer_config(monkeypatch, Settings())["compression_type"] == "zstd"
    monkeypatch.setenv("NEWSFLOW_KAFKA_COMPRESSION", "gzip")
    assert _producer_config(monkeypatch, Settings())["compression_type"] == "gzip"
    none = Settings(kafka_compression="none")
    assert _producer_config(monkeypatch, none)["compression_type"] is None


def test_a_codec_kafka_does_not_know_is_refused_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_KAFKA_COMPRESSION", "brotli")
    with pytest.raises(ValidationError, match="kafka_compression"):
        Settings()


def test_the_bench_batches_pages_as_the_producer_does() -> None:
    """Records share a batch up to 16 KB; a page larger than that is a batch of its own."""
    small, page = b"s" * 6000, b"p" * 50_000
    assert producer_batches([small, small, small, page, small]) == [
        small * 2,
        small,
        page,
        small,
    ]
