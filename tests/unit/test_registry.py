"""The outlets registry: validation errors name file, outlet and field, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from newsflow.outlets import (
    Outlet,
    Registry,
    RegistryError,
    UnknownOutletError,
    load_registry,
    parse_registry,
)
from newsflow.settings import PROJECT_ROOT, Settings

SAMPLE_REGISTRY = PROJECT_ROOT / "samples" / "outlets.yaml"


def outlet(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": "harbour-gazette",
        "display_name": "Harbour Gazette",
        "homepage": "https://www.harbourgazette.example/",
        "feeds": ["https://www.harbourgazette.example/atom.xml"],
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def write(tmp_path: Path, entries: list[object]) -> Path:
    path = tmp_path / "outlets.yaml"
    path.write_text(yaml.safe_dump({"outlets": entries}, sort_keys=False), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    return caught.value.problems


# --------------------------------------------------------------------------- the sample file


def test_sample_registry_is_valid_and_is_the_settings_default() -> None:
    assert Settings().outlets_file == SAMPLE_REGISTRY
    registry = load_registry(SAMPLE_REGISTRY)
    assert registry.names == [
        "northern-ledger",
        "harbour-gazette",
        "kestrel-wire",
        "daily-klaxon",
        "backbench-notes",
    ]
    for o in registry:
        assert o.allow_private_network
        assert o.enabled
        assert o.homepage.startswith("http://127.0.0.1:8765/")
        assert o.feeds or o.sitemaps


def test_minimal_entry_gets_defaults(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, [outlet()]))
    o = registry.get("harbour-gazette")
    assert o.schedule == "@hourly"
    assert o.enabled is True
    assert o.allow_private_network is False
    assert o.sitemaps == [] and o.allowed_domains == []
    assert o.language is None
    assert 1 <= o.max_articles_per_run <= 1000
    assert len(registry) == 1 and "harbour-gazette" in registry
    assert registry.enabled() == [o]


# --------------------------------------------------------------------------- errors


def test_error_names_file_outlet_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, [outlet(feeds=["not a url"])])
    assert problems_of(path) == [
        f"{path}: outlet 'harbour-gazette': field 'feeds.0': not a valid URL"
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            outlet(feeds=["ftp://harbourgazette.example/feed"], language="English"),
            outlet(name=None, display_name="Nameless"),
            outlet(name="Bad Name!", schedule="every hour", feeds=None),
            outlet(name="no-sources", feeds=[], sitemaps=[]),
            outlet(name="extra", colour="blue", max_articles_per_run=0),
            outlet(name="harbour-gazette"),
            "just a string",
        ],
    )
    problems = problems_of(path)
    prefix = f"{path}: "
    assert all(p.startswith(prefix) for p in problems)
    text = "\n".join(p[len(prefix) :] for p in problems)
    assert "outlet 'harbour-gazette': field 'feeds.0': not a valid URL" in text
    assert "outlet 'harbour-gazette': field 'language': not an ISO 639-1 language code" in text
    assert "outlet #1: field 'name': is required" in text
    assert "outlet 'Bad Name!': field 'name': not a valid slug" in text
    assert "outlet 'Bad Name!': field 'schedule': not a valid schedule" in text
    assert "outlet 'Bad Name!': needs at least one of 'feeds' or 'sitemaps'" in text
    assert "outlet 'no-sources': needs at least one of 'feeds' or 'sitemaps'" in text
    assert "outlet 'extra': field 'colour': unknown field" in text
    assert "outlet 'extra': field 'max_articles_per_run':" in text
    # The first harbour-gazette was invalid, so the name is not a duplicate yet...
    assert "duplicate outlet name" not in text
    assert "outlet #6: expected a mapping, got str" in text
    assert len(problems) == 10
    # ...and the exception's message carries every problem too.
    with pytest.raises(RegistryError, match="10 problems"):
        load_registry(path)


def test_duplicate_names_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, [outlet(), outlet(display_name="Again")])
    assert problems_of(path) == [
        f"{path}: outlet 'harbour-gazette': field 'name': duplicate outlet name "
        "(first used by outlet #0)"
    ]


def test_duplicate_feed_urls_are_reported(tmp_path: Path) -> None:
    feeds = ["https://example.com/feed/", "https://EXAMPLE.com/feed?utm_source=x"]
    [problem] = problems_of(write(tmp_path, [outlet(feeds=feeds)]))
    assert "field 'feeds': lists https://EXAMPLE.com/feed?utm_source=x twice" in problem


@pytest.mark.parametrize(
    "schedule",
    ["@hourly", "@daily", "@weekly", "*/15 * * * *", "0 6,18 * * mon-fri", "30 2 1 jan *"],
)
def test_valid_schedules(schedule: str, tmp_path: Path) -> None:
    assert load_registry(write(tmp_path, [outlet(schedule=schedule)])).outlets[0].schedule


@pytest.mark.parametrize(
    "schedule", ["@often", "* * * *", "60 * * * *", "*/0 * * * *", "0 0 32 * *", "5-1 * * * *"]
)
def test_invalid_schedules(schedule: str, tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, [outlet(schedule=schedule)]))
    assert "field 'schedule': not a valid schedule" in problem


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("homepage", "harbourgazette.example"),
        ("sitemaps", ["javascript:alert(1)"]),
        ("allowed_domains", ["https://cdn.example.com/"]),
        ("language", "eng"),
        ("enabled", "sometimes"),
    ],
)
def test_field_validation(field: str, value: object, tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, [outlet(**{field: value})]))
    assert f"outlet 'harbour-gazette': field '{field}" in problem


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    [problem] = problems_of(missing)
    assert problem.startswith(f"{missing}: cannot read")

    broken = tmp_path / "broken.yaml"
    broken.write_text("outlets:\n  - name: [unclosed\n", encoding="utf-8")
    [problem] = problems_of(broken)
    assert problem.startswith(f"{broken}: not valid YAML (line ")

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- just\n- a list\n", encoding="utf-8")
    [problem] = problems_of(wrong)
    assert "expected a mapping with an 'outlets' list" in problem

    extra = tmp_path / "extra.yaml"
    extra.write_text("outlet: []\n", encoding="utf-8")
    assert problems_of(extra) == [
        f"{extra}: unknown top-level key 'outlet'",
        f"{extra}: 'outlets' must be a list of outlet entries",
    ]


# --------------------------------------------------------------------------- lookups


def test_get_unknown_outlet_lists_known_ones() -> None:
    registry = load_registry(SAMPLE_REGISTRY)
    with pytest.raises(KeyError) as caught:
        registry.get("guardian")
    assert isinstance(caught.value, UnknownOutletError)
    message = str(caught.value)
    assert message.startswith("unknown outlet 'guardian'; known outlets: northern-ledger,")
    assert "backbench-notes" in message


def test_domains_and_onsite_rule() -> None:
    o = Outlet.model_validate(
        outlet(homepage="https://www.ledger.example/", allowed_domains=["Media.Example.NET"])
    )
    assert o.domains == {"ledger.example", "media.example.net"}
    assert o.is_onsite("https://ledger.example/a")
    assert o.is_onsite("https://www.ledger.example/a")
    assert o.is_onsite("https://news.ledger.example/a")
    assert o.is_onsite("https://img.media.example.net/a.jpg")
    assert not o.is_onsite("https://ledger.example.evil.com/a")
    assert not o.is_onsite("https://notledger.example/a")
    assert not o.is_onsite("not a url")

    by_ip = Outlet.model_validate(outlet(homepage="http://127.0.0.1:8765/x/"))
    assert by_ip.is_onsite("http://127.0.0.1:9999/y")
    assert not by_ip.is_onsite("http://127.0.0.2:8765/x/")


def test_own_hosts_cover_homepage_feeds_sitemaps_and_allowed_domains() -> None:
    o = Outlet.model_validate(
        outlet(
            homepage="https://www.ledger.example/",
            feeds=["https://feeds.ledgerfeeds.example/all.xml"],
            sitemaps=["https://ledger.example/news.xml"],
            allowed_domains=["cdn.ledger.example"],
        )
    )
    assert o.own_hosts == {
        "www.ledger.example",
        "feeds.ledgerfeeds.example",
        "ledger.example",
        "cdn.ledger.example",
    }


def test_rebased_moves_sample_urls_to_another_server() -> None:
    registry = load_registry(SAMPLE_REGISTRY, base_url="http://127.0.0.1:40123")
    wire = registry.get("kestrel-wire")
    assert wire.homepage == "http://127.0.0.1:40123/kestrel-wire/"
    assert wire.sitemaps == ["http://127.0.0.1:40123/kestrel-wire/sitemap.xml"]
    assert all(
        url.startswith("http://127.0.0.1:40123/")
        for o in registry
        for url in (o.homepage, *o.feeds, *o.sitemaps)
    )
    # Other origins are left alone.
    o = Outlet.model_validate(outlet(feeds=["https://feeds.example.org/x.xml"]))
    moved = o.rebased("http://127.0.0.1:9000")
    assert moved.homepage == "http://127.0.0.1:9000/"
    assert moved.feeds == ["https://feeds.example.org/x.xml"]


def test_registry_from_data_and_constructor_checks() -> None:
    registry = parse_registry({"outlets": [outlet()]}, source="inline")
    assert isinstance(registry, Registry)
    expected = "inline: outlet 'harbour-gazette': field 'homepage': is required"
    with pytest.raises(RegistryError, match=expected):
        parse_registry({"outlets": [outlet(homepage=None)]}, source="inline")
    o = registry.get("harbour-gazette")
    with pytest.raises(ValueError, match="duplicate outlet names"):
        Registry([o, o])
