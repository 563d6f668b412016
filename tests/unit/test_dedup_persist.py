"""Incremental dedup snapshots: what is restored is what was saved, at any save and after a
crash between files, through seals, merges, eviction and checkpoints."""

from __future__ import annotations

import io
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enrich.dedup import persist
from enrich.dedup.engine import (
    DedupConfig,
    DedupDecision,
    DedupEngine,
    DedupInput,
    SnapshotFormatError,
)
from enrich.dedup.persist import SnapshotStore
from enrich.dedup.stage import read_snapshot, snapshot_offsets, snapshot_path
from enrich.dedup.store import Lookup, SortedIndex, bucket_of, tag
from tests.unit.test_dedup import BODIES, FOOTER, T0, _decided, _edit, _state

CONFIG = DedupConfig(boilerplate_bits=20, segment_rows=16, evict_every=8)


def _inputs(count: int, seed: int = 7, hours: float = 0.5) -> list[DedupInput]:
    """Originals, copies, edited copies, new versions and repeats, in arrival order."""
    rng = random.Random(seed)
    items: list[DedupInput] = []
    texts: dict[str, str] = {}
    clock = T0
    for i in range(count):
        clock += timedelta(hours=hours)
        roll = rng.random()
        title, body = BODIES[rng.randrange(len(BODIES))]
        if texts and roll < 0.1:  # a new version (or, unchanged, a repeat) of an earlier id
            key = rng.choice(sorted(texts))
            text = texts[key] if roll < 0.03 else texts[key] + f"\nUpdate {i}."
        elif roll < 0.4:
            key, text = f"i{i}", _edit(body, 0.03, seed=i)
        else:
            key, text = f"i{i}", body + f"\nItem {i}.\n" + FOOTER[i % 4]
        texts[key] = text
        items.append(
            DedupInput(
                id=key,
                url=f"https://o{i % 7}.example/{key}",
                outlet=f"o{i % 7}",
                title=title,
                text=text,
                published_at=clock,
            )
        )
    return items


def _normalized(engine: DedupEngine) -> dict[str, Any]:
    """The engine's state, with the clusterer's tables in key order (their order is not
    state: every lookup sorts)."""
    state: dict[str, Any] = dict(_state(engine))
    clusters = json.loads(state.pop("clusters"))
    clusters["stories"] = sorted(clusters["stories"], key=lambda s: s["story_id"])
    clusters["df"] = sorted(clusters["df"])
    clusters["aliases"] = sorted(clusters["aliases"])
    state["clusters"] = clusters
    for i in range(3):
        with np.load(io.BytesIO(state.pop(f"boilerplate{i}")), allow_pickle=False) as z:
            state[f"boilerplate{i}"] = {k: z[k].tobytes() for k in z.files}
    return state


def _observe(
    engine: DedupEngine, snapshots: SnapshotStore, items: list[DedupInput]
) -> list[DedupDecision]:
    decisions = []
    for item in items:
        decision = engine.observe(item)
        snapshots.note(decision)
        decisions.append(decision)
    return decisions


def _files(path: Path) -> set[str]:
    return {p.name for p in SnapshotStore(path, "t").data_dir.iterdir()} - {".lock"}


def test_every_incremental_save_restores_the_engine_it_saved(tmp_path: Path) -> None:
    path = snapshot_path(tmp_path, "t")
    items = _inputs(150)
    engine = DedupEngine(CONFIG)
    snapshots = SnapshotStore(path, "t")
    kinds: set[str] = set()
    for at in range(0, len(items), 5):
        _observe(engine, snapshots, items[at : at + 5])
        snapshots.save(engine, {0: at + 5})
        kinds.add("checkpoint" if not snapshots.deltas else "delta")
        restored = read_snapshot(path, "t")
        assert restored is not None and restored[1] == {0: at + 5}
        assert _normalized(restored[0]) == _normalized(engine), at
    assert kinds == {"checkpoint", "delta"}
    assert len(engine.store.segments) > 2 and engine.store.updated == set()


def test_a_restored_engine_decides_the_rest_of_the_stream_as_if_never_stopped(
    tmp_path: Path,
) -> None:
    path = snapshot_path(tmp_path, "t")
    items = _inputs(160, seed=3)
    reference = DedupEngine(CONFIG)
    expected = [reference.observe(x) for x in items]
    assert {d.reason for d in expected} >= {"new", "near", "version"}
    engine = DedupEngine(CONFIG)
    snapshots = SnapshotStore(path, "t")
    for at in range(0, 100, 10):
        _observe(engine, snapshots, items[at : at + 10])
        snapshots.save(engine, {0: at + 10})
    # A restart: the restored engine goes on saving incrementally, from where it was.
    store = SnapshotStore(path, "t")
    restored = store.load()
    assert restored is not None
    engine = restored[0]
    decided = _observe(engine, store, items[100:130])
    store.save(engine, {0: 130})
    assert store.deltas, "a restored store saves a delta, not everything again"
    again = read_snapshot(path, "t")
    assert again is not None
    decided += _observe(again[0], SnapshotStore(path, "t"), items[130:])
    assert [_decided(d) for d in decided] == [_decided(d) for d in expected[100:]]


def test_eviction_and_merges_drop_files_and_checkpoints_fold_the_deltas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persist, "MIN_CHECKPOINT_BYTES", 0)
    path = snapshot_path(tmp_path, "t")
    config = DedupConfig(
        window_seconds=2 * 86400, boilerplate_bits=20, segment_rows=8, evict_every=4
    )
    items = _inputs(200, seed=5, hours=3)
    engine = DedupEngine(config)
    snapshots = SnapshotStore(path, "t")
    most, folded, longest = 0, 0, 0
    for at in range(0, len(items), 4):
        _observe(engine, snapshots, items[at : at + 4])
        snapshots.save(engine, {0: at + 4})
        named = {f for f, _ in snapshots.segment_files.values()}
        named |= {*snapshots.deltas, snapshots.checkpoint or ""}
        assert _files(path) == named
        most = max(most, len(named))
        folded += longest > 0 and not snapshots.deltas
        longest = len(snapshots.deltas)
    assert engine.store.segments[0].start > 0, "old segments were evicted"
    assert folded >= 2 and most < 40
    restored = read_snapshot(path, "t")
    assert restored is not None and _normalized(restored[0]) == _normalized(engine)


def test_a_crash_between_files_leaves_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = snapshot_path(tmp_path, "t")
    items = _inputs(60, seed=11)
    engine = DedupEngine(CONFIG)
    snapshots = SnapshotStore(path, "t")
    _observe(engine, snapshots, items[:40])
    snapshots.save(engine, {0: 40})
    saved = _normalized(engine)
    _observe(engine, snapshots, items[40:])
    real_replace = Path.replace

    def crash_at_the_manifest(self: Path, target: Any) -> Path:
        if Path(target) == path:
            raise OSError("killed before the manifest was replaced")
        return real_replace(self, target)

    named = {n: (snapshots.data_dir / n).stat().st_ino for n in _files(path)}
    monkeypatch.setattr(Path, "replace", crash_at_the_manifest)
    for _ in range(2):  # the second attempt writes everything again, under new names
        with pytest.raises(OSError, match="killed"):
            snapshots.save(engine, {0: 60})
    monkeypatch.undo()
    assert {n: (snapshots.data_dir / n).stat().st_ino for n in named} == named
    assert len(_files(path)) > 2, "the new files were written"
    restored = read_snapshot(path, "t")
    assert restored is not None and restored[1] == {0: 40}
    assert _normalized(restored[0]) == saved
    # The next save starts over in full; files no manifest names are removed.
    snapshots.save(engine, {0: 60})
    restored = read_snapshot(path, "t")
    assert restored is not None and restored[1] == {0: 60}
    assert _normalized(restored[0]) == _normalized(engine)
    assert not snapshots.deltas and not any(n.endswith(".tmp") for n in _files(path))


def test_a_manifest_written_by_another_worker_makes_the_next_save_complete(
    tmp_path: Path,
) -> None:
    path = snapshot_path(tmp_path, "t")
    items = _inputs(50, seed=13)
    mine, theirs = DedupEngine(CONFIG), DedupEngine(CONFIG)
    my_store, their_store = SnapshotStore(path, "t"), SnapshotStore(path, "t")
    _observe(mine, my_store, items[:30])
    my_store.save(mine, {0: 30})
    _observe(theirs, their_store, items[:20])
    their_store.save(theirs, {0: 20})  # removes the files of my manifest
    _observe(mine, my_store, items[30:])
    my_store.save(mine, {0: 50})
    restored = read_snapshot(path, "t")
    assert restored is not None and restored[1] == {0: 50}
    assert _normalized(restored[0]) == _normalized(mine)


def test_topics_that_share_a_state_directory_keep_their_own_files(tmp_path: Path) -> None:
    engines = {}
    for topic, seed in (("news.articles", 1), ("news.other", 2)):
        engine = engines[topic] = DedupEngine(CONFIG)
        snapshots = SnapshotStore(snapshot_path(tmp_path, topic), topic)
        _observe(engine, snapshots, _inputs(30, seed=seed))
        snapshots.save(engine, {0: seed})
    for topic, engine in engines.items():
        restored = read_snapshot(snapshot_path(tmp_path, topic), topic)
        assert restored is not None and _normalized(restored[0]) == _normalized(engine)


def test_a_delta_costs_the_same_whatever_the_window(tmp_path: Path) -> None:
    sizes = []
    for window in (100, 800):
        path = snapshot_path(tmp_path / str(window), "t")
        engine = DedupEngine(DedupConfig(boilerplate_bits=20, segment_rows=64))
        snapshots = SnapshotStore(path, "t")
        _observe(engine, snapshots, _inputs(window, seed=17, hours=0.05))
        snapshots.save(engine, {0: window})
        before = {n: (snapshots.data_dir / n).stat().st_size for n in _files(path)}
        extra = _inputs(window + 1, seed=17, hours=0.05)[-1:]
        _observe(engine, snapshots, [extra[0].model_copy(update={"id": "extra"})])
        snapshots.save(engine, {0: window + 1})
        new = {n: (snapshots.data_dir / n).stat().st_size for n in _files(path)}.items()
        sizes.append(sum(size for name, size in new if name not in before))
    assert sizes[1] < 1.5 * sizes[0], sizes


def test_format_errors_and_the_single_file_snapshots_of_older_versions(tmp_path: Path) -> None:
    path = snapshot_path(tmp_path, "t")
    engine = DedupEngine(CONFIG)
    _observe(engine, SnapshotStore(path, "t"), _inputs(20, seed=19))
    # A format 4 snapshot: one file, the whole engine.
    meta = json.dumps({"topic": "t", "offsets": {"0": 20}, "format": 4}).encode()
    with path.open("wb") as handle:
        np.savez(
            handle,
            meta=np.frombuffer(meta, dtype=np.uint8),
            engine=np.frombuffer(engine.snapshot(), dtype=np.uint8),
        )
    assert snapshot_offsets(path, "t") == {0: 20}
    store = SnapshotStore(path, "t")
    restored = store.load()
    assert restored is not None and _normalized(restored[0]) == _normalized(engine)
    store.save(restored[0], {0: 20})  # written again in the current format
    assert snapshot_offsets(path, "t") == {0: 20}
    with np.load(path) as z:
        assert "manifest" in z.files and "engine" not in z.files
    assert read_snapshot(path, "other") is None
    # A format or a layout this engine does not know: rebuilt from the log instead.
    with np.load(path) as z:
        parts = {k: z[k] for k in z.files}
    head = json.loads(parts["meta"].tobytes())
    for unknown in ({"format": 99}, {"layout": 2}):
        parts["meta"] = np.frombuffer(json.dumps(head | unknown).encode(), dtype=np.uint8)
        with path.open("wb") as handle:
            np.savez(handle, **parts)
        with pytest.raises(SnapshotFormatError):
            SnapshotStore(path, "t").load()
        assert read_snapshot(path, "t") is None and snapshot_offsets(path, "t") is None
    path.unlink()
    assert read_snapshot(path, "t") is None and snapshot_offsets(path, "t") is None


def _tagged_keys(rng: np.random.Generator, rows: int) -> np.ndarray:
    """An article window's keys: 32 bands, ids, URLs and hashes, and the edges of each."""
    bands = (np.arange(32, dtype=np.uint64)[None, :] << np.uint64(32)) | rng.integers(
        0, 2**32, size=(rows, 32), dtype=np.uint64
    )
    kinds = [
        tag(kind, rng.integers(0, 2**63, size=rows, dtype=np.uint64))
        for kind in ("id", "url", "hash")
    ]
    edges = np.asarray(
        [0, 2**32 - 1, 2**38 - 1, 2**38, 2**62 - 1, 2**62, 2**63, 2**64 - 1], dtype=np.uint64
    )
    return np.concatenate([bands.ravel(), *kinds, edges])


@pytest.mark.parametrize(
    ("rows", "skewed"),
    [(30, False), (3000, False), (3000, True)],  # a binary search; buckets; too many in one
)
def test_an_index_finds_every_entry_of_its_keys(rows: int, skewed: bool) -> None:
    rng = np.random.default_rng(2)
    keys = _tagged_keys(rng, rows)
    if skewed:
        keys = keys % np.uint64(5000)  # all in the first band's first buckets
    keys = np.concatenate([keys, keys[::7]])  # keys with several entries
    index = SortedIndex(keys, np.arange(keys.size, dtype=np.uint32))
    directed = keys.size >= SortedIndex.DIRECTED and not skewed
    assert (index.directory is not None) == directed
    absent = _tagged_keys(np.random.default_rng(3), 2)
    query = np.concatenate([rng.choice(keys, 60), absent, absent[:3]])
    wanted = set(query.tolist())
    expected = sorted(
        (k, v) for k, v in zip(keys.tolist(), range(keys.size), strict=True) if k in wanted
    )
    assert sorted(index.find(Lookup(query))) == expected
    assert index.find(Lookup(np.zeros(0, dtype=np.uint64))) == []
    again = SortedIndex.presorted(index.keys, index.vals)
    assert sorted(again.find(Lookup(query))) == expected


def test_buckets_keep_the_order_of_keys() -> None:
    keys = np.sort(_tagged_keys(np.random.default_rng(4), 500))
    for bits in (1, 8, 24):
        buckets = bucket_of(keys, bits)
        assert (np.diff(buckets) >= 0).all()
        assert buckets.min() >= 0 and buckets.max() < 68 << bits
