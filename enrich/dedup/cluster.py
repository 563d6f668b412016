"""Online story clustering over TF-IDF of title, lead and named entities, order-robust.

Different articles about one event (not copies) share names, places and numbers in their
headline and first paragraphs; their wording differs. A new original article is compared
with the active stories found through an inverted index of their terms, each scored by its
best match among the story's centroid and a few of its first members (a story's centroid
drifts from any single angle on the event, its members do not). It joins when the cosine
clears ``threshold``, or a lower ``entity_threshold`` with named entities in common.

A story has a life and one subject. It takes new articles while it is active (``window_seconds``
since its last article), and its centroid is the mean of its first ``anchor_articles`` only,
so a long run of articles, each close to the one before, cannot drag it day by day onto
another event. An outlet's templated reports (a daily market close, a weather bulletin) share
most of their words and differ in their facts: an article whose outlet is already in a story
joins it only if it repeats enough of the story's facts (figures, dates, named entities).

Arrival order must not decide the clusters: when a new article matches two stories, it
bridges them and they merge into the oldest one. The absorbed story id stays resolvable
(:meth:`StoryClusterer.resolve`) and the decision names it (``merged_from``) so the index can
move the absorbed story's articles. An alias is timed by the caller's arrival clock (the
engine's watermark when the merge happened), not by the merging article's own date: every
article that names the absorbed story arrived before the merge, so the alias outlives all of
them when it is kept for the article window after that moment. An old-dated bridging article
would otherwise let the alias expire while copies of the absorbed story's articles could
still arrive and resolve to a story whose document the index had replaced by a redirect.

Memory is bounded and compact: terms are 64-bit hashes (no vocabulary strings), vectors are
sorted ``uint64``/``float32`` arrays, document frequencies are capped and decay.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from enrich.dedup.parts import Parts, PartsTable, QueryTerms
from enrich.dedup.text import STOPWORDS, stable_hash64

U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*(?:%|[^\W\d_]+)?")  # with its unit: "12c", "4pm"
_ENTITY = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:[A-Z][\w'’-]*|of|the|de|van|von))*\s+[A-Z][\w'’-]*")
_MORE_STOP = (
    "new says said year years week people told time first last two three like make made "
    "get got going since still yet many much even well way back news reporter"
)
_EXTRA_STOP = STOPWORDS | frozenset(_MORE_STOP.split())
_EMPTY_IDS: U64 = np.zeros(0, dtype=np.uint64)
_EMPTY_W: F32 = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    threshold: float = 0.32  # cosine to a story (centroid or member) needed to join it
    entity_threshold: float = 0.18  # …or this much with ``min_entities`` shared entities
    min_entities: int = 2
    entity_weight: float = 1.5  # an entity term counts this much more than a word
    window_seconds: int = 3 * 86400  # a story takes new articles this long after its last
    lead_words: int = 120  # words of body text used besides the title
    centroid_terms: int = 32  # terms kept per centroid (memory bound)
    members: int = 4  # first members whose vectors a story keeps (besides its centroid)
    member_terms: int = 16  # terms kept per member vector
    query_terms: int = 16  # highest-weighted terms used to find candidate stories
    index_terms: int = 16  # a story is found under its centroid's heaviest terms…
    member_index_terms: int = 8  # …and each kept member's
    df_horizon: int = 200_000  # documents after which document frequencies are halved
    df_max_terms: int = 1 << 19  # distinct terms counted before document frequencies decay
    anchor_articles: int = 12  # originals whose mean is the centroid; later ones don't move it
    story_facts: int = 24  # facts (figures, dates, entities) a story keeps, its first ones
    min_facts: int = 4  # fewer facts on either side: no fact check
    fact_agreement: float = 0.5  # share of an article's facts the story must hold when the
    # article's outlet is already in it (else it is the outlet's next templated report)


def _fold(word: str) -> str:
    """Drop a possessive and a plural ``s`` (not ``ss``): "Starmer's", "votes" → stems."""
    if word[-2:] in ("'s", "’s", "'S", "’S"):
        word = word[:-2]
    if len(word) > 4 and word[-1] in "sS" and word[-2] not in "sSuUiI":
        word = word[:-1]
    return word


@functools.lru_cache(maxsize=1 << 16)  # ~10 MB at most; common words repeat
def term_id(term: str, entity: bool) -> int:
    """A term's stable 64-bit id; the low bit says whether it is a named entity."""
    return (stable_hash64(term) & ~1) | int(entity)


@dataclass(slots=True)
class SparseVec:
    """A unit-length sparse vector: sorted term ids and their weights (once its story is in
    the clusterer's parts table, views of the story's entries there: never written to)."""

    ids: U64
    w: F32

    @classmethod
    def top(cls, weights: dict[int, float], k: int) -> SparseVec:
        """The ``k`` heaviest terms, renormalized (a truncated vector is compared as itself)."""
        keep = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        keep.sort()
        ids = np.fromiter((t for t, _ in keep), dtype=np.uint64, count=len(keep))
        w = np.fromiter((x for _, x in keep), dtype=np.float64, count=len(keep))
        norm = float(np.sqrt(np.dot(w, w))) or 1.0
        return cls(ids, (w / norm).astype(np.float32))

    def heaviest(self, k: int) -> list[int]:
        return self.ids[np.argsort(-self.w, kind="stable")[:k]].tolist()  # type: ignore[no-any-return]

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.ids.tolist(), self.w.tolist(), strict=True))

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.w.nbytes) + 2 * 112 + 56


@dataclass(slots=True)
class Story:
    """A story's running state; ``to_json`` is the story document the index stores."""

    story_id: str
    first_seen: int
    last_seen: int
    representative: str
    title: str
    rep_score: float = 0.0
    articles: int = 0
    originals: int = 0
    outlets: list[str] = field(default_factory=list)
    centroid: SparseVec = field(default_factory=lambda: SparseVec(_EMPTY_IDS, _EMPTY_W))
    members: list[SparseVec] = field(default_factory=list)  # empty while a single article
    weight: float = 0.0  # the centroid's mass before truncation (sum of member vectors)
    facts: U64 = field(default_factory=lambda: _EMPTY_IDS)  # sorted, its first articles'

    def to_json(self) -> dict[str, Any]:
        return {
            "story_id": self.story_id,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "representative": self.representative,
            "title": self.title,
            "articles": self.articles,
            "outlets": list(self.outlets),
        }

    def parts(self) -> list[SparseVec]:
        """What a new article is compared with: the centroid, then the kept members."""
        return [self.centroid, *self.members]

    def index_terms(self, config: ClusterConfig) -> set[int]:
        """The terms the inverted index lists this story under: its heaviest ones."""
        out = set(self.centroid.heaviest(config.index_terms))
        for m in self.members:
            out.update(m.heaviest(config.member_index_terms))
        return out

    def nbytes(self) -> int:
        """Approximate memory of this story (object, strings it alone holds, arrays)."""
        own = 72 + 8 * 12  # slotted object
        own += 56 + 8 * len(self.outlets)  # outlet names are shared (interned)
        own += 56 + 8 * len(self.members)
        own += 49 + len(self.title.encode("utf-8"))
        own += int(self.facts.nbytes) + 112
        return own + self.centroid.nbytes + sum(m.nbytes for m in self.members)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where ``assign`` put an article: its story, whether new, its score, stories merged."""

    story: Story
    is_new: bool
    score: float
    merged_from: tuple[str, ...] = ()


class StoryClusterer:
    def __init__(self, config: ClusterConfig | None = None):
        self.config = config or ClusterConfig()
        self.df: dict[int, int] = {}
        self.docs = 0
        self.stories: dict[str, Story] = {}
        # term → ids of the stories listed under it; a tuple (most terms name one story, and
        # a one-tuple costs a quarter of a set)
        self.postings: dict[int, tuple[str, ...]] = {}
        # absorbed → (survivor, merge time on the arrival clock, the article that merged it)
        self.aliases: dict[str, tuple[str, int, str]] = {}
        self.table = PartsTable()  # every story's parts, to score candidates

    # -- features --------------------------------------------------------------------

    def _lead(self, text: str) -> str:
        """The first ``lead_words`` words of ``text``."""
        words = self.config.lead_words
        return " ".join(text.split(maxsplit=words)[:words])

    def terms(self, title: str, text: str) -> dict[int, float]:
        """Term frequencies by term id: title words count double, entities count as terms.

        News puts the event first, so a lead word's weight falls from 1 to 0.5 along the
        lead (it also ranks otherwise equal terms when a vector is truncated). An entity is
        a run of capitalized words; each adjacent pair in it is one entity term, so "Labour
        MP Jess Phillips" and "Jess Phillips" share one. Runs mostly in capitals (a shouted
        headline) are no entities. Possessives and plurals are folded.
        """
        c = self.config
        lead = self._lead(text)
        tf: dict[int, float] = {}
        for part, weight, decay in ((title, 2.0, 0.0), (lead, 1.0, 0.5 / c.lead_words)):
            words = _TOKEN.findall(part.casefold())
            for i, word in enumerate(words):
                word = _fold(word)
                if word in _EXTRA_STOP or (len(word) < 3 and not word.isdigit()):
                    continue
                key = term_id(word, False)
                tf[key] = tf.get(key, 0.0) + weight * (1.0 - decay * i)
            for match in _ENTITY.finditer(part):
                names = [_fold(w) for w in match.group().split() if w[:1].isupper()]
                while names and names[0].casefold() in STOPWORDS:
                    names = names[1:]
                if sum(w.isupper() and len(w) > 1 for w in names) * 2 > len(names):
                    continue
                at = part.count(" ", 0, match.start())  # words before it, about
                for a, b in itertools.pairwise(names):
                    key = term_id(f"{a} {b}".casefold(), True)
                    gain = weight * c.entity_weight * (1.0 - decay * at)
                    tf[key] = tf.get(key, 0.0) + gain
        return tf

    def vector(self, tf: dict[int, float]) -> dict[int, float]:
        """Unit-length TF-IDF vector (sublinear tf)."""
        n = self.docs + 1
        vec = {
            t: (1.0 + math.log(f)) * (math.log((n + 1) / (self.df.get(t, 0) + 1)) + 1.0)
            for t, f in tf.items()
        }
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        return {t: w / norm for t, w in vec.items()}

    def facts(self, title: str, text: str, tf: dict[int, float]) -> U64:
        """What an article states, as sorted ids: the figures and dates in its title and lead,
        with their units ("7,412" and "7412" alike) and its named entities (the entity terms
        of ``tf``)."""
        lead = self._lead(text)
        found = {t for t in tf if t & 1}
        for part in (title.casefold(), lead.casefold()):
            for number in _NUMBER.findall(part):
                found.add(term_id("#" + number.replace(",", ""), False))
        return np.asarray(sorted(found), dtype=np.uint64)

    def _other_edition(self, story: Story, outlet: str, facts: U64) -> bool:
        """Whether an article of ``outlet``, already in ``story``, states other facts than
        the story: the outlet's next report in the same template, not this event."""
        c = self.config
        if outlet not in story.outlets or facts.size < c.min_facts:
            return False
        if story.facts.size < c.min_facts:
            return False
        shared = np.intersect1d(facts, story.facts, assume_unique=True).size
        return shared < c.fact_agreement * facts.size

    def _learn_df(self, tf: dict[int, float]) -> None:
        self.docs += 1
        for t in tf:
            self.df[t] = self.df.get(t, 0) + 1
        while self.docs > self.config.df_horizon or len(self.df) > self.config.df_max_terms:
            self.docs //= 2
            self.df = {t: c // 2 for t, c in self.df.items() if c > 1}

    # -- clustering ------------------------------------------------------------------

    def resolve(self, story_id: str) -> str:
        """The story a (possibly absorbed) story id now belongs to."""
        seen = 0
        while story_id in self.aliases and seen < 64:
            story_id = self.aliases[story_id][0]
            seen += 1
        return story_id

    def candidates(self, vec: dict[int, float]) -> list[str]:
        """The stories listed under one of the article's heaviest terms, in no set order.

        Stories past their active window are among them until the next eviction; they are
        scored too, and only then set aside (``matches``): looking at each candidate's time
        first cost more than scoring the few of them that are past it.
        """
        top = sorted(vec.items(), key=lambda kv: (-kv[1], kv[0]))[: self.config.query_terms]
        found: set[str] = set()
        postings = self.postings
        for term, _ in top:
            found.update(postings.get(term, ()))
        return list(found)

    def scores(self, vec: dict[int, float], story_ids: list[str]) -> tuple[F64, Ints]:
        """Per story: the best cosine over its parts, and how many entity terms it shares."""
        if not story_ids:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.intp)
        self.prepare()
        items = sorted(vec.items())
        qid = np.fromiter((t for t, _ in items), dtype=np.uint64, count=len(items))
        qw = np.fromiter((w for _, w in items), dtype=np.float64, count=len(items))
        return self.table.scores(QueryTerms(qid, qw), story_ids)

    def matches(
        self, vec: dict[int, float], now: int, outlet: str, facts: U64
    ) -> list[tuple[float, Story]]:
        """The active stories the article joins, with its score in each: a cosine over
        ``threshold``, or over ``entity_threshold`` with ``min_entities`` shared entities,
        unless it is the outlet's next templated report (``_other_edition``)."""
        c = self.config
        story_ids = self.candidates(vec)
        best, shared = self.scores(vec, story_ids)
        close = (best >= c.threshold) | ((best >= c.entity_threshold) & (shared >= c.min_entities))
        horizon = now - c.window_seconds
        found = []
        for i in np.flatnonzero(close).tolist():
            story = self.stories[story_ids[i]]
            if story.last_seen >= horizon and not self._other_edition(story, outlet, facts):
                found.append((float(best[i]), story))
        return found

    def _parts_of(self, story_id: str) -> Parts | None:
        story = self.stories.get(story_id)
        return None if story is None else [(p.ids, p.w) for p in story.parts()]

    def assign(
        self,
        article_id: str,
        title: str,
        text: str,
        outlet: str,
        now: int,
        *,
        arrival: int | None = None,
    ) -> Assignment:
        """Put a new original article in a story, merging the stories it bridges.

        ``now`` is the article's time; ``arrival`` (default ``now``) the arrival clock that
        times the aliases of the stories it merges.
        """
        tf = self.terms(title, text)
        vec = self.vector(tf)
        facts = self.facts(title, text, tf)
        self._learn_df(tf)
        matched = self.matches(vec, now, outlet, facts)
        if not matched:
            story = Story(article_id, now, now, article_id, title)
            self.stories[article_id] = story
            is_new, score = True, 0.0
            absorbed: list[Story] = []
        else:
            is_new, score = False, max(sc for sc, _ in matched)
            # The oldest matched story survives: a story id is its first article's.
            ordered = sorted((s for _, s in matched), key=lambda s: (s.first_seen, s.story_id))
            story, absorbed = ordered[0], ordered[1:]
            merged_at = now if arrival is None else arrival
            for other in absorbed:
                self._merge(story, other, merged_at, article_id)
        story.articles += 1
        story.originals += 1
        story.last_seen = max(story.last_seen, now)
        story.first_seen = min(story.first_seen, now)
        if outlet not in story.outlets:
            story.outlets.append(sys.intern(outlet))
        if story.facts.size < self.config.story_facts:
            story.facts = _union(story.facts, facts, self.config.story_facts)
        self._add_member(story, vec)
        rep = self._cosine(vec, story.centroid)
        if is_new or rep > story.rep_score + 0.05:
            story.representative, story.title, story.rep_score = article_id, title, rep
        return Assignment(story, is_new, score, tuple(s.story_id for s in absorbed))

    def add_copy(self, story_id: str, outlet: str, now: int) -> Story | None:
        """A duplicate joins its original's story: count and outlets only, not the centroid."""
        story = self.stories.get(self.resolve(story_id))
        if story is None:
            return None
        story.articles += 1
        story.last_seen = max(story.last_seen, now)
        if outlet not in story.outlets:
            story.outlets.append(sys.intern(outlet))
        return story

    @staticmethod
    def _cosine(vec: dict[int, float], part: SparseVec) -> float:
        return float(
            sum(
                w * vec.get(t, 0.0) for t, w in zip(part.ids.tolist(), part.w.tolist(), strict=True)
            )
        )

    def _add_member(self, story: Story, vec: dict[int, float]) -> None:
        """Fold a new member into the centroid; keep its own vector if among the first."""
        c = self.config
        old = story.index_terms(self.config)
        if story.originals == 1:
            story.centroid = SparseVec.top(vec, c.centroid_terms)
            story.weight = 1.0
        else:
            if not story.members:
                story.members.append(SparseVec.top(story.centroid.as_dict(), c.member_terms))
            if len(story.members) < c.members:
                story.members.append(SparseVec.top(vec, c.member_terms))
            if story.originals <= c.anchor_articles:
                self._fold(story, vec, 1.0)
        self._reindex(story, old)

    def _fold(self, story: Story, vec: dict[int, float], weight: float) -> None:
        """Centroid += weight × vec (the centroid is kept unit-length, with its mass)."""
        merged = {t: w * story.weight for t, w in story.centroid.as_dict().items()}
        for t, w in vec.items():
            merged[t] = merged.get(t, 0.0) + w * weight
        story.centroid = SparseVec.top(merged, self.config.centroid_terms)
        story.weight += weight

    def merged_by(self, article_id: str) -> tuple[str, ...]:
        """The stories ``article_id`` merged (still remembered), in id order."""
        return tuple(sorted(k for k, (_, _, by) in self.aliases.items() if by == article_id))

    def _merge(self, into: Story, other: Story, merged_at: int, by: str) -> None:
        """``other`` joins ``into``: counts, outlets, times, centroid, members; id aliased."""
        c = self.config
        old = into.index_terms(self.config)
        self._unindex(other)
        del self.stories[other.story_id]
        self.aliases[other.story_id] = (into.story_id, merged_at, by)
        for sid, (target, at, who) in list(self.aliases.items()):
            if target == other.story_id:
                self.aliases[sid] = (into.story_id, at, who)
        into.articles += other.articles
        into.originals += other.originals
        into.first_seen = min(into.first_seen, other.first_seen)
        into.last_seen = max(into.last_seen, other.last_seen)
        for outlet in other.outlets:
            if outlet not in into.outlets:
                into.outlets.append(outlet)
        if not into.members:
            into.members.append(SparseVec.top(into.centroid.as_dict(), c.member_terms))
        theirs = other.members or [SparseVec.top(other.centroid.as_dict(), c.member_terms)]
        into.members = (into.members + theirs)[: c.members]
        self._fold(into, other.centroid.as_dict(), other.weight)
        into.facts = _union(into.facts, other.facts, c.story_facts)
        if other.rep_score > into.rep_score + 0.05:
            into.representative, into.title = other.representative, other.title
            into.rep_score = other.rep_score
        self._reindex(into, old)

    def _post(self, term: int, sid: str) -> None:
        posting = self.postings.get(term, ())
        if sid not in posting:
            self.postings[term] = (*posting, sid)

    def _unpost(self, term: int, sid: str) -> None:
        posting = tuple(s for s in self.postings.get(term, ()) if s != sid)
        if posting:
            self.postings[term] = posting
        else:
            self.postings.pop(term, None)

    def _reindex(self, story: Story, old: set[int]) -> None:
        """After every change of a story's parts: its index terms, and its parts to score."""
        self.table.stale.add(story.story_id)
        new = story.index_terms(self.config)
        for t in old - new:
            self._unpost(t, story.story_id)
        for t in new - old:
            self._post(t, story.story_id)

    def _unindex(self, story: Story) -> None:
        self.table.stale.add(story.story_id)
        for t in story.index_terms(self.config):
            self._unpost(t, story.story_id)

    def evict(self, cutoff: int, alias_cutoff: int | None = None) -> int:
        """Forget stories last seen before ``cutoff`` and merges made before ``alias_cutoff``
        on the arrival clock (no article that names the absorbed id is left); returns how
        many stories."""
        old = [sid for sid, s in self.stories.items() if s.last_seen < cutoff]
        for sid in old:
            self._unindex(self.stories.pop(sid))
        if alias_cutoff is not None:
            self.aliases = {k: v for k, v in self.aliases.items() if v[1] >= alias_cutoff}
        return len(old)

    # -- size and persistence ----------------------------------------------------------

    def nbytes(self) -> dict[str, int]:
        """Approximate bytes: stories (with their index entries), and the df table."""
        stories = sum(s.nbytes() + 100 for s in self.stories.values())  # + dict entry, id
        entries = sum(len(p) for p in self.postings.values())
        postings = len(self.postings) * (36 + 40 + 48) + entries * 8
        aliases = len(self.aliases) * 250
        df = len(self.df) * 100
        table = self.table.nbytes - 12 * self.table.live  # the live terms are the stories'
        return {"stories": stories + postings + aliases + table, "df": df}

    def dump(self) -> dict[str, Any]:
        return {
            "docs": self.docs,
            "df": [[t, c] for t, c in self.df.items()],
            "aliases": [[k, v, at, by] for k, (v, at, by) in self.aliases.items()],
            "stories": [
                {
                    **s.to_json(),
                    "rep_score": s.rep_score,
                    "originals": s.originals,
                    "weight": s.weight,
                    "facts": s.facts.tolist(),
                    "parts": [[p.ids.tolist(), p.w.tolist()] for p in s.parts()],
                }
                for s in self.stories.values()
            ],
        }

    @classmethod
    def load(cls, data: dict[str, Any], config: ClusterConfig | None = None) -> StoryClusterer:
        out = cls(config)
        out.docs = int(data["docs"])
        out.df = {int(t): int(c) for t, c in data["df"]}
        # Dumps before the merging article was recorded have three fields per alias.
        out.aliases = {
            str(k): (str(v), int(at), str(rest[0]) if rest else "")
            for k, v, at, *rest in data["aliases"]
        }
        for raw in data["stories"]:
            parts = [
                SparseVec(np.asarray(i, dtype=np.uint64), np.asarray(w, dtype=np.float32))
                for i, w in raw["parts"]
            ]
            story = Story(
                story_id=raw["story_id"],
                first_seen=raw["first_seen"],
                last_seen=raw["last_seen"],
                representative=raw["representative"],
                title=raw["title"],
                rep_score=raw["rep_score"],
                articles=raw["articles"],
                originals=raw["originals"],
                outlets=[sys.intern(o) for o in raw["outlets"]],
                centroid=parts[0],
                members=parts[1:],
                weight=raw["weight"],
                facts=np.asarray(raw.get("facts", []), dtype=np.uint64),  # none before format 5
            )
            out.stories[story.story_id] = story
            for t in story.index_terms(out.config):
                out._post(t, story.story_id)
        out.table.stale = set(out.stories)
        out.prepare()
        return out

    def prepare(self) -> None:
        """Bring the parts table up to date with every story now, not on the next article:
        after a restore or a bulk load, a window's stories at once (~0.2 s at a million
        articles) would otherwise land on one article's latency."""
        for story_id in self.table.refresh(self._parts_of):
            self._adopt(self.stories[story_id])

    def _adopt(self, story: Story) -> None:
        """Point the story's parts at their entries in the table: one copy of the terms."""
        ids, w = self.table.entries(story.story_id)
        at = 0
        for part in story.parts():
            n = part.ids.size
            if n:
                part.ids, part.w = ids[at : at + n], w[at : at + n]
                at += n


def _union(kept: U64, more: U64, limit: int) -> U64:
    """``kept`` and then ``more`` up to ``limit`` ids, sorted (a story's first facts stay)."""
    if kept.size >= limit or more.size == 0:
        return kept
    extra = np.setdiff1d(more, kept, assume_unique=True)[: limit - kept.size]
    return np.union1d(kept, extra)
