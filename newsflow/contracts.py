"""Message contracts: one pydantic model per topic, versioned, JSON on the wire.

Every message is validated when it is produced and again when it is consumed, so a bad
message is caught at the stage that made it, and a consumer never acts on a malformed one.

Strict when producing, tolerant when consuming. Building a message with a field its model
does not declare fails, and so does ``encode``; ``decode`` ignores fields it does not know, at
every nesting level, and still refuses wrong types, missing required fields and another
``schema_version``. The compatibility rule follows: within a major version producers may add
optional fields and consumers ignore what they do not know, so producers upgrade before
consumers without a dead letter; removing, renaming or retyping a field is a new major
version (``schema_version``) with a new topic suffix (``.v2``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION: Literal[1] = 1

ArticleId = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
HttpURL = Annotated[str, Field(pattern=r"^https?://", max_length=4096)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    schema_version: Literal[1] = SCHEMA_VERSION


class RawPage(Message):
    """A fetched page, as the ingest stage saw it. Keyed by ``id`` on the raw-pages topic."""

    id: ArticleId
    url: HttpURL  # normalized
    fetched_url: HttpURL  # after redirects, as fetched
    outlet: str = Field(min_length=1)
    fetched_at: AwareDatetime = Field(default_factory=utcnow)
    http_status: int = Field(ge=100, le=599)
    content_type: str | None = None
    html: str
    # Hints from discovery (feed or sitemap entry), used when the page itself lacks them.
    feed_title: str | None = None
    feed_published_at: AwareDatetime | None = None
    # 1 for the first fetch of this URL; a changed re-fetch is produced again as version + 1.
    version: int = Field(default=1, ge=1)


class Provenance(BaseModel):
    """Which method produced each extracted field: for debugging and extraction evaluation.

    Values are stable method names, e.g. body ``trafilatura/2.3.1`` or ``outlet-selectors``,
    title ``h1`` or ``json-ld:headline``, published ``json-ld:datePublished`` or ``htmldate``,
    authors ``byline`` or ``outlet:authors``; ``None`` when the field was not found.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    body: str = Field(min_length=1)
    title: str | None = None
    published_at: str | None = None
    authors: str | None = None
    is_article: str | None = None  # the rule that decided the page is (not) an article


class StorySummary(BaseModel):
    """A story as dedup last saw it: one document per story in the stories index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    story_id: str = Field(min_length=1)
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    representative: ArticleId  # the article that stands for the story
    title: str
    articles: int = Field(ge=1)
    outlets: list[str] = Field(default_factory=list)
    # Optional, added within schema version 1: stories this article's arrival merged into
    # this one (it bridged them). Their articles now belong here; the ids are not reused.
    # Left out of the JSON when empty, so consumers that predate it read every other message.
    merged_from: list[str] = Field(default_factory=list, exclude_if=lambda v: not v)


class Article(Message):
    """An extracted article: the enrich stage's output, keyed by ``id`` on the articles topic.

    ``id`` is the Elasticsearch ``_id``. Dedup adds its decision: :class:`DedupedArticle`.
    """

    id: ArticleId
    url: HttpURL
    canonical_url: HttpURL | None = None
    outlet: str = Field(min_length=1)
    title: str | None = None
    text: str
    authors: list[str] = Field(default_factory=list)
    # In the offset the page declares (its date is the outlet's publication day); compares
    # and sorts as the same instant in any offset, as Elasticsearch's date field does.
    published_at: AwareDatetime | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    is_article: bool = True
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    fetched_at: AwareDatetime
    extracted_at: AwareDatetime = Field(default_factory=utcnow)
    extractor: str = Field(min_length=1)
    provenance: Provenance | None = None  # optional: added within schema version 1
    version: int = Field(default=1, ge=1)


class DedupReason(StrEnum):
    """Why dedup decided what it did: the layer that found the original, if any."""

    NEW = "new"  # no original: the article starts or joins a story
    # Seen again, the same id and text, gets its first decision again (its reason, not this
    # one). Only a copy decided before dedup recorded reasons (snapshot format 4) has this.
    REPLAY = "replay"
    VERSION = "version"  # the same id with changed text: a new version
    URL = "url"  # a copy at the same normalized or canonical URL
    EXACT = "exact"  # a copy with the same normalized body
    NEAR = "near"  # a near-duplicate body
    # The same outlet's copy under another URL (a new slug, an AMP or print page, an
    # "UPDATE" repost): added within schema version 1, so older messages still decode.
    SAME_OUTLET_REPOST = "same_outlet_repost"


class DedupedArticle(Article):
    """An article after dedup: the deduplicated topic's message, keyed by ``id``.

    Dedup decides every article (``is_article``): its story, why, and the original it
    copies. ``story`` is the story after this article; it is None when the story had left
    the clustering window before this copy or version arrived (the stories index keeps its
    last summary). A page that is not an article is passed through undecided, with the four
    fields None: it belongs to no story, and the index stores it without a ``story_id``, so
    every ``story_id`` in the index has a story document. ``story_id``, ``dedup_reason`` and
    ``story`` have no default: a producer states each, and a message without one of them is
    invalid.
    """

    duplicate_of: ArticleId | None = None  # the original this article copies
    story_id: str | None = Field(min_length=1)
    dedup_reason: DedupReason | None
    story: StorySummary | None

    @model_validator(mode="after")
    def _decided_if_article(self) -> DedupedArticle:
        if self.is_article and (self.story_id is None or self.dedup_reason is None):
            raise PydanticCustomError(
                "undecided_article", "an article needs its story_id and dedup_reason"
            )
        if self.story is not None and self.story.story_id != self.story_id:
            raise PydanticCustomError("other_story", "story is not the article's story_id")
        dedup_fields = (self.duplicate_of, self.story_id, self.dedup_reason, self.story)
        if not self.is_article and any(v is not None for v in dedup_fields):
            raise PydanticCustomError(
                "decided_non_article", "a page that is not an article has no dedup fields"
            )
        return self


WatchId = Annotated[str, Field(pattern=r"^w-[0-9a-f]{16}$")]
AlertKind = Literal["new_story", "story_update"]


class Watch(BaseModel):
    """A saved search: new stories matching ``query`` (search-box syntax) raise alerts.

    Stored in Elasticsearch (``{prefix}-watches``), not on a topic; the alert and webhook
    stages read it from there.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: WatchId
    name: str = Field(min_length=1, max_length=200)
    query: str = Field(min_length=1, max_length=10_000)
    webhook_url: HttpURL | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)
    created_by: str | None = None  # the API key's fingerprint, or "cli"
    # Signs this watch's webhooks (one receiver cannot forge another's). Never dumped: the
    # store writes it explicitly, and only its creator sees it, once (and on rotation).
    webhook_secret: str | None = Field(default=None, exclude=True, repr=False)


class AlertArticle(BaseModel):
    """The article that stands for the story in an alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ArticleId
    url: HttpURL
    title: str | None = None
    outlet: str = Field(min_length=1)
    published_at: AwareDatetime | None = None


class Alert(Message):
    """A watch matched a new story (or a matched story grew). Keyed by ``watch_id``.

    ``id`` (``{watch_id}:{story_id}:{kind}``) is the dedupe key: delivery is at-least-once,
    and a consumer that sees an id twice drops the second copy.
    """

    id: str = Field(pattern=r"^w-[0-9a-f]{16}:[^:\s]+:(new_story|story_update)$")
    kind: AlertKind
    watch_id: WatchId
    watch_name: str = Field(min_length=1)
    story_id: str = Field(min_length=1)
    story_title: str = ""
    story_articles: int = Field(ge=1)
    story_outlets: list[str] = Field(default_factory=list)
    article: AlertArticle
    # When the article entered the pipeline (its fetch, just before it was produced to the
    # raw-pages topic): ``matched_at - arrived_at`` is the alert's latency.
    arrived_at: AwareDatetime
    matched_at: AwareDatetime = Field(default_factory=utcnow)


ErrorKind = Literal["permanent", "retries_exhausted"]


class DeadLetter(Message):
    """A message a stage could not process, parked with its reason so it can be replayed.

    A letter must fit the dead-letter topic's message limit, and the original may not: then
    ``value`` keeps only a prefix (or nothing), ``value_truncated`` says so, and
    ``value_bytes`` and ``value_sha256`` describe the original record's value. The letter
    still names ``source_topic``, ``partition`` and ``offset``: replay re-reads the original
    from there while the topic retains it (``newsflow.dlq``). The three fields are optional,
    added within schema version 1, and left out of the JSON when unset.
    """

    stage: str
    source_topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = None
    value: str  # the original message value (UTF-8, replacement characters where invalid)
    url: str | None = None
    error_kind: ErrorKind
    reason: str = Field(min_length=1)  # stable code, e.g. ``invalid_message``, ``empty_text``
    detail: str = ""
    attempts: int = Field(default=1, ge=1)
    failed_at: AwareDatetime = Field(default_factory=utcnow)
    # True when ``value`` (and ``key``, if it was very long) is not the whole original.
    value_truncated: bool = Field(default=False, exclude_if=lambda v: not v)
    value_bytes: int | None = Field(default=None, ge=0, exclude_if=lambda v: v is None)
    value_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", exclude_if=lambda v: v is None
    )

    @model_validator(mode="after")
    def _truncated_names_its_original(self) -> DeadLetter:
        if self.value_truncated and (self.value_bytes is None or self.value_sha256 is None):
            raise PydanticCustomError(
                "truncated_without_digest",
                "a truncated letter needs the original's value_bytes and value_sha256",
            )
        return self


M = TypeVar("M", bound=Message)


class ContractError(ValueError):
    """A message does not match its topic's contract."""

    def __init__(self, model: type[Message], detail: str) -> None:
        super().__init__(f"{model.__name__} v{SCHEMA_VERSION}: {detail}")
        self.model = model
        self.detail = detail


def encode(message: Message) -> bytes:
    """Validate strictly (again, in case it was built with ``model_construct``) and serialize."""
    try:
        # Without serializer warnings: what does not fit the model fails validation just after.
        checked = type(message).model_validate(message.model_dump(warnings=False))
    except ValidationError as exc:
        raise ContractError(type(message), _summary(exc)) from exc
    return checked.model_dump_json().encode("utf-8")


def decode(model: type[M], payload: bytes | str | None) -> M:
    """Validate and parse, ignoring fields the model does not know (a newer producer's)."""
    if payload is None:
        raise ContractError(model, "empty message (tombstone)")
    try:
        # The per-call ``extra`` overrides every nested model's ``extra="forbid"`` too.
        return model.model_validate_json(payload, extra="ignore")
    except ValidationError as exc:
        raise ContractError(model, _summary(exc)) from exc


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "<message>"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
