"""Metadata on small hand-written pages: visible headline, header date, byline, author names."""

from __future__ import annotations

from datetime import date

from enrich.authors import split_authors
from enrich.dates import published_at
from enrich.extract import parse_html
from enrich.metadata import Metadata, json_ld_people, read_metadata
from enrich.pagemeta import PageSignals, read_signals

URL = "https://herald.example/news/bridge-reopens-after-repairs"


def _page(head: str, body: str) -> str:
    return f"<html><head>{head}</head><body>{body}</body></html>"


def _read(page: str) -> tuple[PageSignals, Metadata]:
    tree = parse_html(page)
    signals = read_signals(tree, URL)
    return signals, read_metadata(tree, URL, signals)


def test_visible_headline_wins_over_a_reworded_declared_title() -> None:
    page = _page(
        '<meta property="og:title" content="Using machine learning to personalize shopping">',
        "<header><div class='logo'><h1>Herald</h1></div></header>"
        "<article><h1>How machine learning personalizes shopping</h1><p>Text.</p></article>",
    )
    _, meta = _read(page)
    assert meta.title == "How machine learning personalizes shopping"
    assert meta.title_source == "h1"


def test_unrelated_h1_is_not_the_headline() -> None:
    page = _page(
        '<meta property="og:title" content="Bridge reopens after two years of repairs">',
        "<h1>A message from our sponsor today</h1><p>Text.</p>",
    )
    _, meta = _read(page)
    assert meta.title == "Bridge reopens after two years of repairs"
    assert meta.title_source == "og:title"


def test_truncated_json_ld_headline_is_completed_from_og_title() -> None:
    page = _page(
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        '"headline": "Bridge reopens after two years of"}</script>'
        '<meta property="og:title" content="Bridge reopens after two years of repairs">',
        "<p>Text.</p>",
    )
    _, meta = _read(page)
    assert meta.title == "Bridge reopens after two years of repairs"


def test_header_date_wins_over_a_declared_date_on_another_day() -> None:
    page = _page(
        '<meta property="article:published_time" content="2013-03-11T11:00:00-07:00">',
        "<article><h1>Nine food myths debunked</h1>"
        "<div class='meta'><span>March 20, 2023 | Wellness</span></div><p>Text.</p></article>",
    )
    signals, meta = _read(page)
    assert meta.heuristic_date == date(2023, 3, 20)
    _, day, source = published_at(
        signals,
        meta.heuristic_date,
        meta.heuristic_date_source,
        None,
    )
    assert day == date(2023, 3, 20)
    assert source == "visible:text"


def test_updated_line_does_not_replace_the_declared_publication() -> None:
    page = _page(
        '<meta property="article:published_time" content="2024-10-15T18:50:03Z">',
        "<article><h1>Nine food myths debunked</h1>"
        "<p class='byline'>By Mirel Zaman</p><p>Updated on June 18, 2025</p></article>",
    )
    signals, meta = _read(page)
    _, day, source = published_at(
        signals,
        meta.heuristic_date,
        meta.heuristic_date_source,
        None,
    )
    assert day == date(2024, 10, 15)
    assert source == "meta:article:published_time"


def test_byline_near_the_headline_not_a_comment_author() -> None:
    page = _page(
        "",
        "<article><h1>Bridge reopens after repairs</h1>"
        "<div class='post-author'>By Haley Hoekstra • March 12, 2025</div><p>Text.</p>"
        "<div class='comments'><span class='comment-author'>Troll</span></div></article>",
    )
    _, meta = _read(page)
    assert split_authors(meta.author) == ["Haley Hoekstra"]
    assert meta.authors_source == "byline"


def test_agency_is_an_author_the_publisher_is_not() -> None:
    objects = [
        {
            "@type": "NewsArticle",
            "publisher": {"@type": "Organization", "name": "Stuttgarter Zeitung"},
            "author": [{"@type": "Organization", "name": "Stuttgarter Zeitung"}],
        }
    ]
    assert json_ld_people(objects) == []
    objects[0]["author"] = [{"@type": "Organization", "name": "dpa"}]
    assert json_ld_people(objects) == ["dpa"]


def test_split_authors_cuts_dates_roles_and_signs() -> None:
    assert split_authors("Matt Miller on Dec 16, 2025 at 11:00 AM") == ["Matt Miller"]
    assert split_authors("Posted by BeauHD on Friday December 19, 2025") == ["BeauHD"]
    assert split_authors("Charlie Hills Nov 02, 2025 ∙ Paid") == ["Charlie Hills"]
    assert split_authors("Rasmus Barslund Founder") == ["Rasmus Barslund"]
    assert split_authors("Elena Oberholzer (obe), Oliver Maksan (oma)") == [
        "Elena Oberholzer",
        "Oliver Maksan",
    ]
    assert split_authors("Maria &amp; Katerina") == ["Maria", "Katerina"]
    assert split_authors("(Image: Getty Images)") == []
    assert split_authors("Kestrel Wire staff") == ["Kestrel Wire staff"]
    assert split_authors("JAMIE COLQUHOUN") == ["Jamie Colquhoun"]


def test_split_authors_reads_dates_lead_ins_and_roles_around_names() -> None:
    assert split_authors("Nov 25, 2025 Julia Arni") == ["Julia Arni"]
    assert split_authors("Dec. 19, 2025 · Niko Ruiz on behalf of the docs group") == ["Niko Ruiz"]
    assert split_authors("Andrew Lee 4 August 2010") == ["Andrew Lee"]
    assert split_authors("Nick van Mead 2022-11-23T08:10+02:00") == ["Nick van Mead"]
    assert split_authors("capital von Jemima Kelly 05. November 2024 15:36 Uhr") == ["Jemima Kelly"]
    assert split_authors("This post was written by Dana Park, Head of Marketing and Growth") == [
        "Dana Park"
    ]
    assert split_authors("Justin Moss, Trial Attorney at Moss & Moss") == ["Justin Moss"]
    assert split_authors("Harry Rabin Tech Reporter") == ["Harry Rabin"]
    assert split_authors("Written by Emma Ryan Researched by Oliver Sim") == ["Emma Ryan"]
    assert split_authors("Newsdesk news@herald.example") == ["Newsdesk"]
    assert split_authors("CM Craig McCarthy Last updated on 17 December 2025") == ["Craig McCarthy"]
    assert split_authors("Trine Jørgensen og Tôrtia Reimer-Johansen") == [
        "Trine Jørgensen",
        "Tôrtia Reimer-Johansen",
    ]
    # credentials stay: a reader sees them as part of the byline
    assert split_authors("Shelby Loos, DVM") == ["Shelby Loos", "DVM"]
    assert split_authors("Twitter Facebook") == []


def test_author_that_is_the_site_gives_way_to_the_byline() -> None:
    page = _page(
        '<meta property="og:site_name" content="Herald"><meta name="author" content="Herald">',
        "<article><h1>Bridge reopens after repairs</h1>"
        "<p class='meta'><span class='byline-name'>Ann Lee</span></p><p>Text.</p></article>",
    )
    _, meta = _read(page)
    assert (meta.author, meta.authors_source) == ("Ann Lee", "byline")
    # ... and stays when no byline names anyone
    alone = _page(
        '<meta property="og:site_name" content="Herald"><meta name="author" content="Herald">',
        "<article><h1>Bridge reopens after repairs</h1><p>Text.</p></article>",
    )
    assert _read(alone)[1].author == "Herald"


def test_publisher_as_its_own_author_is_the_last_resort() -> None:
    ld = (
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        '"publisher": {"@type": "Organization", "name": "Herald Digital"}, '
        '"author": {"@type": "Organization", "name": "Herald Digital"}}</script>'
    )
    _, meta = _read(_page(ld, "<h1>Bridge reopens after repairs</h1><p>Text.</p>"))
    assert meta.author == "Herald Digital"
    with_byline = _page(
        ld, "<h1>Bridge reopens after repairs</h1><p class='author'>Ann Lee</p><p>Text.</p>"
    )
    assert _read(with_byline)[1].author == "Ann Lee"


def test_unmarked_by_line_after_the_headline_and_not_a_sentence() -> None:
    page = _page(
        "",
        "<article><h1>Bridge reopens after repairs</h1><div><p>By Ann Lee</p></div>"
        "<p>By the end of the year the bridge will carry trams.</p></article>",
    )
    assert _read(page)[1].author == "By Ann Lee"
    sentence = _page(
        "",
        "<article><h1>Bridge reopens after repairs</h1>"
        "<p>By the end of the year the bridge will carry trams.</p></article>",
    )
    assert _read(sentence)[1].author is None


def test_byline_inside_page_builder_widgets_and_utility_classes() -> None:
    page = _page(
        "",
        "<div class='elementor-widget-container'><h1>Bridge reopens after repairs</h1>"
        "<div class='lg:mr-[--sidebar-width] flex'><h4 class='author-box__name'>Ann Lee</h4>"
        "</div></div><p>Text.</p>",
    )
    assert _read(page)[1].author == "Ann Lee"


def test_date_or_byline_set_inside_the_h1_is_not_the_headline() -> None:
    og = '<meta property="og:title" content="Top strategies to secure a harbour bridge">'
    after = _page(
        og,
        "<h1>Top strategies to secure a harbour bridge "
        "<small>Posted on July 1, 2024 by ann</small></h1><p>Text.</p>",
    )
    assert _read(after)[1].title == "Top strategies to secure a harbour bridge"
    before = _page(
        og, "<h1><time>Dec 18 2025</time> Top strategies to secure a harbour bridge</h1>"
    )
    assert _read(before)[1].title == "Top strategies to secure a harbour bridge"
    # a number that belongs to the headline stays
    kept = _page(
        '<meta property="og:title" content="Best oral care products">',
        "<h1>The 2024 Beauty Awards: Best oral care products</h1>",
    )
    assert _read(kept)[1].title == "The 2024 Beauty Awards: Best oral care products"


def test_publication_named_after_its_writers_is_dropped() -> None:
    page = _page(
        '<meta property="og:site_name" content="The Herald">'
        '<meta name="author" content="Ann Lee and Bo Chan, The Herald">',
        "<h1>Bridge reopens after repairs</h1><p>Text.</p>",
    )
    assert split_authors(_read(page)[1].author) == ["Ann Lee", "Bo Chan"]


def test_declared_login_gives_way_to_the_bylines_name() -> None:
    page = _page(
        '<meta name="author" content="ann.lee">',
        "<h1>Bridge reopens after repairs</h1><p class='author-name'>Ann Lee</p><p>Text.</p>",
    )
    assert _read(page)[1].author == "Ann Lee"


def test_json_ld_author_given_by_reference_is_looked_up() -> None:
    ld = (
        '<script type="application/ld+json">{"@graph": ['
        '{"@type": "Article", "author": {"@id": "https://herald.example/#/person/1"}},'
        '{"@type": "Person", "@id": "https://herald.example/#/person/1", "name": "Ann Lee"}'
        "]}</script>"
    )
    _, meta = _read(_page(ld, "<h1>Bridge reopens after repairs</h1><p>Text.</p>"))
    assert (meta.author, meta.authors_source) == ("Ann Lee", "json-ld:author")


def test_split_authors_reads_sections_lists_and_marks_after_names() -> None:
    assert split_authors("Posted by David at December 16, 2025 11:15 AM") == ["David"]
    assert split_authors("By TPN, in News, Portugal, Business") == ["TPN"]
    assert split_authors("Human in the Loop") == ["Human in the Loop"]
    assert split_authors("by Tracy Parker, Dietitian Page updated: 12 November 2025") == [
        "Tracy Parker",
        "Dietitian",
    ]
    assert split_authors("von APA Donnerstag 05. Juni 2025 15:44 Uhr") == ["APA"]
    assert split_authors("Ann Lee, Bo Chan, Guest Columnists") == ["Ann Lee", "Bo Chan"]
    assert split_authors("The Currency editors") == ["The Currency editors"]
    assert split_authors("Ann Lee 1 ; Bo Chan 2,3") == ["Ann Lee", "Bo Chan"]
    assert split_authors("Rapid7") == []
    # a slash between two full names parts them; agencies and editors' signs stay whole
    assert split_authors("Ann Lee/Bo Chan") == ["Ann Lee", "Bo Chan"]
    assert split_authors("AFP/Reuters") == ["AFP/Reuters"]
    assert split_authors("Sign In, Join Us") == []
    # the reviewer named after the writer's line is not the author
    assert split_authors("Ann Lee, Herald Writer Reviewed by Bo Chan Updated Jun 16, 2025") == [
        "Ann Lee"
    ]


def test_coauthors_marked_up_one_by_one_are_all_read() -> None:
    page = _page(
        '<meta name="author" content="Ann Lee">',
        "<article><h1>Bridge reopens after repairs</h1><div class='meta'>"
        "<a href='/author/ann-lee/'>Ann Lee</a><span>, </span>"
        "<a href='/author/bo-chan/'>Bo Chan</a> and <a href='/author/cy-dunn/'>Cy Dunn</a>"
        "</div><p>Text.</p></article>",
    )
    _, meta = _read(page)
    assert split_authors(meta.author) == ["Ann Lee", "Bo Chan", "Cy Dunn"]
    assert meta.authors_source == "meta"
    # a reviewer beside the writer is no co-author
    reviewed = _page(
        "",
        "<article><h1>Bridge reopens after repairs</h1><div class='meta'>"
        "<div class='post-author'>Written by Ann Lee</div>"
        "<div class='post-author'>Reviewed by Bo Chan</div></div><p>Text.</p></article>",
    )
    assert split_authors(_read(reviewed)[1].author) == ["Ann Lee"]


def test_written_by_line_or_label_in_the_author_box_after_the_text() -> None:
    filler = "".join(f"<p>Paragraph {n} of the story.</p>" for n in range(40))
    line = _page(
        "",
        f"<article><h1>Bridge reopens after repairs</h1>{filler}"
        "<div class='box'><h3>Written by Ann Lee</h3><p>Ann covers transport.</p></div>"
        "</article>",
    )
    assert split_authors(_read(line)[1].author) == ["Ann Lee"]
    label = _page(
        "",
        "<article><h1>Bridge reopens after repairs</h1>"
        "<div><p>Last updated</p><time>Aug 04, 2025</time></div>"
        "<div><p>Written by</p><p>Ann Lee</p></div><p>Text.</p></article>",
    )
    assert split_authors(_read(label)[1].author) == ["Ann Lee"]
    # "By value" is documentation, not a byline
    docs = _page("", "<article><h1>Arguments</h1><p>by value</p><p>Text.</p></article>")
    assert _read(docs)[1].author is None


def test_bold_name_opening_the_article_signs_it_when_the_site_is_the_declared_author() -> None:
    head = '<meta property="og:site_name" content="Herald"><meta name="author" content="Herald">'
    page = _page(
        head,
        "<article><h1>Bridge reopens after repairs</h1><p><em>Trams return in May</em></p>"
        "<p><strong>Ann Lee</strong></p><p><strong>The</strong> bridge reopened.</p></article>",
    )
    assert split_authors(_read(page)[1].author) == ["Ann Lee"]


def test_byline_is_found_under_the_h1_when_a_declared_title_wins() -> None:
    page = _page(
        '<meta property="og:title" content="Bridge reopens after two years of repairs">',
        "<h1>A message from our sponsor today</h1><div><span>by Ann Lee</span></div><p>Text.</p>",
    )
    _, meta = _read(page)
    assert meta.title_source == "og:title"
    assert split_authors(meta.author) == ["Ann Lee"]


def test_author_of_a_related_article_card_is_not_the_byline() -> None:
    page = _page(
        "",
        "<main><div class='hero'><h1>Bridge reopens after repairs</h1>"
        "<div class='author'><div class='author__name'>by <a>Ann Lee</a></div></div></div>"
        "<aside><article class='related-content__card'><h3>Ferry timetable changes</h3>"
        "<div itemprop='author'><span itemprop='name'>By Bo Chan</span></div></article></aside>"
        "<p>Text.</p></main>",
    )
    assert split_authors(_read(page)[1].author) == ["Ann Lee"]


def test_blog_name_set_as_h1_is_not_the_headline() -> None:
    page = _page(
        "<title>Herald Data Blog: Small adventures with small models</title>",
        "<h1>Herald Data Blog</h1><h3>Small adventures with small models</h3><p>Text.</p>",
    )
    assert _read(page)[1].title == "Herald Data Blog: Small adventures with small models"
    # a headline that is the shorter side of "Headline - Site" stays the headline
    short = _page(
        "<title>Herald wins an award - The Coastal Programming Language</title>",
        "<h1>Herald wins an award</h1><p>Text.</p>",
    )
    assert _read(short)[1].title == "Herald wins an award"


def test_split_authors_drops_share_buttons_glued_to_the_name() -> None:
    assert split_authors("By Ann Hingstonfacebooktwitterflipboardwhatsapp") == ["Ann Hingston"]
    assert split_authors("Bo Chanlinkedinemail") == ["Bo Chan"]
    # a name that merely ends like a label stays whole
    assert split_authors("Ismail Lee; Max Rex") == ["Ismail Lee", "Max Rex"]


def test_split_authors_drops_a_date_lead_in_left_after_the_name() -> None:
    assert split_authors("Von Ann Lee am") == ["Ann Lee"]
    assert split_authors("By Bo Chan on") == ["Bo Chan"]
    assert split_authors("Ann Le") == ["Ann Le"]


def test_split_authors_drops_degrees_a_semicolon_sets_apart() -> None:
    assert split_authors("Grant Tinsley; PhD") == ["Grant Tinsley"]
    assert split_authors("Grant Tinsley; Ph.D.; Bo Chan") == ["Grant Tinsley", "Bo Chan"]
    assert split_authors("Shelby Loos, DVM") == ["Shelby Loos", "DVM"]  # a comma keeps them


def test_split_authors_drops_a_phrase_after_the_names() -> None:
    assert split_authors("Peter Amende; Fuchsy designed") == ["Peter Amende"]
    assert split_authors("Ann van Lee and Bo de la Cruz") == ["Ann van Lee", "Bo de la Cruz"]
    assert split_authors("Herald staff") == ["Herald staff"]
    assert split_authors("Ann Lee; Bo Chan; dpa") == ["Ann Lee", "Bo Chan", "dpa"]  # a sign


def _paragraphs(count: int) -> str:
    return "".join(
        f"<p>The harbour bridge reopened on Monday after two years of repairs ({n}).</p>"
        for n in range(count)
    )


def test_marked_author_naming_a_person_outranks_the_site_as_declared_author() -> None:
    head = (
        "<meta property='og:site_name' content='Harbour Heart Foundation'>"
        '<script type=\'application/ld+json\'>{"@type": "Article", "headline": "Bridge '
        'reopens after repairs", "author": {"@type": "Person", "name": '
        '"Harbour Heart Foundation"}}</script>'
    )
    body = (
        "<article><h1>Bridge reopens after repairs</h1><div class='meta'>"
        "<span itemprop='author'>Tracy Parker, Dietitian</span></div>"
        f"{_paragraphs(3)}</article>"
    )
    _, meta = _read(_page(head, body))
    assert (meta.author, meta.authors_source) == ("Tracy Parker, Dietitian", "byline")


def test_posted_by_line_below_a_long_blog_post_is_its_byline() -> None:
    body = (
        "<div class='header'><h1><a href='/'>Harbour Notes</a></h1></div>"
        "<div class='post hentry'><h3 class='post-title entry-title'>Bridge reopens after "
        f"repairs</h3><div class='post-body'>{_paragraphs(800)}</div>"
        "<div class='post-footer'><span class='post-author vcard'>Posted by "
        "<span class='fn' itemprop='author'><a rel='author' href='https://blogger.example/"
        "profile/1'><span itemprop='name'>Ann Lee</span></a></span></span> "
        "<span class='post-timestamp'>at 10:30 AM</span></div></div>"
    )
    _, meta = _read(_page("<title>Harbour Notes</title>", body))
    assert split_authors(meta.author) == ["Ann Lee"]
    # the <h1> is the blog's name, linked to its front page: the post's title is marked
    assert (meta.title, meta.title_source) == ("Bridge reopens after repairs", "entry-title")
