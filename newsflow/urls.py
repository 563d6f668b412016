"""URL normalization: the normalized URL's hash is an article's id everywhere."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "ga_", "hsa_")
_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mkt_tok",
        "_ga",
        "_gl",
        "ref",
        "ref_src",
        "cmpid",
        "ocid",
        "smid",
        "share",
        "sr_share",
    }
)


class InvalidURLError(ValueError):
    """The string is not an absolute http(s) URL."""


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normalize_path(path: str) -> str:
    """Decode escapes of unreserved characters only (``%2F`` stays a literal, not a ``/``)."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return quote(_ESCAPE.sub(fix, path), safe="/:@!$&'()*+,;=-._~%")


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidURLError(f"invalid host name: {host!r}") from exc


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_PARAMS or lowered.startswith(_TRACKING_PREFIXES)


def normalize_url(url: str) -> str:
    """Return the canonical spelling of ``url`` so that one page has one id.

    Lower-cases scheme and host, drops default ports, fragments, tracking parameters and a
    trailing slash, sorts the query and normalizes percent-encoding of the path.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidURLError(f"not an absolute http(s) URL: {url!r}")
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    elif not host.isascii():
        host = _ascii_host(host)
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidURLError(f"invalid port in {url!r}") from exc
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalize_path(parts.path) or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    query_pairs = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)
    ]
    query = urlencode(sorted(query_pairs))
    return urlunsplit((scheme, netloc, path, query, ""))


def url_id(url: str) -> str:
    """The article id: a stable hash of the normalized URL (40 hex characters)."""
    return hashlib.sha256(normalize_url(url).encode("utf-8")).hexdigest()[:40]


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()
