"""Why an ingest URL ended as it did: every reason code, and what each one means.

Why one enum: the codes are on the wire (``newsflow crawl`` JSON lines, task summaries), label
the metrics, are stored in the crawl state, and several decisions depend on them (how a
summary counts a URL, whether a feed poll was healthy, whether an article is tried again next
run, the log level). Each member states all of that where it is defined. It is a ``StrEnum``:
a member *is* its code (``Reason.FETCHED == "fetched"``, ``str(Reason.FETCHED) == "fetched"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self

__all__ = ["Disposition", "Handling", "Reason"]


class Disposition(StrEnum):
    """How a task summary counts an article that ended with the reason."""

    #: The article was fetched (and is produced); for a feed or sitemap, it was read.
    FETCHED = "fetched"
    #: Deliberately not ingested: nothing to do (seen, unchanged, not_modified, over_limit…)
    #: or a rule said no (robots.txt, not HTML, too large, off the outlet's domains, the
    #: host's rate limit). Nothing went wrong with the crawl.
    SKIPPED = "skipped"
    #: Something went wrong: the server, the network or the content.
    FAILED = "failed"


@dataclass(frozen=True)
class Handling:
    """What the crawl does with a reason; each flag is one decision, independent of the others
    (so ``timeout`` is both failed and retried, ``rate_limited`` both skipped and retried)."""

    disposition: Disposition
    #: An article ending so is not recorded as fetched: it stays in the outlet's frontier and
    #: the next run fetches it again. (``http_error`` is retried by status, see
    #: :meth:`Reason.retried_next_run`.)
    retry_later: bool = False
    #: A feed or sitemap poll ending so is a success for feed health; any other reason counts
    #: as a failed poll (consecutive errors, ``failing``).
    poll_ok: bool = False
    #: Expected on every healthy run: the ingest task logs it at INFO, anything else at WARNING.
    routine: bool = False


_FETCHED = Disposition.FETCHED
_SKIPPED = Disposition.SKIPPED
_FAILED = Disposition.FAILED


class Reason(StrEnum):
    """Every outcome reason of the fetcher and the crawl (stable: metrics labels, JSON lines,
    summaries and the crawl state use these strings).

    Each member carries its :class:`Handling`: ``disposition`` (fetched, skipped or failed:
    the summary's bucket), ``retry_later`` (the article is left for the next run), ``poll_ok``
    (a healthy feed/sitemap poll) and ``routine`` (logged at INFO). A summary counts a source
    as ok when ``poll_ok`` or ``not_due`` (not polled this run, so not failing).
    """

    _value_: str
    handling: Handling

    def __new__(cls, value: str, handling: Handling) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.handling = handling
        return member

    # Fetch results (ingest.fetch).
    #: Fetched: an article is produced, a feed or sitemap read.
    FETCHED = "fetched", Handling(_FETCHED, poll_ok=True, routine=True)
    #: 304 to a conditional GET: the stored copy is current.
    NOT_MODIFIED = "not_modified", Handling(_SKIPPED, poll_ok=True, routine=True)
    #: No response within the timeouts, or the fetch's deadline passed.
    TIMEOUT = "timeout", Handling(_FAILED, retry_later=True)
    #: The body is over ``max_page_bytes`` (declared, received or inflated).
    TOO_LARGE = "too_large", Handling(_SKIPPED)
    #: More redirects than the policy follows.
    TOO_MANY_REDIRECTS = "too_many_redirects", Handling(_FAILED)
    #: The address (or scheme, or credentials in the URL) is not allowed: nothing sent.
    BLOCKED_ADDRESS = "blocked_address", Handling(_SKIPPED)
    #: An article URL that answered with something other than HTML.
    NOT_HTML = "not_html", Handling(_SKIPPED)
    #: The page's bytes decode as no text (binary data).
    BAD_ENCODING = "bad_encoding", Handling(_FAILED)
    #: Any other HTTP status, a 503, or a network error.
    HTTP_ERROR = "http_error", Handling(_FAILED)
    #: Outside the outlet's domains (an article link or a redirect, a sitemap not followed).
    OFFSITE = "offsite", Handling(_SKIPPED)
    #: A URL, document or page that cannot be parsed.
    PARSE_ERROR = "parse_error", Handling(_FAILED)
    #: robots.txt disallows it (or is unreachable): nothing sent.
    ROBOTS_DISALLOWED = "robots_disallowed", Handling(_SKIPPED)
    #: 429, or the host's next request slot is too far away: nothing sent.
    RATE_LIMITED = "rate_limited", Handling(_SKIPPED, retry_later=True)

    # Crawl decisions (ingest.crawl).
    #: 200, but the same body hash as last time: nothing produced.
    UNCHANGED = "unchanged", Handling(_SKIPPED, poll_ok=True, routine=True)
    #: Fetched within the revisit interval, or in this process's ``seen`` set: nothing sent.
    SEEN = "seen", Handling(_SKIPPED, routine=True)
    #: Beyond ``max_articles_per_run`` (fetched next run), or a sitemap beyond the walk's
    #: bounds.
    OVER_LIMIT = "over_limit", Handling(_SKIPPED, routine=True)
    #: A feed not due yet under adaptive polling: nothing sent.
    NOT_DUE = "not_due", Handling(_SKIPPED)
    #: Its ``rel=canonical`` URL was produced already: nothing produced.
    DUPLICATE = "duplicate", Handling(_SKIPPED)
    #: A sitemap listed deeper than the walk follows (reported only for a sitemap that was
    #: also reached at a shallower depth; otherwise it is ``over_limit``).
    TOO_DEEP = "too_deep", Handling(_FAILED)

    @property
    def disposition(self) -> Disposition:
        return self.handling.disposition

    @property
    def retry_later(self) -> bool:
        return self.handling.retry_later

    @property
    def poll_ok(self) -> bool:
        return self.handling.poll_ok

    @property
    def routine(self) -> bool:
        return self.handling.routine

    def retried_next_run(self, status: int | None) -> bool:
        """Whether an article that ended so (with this HTTP status) is left unrecorded for the
        next run: the ``retry_later`` reasons, and an ``http_error`` on the server's side
        (5xx) or with no response at all."""
        if self is Reason.HTTP_ERROR:
            return (status or 500) >= 500
        return self.retry_later
