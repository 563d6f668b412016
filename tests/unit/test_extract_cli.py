"""`newsflow extract`, through a typer app of its own (as the CLI registers it)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from enrich.extract import extract_page
from enrich.extract_cli import extract_command

PARAGRAPHS = [
    "The night ferry between Skarvik and the islands will run all winter for the first time, "
    "the shipping line said on Monday, after a trial last year carried more passengers than "
    "the summer boats.",
    "The crossing takes three hours. The company will add cabins and a small cafe, and says "
    "fares stay at last year's prices until March at the earliest.",
    "Island councils have asked for the winter service for a decade, arguing that doctors, "
    "teachers and builders cannot wait for the spring timetable to travel to the mainland.",
    "The harbour master warned that storms could still cancel some sailings, and that the "
    "company would announce those on its website by noon on the day.",
]
PAGE = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Night ferry to run all winter</title>
<meta property="og:type" content="article">
<meta property="article:published_time" content="2025-10-06T07:00:00Z">
<meta name="author" content="By Ina Berg">
</head><body><nav><a href="/">Home</a> <a href="/travel">Travel</a></nav>
<article><h1>Night ferry to run all winter</h1>
{"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
</article><footer>Skarvik Post</footer></body></html>"""
URL = "https://skarvik-post.example/travel/night-ferry-to-run-all-winter"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("extract")(extract_command)

    @app.command("other")  # a second command, so that "extract" is a real subcommand
    def other() -> None:
        """Unused."""

    return app


def run(app: typer.Typer, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = CliRunner().invoke(app, ["extract", *args])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    # usage errors may come in a box, wrapped: compare them with whitespace and frame removed
    message = " ".join(result.output.translate(str.maketrans("│╭╮╰╯─", "      ")).split())
    return result.exit_code, lines, message


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    (tmp_path / "ferry.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ferry.html.gz").write_bytes(gzip.compress(PAGE.encode("utf-8")))
    (tmp_path / "broken.html.gz").write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip")
    (tmp_path / "empty.html").write_text("<html><body></body></html>", encoding="utf-8")
    return tmp_path


def test_single_page(app: typer.Typer, pages: Path) -> None:
    code, lines, _ = run(app, str(pages / "ferry.html"), "--url", URL)
    assert code == 0
    assert len(lines) == 1
    record = lines[0]
    assert list(record) == [
        "path",
        "url",
        "title",
        "text",
        "authors",
        "published_at",
        "language",
        "is_article",
        "extractor",
        "provenance",
    ]
    assert record["provenance"]["body"].startswith("trafilatura/")
    assert record["path"] == str(pages / "ferry.html")
    assert record["url"] == URL
    assert record["title"] == "Night ferry to run all winter"
    assert record["text"].startswith("The night ferry between Skarvik")
    assert record["authors"] == ["Ina Berg"]
    assert record["published_at"] == "2025-10-06T07:00:00+00:00"
    assert record["language"] == "en"
    assert record["is_article"] is True


def test_same_result_as_the_worker_extraction(app: typer.Typer, pages: Path) -> None:
    _, lines, _ = run(app, str(pages / "sub" / "ferry.html.gz"), "--url", URL)
    expected = extract_page(PAGE.encode("utf-8"), URL)
    assert lines[0]["text"] == expected.text
    assert lines[0]["title"] == expected.title
    assert lines[0]["is_article"] == expected.is_article


def test_single_page_without_url(app: typer.Typer, pages: Path) -> None:
    code, lines, _ = run(app, str(pages / "ferry.html"))
    assert code == 0
    assert lines[0]["url"] is None
    assert lines[0]["title"] == "Night ferry to run all winter"


def test_manifest_in_order_with_failures(app: typer.Typer, pages: Path) -> None:
    manifest = pages / "manifest.jsonl"
    entries: list[dict[str, str | None]] = [
        {"path": "ferry.html", "url": URL},
        {"path": "missing.html", "url": "https://skarvik-post.example/gone"},
        {"path": "sub/ferry.html.gz"},  # url is optional
        {"path": "broken.html.gz", "url": None},
        {"path": "empty.html", "url": URL},
        {"path": str(pages / "ferry.html"), "url": URL},  # absolute path
    ]
    manifest.write_text(
        "\n".join(json.dumps(entry) for entry in entries[:3])
        + "\n\n"  # a blank line is skipped
        + "\n".join(json.dumps(entry) for entry in entries[3:])
        + "\n",
        encoding="utf-8",
    )
    code, lines, _ = run(app, "--manifest", str(manifest))
    assert code == 1  # some pages failed
    assert [line["path"] for line in lines] == [entry["path"] for entry in entries]
    assert [line.get("url") for line in lines] == [entry.get("url") for entry in entries]
    ok = [line for line in lines if "error" not in line]
    assert len(ok) == 3 and all(line["title"] == "Night ferry to run all winter" for line in ok)
    errors = {line["path"]: line["error"] for line in lines if "error" in line}
    assert errors["missing.html"].startswith("file_not_found")
    assert errors["broken.html.gz"].startswith("bad_gzip")
    assert errors["empty.html"].startswith("empty_text")
    for line in lines:
        if "error" in line:
            assert set(line) == {"path", "url", "error"}


def test_manifest_all_good_exits_zero(app: typer.Typer, pages: Path) -> None:
    manifest = pages / "good.jsonl"
    manifest.write_text(json.dumps({"path": "ferry.html", "url": URL}) + "\n", encoding="utf-8")
    code, lines, _ = run(app, "--manifest", str(manifest))
    assert code == 0 and len(lines) == 1 and "error" not in lines[0]


def test_missing_single_file_is_a_page_error(app: typer.Typer, pages: Path) -> None:
    code, lines, _ = run(app, str(pages / "nope.html"))
    assert code == 1
    assert lines == [{"path": str(pages / "nope.html"), "url": None, "error": lines[0]["error"]}]
    assert lines[0]["error"].startswith("file_not_found")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"path": "ferry.html"}\n{"path": \n', "line 2"),
        ('{"path": "ferry.html"}\n\n["ferry.html"]\n', "line 3"),
        ('{"url": "https://x.example/a"}\n', "line 1"),
        ('{"path": "ferry.html", "url": 42}\n', "line 1"),
    ],
)
def test_bad_manifest_line_is_a_usage_error(
    app: typer.Typer, pages: Path, content: str, message: str
) -> None:
    manifest = pages / "bad.jsonl"
    manifest.write_text(content, encoding="utf-8")
    code, lines, output = run(app, "--manifest", str(manifest))
    assert code == 2
    assert lines == []  # nothing extracted before the manifest is known to be valid
    assert message in output
    assert "bad.jsonl" in output


@pytest.mark.parametrize(
    "args",
    [
        [],  # neither
        ["PAGE", "--manifest", "MANIFEST"],  # both
        ["--manifest", "MANIFEST", "--url", URL],  # --url is for a single page
        ["--manifest", "does-not-exist.jsonl"],
    ],
)
def test_usage_errors(app: typer.Typer, pages: Path, args: list[str]) -> None:
    manifest = pages / "good.jsonl"
    manifest.write_text(json.dumps({"path": "ferry.html"}) + "\n", encoding="utf-8")
    resolved = [
        str(pages / "ferry.html") if a == "PAGE" else str(manifest) if a == "MANIFEST" else a
        for a in args
    ]
    code, lines, output = run(app, *resolved)
    assert code == 2
    assert lines == []
    assert "Error" in output


def test_the_command_line_starts_without_the_other_commands_machinery() -> None:
    """``newsflow extract`` over a manifest pays for extraction only: the dedup engine (numpy)
    and the local stack's machinery are imported by their own commands."""
    code = (
        "import sys, pipeline.cli; "
        "heavy = ('numpy', 'enrich.dedup.engine', 'enrich.dedup.cluster', 'devstack.stack._core'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
