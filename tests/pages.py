"""Small hand-written article pages for tests."""

from __future__ import annotations

from html import escape


def article_html(title: str, paragraphs: list[str], *, author: str = "Sam Reporter") -> str:
    body = "\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} | Test Outlet</title>
<meta property="og:type" content="article">
<meta property="og:title" content="{escape(title)}">
<meta name="author" content="{escape(author)}">
<meta property="article:published_time" content="2026-11-20T09:30:00Z">
</head><body>
<header><nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav></header>
<main><article><h1>{escape(title)}</h1>
<p class="byline">By {escape(author)}</p>
{body}
</article></main>
<footer><p>Copyright Test Outlet. All rights reserved.</p></footer>
</body></html>"""
