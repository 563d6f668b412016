"""Which alerts one article calls for: the once-per-story rules, without I/O.

- A story is *new* while it has fewer than ``update_size`` articles. The first article of a
  new story that matches a watch raises that watch's ``new_story`` alert: syndicated copies
  and later articles of the story find the alert already recorded (the ledger's atomic
  create), so each (watch, story) alerts once, whichever of its articles matched first.
- A story first matched when it was already established (``update_size`` articles or more)
  never alerts: it is not new, and a watch registered today should not page for last week.
- When a story that alerted reaches ``update_size`` articles, each watch that alerted on it
  gets one ``story_update`` (recorded like the first, so never more than one), whether or not
  the article that made it grow matches the watch itself.
- An article without a story summary raises nothing: a page that is not an article, or a
  copy or version that arrived after its story left dedup's clustering window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alert.store import Claim
from newsflow.contracts import (
    Alert,
    AlertArticle,
    AlertKind,
    DedupedArticle,
    StorySummary,
    Watch,
    utcnow,
)


@dataclass(frozen=True)
class Intent:
    """An alert the article calls for, if the ledger has not recorded it yet."""

    watch: Watch
    kind: AlertKind
    article: DedupedArticle
    story: StorySummary

    @property
    def claim(self) -> Claim:
        return Claim(
            self.watch.id, self.story.story_id, self.kind, self.article.id, self.story.articles
        )


def new_story_intents(
    article: DedupedArticle, matched: Sequence[Watch], *, update_size: int
) -> list[Intent]:
    story = article.story
    if story is None or story.articles >= update_size:
        return []
    return [Intent(watch, "new_story", article, story) for watch in matched]


def update_intents(
    article: DedupedArticle,
    alerted: Mapping[str, int],
    watches: Mapping[str, Watch],
    *,
    update_size: int,
) -> list[Intent]:
    """``alerted``: watch id → the story's size when that watch's new-story alert was raised."""
    story = article.story
    if story is None or story.articles < update_size:
        return []
    return [
        Intent(watches[watch_id], "story_update", article, story)
        for watch_id, size in sorted(alerted.items())
        if size < update_size and watch_id in watches
    ]


def alert_message(intent: Intent) -> Alert:
    article, story = intent.article, intent.story
    return Alert(
        id=intent.claim.key,
        kind=intent.kind,
        watch_id=intent.watch.id,
        watch_name=intent.watch.name,
        story_id=story.story_id,
        story_title=story.title,
        story_articles=story.articles,
        story_outlets=list(story.outlets),
        article=AlertArticle(
            id=article.id,
            url=article.url,
            title=article.title,
            outlet=article.outlet,
            published_at=article.published_at,
        ),
        arrived_at=article.fetched_at,
        matched_at=utcnow(),
    )
