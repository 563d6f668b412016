"""The dedup engine: one ``observe`` per article, in arrival order, deterministic.

Layers, cheapest first: same id (replay or new version) → same normalized URL or
``rel=canonical`` → same normalized body (exact hash) → near-duplicate (MinHash + LSH,
verified by estimated Jaccard and containment over the body without learned boilerplate,
or by its first half being contained in the candidate: a copy whose outlets' footers are not
learned yet)
→ story clustering of originals. A near-duplicate of the same outlet's article is its repost
(``same_outlet_repost``): its lines are all the outlet's seen lines, so it is also compared
without only the lines seen in two originals (see :class:`_Views`). ``observe`` depends
only on the state and the input (no clock, no randomness), so replaying a changelog of
inputs rebuilds the state exactly.

An input already decided (same id, same text: a redelivery, a rewind of a batch the worker
had already observed, an unchanged re-fetch) gets its recorded decision again, flagged
``repeated``: the same reason, original, version and story (or the story that story has
merged into since), and the stories it merged. It changes nothing, not even the count that
paces eviction, so decisions after a rewind are those without it. ``replay`` is no longer a
decision of its own; it remains only for a copy decided by an engine older than snapshot
format 4, which did not record why.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from enrich.dedup.boilerplate import BoilerplateModel
from enrich.dedup.cluster import ClusterConfig, Story, StoryClusterer
from enrich.dedup.minhash import MinHasher, Signature, containment, jaccard_many
from enrich.dedup.store import ArticleStore, Segment
from enrich.dedup.text import U64, TextFeatures, features, lead_without, stable_hash64
from newsflow.contracts import DedupReason
from newsflow.urls import InvalidURLError, normalize_url

# 2: story merges; 3: first 1,000 words; 4: reasons, merges' articles; 5: same-outlet reposts
SNAPSHOT_FORMAT = 5
READABLE_FORMATS = (3, 4, 5)  # 3 reads with unrecorded reasons (see ``_recorded_reason``)

# How a row records its decision's reason (0: not recorded, a format 3 snapshot).
REASON_CODES: dict[DedupReason, int] = {
    DedupReason.NEW: 1,
    DedupReason.VERSION: 2,
    DedupReason.URL: 3,
    DedupReason.EXACT: 4,
    DedupReason.NEAR: 5,
    DedupReason.SAME_OUTLET_REPOST: 6,  # format 5: an older engine refuses the snapshot
}
REASONS_BY_CODE = {code: reason for reason, code in REASON_CODES.items()}


class SnapshotFormatError(ValueError):
    """A snapshot written by another version of the engine: rebuild from the log instead."""


class DedupInput(BaseModel):
    """One article as dedup sees it (the ``newsflow dedup`` input line)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    url: str = ""
    canonical_url: str | None = None
    outlet: str = ""
    title: str | None = None
    text: str
    published_at: AwareDatetime | None = None
    observed_at: AwareDatetime | None = None  # e.g. fetched_at; used when no published_at


class StoryUpdate(BaseModel):
    """The story document after this article: one per story in the story index."""

    story_id: str
    first_seen: datetime
    last_seen: datetime
    representative: str
    title: str
    articles: int
    outlets: list[str]
    merged_from: list[str] = Field(default_factory=list)  # stories this article merged in


class DedupDecision(BaseModel):
    """What dedup decided for one input; the article carries the first four fields.

    ``repeated``: the input had been decided before; this is that decision again (its
    ``similarity`` is not recorded, and its story is the story as it is now).
    """

    id: str
    duplicate_of: str | None
    story_id: str
    version: int
    is_new_story: bool
    reason: DedupReason
    similarity: float | None = None  # Jaccard (near) or cosine to the story (clustering)
    story: StoryUpdate | None = None  # None when the story left the clustering window
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class DedupConfig:
    window_seconds: int = 30 * 86400  # articles are remembered this long
    num_perm: int = 128
    bands: int = 32
    rows: int = 2
    near_jaccard: float = 0.5  # a copy with light edits or other boilerplate
    near_containment: float = 0.8  # a trimmed or extended copy…
    containment_min_jaccard: float = 0.15  # …not much smaller than its original
    novel_containment: float = 0.7  # few novel lines: they and the whole must be contained
    strict_jaccard: float = 0.8  # nothing novel: the whole text must match…
    strict_containment: float = 0.9  # …or be contained
    # The same outlet's repost, compared without only the lines seen in two originals: it
    # holds all of its first copy and repeats it (or the other way round, a trimmed copy)…
    repost_covers: float = 0.9
    repost_repeats: float = 0.6
    # …or both, less, when its novel lines are few or edits of the first copy's
    repost_edited: float = 0.75
    repost_novel_containment: float = 0.4
    min_shingles: int = 12  # below this the novel text alone is no evidence
    # Before its outlet's footer is learned, a copy's own text is its first part: the first
    # ``head_share`` of its shingles without boilerplate, ``near_containment`` contained in
    # the candidate
    head_share: float = 0.5
    head_min_shingles: int = 60  # a shared opening shorter than this is a template's
    boilerplate_bits: int = 25  # bit-array size of the line filters (2 ** bits bits)
    segment_rows: int = 4096
    evict_every: int = 1024  # observations between eviction passes
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass(frozen=True, slots=True)
class _Candidate:
    seq: int
    jf: float
    ju: float
    cf: float
    same_outlet: bool
    jr: float = 0.0


@dataclass(frozen=True, slots=True)
class _Views:
    """One body's MinHash views and which of its lines are boilerplate.

    ``filtered``: without the outlet's seen lines and lines seen in two originals;
    ``whole``: everything; ``repost``: without the lines seen in two originals only (the
    outlet's repeated boilerplate), keeping lines of one earlier article of the outlet, which
    is what a repost of that article is made of; ``head``: the first part of ``filtered``
    (see :meth:`DedupEngine._head`). Views that are equal are the same object.
    """

    filtered: Signature
    whole: Signature
    repost: Signature
    boilerplate: npt.NDArray[np.bool_]
    head: Signature


class DedupEngine:
    """Owns all dedup state. Exactly one engine may own a stream's state (see package doc)."""

    def __init__(self, config: DedupConfig | None = None):
        self.config = config or DedupConfig()
        c = self.config
        self.hasher = MinHasher(c.num_perm, c.bands, c.rows)
        self.store = ArticleStore(c.num_perm, c.segment_rows, max(1, c.window_seconds // 8))
        self.boilerplate = BoilerplateModel(c.boilerplate_bits)
        self.clusterer = StoryClusterer(c.cluster)
        self.watermark = 0
        self.observed = 0

    # -- the one entry point ---------------------------------------------------------

    def observe(self, item: DedupInput) -> DedupDecision:
        """Decide one article and record it. Deterministic given the state and input."""
        now = self._time(item)
        before, self.watermark = self.watermark, max(self.watermark, now)
        id_key = np.asarray([stable_hash64(item.id)], dtype=np.uint64)
        feats = features(item.text)
        url_keys = self._url_keys(item)
        chash = feats.content_hash
        hash_key = np.asarray([chash], dtype=np.uint64)
        views = self._signatures(item.outlet, feats)
        sig_f = views.filtered
        # Every layer's lookup at once: one search per segment of the window.
        hits = self.store.find_many(
            {
                "id": id_key,
                "url": url_keys,
                "hash": hash_key,
                "band": self._query_bands(views),
            }
        )
        known = self._live(hits.get("id", []), item.id)
        if known is not None and self._same_content(known, feats):
            self.watermark = before  # a later date on the same text moves nothing either
            return self._repeat(known, item)
        # Evicting after the lookups decides alike: every hit is checked against the window
        # (``_alive``), and a segment holding a live row is never evicted.
        self.observed += 1
        if self.observed % self.config.evict_every == 0:
            self.evict()
        if known is not None:
            return self._new_version(known, item, feats, now)
        keys = {"id": id_key, "url": url_keys, "hash": hash_key, "band": self._bands(sig_f)}
        outlet_code = stable_hash64(item.outlet) & 0xFFFFFFFF

        original: int | None = None
        reason = DedupReason.NEW
        similarity: float | None = None
        for seq in hits.get("url", []):
            if self._alive(seq) is not None:
                original, reason = seq, DedupReason.URL
                break
        if original is None:
            for seq in hits.get("hash", []):
                found = self._alive(seq)
                if found is not None and int(found[0].chash[found[1]]) == chash:
                    original, reason = seq, DedupReason.EXACT
                    break
        if original is None:
            best = self._near(hits.get("band", []), views, outlet_code)
            if best is not None:
                original, reason, similarity = (
                    best.seq,
                    DedupReason.SAME_OUTLET_REPOST if best.same_outlet else DedupReason.NEAR,
                    round(max(best.jf, best.ju, best.jr), 4),
                )

        if original is not None:
            located = self.store.locate(original)
            assert located is not None
            seg, row = located
            root = seg.dup_of[row] or seg.ids[row]
            story_id = self.clusterer.resolve(seg.stories[row])
            # A repost's own lines are all its outlet's seen lines: it is found by its text.
            kept = sig_f
            if reason is DedupReason.SAME_OUTLET_REPOST:
                kept = views.repost
                keys["band"] = self._bands(kept)
            self.store.append(
                article_id=item.id,
                story_id=story_id,
                duplicate_of=root,
                sig=kept.stored,
                size=kept.size,
                outlet=outlet_code,
                time=now,
                chash=chash,
                reason=REASON_CODES[reason],
                keys=keys,
            )
            story = self.clusterer.add_copy(story_id, item.outlet, now)
            return DedupDecision(
                id=item.id,
                duplicate_of=root,
                story_id=story_id,
                version=1,
                is_new_story=False,
                reason=reason,
                similarity=similarity,
                story=self._story_update(story),
            )

        self.boilerplate.learn(item.outlet, feats.lines + feats.lines_after)
        # Stories are told apart by what an article says, not by the outlet's footer.
        dropped = {line for line, flag in zip(feats.lines, views.boilerplate, strict=True) if flag}
        lead = lead_without(item.text, dropped, self.config.cluster.lead_words)
        placed = self.clusterer.assign(
            item.id, item.title or "", lead, item.outlet, now, arrival=self.watermark
        )
        assigned = placed.story
        self.store.append(
            article_id=item.id,
            story_id=assigned.story_id,
            duplicate_of=None,
            sig=sig_f.stored,
            size=sig_f.size,
            outlet=outlet_code,
            time=now,
            chash=chash,
            reason=REASON_CODES[DedupReason.NEW],
            keys=keys,
        )
        return DedupDecision(
            id=item.id,
            duplicate_of=None,
            story_id=assigned.story_id,
            version=1,
            is_new_story=placed.is_new,
            reason=DedupReason.NEW,
            similarity=None if placed.is_new else round(placed.score, 4),
            story=self._story_update(assigned, placed.merged_from),
        )

    # -- layers ----------------------------------------------------------------------

    def _same_content(self, seq: int, feats: TextFeatures) -> bool:
        located = self.store.locate(seq)
        assert located is not None
        return int(located[0].chash[located[1]]) == feats.content_hash

    def _repeat(self, seq: int, item: DedupInput) -> DedupDecision:
        """Same id and text: the recorded decision again, changing nothing."""
        located = self.store.locate(seq)
        assert located is not None
        seg, row = located
        first_story = seg.stories[row]
        story_id, dup = self.clusterer.resolve(first_story), seg.dup_of[row]
        version = int(seg.version[row])
        reason = _recorded_reason(int(seg.reason[row]), dup, version)
        started = reason is DedupReason.NEW
        merged = self.clusterer.merged_by(item.id) if started else ()
        return DedupDecision(
            id=item.id,
            duplicate_of=dup,
            story_id=story_id,
            version=version,
            is_new_story=started and first_story == item.id,
            reason=reason,
            story=self._story_update(self.clusterer.stories.get(story_id), merged),
            repeated=True,
        )

    def _new_version(
        self, seq: int, item: DedupInput, feats: TextFeatures, now: int
    ) -> DedupDecision:
        """Same id, changed text: a new version of the article, in the same story."""
        located = self.store.locate(seq)
        assert located is not None
        seg, row = located
        story_id, dup = self.clusterer.resolve(seg.stories[row]), seg.dup_of[row]
        story = self.clusterer.stories.get(story_id)
        sig_f = self._signatures(item.outlet, feats, version=True).filtered
        keys = {
            "hash": np.asarray([feats.content_hash], dtype=np.uint64),
            "band": self._bands(sig_f),
        }
        version = self.store.update(
            seq,
            sig=sig_f.stored,
            size=sig_f.size,
            chash=feats.content_hash,
            reason=REASON_CODES[DedupReason.VERSION],
            keys=keys,
        )
        if story is not None:
            story.last_seen = max(story.last_seen, now)
        return DedupDecision(
            id=item.id,
            duplicate_of=dup,
            story_id=story_id,
            version=version,
            is_new_story=False,
            reason=DedupReason.VERSION,
            story=self._story_update(story),
        )

    def _signatures(self, outlet: str, feats: TextFeatures, *, version: bool = False) -> _Views:
        """MinHash of the body without boilerplate lines, of the whole body, and of the body
        without only the lines seen in two originals (see :class:`_Views`).

        A new version ignores its outlet's filter: its previous version taught it every line.
        """
        own, repeated = self.boilerplate.boilerplate(outlet, feats.lines)
        shared = repeated & ~own
        if version:
            own = np.zeros_like(own)
        flagged = own | shared
        if not flagged.any():
            whole, head = self.hasher.views(feats.shingles, [self._head(feats, None)])
            return _Views(whole, whole, whole, flagged, head)
        keep_f = ~flagged[feats.line_of_shingle]
        if version or not (own & ~repeated).any():
            keep_h = self._head(feats, keep_f)
            whole, filtered, head = self.hasher.views(feats.shingles, [keep_f, keep_h])
            return _Views(filtered, whole, filtered, flagged, head)
        keep_r = None if not repeated.any() else ~repeated[feats.line_of_shingle]
        # Nothing novel: the text is all its outlet's seen lines, a repost's head is its own
        novel = np.count_nonzero(keep_f) >= self.config.min_shingles
        keep_h = self._head(feats, keep_f if novel else keep_r)
        whole, filtered, repost, head = self.hasher.views(feats.shingles, [keep_f, keep_r, keep_h])
        return _Views(filtered, whole, repost, flagged, head)

    def _head(
        self, feats: TextFeatures, keep: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.bool_]:
        """The first ``head_share`` of the shingles ``keep`` keeps (None: all of them): a
        copy's own text comes before its outlet's footer, learned or not, and a print copy
        of a long article starts as it does, wherever its footer falls."""
        kept = np.ones(feats.shingles.size, dtype=bool) if keep is None else keep
        if not kept.size:
            return kept
        order = np.cumsum(kept)
        head: npt.NDArray[np.bool_] = kept & (order <= order[-1] * self.config.head_share)
        return head

    def _bands(self, sig: Signature) -> U64:
        if sig.size == 0:
            return np.zeros(0, dtype=np.uint64)
        return self.hasher.band_keys(sig)

    def _query_bands(self, views: _Views) -> U64:
        """LSH keys to look up: of each distinct view of the text."""
        distinct = [views.filtered]
        for sig in (views.whole, views.repost):
            if all(sig is not seen for seen in distinct):
                distinct.append(sig)
        if len(distinct) == 1:
            return self._bands(views.filtered)
        return np.concatenate([self._bands(sig) for sig in distinct])

    def _near(self, seqs: list[int], views: _Views, outlet: int) -> _Candidate | None:
        """Best verified near-duplicate among the LSH candidates ``seqs``, or None."""
        c = self.config
        if not seqs:
            return None
        rows = [(seq, self._alive(seq)) for seq in seqs]
        live = [(seq, loc) for seq, loc in rows if loc is not None]
        if not live:
            return None
        sig_f, sig_u, sig_r, sig_h = views.filtered, views.whole, views.repost, views.head
        sigs = np.stack([loc[0].sig[loc[1]] for _, loc in live])
        sizes = [int(loc[0].size[loc[1]]) for _, loc in live]
        outlets = [int(loc[0].outlet[loc[1]]) for _, loc in live]
        jf_all = jaccard_many(sig_f.stored, sigs) if sig_f.size else np.zeros(len(live))
        ju_all = jf_all if sig_u is sig_f else jaccard_many(sig_u.stored, sigs)
        reposts = sig_r is not sig_f and sig_r.size >= c.min_shingles
        jr_all = jaccard_many(sig_r.stored, sigs) if reposts else np.zeros(len(live))
        heads = sig_h.size >= c.head_min_shingles
        jh_all = jaccard_many(sig_h.stored, sigs) if heads else np.zeros(len(live))
        best: _Candidate | None = None
        for i, (seq, _) in enumerate(live):
            jf, ju, jr = float(jf_all[i]), float(ju_all[i]), float(jr_all[i])
            cf = containment(jf, sig_f.size, sizes[i])
            cu = containment(ju, sig_u.size, sizes[i])
            same_outlet = outlets[i] == outlet
            if sig_f.size >= c.min_shingles:
                # The text without boilerplate is a copy, a trimmed or an extended copy…
                ok = jf >= c.near_jaccard or (
                    cf >= c.near_containment and jf >= c.containment_min_jaccard
                )
                # …or its few novel lines are edits of the candidate's, and the rest
                # (lines seen before) is the candidate too.
                ok = ok or (
                    jf * c.num_perm >= 3 and cf >= c.novel_containment and cu >= c.novel_containment
                )
            else:  # nothing novel: every line was seen before; the whole must match…
                ok = ju >= c.strict_jaccard or (
                    # …or be contained, in a candidate that is more than a line or two
                    cu >= c.strict_containment and sizes[i] >= c.min_shingles
                )
            if not ok and same_outlet and reposts:
                edits = sig_f.size < c.min_shingles or cf >= c.repost_novel_containment
                ok = self._reposts(jr, sig_r.size, sizes[i], edits=edits)
            if not ok and heads and sizes[i] >= sig_h.size:
                # the head of the body without boilerplate, or of a repost's (see _head)
                novel = sig_f.size >= c.min_shingles
                ok = (novel or same_outlet) and _contained(
                    float(jh_all[i]), sig_h.size, sizes[i]
                ) >= c.near_containment
            if not ok:
                continue
            cand = _Candidate(seq, jf, ju, cf, same_outlet, jr)
            if best is None or (max(jf, ju, jr), -seq) > (
                max(best.jf, best.ju, best.jr),
                -best.seq,
            ):
                best = cand
        return best

    def _reposts(self, jaccard: float, size: int, original_size: int, *, edits: bool) -> bool:
        """Whether a body of ``size`` shingles is a repost of one of ``original_size``, by
        their estimated Jaccard: it covers the original and mostly repeats it, or the other
        way round (a trimmed copy); or, when its novel lines are few or ``edits`` of the
        original's, both mostly. An unrelated brief under the outlet's footer, whose footer
        was seen only once before, misses the other brief's text and adds its own."""
        c = self.config
        shared = jaccard / (1.0 + jaccard) * (size + original_size)
        covers, repeats = shared / max(original_size, 1), shared / max(size, 1)
        least, most = min(covers, repeats), max(covers, repeats)
        return (least >= c.repost_repeats and most >= c.repost_covers) or (
            edits and least >= c.repost_edited
        )

    # -- helpers ---------------------------------------------------------------------

    def _alive(self, seq: int) -> tuple[Segment, int] | None:
        """Where ``seq`` is, if it is inside the window. Rows past the window but not yet
        evicted are ignored, so when eviction runs never changes a decision."""
        found = self.store.locate(seq)
        if found is None or int(found[0].time[found[1]]) < self.watermark - (
            self.config.window_seconds
        ):
            return None
        return found

    def _live(self, seqs: list[int], article_id: str) -> int | None:
        for seq in seqs:
            found = self._alive(seq)
            if found is not None and found[0].ids[found[1]] == article_id:
                return seq
        return None

    @staticmethod
    def _url_keys(item: DedupInput) -> np.ndarray[Any, np.dtype[np.uint64]]:
        urls = {u for u in (item.url, item.canonical_url) if u}
        keys: set[int] = set()
        for url in urls:
            try:
                keys.add(stable_hash64(normalize_url(url)))
            except InvalidURLError:
                keys.add(stable_hash64(url.strip()))
        return np.asarray(sorted(keys), dtype=np.uint64)

    def _time(self, item: DedupInput) -> int:
        moment = item.published_at or item.observed_at
        return int(moment.timestamp()) if moment is not None else self.watermark

    @staticmethod
    def _story_update(story: Story | None, merged_from: tuple[str, ...] = ()) -> StoryUpdate | None:
        if story is None:
            return None
        data = story.to_json()
        data["merged_from"] = list(merged_from)
        data["first_seen"] = datetime.fromtimestamp(data["first_seen"], tz=UTC)
        data["last_seen"] = datetime.fromtimestamp(data["last_seen"], tz=UTC)
        return StoryUpdate(**data)

    def evict(self) -> int:
        """Drop what left the windows (called every ``evict_every`` observations)."""
        dropped = self.store.evict(self.watermark - self.config.window_seconds)
        self.clusterer.evict(
            self.watermark - self.config.cluster.window_seconds,
            alias_cutoff=self.watermark - self.config.window_seconds,
        )
        return dropped

    # -- size and persistence --------------------------------------------------------

    def memory_bytes(self) -> dict[str, int]:
        """Approximate bytes held, by part: the article window, the story clusters (with
        their index and merge aliases), document frequencies, the fixed-size filters."""
        clusters = self.clusterer.nbytes()
        return {
            "articles": len(self.store),
            "store": self.store.nbytes(),
            "stories": len(self.clusterer.stories),
            "story_bytes": clusters["stories"],
            "df_bytes": clusters["df"],
            "boilerplate_filters": self.boilerplate.nbytes,
        }

    def snapshot(self) -> bytes:
        """The whole state as bytes (``.npz``, no pickle): store after a restart."""
        meta = {
            "format": SNAPSHOT_FORMAT,
            "watermark": self.watermark,
            "observed": self.observed,
            "config": asdict(self.config),
        }
        parts = {
            "meta": json.dumps(meta).encode(),
            "store": self.store.dump(),
            "clusters": json.dumps(self.clusterer.dump()).encode(),
        }
        for i, blob in enumerate(self.boilerplate.dump()):
            parts[f"boilerplate{i}"] = blob
        buf = io.BytesIO()
        np.savez(buf, **{k: np.frombuffer(v, dtype=np.uint8) for k, v in parts.items()})  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def restore(cls, data: bytes) -> DedupEngine:
        """An engine in exactly the state :meth:`snapshot` saw."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            blobs = {k: z[k].tobytes() for k in z.files}
        meta = json.loads(blobs["meta"])
        if meta["format"] not in READABLE_FORMATS:
            raise SnapshotFormatError(f"unknown dedup snapshot format {meta['format']!r}")
        raw = dict(meta["config"])
        raw["cluster"] = ClusterConfig(**raw["cluster"])
        engine = cls(DedupConfig(**raw))
        engine.watermark, engine.observed = meta["watermark"], meta["observed"]
        engine.store = ArticleStore.load(blobs["store"])
        engine.clusterer = StoryClusterer.load(json.loads(blobs["clusters"]), engine.config.cluster)
        if meta["format"] < 4:
            # Its aliases were timed by the merging article's date, which may be far behind:
            # keep them a whole window from now, which outlives every article naming them.
            aliases = engine.clusterer.aliases
            for absorbed, (survivor, _, by) in aliases.items():
                aliases[absorbed] = (survivor, engine.watermark, by)
        engine.boilerplate = BoilerplateModel.load([blobs[f"boilerplate{i}"] for i in range(3)])
        return engine


def _contained(jaccard: float, size: int, other_size: int) -> float:
    """Estimated share of a set of ``size`` in one of ``other_size``, by their Jaccard."""
    return min(1.0, jaccard / (1.0 + jaccard) * (size + other_size) / max(size, 1))


def _recorded_reason(code: int, duplicate_of: str | None, version: int) -> DedupReason:
    """The reason a row was decided with. A row restored from a format 3 snapshot has none
    recorded: an original is ``new`` (``version`` once re-fetched changed), a copy ``replay``
    (which layer found its original is not known)."""
    if code:
        return REASONS_BY_CODE[code]
    if version > 1:
        return DedupReason.VERSION
    return DedupReason.NEW if duplicate_of is None else DedupReason.REPLAY
