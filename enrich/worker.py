"""The enrich stage: raw pages in, extracted articles out."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from enrich.extract import ExtractionError, extract_page
from newsflow.contracts import Article, RawPage
from newsflow.errors import PermanentError
from newsflow.runtime import Done, Failed, Inbound, Output, Result, Stage
from newsflow.urls import InvalidURLError, normalize_url

_SPACE = re.compile(r"\s+")


def content_hash(text: str) -> str:
    """Hash of the body with case and white space folded: equal bodies, equal hashes."""
    folded = _SPACE.sub(" ", text).strip().casefold()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def enrich_page(page: RawPage) -> Article:
    try:
        extraction = extract_page(
            page.html,
            page.fetched_url,
            feed_title=page.feed_title,
            feed_published_at=page.feed_published_at,
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
        version=page.version,
    )


class EnrichStage(Stage[RawPage]):
    name = "enrich"
    input_model = RawPage

    def __init__(self, *, output_topic: str) -> None:
        self.output_topic = output_topic

    def process(self, batch: Sequence[Inbound[RawPage]]) -> Sequence[Result]:
        results: list[Result] = []
        for item in batch:
            try:
                article = enrich_page(item.message)
            except PermanentError as exc:
                results.append(Failed(exc))
                continue
            results.append(Done((Output(self.output_topic, article.id, article),)))
        return results
