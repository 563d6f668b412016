"""Incremental snapshots of the dedup state: files written once, and a small manifest.

A window of a million articles is close to a gigabyte; rewriting it after every acknowledged
batch cost far more than deciding the batch. A snapshot is instead a directory of files that
are never modified once written, named by a manifest:

* one file per sealed segment of the article store, written once when the segment appears
  (a merge writes the merged segment; eviction drops files);
* a checkpoint of the mutable rest: the active segment, rows given a new version since their
  segment's file was written, the story clusters and the boilerplate filters. It is written
  again only when the deltas since the last one have grown as large as it, so its cost per
  article is at most that of the deltas, whatever the window;
* one delta per snapshot: rows and index entries added to the active segment, rows given a
  new version, stories changed or dropped, document frequencies and aliases changed, and the
  words of the boilerplate filters that changed;
* the manifest (the path the stage always used, ``<topic>.dedup-snapshot.npz``): topic, next
  offsets, the engine's counters and the files above. It is replaced atomically after every
  file it names is written and synced, so the offsets always match the content.

A crash at any point leaves the previous manifest and every file it names: files are removed
only once a newer manifest no longer names them. Readers and writers of a state directory
hold a lock (``flock``), so a writer never removes files a reader is loading, and a writer
that finds a manifest it did not write (another worker saved since) writes a full snapshot.

Changes are found without scanning the state: the store logs new index entries and new
versions; the clusterer's tables are wrapped in :class:`TrackedDict`; the stories a decision
changed in place are named by it (:meth:`SnapshotStore.note`).
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from enrich.dedup.boilerplate import BoilerplateModel
from enrich.dedup.cluster import ClusterConfig, StoryClusterer
from enrich.dedup.engine import (
    READABLE_FORMATS,
    SNAPSHOT_FORMAT,
    DedupConfig,
    DedupDecision,
    DedupEngine,
    SnapshotFormatError,
)
from enrich.dedup.store import Segment, SortedIndex, append_rows, rows_parts

log = logging.getLogger(__name__)

# How a snapshot is laid out: 1, a manifest naming segment files, a checkpoint and deltas
# (without it, one file holds the whole engine). Its ``format`` is the engine's, as before:
# what the rows and stories record (``SNAPSHOT_FORMAT``).
LAYOUT = 1
MIN_CHECKPOINT_BYTES = 4 << 20  # deltas that small are cheaper to keep than to fold
MAX_DELTAS = 256  # files read by a restore, at most, besides the segments

Arrays = dict[str, npt.NDArray[Any]]
K = TypeVar("K")
V = TypeVar("V")
_PATCH_COLUMNS = ("sig", "size", "version", "chash", "reason")


def readable(head: dict[str, Any]) -> bool:
    """Whether this engine can restore a snapshot whose manifest says ``head``."""
    return head.get("format") in READABLE_FORMATS and head.get("layout", 0) in (0, LAYOUT)


class TrackedDict(dict[K, V]):
    """A dict that remembers the keys set or removed since its ``changed`` was cleared."""

    def __init__(self, data: Iterable[tuple[K, V]] | dict[K, V] = ()) -> None:
        super().__init__(data)
        self.changed: set[K] = set()

    def __setitem__(self, key: K, value: V) -> None:
        self.changed.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: K) -> None:
        self.changed.add(key)
        super().__delitem__(key)

    def pop(self, key: K, *default: Any) -> Any:
        self.changed.add(key)
        return super().pop(key, *default)

    def setdefault(self, key: K, default: V) -> V:
        if key not in self:
            self.changed.add(key)
        return super().setdefault(key, default)

    def popitem(self) -> tuple[K, V]:
        item = super().popitem()
        self.changed.add(item[0])
        return item

    def clear(self) -> None:
        self.changed.update(self)
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def _json_array(value: object) -> npt.NDArray[np.uint8]:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, arrays: Arrays, meta: object) -> int:
    """An ``.npz`` (no pickle) written to a temporary name, synced, renamed; its size."""
    buf = io.BytesIO()
    np.savez(buf, meta=_json_array(meta), **arrays)  # type: ignore[arg-type]
    data = buf.getbuffer()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)  # atomic (os.replace)
    return len(data)


def read_file(path: Path) -> tuple[Arrays, Any]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(z["meta"].tobytes())
    return arrays, meta


def _word_diff(old: bytes, new: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
    """The 8-byte words of ``new`` that differ from ``old`` (same length): where, and what."""
    pad = -len(new) % 8
    a = np.frombuffer(old + b"\0" * pad, dtype=np.uint64)
    b = np.frombuffer(new + b"\0" * pad, dtype=np.uint64)
    where = np.flatnonzero(a != b)
    return where.astype(np.int64), b[where]


def _word_patch(old: bytes, where: npt.NDArray[np.int64], values: npt.NDArray[np.uint64]) -> bytes:
    pad = -len(old) % 8
    words = np.frombuffer(old + b"\0" * pad, dtype=np.uint64).copy()
    words[where] = values
    return words.tobytes()[: len(old)]


class SnapshotStore:
    """The snapshots of one stream's dedup state in one directory (see the module doc).

    One instance follows one engine: after :meth:`load` or a first :meth:`save`, each save
    writes what changed since the previous one. Decisions must be passed to :meth:`note`.
    """

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path  # the manifest
        self.topic = topic
        self.data_dir = path.with_name(
            path.name.removesuffix(".dedup-snapshot.npz") + ".dedup-state"
        )
        self._forget()

    def _forget(self) -> None:
        """Nothing known to be on disk: the next save is a full snapshot, under new names
        (a file the manifest on disk names is never written over)."""
        self.token = secrets.token_hex(4)
        self.engine: DedupEngine | None = None
        self.manifest_id: str | None = None
        self.gen = 0
        self.segment_files: dict[tuple[int, int], tuple[str, int]] = {}  # (start, n) → file, gen
        self.checkpoint: str | None = None
        self.checkpoint_bytes = 0
        self.deltas: list[str] = []
        self.delta_bytes = 0
        self.active_start, self.active_rows, self.active_pairs = -1, 0, 0
        self.patched: dict[int, int] = {}  # seq → gen of its last new version
        self.noted: set[str] = set()
        self.blobs: list[bytes] = []
        self._pending_blobs: list[bytes] = []
        self.stories: TrackedDict[str, Any] = TrackedDict()
        self.aliases: TrackedDict[str, tuple[str, int, str]] = TrackedDict()
        self.df: TrackedDict[int, int] = TrackedDict()

    # -- what changed ------------------------------------------------------------------

    def note(self, decision: DedupDecision) -> None:
        """A decision of the tracked engine: the story it changed in place is saved next."""
        if not decision.repeated:
            self.noted.add(decision.story_id)

    def _track(self, engine: DedupEngine) -> None:
        clusterer = engine.clusterer
        self.stories = clusterer.stories = TrackedDict(clusterer.stories)
        self.aliases = clusterer.aliases = TrackedDict(clusterer.aliases)
        self.df = clusterer.df = TrackedDict(clusterer.df)
        self.engine = engine

    # -- locking -------------------------------------------------------------------------

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".lock").open("a") as handle:
            fcntl.flock(handle.fileno(), mode)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _manifest_on_disk(self) -> str | None:
        if not self.path.is_file():
            return None
        with np.load(self.path, allow_pickle=False) as z:
            if "manifest" not in z.files:
                return None
            found: str | None = json.loads(z["manifest"].tobytes()).get("id")
            return found

    # -- saving --------------------------------------------------------------------------

    def save(self, engine: DedupEngine, offsets: dict[int, int]) -> None:
        """Persist ``engine`` as of ``offsets`` (the next offset per partition)."""
        with self._locked(fcntl.LOCK_EX):
            try:
                self._save(engine, offsets)
            except BaseException:
                self._forget()  # what is on disk is no longer known: start over, in full
                raise

    def _save(self, engine: DedupEngine, offsets: dict[int, int]) -> None:
        full = (
            engine is not self.engine
            or engine.clusterer.stories is not self.stories
            or self._manifest_on_disk() != self.manifest_id
        )
        if full:
            self._forget()
            self._track(engine)
        gen = self.gen + 1
        store = engine.store
        written: dict[tuple[int, int], tuple[str, int]] = {}
        for seg in store.segments[:-1]:
            key = (seg.start, seg.n)
            known = self.segment_files.get(key)
            if known is None:
                assert seg.sealed is not None
                name = f"seg-{seg.start}-{seg.n}-{self.token}-{gen}.npz"
                self._write_segment(self.data_dir / name, seg)
                known = (name, gen)
            written[key] = known
        for seq in store.updated:
            self.patched[seq] = gen
        checkpoint = (
            full
            or self.checkpoint is None
            or self.delta_bytes >= max(self.checkpoint_bytes, MIN_CHECKPOINT_BYTES)
            or len(self.deltas) >= MAX_DELTAS
        )
        if checkpoint:
            name = f"checkpoint-{self.token}-{gen}.npz"
            arrays, meta = self._checkpoint(engine, written)
        else:
            name = f"delta-{self.token}-{gen}.npz"
            arrays, meta = self._delta(engine)
        size = write_file(self.data_dir / name, arrays, meta)
        deltas = [] if checkpoint else [*self.deltas, name]
        manifest_id = secrets.token_hex(8)
        active = store.segments[-1]
        manifest = {
            "id": manifest_id,
            "gen": gen,
            "layout": LAYOUT,
            "config": asdict(engine.config),
            "watermark": engine.watermark,
            "observed": engine.observed,
            "next_seq": store.next_seq,
            "active_start": active.start,
            "segments": [[f, start, n, g] for (start, n), (f, g) in written.items()],
            "checkpoint": name if checkpoint else self.checkpoint,
            "deltas": deltas,
        }
        head = {
            "topic": self.topic,
            "offsets": {str(p): o for p, o in offsets.items()},
            "format": SNAPSHOT_FORMAT,
            "layout": LAYOUT,
        }
        _fsync_dir(self.data_dir)  # the files it names are in place before the manifest is
        write_file(self.path, {"manifest": _json_array(manifest)}, head)
        _fsync_dir(self.path.parent)
        # The manifest is in place: what it names is now what is on disk.
        self.manifest_id, self.gen, self.segment_files = manifest_id, gen, written
        if checkpoint:
            self.checkpoint, self.checkpoint_bytes = name, size
            self.deltas, self.delta_bytes = [], 0
        else:
            self.deltas, self.delta_bytes = deltas, self.delta_bytes + size
        self.active_start, self.active_rows = active.start, active.n
        self.active_pairs = len(active.key_log)
        store.updated = set()
        self.noted = set()
        self.stories.changed = set()
        self.aliases.changed = set()
        self.df.changed = set()
        self.blobs = self._pending_blobs
        keep = {f for f, _ in written.values()} | set(deltas) | {self.checkpoint or ""}
        for path in self.data_dir.iterdir():
            if path.name not in keep and path.name != ".lock":
                path.unlink(missing_ok=True)

    def _write_segment(self, path: Path, seg: Segment) -> None:
        assert seg.sealed is not None
        arrays, meta = rows_parts(seg)
        arrays = {**arrays, "k": seg.sealed.keys, "v": seg.sealed.vals}
        write_file(path, arrays, meta)

    def _active(self, seg: Segment, first: int, pairs: int, *, full: bool) -> tuple[Arrays, Any]:
        """Rows ``first ..`` of the active segment and its index entries from ``pairs`` on
        (``full``: every entry, from its table, which an older snapshot may have filled)."""
        arrays, meta = rows_parts(seg, first)
        out = {f"a.{k}": v for k, v in arrays.items()}
        if full:
            keys = [k for k, seqs in seg.pending.items() for _ in seqs]
            seqs = [s for v in seg.pending.values() for s in v]
        else:
            keys, seqs = seg.key_log[pairs:], seg.seq_log[pairs:]
        out["a.k"] = np.asarray(keys, dtype=np.uint64)
        out["a.v"] = np.asarray(seqs, dtype=np.uint32)
        return out, meta

    def _patches(self, engine: DedupEngine, seqs: Iterable[int]) -> Arrays:
        """The current content columns of the rows ``seqs`` (those still in the window)."""
        store = engine.store
        found = [(seq, store.locate(seq)) for seq in sorted(seqs)]
        rows = [(seq, loc) for seq, loc in found if loc is not None]
        out: Arrays = {"p.seq": np.asarray([seq for seq, _ in rows], dtype=np.int64)}
        for name in _PATCH_COLUMNS:
            column = [getattr(loc[0], name)[loc[1]] for _, loc in rows]
            dtype = getattr(store.active, name).dtype
            shape = (0, store.num_perm) if name == "sig" else (0,)
            out[f"p.{name}"] = np.asarray(column, dtype=dtype) if column else np.zeros(shape, dtype)
        return out

    def _boilerplate(self, engine: DedupEngine, *, full: bool) -> tuple[Arrays, list[str]]:
        blobs = engine.boilerplate.dump()
        self._pending_blobs = blobs
        out: Arrays = {}
        kinds = []
        for i, blob in enumerate(blobs):
            old = self.blobs[i] if i < len(self.blobs) and not full else None
            if old is not None and len(old) == len(blob):
                where, values = _word_diff(old, blob)
                if where.size * 16 < len(blob) // 4:
                    out[f"b{i}.at"], out[f"b{i}.val"] = where, values
                    kinds.append("words")
                    continue
            out[f"b{i}"] = np.frombuffer(blob, dtype=np.uint8)
            kinds.append("whole")
        return out, kinds

    def _checkpoint(
        self, engine: DedupEngine, written: dict[tuple[int, int], tuple[str, int]]
    ) -> tuple[Arrays, Any]:
        store, clusterer = engine.store, engine.clusterer
        active = store.segments[-1]
        arrays, active_meta = self._active(active, 0, 0, full=True)
        # A new version is kept only while its segment's file is older than it.
        file_gen = {start: g for (start, _), (_, g) in written.items()}
        first = store.segments[0].start
        keep: dict[int, int] = {}
        for seq, g in self.patched.items():
            located = store.locate(seq) if seq >= first else None
            if located is None or located[0] is active:
                continue
            if file_gen.get(located[0].start, -1) < g:
                keep[seq] = g
        self.patched = keep
        arrays.update(self._patches(engine, keep))
        dump = clusterer.dump()
        df = dump.pop("df")
        arrays["df.t"] = np.asarray([t for t, _ in df], dtype=np.uint64)
        arrays["df.c"] = np.asarray([c for _, c in df], dtype=np.int64)
        blobs, kinds = self._boilerplate(engine, full=True)
        arrays.update(blobs)
        meta = {"kind": "checkpoint", "active": active_meta, "clusters": dump, "boilerplate": kinds}
        return arrays, meta

    def _delta(self, engine: DedupEngine) -> tuple[Arrays, Any]:
        store, clusterer = engine.store, engine.clusterer
        active = store.segments[-1]
        if active.start == self.active_start:
            arrays, active_meta = self._active(
                active, self.active_rows, self.active_pairs, full=False
            )
        else:  # sealed since: every row and entry of the new active segment is new
            arrays, active_meta = self._active(active, 0, 0, full=False)
        arrays.update(self._patches(engine, store.updated))
        stories = self.stories.changed | self.noted
        present = [sid for sid in sorted(stories) if sid in clusterer.stories]
        view = StoryClusterer(clusterer.config)
        view.stories = {sid: clusterer.stories[sid] for sid in present}
        changes: dict[str, Any] = {
            "docs": clusterer.docs,
            "stories": view.dump()["stories"],
            "stories_del": sorted(stories - set(present)),
        }
        if clusterer.aliases is self.aliases:
            touched = self.aliases.changed
        else:  # replaced (eviction): compare with the table as it was
            now = clusterer.aliases
            touched = {
                k for k in self.aliases.keys() | now.keys() if self.aliases.get(k) != now.get(k)
            }
            self.aliases = clusterer.aliases = TrackedDict(now)
        aliases = clusterer.aliases
        changes["aliases"] = [[k, *aliases[k]] for k in sorted(touched) if k in aliases]
        changes["aliases_del"] = sorted(k for k in touched if k not in aliases)
        if clusterer.df is self.df:
            terms = sorted(self.df.changed)
            changes["df_whole"] = False
        else:  # replaced (halved): all of it
            self.df = clusterer.df = TrackedDict(clusterer.df)
            terms = list(self.df)
            changes["df_whole"] = True
        df = clusterer.df
        arrays["df.t"] = np.asarray([t for t in terms if t in df], dtype=np.uint64)
        arrays["df.c"] = np.asarray([df[t] for t in terms if t in df], dtype=np.int64)
        arrays["df.del"] = np.asarray([t for t in terms if t not in df], dtype=np.uint64)
        blobs, kinds = self._boilerplate(engine, full=False)
        arrays.update(blobs)
        meta = {"kind": "delta", "active": active_meta, "clusters": changes, "boilerplate": kinds}
        return arrays, meta

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> tuple[DedupEngine, dict[int, int]] | None:
        """The engine and next offsets of the snapshot, or None when there is none usable.

        Raises :class:`SnapshotFormatError` for a snapshot of another engine version.
        """
        if not self.path.is_file():
            return None
        with self._locked(fcntl.LOCK_SH):
            with np.load(self.path, allow_pickle=False) as z:
                head = json.loads(z["meta"].tobytes())
                if head.get("topic") != self.topic:
                    log.warning(
                        "dedup: snapshot %s is for topic %s, not %s; ignored",
                        self.path,
                        head.get("topic"),
                        self.topic,
                    )
                    return None
                offsets = {int(p): int(o) for p, o in head["offsets"].items()}
                if "manifest" not in z.files:  # one file: the whole engine (format 4 or older)
                    self._forget()
                    return DedupEngine.restore(z["engine"].tobytes()), offsets
                manifest = json.loads(z["manifest"].tobytes())
            if not readable(head):
                found = (head.get("format"), head.get("layout"))
                raise SnapshotFormatError(f"unknown dedup snapshot format and layout {found!r}")
            engine = self._restore(manifest)
        return engine, offsets

    def _restore(self, manifest: dict[str, Any]) -> DedupEngine:
        self._forget()
        raw = dict(manifest["config"])
        raw["cluster"] = ClusterConfig(**raw["cluster"])
        engine = DedupEngine(DedupConfig(**raw))
        engine.watermark, engine.observed = manifest["watermark"], manifest["observed"]
        store = engine.store
        store.segments = []
        for name, start, n, g in manifest["segments"]:
            arrays, meta = read_file(self.data_dir / name)
            seg = Segment(start, 0, store.num_perm)
            append_rows(seg, arrays, meta)
            assert seg.n == n, (name, seg.n, n)
            seg.sealed = SortedIndex.presorted(arrays["k"], arrays["v"])
            store.segments.append(seg)
            self.segment_files[(start, n)] = (name, g)
        active = Segment(manifest["active_start"], store.segment_rows, store.num_perm)
        store.segments.append(active)
        store.next_seq = manifest["next_seq"]
        patches: dict[int, tuple[Any, ...]] = {}
        clusters: dict[str, Any] = {}
        stories: dict[str, Any] = {}
        aliases: dict[str, list[Any]] = {}
        df: dict[int, int] = {}
        blobs: list[bytes] = []
        files = [manifest["checkpoint"], *manifest["deltas"]]
        for i, name in enumerate(files):
            arrays, meta = read_file(self.data_dir / name)
            gen = int(name.rsplit("-", 1)[1].split(".")[0])
            self._apply_active(active, arrays, meta["active"])
            for j, seq in enumerate(arrays["p.seq"].tolist()):
                patches[seq] = tuple(arrays[f"p.{c}"][j] for c in _PATCH_COLUMNS)
                self.patched[seq] = gen
            changes = meta["clusters"]
            if i == 0:
                clusters = changes
                stories = {s["story_id"]: s for s in changes.pop("stories")}
                aliases = {a[0]: a for a in changes.pop("aliases")}
            else:
                clusters["docs"] = changes["docs"]
                stories.update((s["story_id"], s) for s in changes["stories"])
                for sid in changes["stories_del"]:
                    stories.pop(sid, None)
                aliases.update((a[0], a) for a in changes["aliases"])
                for key in changes["aliases_del"]:
                    aliases.pop(key, None)
                if changes["df_whole"]:
                    df = {}
                for t in arrays["df.del"].tolist():
                    df.pop(t, None)
            df.update(zip(arrays["df.t"].tolist(), arrays["df.c"].tolist(), strict=True))
            for j, kind in enumerate(meta["boilerplate"]):
                if kind == "whole":
                    blob = arrays[f"b{j}"].tobytes()
                else:
                    blob = _word_patch(blobs[j], arrays[f"b{j}.at"], arrays[f"b{j}.val"])
                if j < len(blobs):
                    blobs[j] = blob
                else:
                    blobs.append(blob)
        assert active.start + active.n == store.next_seq, (active.start, active.n, store.next_seq)
        for seq, values in patches.items():
            located = store.locate(seq)
            if located is None:
                continue
            seg, row = located
            for column, value in zip(_PATCH_COLUMNS, values, strict=True):
                getattr(seg, column)[row] = value
        clusters["stories"] = list(stories.values())
        clusters["aliases"] = list(aliases.values())
        clusters["df"] = list(df.items())
        engine.clusterer = StoryClusterer.load(clusters, engine.config.cluster)
        engine.boilerplate = BoilerplateModel.load(blobs)
        # Adopt what is on disk: the next save writes only what changes from here.
        self._track(engine)
        self.manifest_id, self.gen = manifest["id"], manifest["gen"]
        self.checkpoint = manifest["checkpoint"]
        self.checkpoint_bytes = (self.data_dir / manifest["checkpoint"]).stat().st_size
        self.deltas = list(manifest["deltas"])
        self.delta_bytes = sum((self.data_dir / d).stat().st_size for d in self.deltas)
        self.active_start, self.active_rows = active.start, active.n
        self.active_pairs = len(active.key_log)
        self.blobs = blobs
        return engine

    @staticmethod
    def _apply_active(active: Segment, arrays: Arrays, meta: dict[str, Any]) -> None:
        """Rows and index entries saved for the active segment, if they are this one's."""
        if meta["start"] != active.start:
            return  # an earlier active segment, sealed since: its file has them
        assert meta["first"] == active.n, (meta["first"], active.n)
        append_rows(active, {k[2:]: v for k, v in arrays.items() if k.startswith("a.")}, meta)
        pending, key_log, seq_log = active.pending, active.key_log, active.seq_log
        for key, seq in zip(arrays["a.k"].tolist(), arrays["a.v"].tolist(), strict=True):
            pending.setdefault(key, []).append(seq)
            key_log.append(key)
            seq_log.append(seq)
