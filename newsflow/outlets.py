"""The outlets registry: which news outlets we crawl, where their feeds are, and how often.

Outlets are data, kept in one YAML file (``settings.outlets_file``)::

    outlets:
      - name: harbour-gazette            # slug, unique; used in Airflow DAG ids
        display_name: Harbour Gazette
        homepage: https://www.harbourgazette.example/
        feeds: [https://www.harbourgazette.example/atom.xml]      # RSS / Atom
        sitemaps: [https://www.harbourgazette.example/news.xml]   # news sitemaps / indexes
        schedule: "@hourly"               # Airflow preset or 5-field cron
        language: en
        max_articles_per_run: 50
        allowed_domains: [cdn.harbourgazette.example]
        # Optional, for outlets without feeds/sitemaps (homepage discovery, see ingest.crawl):
        discover: true                    # allows no feeds/sitemaps: find them
        section_pages: [https://www.harbourgazette.example/world/]
        article_url_pattern: "/20[0-9]{2}/"        # regex an article link must match
        exclude_url_patterns: ["/tag/", "/author/"] # regexes that rule a link out
        # Optional, for pages that defeat the generic extractor (schema: newsflow.selectors):
        extraction:
          body: [".story-body"]           # CSS, or XPath when it starts with / ./ (
          title: "h1.headline"
          article_pages: "/news/[^/]+/$"  # URLs of article pages

With ``discover: true`` an outlet needs only a homepage: the crawl discovers feeds and sitemaps
from the homepage (``<link rel="alternate">``, robots.txt ``Sitemap:`` lines, common paths)
and as a last resort follows article-like links from the homepage and ``section_pages``.

Every entry is validated by :class:`Outlet`. All problems in a file are collected and
raised together as one :class:`RegistryError` whose messages name the file, the outlet and
the field, e.g. ``outlets.yaml: outlet 'harbour-gazette': field 'feeds.0': not a valid URL``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from newsflow.selectors import ExtractionOverrides, check_regex
from newsflow.urls import InvalidURLError, normalize_url

__all__ = [
    "AIRFLOW_PRESETS",
    "Outlet",
    "Registry",
    "RegistryError",
    "UnknownOutletError",
    "load_registry",
]

#: Airflow schedule presets that make sense for a recurring crawl.
AIRFLOW_PRESETS = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"})

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAX_URL_LENGTH = 2048
_MAX_PATTERN_LENGTH = 500
_NO_SOURCES = (
    "needs at least one of 'feeds' or 'sitemaps' "
    "(or 'discover: true' to find them from the homepage)"
)


# --------------------------------------------------------------------------- field types


def _check_url(value: str) -> str:
    value = value.strip()
    try:
        if len(value) > _MAX_URL_LENGTH:
            raise InvalidURLError("too long")
        parts = urlsplit(value)
        normalize_url(value)  # raises for anything that is not absolute http(s)
        _ = parts.port  # raises ValueError for a bad port
        if parts.username or parts.password:
            raise InvalidURLError("credentials in URL")
    except ValueError:
        raise PydanticCustomError("url", "not a valid URL") from None
    return value


def _check_domain(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    if _is_ip(host):
        return host
    labels = host.split(".")
    if len(host) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise PydanticCustomError(
            "domain", "not a valid domain name (give a bare host, e.g. 'example.com')"
        )
    return host


_CRON_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),  # minute
    (0, 23, {}),  # hour
    (1, 31, {}),  # day of month
    (
        1,
        12,
        {
            m: i
            for i, m in enumerate(
                (
                    "jan",
                    "feb",
                    "mar",
                    "apr",
                    "may",
                    "jun",
                    "jul",
                    "aug",
                    "sep",
                    "oct",
                    "nov",
                    "dec",
                ),
                start=1,
            )
        },
    ),
    (0, 7, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)


def _cron_value(token: str, low: int, high: int, names: Mapping[str, int]) -> int:
    number = names.get(token.lower())
    if number is None:
        if not token.isdigit():
            raise ValueError(token)
        number = int(token)
    if not low <= number <= high:
        raise ValueError(token)
    return number


def _valid_cron(expression: str) -> bool:
    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        return False
    try:
        for field, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
            for item in field.split(","):
                base, _, step = item.partition("/")
                if step and (not step.isdigit() or int(step) == 0):
                    return False
                if base == "*":
                    continue
                start, dash, end = base.partition("-")
                first = _cron_value(start, low, high, names)
                if dash and _cron_value(end, low, high, names) < first:
                    return False
    except ValueError:
        return False
    return True


def _check_schedule(value: str) -> str:
    value = " ".join(value.split())
    if value in AIRFLOW_PRESETS or _valid_cron(value):
        return value
    raise PydanticCustomError(
        "schedule",
        "not a valid schedule (use a 5-field cron expression or one of {presets})",
        {"presets": ", ".join(sorted(AIRFLOW_PRESETS))},
    )


def _check_pattern(value: str) -> str:
    if not value:
        raise PydanticCustomError("regex", "empty regular expression")
    if len(value) > _MAX_PATTERN_LENGTH:
        raise PydanticCustomError(
            "regex",
            "regular expression too long (at most {limit} characters)",
            {"limit": _MAX_PATTERN_LENGTH},
        )
    return check_regex(value)


URL = Annotated[str, AfterValidator(_check_url)]
Pattern = Annotated[str, AfterValidator(_check_pattern)]
Domain = Annotated[str, AfterValidator(_check_domain)]
Schedule = Annotated[str, AfterValidator(_check_schedule)]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().rstrip(".")


# --------------------------------------------------------------------------- the model


class Outlet(BaseModel):
    """One news outlet: where to discover its articles and how hard to crawl it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    homepage: URL
    feeds: list[URL] = Field(default_factory=list)
    sitemaps: list[URL] = Field(default_factory=list)
    schedule: Schedule = "@hourly"
    language: str | None = None
    max_articles_per_run: int = Field(default=50, ge=1, le=1000)
    allow_private_network: bool = False
    allowed_domains: list[Domain] = Field(default_factory=list)
    enabled: bool = True
    # Politeness: seconds between requests to this outlet's hosts (default: the setting).
    min_request_interval_seconds: float | None = Field(default=None, ge=0, le=3600)
    # Adaptive polling bounds: a feed that publishes often is polled every min minutes, a
    # quiet one no more often than every max minutes (None: every scheduled run).
    min_poll_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    max_poll_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    # Homepage discovery: with ``discover: true`` an outlet may list no feeds or sitemaps;
    # they are then found from the homepage (see ingest.crawl). Opt-in, so that an entry
    # whose feeds were forgotten is still reported.
    discover: bool = False
    # section pages whose links are followed besides the homepage's, and URL filters for
    # article links (regexes searched in the full URL; exclusions win).
    section_pages: list[URL] = Field(default_factory=list)
    article_url_pattern: Pattern | None = None
    exclude_url_patterns: list[Pattern] = Field(default_factory=list)
    # Selectors for pages the generic extractor gets wrong (schema: newsflow.selectors).
    extraction: ExtractionOverrides | None = None

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise PydanticCustomError(
                "slug",
                "not a valid slug (lower-case letters, digits and inner hyphens, "
                "at most 64 characters)",
            )
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2}", value):
            raise PydanticCustomError(
                "language", "not an ISO 639-1 language code (two lower-case letters, e.g. 'en')"
            )
        return value

    @field_validator("feeds", "sitemaps", "section_pages")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for url in value:
            key = normalize_url(url)
            if key in seen:
                raise PydanticCustomError("duplicate", "lists {url} twice", {"url": url})
            seen.add(key)
        return value

    @model_validator(mode="after")
    def _poll_bounds(self) -> Outlet:
        low, high = self.min_poll_minutes, self.max_poll_minutes
        if low is not None and high is not None and low > high:
            raise PydanticCustomError(
                "poll_bounds", "min_poll_minutes must not exceed max_poll_minutes"
            )
        return self

    @model_validator(mode="after")
    def _has_sources(self) -> Outlet:
        if not self.feeds and not self.sitemaps and not self.discover:
            raise PydanticCustomError("no_sources", _NO_SOURCES)
        return self

    @model_validator(mode="after")
    def _sections_onsite(self) -> Outlet:
        for url in self.section_pages:
            if not self.is_onsite(url):
                raise PydanticCustomError(
                    "offsite",
                    "section page {url} is not on the outlet's domains",
                    {"url": url},
                )
        return self

    # ------------------------------------------------------------------ derived facts

    @property
    def domains(self) -> frozenset[str]:
        """Domains that article links may point at: the homepage's plus ``allowed_domains``.

        A leading ``www.`` is dropped from the homepage host, so ``www.example.com`` allows
        ``example.com`` and all its subdomains.
        """
        home = _host(self.homepage)
        if home.startswith("www.") and not _is_ip(home):
            home = home[4:]
        return frozenset({home, *self.allowed_domains})

    @property
    def own_hosts(self) -> frozenset[str]:
        """Every host named in this entry (homepage, feeds, sitemaps, allowed domains).

        With ``allow_private_network`` only these hosts may resolve to private or loopback
        addresses; a redirect to any other private address is still refused.
        """
        urls = (self.homepage, *self.feeds, *self.sitemaps, *self.section_pages)
        hosts = {_host(url) for url in urls}
        return frozenset(hosts | set(self.allowed_domains))

    @property
    def needs_discovery(self) -> bool:
        """No feeds and no sitemaps in the entry: find them from the homepage."""
        return not self.feeds and not self.sitemaps

    def is_article_link(self, url: str) -> bool:
        """Whether a link found on the homepage/section pages looks like an article: onsite,
        matching ``article_url_pattern`` (if set) and none of ``exclude_url_patterns``."""
        if not self.is_onsite(url):
            return False
        if any(re.search(p, url) for p in self.exclude_url_patterns):
            return False
        if self.article_url_pattern is not None:
            return re.search(self.article_url_pattern, url) is not None
        return True

    def is_onsite(self, url: str) -> bool:
        """Whether ``url`` is on one of :attr:`domains` (a subdomain counts; IPs exactly)."""
        host = _host(url)
        if not host:
            return False
        for domain in self.domains:
            if host == domain or (not _is_ip(domain) and host.endswith("." + domain)):
                return True
        return False

    def rebased(self, base_url: str, *, from_base: str | None = None) -> Outlet:
        """A copy whose URLs on ``from_base``'s origin (default: the homepage's) move to
        ``base_url``'s origin, keeping their paths. ``base_url``'s host becomes an own host."""
        new_scheme, new_netloc = _origin(base_url)
        old = _origin(from_base or self.homepage)

        def move(url: str) -> str:
            parts = urlsplit(url)
            if (parts.scheme.lower(), parts.netloc.lower()) != old:
                return url
            return urlunsplit((new_scheme, new_netloc, parts.path, parts.query, parts.fragment))

        return self.model_validate(
            {
                **self.model_dump(),
                "homepage": move(self.homepage),
                "feeds": [move(u) for u in self.feeds],
                "sitemaps": [move(u) for u in self.sitemaps],
                "section_pages": [move(u) for u in self.section_pages],
            }
        )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return parts.scheme.lower(), parts.netloc.lower()


# --------------------------------------------------------------------------- the registry


class RegistryError(ValueError):
    """The registry file is unreadable or has invalid entries; ``problems`` lists them all."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the outlets registry"
        super().__init__(head + ":\n  " + "\n  ".join(self.problems))


class UnknownOutletError(KeyError):
    """No outlet of that name. ``str()`` is a readable message (not a quoted repr)."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = list(known)

    def __str__(self) -> str:
        known = ", ".join(self.known) or "(none)"
        return f"unknown outlet {self.name!r}; known outlets: {known}"


class Registry:
    """An ordered, immutable collection of outlets, looked up by name."""

    def __init__(self, outlets: Sequence[Outlet], *, source: Path | None = None) -> None:
        names = [o.name for o in outlets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate outlet names: {', '.join(duplicates)}")
        self._outlets = tuple(outlets)
        self._by_name = {o.name: o for o in outlets}
        self.source = source

    def __iter__(self) -> Iterator[Outlet]:
        return iter(self._outlets)

    def __len__(self) -> int:
        return len(self._outlets)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"Registry({list(self._by_name)!r}, source={self.source!s})"

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def outlets(self) -> tuple[Outlet, ...]:
        return self._outlets

    def enabled(self) -> list[Outlet]:
        return [o for o in self._outlets if o.enabled]

    def get(self, name: str) -> Outlet:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownOutletError(name, self.names) from None

    def rebased(self, base_url: str, *, from_base: str | None = None) -> Registry:
        """Move every outlet's URLs to ``base_url`` (see :meth:`Outlet.rebased`).

        Used to point the sample registry (port 8765) at a sample server on another port.
        """
        moved = [o.rebased(base_url, from_base=from_base) for o in self]
        return Registry(moved, source=self.source)


def _label(index: int, entry: object) -> str:
    if isinstance(entry, Mapping):
        name = entry.get("name")
        if isinstance(name, str) and name.strip():
            return f"outlet {name.strip()!r}"
    return f"outlet #{index}"


def _describe(error: Mapping[str, Any]) -> tuple[str, str]:
    loc = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    message = message[:1].lower() + message[1:]
    if error["type"] == "missing":
        message = "is required"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    return loc, message


def parse_registry(data: object, *, source: str = "<registry>") -> Registry:
    """Validate already-parsed YAML/JSON data (``{"outlets": [...]}``) into a Registry."""
    if not isinstance(data, Mapping):
        raise RegistryError([f"{source}: expected a mapping with an 'outlets' list at the top"])
    unknown = sorted(str(k) for k in data if k != "outlets")
    problems = [f"{source}: unknown top-level key {key!r}" for key in unknown]
    entries = data.get("outlets")
    if not isinstance(entries, list):
        problems.append(f"{source}: 'outlets' must be a list of outlet entries")
        raise RegistryError(problems)

    outlets: list[Outlet] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        label = _label(index, entry)
        if not isinstance(entry, Mapping):
            problems.append(f"{source}: {label}: expected a mapping, got {type(entry).__name__}")
            continue
        try:
            outlet = Outlet.model_validate(entry)
        except ValidationError as exc:
            for error in exc.errors():
                loc, message = _describe(error)
                where = f"field {loc!r}: " if loc else ""
                problems.append(f"{source}: {label}: {where}{message}")
            reported = any(e["type"] == "no_sources" for e in exc.errors())
            if (
                not reported
                and not entry.get("feeds")
                and not entry.get("sitemaps")
                and entry.get("discover") is not True
            ):
                # The model's own check only runs once the fields are valid; say it now.
                problems.append(f"{source}: {label}: {_NO_SOURCES}")
            continue
        if outlet.name in first_index:
            problems.append(
                f"{source}: {label}: field 'name': duplicate outlet name "
                f"(first used by outlet #{first_index[outlet.name]})"
            )
            continue
        first_index[outlet.name] = index
        outlets.append(outlet)

    if problems:
        raise RegistryError(problems)
    return Registry(outlets)


def load_registry(path: str | Path, *, base_url: str | None = None) -> Registry:
    """Load and validate the registry file; optionally rebase its URLs onto ``base_url``."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError([f"{source}: cannot read: {exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RegistryError([f"{source}: not valid YAML{where}: {problem}"]) from exc
    registry = parse_registry(data, source=source)
    registry.source = path
    if base_url is not None:
        registry = registry.rebased(base_url)
    return registry
