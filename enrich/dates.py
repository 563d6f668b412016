"""Publication dates read from the page: the date printed next to the headline, the URL's
date, and htmldate's quick search; and the choice between them, the page's declared time and
the feed's time (:func:`published_at`).

Declared times (JSON-LD, ``<meta>``, ``<time pubdate>``) are read in :mod:`enrich.pagemeta`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from enrich.pagemeta import PageSignals, plausible

log = logging.getLogger(__name__)

# --- dates --------------------------------------------------------------------------------

_URL_DATE = re.compile(
    r"/((?:19|20)\d{2})[/-](0[1-9]|1[0-2])[/-](0[1-9]|[12]\d|3[01])(?:/|$|-)"
    r"|[/-]((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?:/|$|\.)"
)


def url_date(url: str | None) -> date | None:
    """A full day in the URL's path (``/2024/05/14/``, ``-20240514/``): the publisher's own
    filing of the page, more reliable than dates found in the page's text and links."""
    if not url:
        return None
    match = _URL_DATE.search(urlsplit(url).path)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups() if g)
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    return found if found <= datetime.now(UTC).date() + timedelta(days=1) else None


def find_date(tree: Any, url: str | None) -> date | None:
    """htmldate's publication date (original, not last-modified), quick search only: the
    extensive one runs dateparser over page text, slow and more often wrong than right."""
    from htmldate import find_date as htmldate_find

    tomorrow = datetime.now(UTC) + timedelta(days=1)
    try:
        found = htmldate_find(
            tree,
            url=url,
            original_date=True,
            extensive_search=False,
            max_date=tomorrow.strftime("%Y-%m-%d"),
        )
    except Exception:
        log.warning("date search failed on %s", url, exc_info=True)
        return None
    if not isinstance(found, str):
        return None
    try:
        return date.fromisoformat(found[:10])
    except ValueError:
        return None


_DATE_CLASS = re.compile(r"date|time|publish|posted|updated|modified|meta|byline|info", re.I)
_DATE_TEXT_CUE = re.compile(r"\d{4}|\d{1,2}[./-]\d{1,2}[./-]\d{2}")
MAX_DATE_TEXT = 80
DATE_WINDOW_AFTER = 40  # elements after the headline that may hold its date line
DATE_WINDOW_BEFORE = 15  # ... and before it (kicker lines, date above the headline)
# "Updated ...": a page's last change, not its publication (used only when nothing is declared)
_UPDATED = re.compile(
    r"updat|modif|revis|aktualisiert|mis à jour|actualiza|aggiorn|bijgewerkt|opdateret", re.I
)


def visible_date(tree: Any, heading: Any, url: str | None) -> tuple[date | None, str | None]:
    """The date printed next to the headline ("Updated Dec 4, 2025", ``<time>``).

    Only the elements just after (or a few just before) the headline ``<h1>`` are read, so
    the dates of related articles and comments further down do not count.
    """
    if heading is None:
        return None, None
    from htmldate.extractors import try_date_expr

    body = tree.find("body")
    if body is None:
        return None, None
    elements = list(body.iter())
    try:
        at = elements.index(heading)
    except ValueError:
        return None, None
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    earliest = datetime(1995, 1, 1)
    latest = tomorrow.replace(tzinfo=None)
    after = elements[at + 1 : at + 1 + DATE_WINDOW_AFTER]
    before = elements[max(0, at - DATE_WINDOW_BEFORE) : at][::-1]
    inside = set(heading.iter())
    for element in [*after, *before]:
        if not isinstance(element.tag, str) or element in inside:
            continue
        if element.tag in ("script", "style", "a", "noscript"):
            continue
        value: str | None = None
        source = "visible:text"
        if element.tag == "time":
            value, source = element.get("datetime") or element.text_content(), "visible:time"
        else:
            text = element.text_content()
            if len(text) > MAX_DATE_TEXT or not _DATE_TEXT_CUE.search(text):
                continue
            marker = f"{element.get('class', '')} {element.get('id', '')}"
            if len(element) and not _DATE_CLASS.search(marker):
                continue  # a container: its own date-like child is read on its own
            value = text
        if not value:
            continue
        found = try_date_expr(value, "%Y-%m-%d", False, earliest, latest)
        if not found:
            continue
        try:
            day = date.fromisoformat(found)
        except ValueError:
            continue
        parent = element.getparent()
        context = parent.text_content() if parent is not None else element.text_content()
        if _UPDATED.search(context[: MAX_DATE_TEXT * 2]):
            source = f"{source}:updated"
        return day, source
    return None, None


def published_at(
    signals: PageSignals,
    heuristic_date: date | None,
    heuristic_source: str | None,
    feed_published_at: datetime | None,
) -> tuple[datetime | None, date | None, str | None]:
    """Header's visible date > page's declared time > URL or htmldate's date > feed's time:
    (UTC time, local day, source).

    A bare page date (no time of day) is midnight UTC, unless the feed gives a time within a
    day of it, which is then more precise and taken instead (the day stays the page's).
    """
    feed = _aware(feed_published_at) if feed_published_at else None
    if feed is not None and not plausible(feed):
        feed = None
    page: datetime | None = None
    page_has_time = False
    source: str | None = None
    declared = signals.published
    # The date printed in the article's header is what readers see (often the last update):
    # it wins over a declared date on another day, and a declared time on that day refines it.
    visible = heuristic_date if (heuristic_source or "").startswith("visible") else None
    if visible is not None and declared is not None:
        if (heuristic_source or "").endswith(":updated"):
            visible = None  # an "Updated ..." line does not replace the declared publication
        elif abs(declared.value.date() - visible) <= timedelta(days=1):
            visible = None  # the same moment, read in another time zone
    if declared is not None and (visible is None or declared.value.date() == visible):
        page, page_has_time, source = declared.value, declared.has_time, declared.source
    elif heuristic_date is not None:
        page, source = datetime.combine(heuristic_date, time(), UTC), heuristic_source
    if page is None:
        if feed is None:
            return None, None, None
        return feed.astimezone(UTC), feed.date(), "feed"
    if not page_has_time and feed is not None and abs(feed - page) <= timedelta(days=1):
        return feed.astimezone(UTC), page.date(), f"{source}+feed-time"
    return page.astimezone(UTC), page.date(), source


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value
