"""The enrich stage: raw pages in, extracted articles out."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from enrich.extract import ExtractionError, extract_page
from newsflow.contracts import Article, Provenance, RawPage
from newsflow.errors import PermanentError
from newsflow.runtime import Done, Failed, Inbound, Output, Result, Stage
from newsflow.selectors import ExtractionOverrides
from newsflow.urls import InvalidURLError, normalize_url

_SPACE = re.compile(r"\s+")


def content_hash(text: str) -> str:
    """Hash of the body with case and white space folded: equal bodies, equal hashes."""
    folded = _SPACE.sub(" ", text).strip().casefold()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def enrich_page(page: RawPage, overrides: ExtractionOverrides | None = None) -> Article:
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

    def __init__(
        self, *, output_topic: str, overrides: Mapping[str, ExtractionOverrides] | None = None
    ) -> None:
        self.output_topic = output_topic
        self.overrides = dict(overrides or {})  # outlet name -> its registry selectors

    def process(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
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
