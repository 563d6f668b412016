"""newsflow.urls: one page, one spelling, one id."""

from __future__ import annotations

import re

import pytest

from newsflow.urls import InvalidURLError, host_of, normalize_url, url_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # scheme and host are case-insensitive; default ports go
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        # fragments go, a trailing slash goes (but the root stays "/")
        ("https://example.com/a/b/#comments", "https://example.com/a/b"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/", "https://example.com/"),
        # tracking parameters go; the rest is sorted; blank values are kept
        (
            "https://example.com/a?utm_source=rss&utm_medium=feed&b=2&a=1",
            "https://example.com/a?a=1&b=2",
        ),
        ("https://example.com/a?fbclid=x&gclid=y&mc_cid=z&_ga=1", "https://example.com/a"),
        ("https://example.com/a?UTM_Campaign=x&id=7", "https://example.com/a?id=7"),
        ("https://example.com/a?q=&page=2", "https://example.com/a?page=2&q="),
        ("https://example.com/?", "https://example.com/"),
        # percent-encoding is canonical: unreserved decoded, others encoded upper-case
        ("https://example.com/a%7Eb/%41", "https://example.com/a~b/A"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("https://example.com/caf%c3%a9", "https://example.com/caf%C3%A9"),
        ("https://example.com/café", "https://example.com/caf%C3%A9"),
        # host oddities
        ("https://example.com./a", "https://example.com/a"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://user:secret@example.com/x", "http://example.com/x"),
        ("  https://example.com/x  ", "https://example.com/x"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "https://example.com/a/b/?utm_source=x#top",
        "HTTPS://EXAMPLE.com:443/a/b?utm_medium=y",
        "https://example.com/a/b",
    ],
)
def test_normalize_url_is_idempotent_and_merges_spellings(raw: str) -> None:
    once = normalize_url(raw)
    assert normalize_url(once) == once == "https://example.com/a/b"


@pytest.mark.parametrize(
    "raw",
    ["", "example.com/a", "/relative/path", "ftp://example.com/f", "mailto:a@b.example", "http://"],
)
def test_normalize_url_rejects_non_http_urls(raw: str) -> None:
    with pytest.raises(InvalidURLError):
        normalize_url(raw)


def test_url_id_is_a_stable_hash_of_the_normalized_url() -> None:
    a = url_id("https://Example.com/story/?utm_source=rss")
    b = url_id("https://example.com/story")
    assert a == b
    assert re.fullmatch(r"[0-9a-f]{40}", a)
    assert url_id("https://example.com/other-story") != a


def test_host_of() -> None:
    assert host_of("https://News.Example.com:8080/x") == "news.example.com"
    assert host_of("not a url") == ""


def test_encoded_slash_in_path_is_preserved() -> None:
    assert normalize_url("https://example.com/a/%2F/b") == "https://example.com/a/%2F/b"


def test_unicode_and_punycode_hosts_share_an_id() -> None:
    assert url_id("http://bücher.example/x") == url_id("http://xn--bcher-kva.example/x")


def test_bad_port_raises_invalid_url_error() -> None:
    with pytest.raises(InvalidURLError):
        normalize_url("http://example.com:99999/")
