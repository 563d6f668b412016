"""The enrich stage: raw pages in, extracted articles out.

With an :class:`~enrich.sandbox.ExtractionBudget` (the worker's default) pages are extracted in
child processes, each within a time and memory budget; without one, in this process.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence

from enrich.extract import Extraction, ExtractionError, extract_page
from enrich.sandbox import ExtractionBudget, ExtractionPool, NotStarted, PageJob
from newsflow.contracts import Article, Provenance, RawPage
from newsflow.errors import PermanentError
from newsflow.runtime import Deferred, Done, Failed, Inbound, Output, Result, Stage
from newsflow.selectors import ExtractionOverrides
from newsflow.urls import InvalidURLError, normalize_url

_SPACE = re.compile(r"\s+")


def content_hash(text: str) -> str:
    """Hash of the body with case and white space folded: equal bodies, equal hashes."""
    folded = _SPACE.sub(" ", text).strip().casefold()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def enrich_page(page: RawPage, overrides: ExtractionOverrides | None = None) -> Article:
    """Extract ``page`` in this process, without a budget."""
    try:
        extraction = extract_page(
            page.html,
            page.fetched_url,
            feed_title=page.feed_title,
            feed_published_at=page.feed_published_at,
            overrides=overrides,
        )
    except ExtractionError as exc:
        raise PermanentError(exc.reason, exc.detail) from exc
    return article_of(page, extraction)


def page_job(page: RawPage) -> PageJob:
    return PageJob(
        html=page.html,
        url=page.fetched_url,
        outlet=page.outlet,
        feed_title=page.feed_title,
        feed_published_at=page.feed_published_at,
    )


def article_of(page: RawPage, extraction: Extraction) -> Article:
    canonical: str | None = None
    if extraction.canonical_url:
        try:
            canonical = normalize_url(extraction.canonical_url)
        except InvalidURLError:
            canonical = None
    return Article(
        id=page.id,
        url=page.url,
        canonical_url=canonical,
        outlet=page.outlet,
        title=extraction.title,
        text=extraction.text,
        authors=list(extraction.authors),
        published_at=extraction.published_at,
        language=extraction.language,
        is_article=extraction.is_article,
        content_hash=content_hash(extraction.text),
        fetched_at=page.fetched_at,
        extractor=extraction.extractor,
        provenance=Provenance(
            body=extraction.body_method,
            title=extraction.title_source,
            published_at=extraction.date_source,
            authors=extraction.authors_source,
            is_article=extraction.article_reason,
        ),
        version=page.version,
    )


class EnrichStage(Stage[RawPage]):
    name = "enrich"
    input_model = RawPage
    # Extraction has no effect but its results: the pool works on the next batch while the
    # worker produces this one.
    pipelined = True

    def __init__(
        self,
        *,
        output_topic: str,
        overrides: Mapping[str, ExtractionOverrides] | None = None,
        budget: ExtractionBudget | None = None,
    ) -> None:
        self.output_topic = output_topic
        self.overrides = dict(overrides or {})  # outlet name -> its registry selectors
        self.pool = ExtractionPool(budget, self.overrides) if budget is not None else None

    def start(self) -> None:
        """Start the extraction processes now (else on the first batch); raises
        ``PoolStartError`` when they cannot start."""
        if self.pool is not None:
            self.pool.start()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def process(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
        if self.pool is None:
            return self._process_here(batch)
        start_by = time.monotonic() + self.pool.budget.batch_seconds
        outcomes = self.pool.extract([page_job(item.message) for item in batch], start_by=start_by)
        results: list[Result] = []
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, NotStarted):
                results.append(Deferred())
            elif isinstance(outcome, Extraction):
                article = article_of(item.message, outcome)
                results.append(Done((Output(self.output_topic, article.id, article),)))
            elif isinstance(outcome, ExtractionError):
                results.append(Failed(PermanentError(outcome.reason, outcome.detail)))
            else:
                results.append(Failed(outcome))
        return results

    def _process_here(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
        results: list[Result] = []
        for item in batch:
            try:
                page = item.message
                article = enrich_page(page, self.overrides.get(page.outlet))
            except PermanentError as exc:
                results.append(Failed(exc))
                continue
            results.append(Done((Output(self.output_topic, article.id, article),)))
        return results
