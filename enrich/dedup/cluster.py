"""Online story clustering: nearest centroid over TF-IDF of title, lead and named entities.

Different articles about one event (not copies) share names, places and numbers in their
headline and first paragraphs; their wording differs. Each original article is compared
with the centroids of stories active within a recent window (found through an inverted
index of centroid terms), joins the most similar one above a threshold, or starts a story.
Document frequencies are learned online from originals only, so syndication does not make a
story's words look common. All state is plain dicts: snapshot as JSON.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from enrich.dedup.text import STOPWORDS

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_ENTITY = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:[A-Z][\w'’-]*|of|the|de|van|von))*\s+[A-Z][\w'’-]*")
_MORE_STOP = (
    "new says said year years week people told time first last two three like make made "
    "get got going since still yet many much even well way back news reporter"
)
_EXTRA_STOP = STOPWORDS | frozenset(_MORE_STOP.split())


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    threshold: float = 0.28  # cosine to a centroid needed to join its story
    window_seconds: int = 3 * 86400  # a story takes new articles this long after its last
    lead_words: int = 80  # words of body text used besides the title
    centroid_terms: int = 48  # terms kept per centroid (memory bound)
    query_terms: int = 16  # highest-weighted terms used to find candidate stories
    df_horizon: int = 200_000  # documents after which document frequencies are halved


@dataclass
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
    centroid: dict[str, float] = field(default_factory=dict)
    norm: float = 1.0  # of the centroid, kept with it

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


def _sparse_dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def _norm(v: dict[str, float]) -> float:
    return math.sqrt(sum(w * w for w in v.values())) or 1.0


class StoryClusterer:
    def __init__(self, config: ClusterConfig | None = None):
        self.config = config or ClusterConfig()
        self.df: dict[str, int] = {}
        self.docs = 0
        self.stories: dict[str, Story] = {}
        self.postings: dict[str, set[str]] = {}

    # -- features --------------------------------------------------------------------

    def terms(self, title: str, text: str) -> dict[str, float]:
        """Term frequencies: title words count double, entity phrases count as terms."""
        lead = " ".join(text.split()[: self.config.lead_words])
        tf: dict[str, float] = {}
        for part, weight in ((title, 2.0), (lead, 1.0)):
            for word in _TOKEN.findall(part.casefold()):
                if word in _EXTRA_STOP or (len(word) < 3 and not word.isdigit()):
                    continue
                tf[word] = tf.get(word, 0.0) + weight
            for match in _ENTITY.findall(part):
                words = match.split()
                while words and words[0].casefold() in STOPWORDS:
                    words = words[1:]
                if len(words) >= 2:
                    key = "e:" + " ".join(words).casefold()
                    tf[key] = tf.get(key, 0.0) + weight
        return tf

    def vector(self, tf: dict[str, float]) -> dict[str, float]:
        """Unit-length TF-IDF vector (sublinear tf)."""
        n = self.docs + 1
        vec = {
            t: (1.0 + math.log(f)) * (math.log((n + 1) / (self.df.get(t, 0) + 1)) + 1.0)
            for t, f in tf.items()
        }
        norm = _norm(vec)
        return {t: w / norm for t, w in vec.items()}

    def _learn_df(self, tf: dict[str, float]) -> None:
        self.docs += 1
        for t in tf:
            self.df[t] = self.df.get(t, 0) + 1
        if self.docs > self.config.df_horizon:
            self.docs //= 2
            self.df = {t: c // 2 for t, c in self.df.items() if c > 1}

    # -- clustering ------------------------------------------------------------------

    def nearest(self, vec: dict[str, float], now: int) -> tuple[Story | None, float]:
        """The most similar active story and its cosine (read-only)."""
        top = sorted(vec.items(), key=lambda kv: (-kv[1], kv[0]))[: self.config.query_terms]
        candidates: set[str] = set()
        for term, _ in top:
            candidates.update(self.postings.get(term, ()))
        best: Story | None = None
        best_score = 0.0
        horizon = now - self.config.window_seconds
        for sid in sorted(candidates):
            story = self.stories[sid]
            if story.last_seen < horizon:
                continue
            score = _sparse_dot(vec, story.centroid) / story.norm
            if score > best_score:
                best, best_score = story, score
        return best, best_score

    def assign(
        self, article_id: str, title: str, text: str, outlet: str, now: int
    ) -> tuple[Story, bool, float]:
        """Put a new original article in a story; returns (story, is_new_story, cosine)."""
        tf = self.terms(title, text)
        vec = self.vector(tf)
        self._learn_df(tf)
        story, score = self.nearest(vec, now)
        if story is None or score < self.config.threshold:
            story = Story(article_id, now, now, article_id, title, rep_score=0.0)
            self.stories[article_id] = story
            is_new = True
        else:
            is_new = False
        story.articles += 1
        story.originals += 1
        story.last_seen = max(story.last_seen, now)
        story.first_seen = min(story.first_seen, now)
        if outlet not in story.outlets:
            story.outlets.append(outlet)
        self._add_to_centroid(story, vec)
        rep = _sparse_dot(vec, story.centroid) / story.norm
        if is_new or rep > story.rep_score + 0.05:
            story.representative, story.title, story.rep_score = article_id, title, rep
        return story, is_new, score

    def add_copy(self, story_id: str, outlet: str, now: int) -> Story | None:
        """A duplicate joins its original's story: count and outlets only, not the centroid."""
        story = self.stories.get(story_id)
        if story is None:
            return None
        story.articles += 1
        story.last_seen = max(story.last_seen, now)
        if outlet not in story.outlets:
            story.outlets.append(outlet)
        return story

    def _add_to_centroid(self, story: Story, vec: dict[str, float]) -> None:
        old = set(story.centroid)
        merged = dict(story.centroid)
        for t, w in vec.items():
            merged[t] = merged.get(t, 0.0) + w
        keep = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[: self.config.centroid_terms]
        story.centroid = dict(keep)
        story.norm = _norm(story.centroid)
        new = set(story.centroid)
        for t in old - new:
            posting = self.postings.get(t)
            if posting is not None:
                posting.discard(story.story_id)
                if not posting:
                    del self.postings[t]
        for t in new - old:
            self.postings.setdefault(t, set()).add(story.story_id)

    def evict(self, cutoff: int) -> int:
        """Forget stories last seen before ``cutoff``; returns how many."""
        old = [sid for sid, s in self.stories.items() if s.last_seen < cutoff]
        for sid in old:
            for t in self.stories.pop(sid).centroid:
                posting = self.postings.get(t)
                if posting is not None:
                    posting.discard(sid)
                    if not posting:
                        del self.postings[t]
        return len(old)

    # -- persistence -----------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "docs": self.docs,
            "df": self.df,
            "stories": [
                {
                    **s.to_json(),
                    "rep_score": s.rep_score,
                    "originals": s.originals,
                    "centroid": s.centroid,
                }
                for s in self.stories.values()
            ],
        }

    @classmethod
    def load(cls, data: dict[str, Any], config: ClusterConfig | None = None) -> StoryClusterer:
        out = cls(config)
        out.docs = int(data["docs"])
        out.df = {str(k): int(v) for k, v in data["df"].items()}
        for raw in data["stories"]:
            story = Story(
                story_id=raw["story_id"],
                first_seen=raw["first_seen"],
                last_seen=raw["last_seen"],
                representative=raw["representative"],
                title=raw["title"],
                rep_score=raw["rep_score"],
                articles=raw["articles"],
                originals=raw["originals"],
                outlets=list(raw["outlets"]),
                centroid={str(k): float(v) for k, v in raw["centroid"].items()},
            )
            story.norm = _norm(story.centroid)
            out.stories[story.story_id] = story
            for t in story.centroid:
                out.postings.setdefault(t, set()).add(story.story_id)
        return out
