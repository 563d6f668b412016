"""The alert stage: deduplicated articles in, alerts out (``newsflow worker alert``).

It consumes the deduped-articles topic in its own consumer group, in parallel with the index
stage, and never reads the articles index. Per batch: match the articles against the cached
watches, plan the alerts (``alert.planner``), claim each in the ledger (an atomic create of
``{watch_id}:{story_id}:{kind}``), and hand the claimed ones to the runner, which produces
them and commits. After the commit the records are marked ``sent``.

Delivery guarantee (to the alerts topic): at least once, duplicates only after a crash,
each carrying its dedupe key ``Alert.id``:

- crash after the claim, before the broker acked the alert: the input was not committed, so
  it is redelivered; its claim names this article and is still ``claimed``: produced again;
- crash after the ack, before the commit: the same (a duplicate with the same ``id``);
- crash after the commit, before ``sent`` is written: nothing is redelivered, the record
  stays ``claimed`` for an alert that is on the topic — harmless;
- two workers (or two copies of a story in one batch) racing for a story: one create wins,
  the other sees 409 for another article's claim and produces nothing.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from kafka import TopicPartition

from alert.matcher import Matcher, WatchCache
from alert.planner import Intent, alert_message, new_story_intents, update_intents
from alert.store import AlertLedger
from newsflow.contracts import DedupedArticle
from newsflow.runtime import Done, Inbound, Output, Result, Stage

log = logging.getLogger(__name__)

REMEMBERED = 100_000  # keys known to be recorded, stories' new-story alerts (LRU bounds)


class _Lru(OrderedDict[str, Any]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class AlertStage(Stage[DedupedArticle]):
    name = "alert"
    input_model = DedupedArticle

    def __init__(
        self,
        *,
        watches: WatchCache,
        matcher: Matcher,
        ledger: AlertLedger,
        output_topic: str,
        update_size: int,
    ) -> None:
        self.watches = watches
        self.matcher = matcher
        self.ledger = ledger
        self.output_topic = output_topic
        self.update_size = update_size
        # Alert keys this worker knows are recorded: no create is attempted for them again.
        self.recorded = _Lru(REMEMBERED)
        # story → watch → size at its new-story alert, for what this worker claimed (the
        # ledger's search is near-real-time and misses records of the last second).
        self.new_story_sizes = _Lru(REMEMBERED)
        # Keys produced by the batch in flight, per input record; marked sent after commit.
        self.pending: dict[tuple[str, int, int], list[str]] = {}
        self._started = False

    def process(self, batch: Sequence[Inbound[DedupedArticle]]) -> Sequence[Result]:
        if not self._started:
            self.ledger.refresh()  # see every record a previous worker wrote
            self._started = True
        watches = self.watches.current()
        for item in batch:
            self.pending.pop((item.topic, item.partition, item.offset), None)
        articles = [item.message for item in batch]
        per_item: list[list[Intent]] = [[] for _ in batch]
        if watches:
            eligible = [
                i
                for i, a in enumerate(articles)
                if a.story is not None and a.story.articles < self.update_size
            ]
            matched = self.matcher.match([articles[i] for i in eligible], watches)
            for i, found in zip(eligible, matched, strict=True):
                per_item[i] = new_story_intents(articles[i], found, update_size=self.update_size)
            self._claim(per_item)
            updates = self._plan_updates(articles)
            self._claim(updates)
            for i, intents in enumerate(updates):
                per_item[i].extend(intents)
        results: list[Result] = []
        for item, intents in zip(batch, per_item, strict=True):
            outputs: list[Output] = []
            keys: list[str] = []
            for intent in intents:
                alert = alert_message(intent)
                outputs.append(Output(self.output_topic, alert.watch_id, alert))
                keys.append(alert.id)
                if self.metrics is not None:
                    seconds = (alert.matched_at - alert.arrived_at).total_seconds()
                    self.metrics.alert_latency.observe(seconds)
                    self.metrics.alerts.labels(alert.kind).inc()
                log.info("alert %s: %s", alert.id, alert.article.url)
            if keys:
                self.pending[(item.topic, item.partition, item.offset)] = keys
            results.append(Done(tuple(outputs)))
        return results

    def _claim(self, per_item: list[list[Intent]]) -> None:
        """Keep, in place, only the intents whose claim is ours to produce."""
        todo: list[tuple[int, Intent]] = []
        seen: set[str] = set()
        for i, intents in enumerate(per_item):
            for intent in intents:
                key = intent.claim.key
                if key in seen or key in self.recorded:
                    continue  # a copy in this batch, or known to be recorded
                seen.add(key)
                todo.append((i, intent))
        outcomes = self.ledger.claim([intent.claim for _, intent in todo])
        keep: list[list[Intent]] = [[] for _ in per_item]
        for (i, intent), outcome in zip(todo, outcomes, strict=True):
            claim = intent.claim
            if claim.kind == "new_story" and outcome != "taken":
                sizes = self.new_story_sizes.get(claim.story_id) or {}
                self.new_story_sizes.remember(
                    claim.story_id, {**sizes, claim.watch_id: claim.story_articles}
                )
            if outcome == "taken":
                self.recorded.remember(claim.key, True)
            else:
                keep[i].append(intent)
        per_item[:] = keep

    def _plan_updates(self, articles: Sequence[DedupedArticle]) -> list[list[Intent]]:
        grown = [
            a.story.story_id
            for a in articles
            if a.story is not None and a.story.articles >= self.update_size
        ]
        if not grown:
            return [[] for _ in articles]
        known = self.ledger.new_story_sizes(sorted(set(grown)))
        by_id = {c.watch.id: c.watch for c in self.watches.current()}
        plans: list[list[Intent]] = []
        for article in articles:
            if article.story is None:
                plans.append([])
                continue
            story_id = article.story.story_id
            alerted = {**known.get(story_id, {}), **(self.new_story_sizes.get(story_id) or {})}
            plans.append(
                update_intents(article, alerted, by_id, update_size=self.update_size)
                if alerted
                else []
            )
        return plans

    def after_commit(self, offsets: dict[TopicPartition, int]) -> None:
        done: list[str] = []
        for where in list(self.pending):
            topic, partition, offset = where
            committed = offsets.get(TopicPartition(topic, partition))
            if committed is not None and offset < committed:
                keys = self.pending.pop(where)
                done.extend(keys)
        if done:
            self.ledger.mark_sent(done)
            for key in done:
                self.recorded.remember(key, True)
