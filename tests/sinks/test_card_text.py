"""Manifest and site text in the dataset card stays text: read by a CommonMark + GFM parser
(markdown-it-py), a hostile title, author, id or URL renders as itself and adds no heading,
link, image, HTML, emphasis or table cell. Before, only `|` and `\\n` were escaped: a `\\r`
started a line (a heading, or a `<!--` hiding the rest of the card), and raw HTML and links
went through."""

from __future__ import annotations

import json

import pytest
from markdown_it import MarkdownIt

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.policy.report import md_cell, md_code
from clipfactory.testing.synth import ShotSpec, write_video

MD = MarkdownIt("commonmark").enable("table").enable("strikethrough")
HOSTILE = [
    "Sunset\r# Injected heading\r<!--",
    "[Official source](javascript:alert(1)) <img src=x onerror=alert(2)>",
    "![img](http://evil.example/x.png) *bold* __strong__ ~~gone~~ `code`",
    "# heading", "> quote", "- item", "+ item", "1. item", "3) item", "===", "a|b|c",
    "&lt;b&gt; &#60;", "C:\\videos\\a_b.mp4 \\*", "_edge_ mid_word x_", "line\u2028sep\x85nel",
    "<!-- open", "plain text, nothing odd",
]
_MARKUP = {"heading_open", "html_inline", "html_block", "link_open", "image", "em_open",
           "strong_open", "s_open", "blockquote_open", "bullet_list_open",
           "ordered_list_open", "code_inline", "hr", "softbreak", "hardbreak"}


def _one_line(text):
    for ch in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029":
        text = text.replace(ch, " ")
    return " ".join(text.split(" "))


def _inline(tokens):
    return [c for t in tokens if t.type == "inline" for c in t.children]


@pytest.mark.parametrize("text", HOSTILE)
def test_md_cell_renders_as_its_text_in_a_list_item_and_a_table_cell(text):
    want = _one_line(text)
    toks = MD.parse(f"- Video by {md_cell(text)}, more\n")
    kids = _inline(toks)
    assert not {t.type for t in kids} & _MARKUP, [t.type for t in kids]
    assert [t.type for t in toks].count("bullet_list_open") == 1
    assert "".join(t.content for t in kids if t.type == "text") == f"Video by {want}, more"

    toks = MD.parse(f"| a | b |\n|---|---|\n| {md_cell(text)} | 2 |\n")
    cells = [t for t in toks if t.type == "inline"]
    assert len(cells) == 4  # two headers, two cells: the text stayed in its cell
    assert not {t.type for t in cells[2].children} & _MARKUP
    assert "".join(t.content for t in cells[2].children if t.type == "text") == want.strip()


@pytest.mark.parametrize("text", ["a`c|d", "`x", "x``", "plain", " sp ", "a\rb"])
def test_md_code_is_one_code_span_of_the_text(text):
    for table in (False, True):
        line = md_code(text, table=table)
        src = f"| a |\n|---|\n| {line} |\n" if table else f"Video {line} (1 clip)\n"
        codes = [t for t in _inline(MD.parse(src)) if t.type == "code_inline"]
        assert [c.content for c in codes] == [_one_line(text)], (line, codes)


def test_a_hostile_manifest_cannot_restructure_the_card(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        write_video(media / f"v{i}.mp4", [ShotSpec(60, "texture", 900 + i)], width=160,
                    height=96, gop=30)
    rows = [{"path": "v0.mp4", "id": "a`c|d", "license": "CC BY 4.0",
             "title": "Sunset\r# Injected heading\r<!--",
             "author": "[Official](javascript:alert(1)) <img src=x onerror=alert(2)>"},
            {"path": "v1.mp4", "id": "b", "license": "CC BY 4.0", "title": "Second",
             "author": "Alice"},
            {"path": "v2.mp4", "id": "c", "license": "CC BY 4.0", "author": "- Bob"}]
    manifest = media / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    run(manifest, out, Config(workers=1))
    card = (out / "README.md").read_text(encoding="utf-8")
    toks = MD.parse(card)
    kinds = {t.type for t in toks} | {t.type for t in _inline(toks)}
    assert not kinds & {"html_block", "html_inline", "image"}
    headings = [toks[i + 1].content for i, t in enumerate(toks) if t.type == "heading_open"]
    assert "Injected heading" not in " ".join(headings)
    assert "What was removed" in headings and "Configuration" in headings  # not hidden
    links = [t.attrs.get("href") for t in _inline(toks) if t.type == "link_open"]
    assert all(h.startswith("https://creativecommons.org/") for h in links), links
    credits = [t.content for t in toks if t.type == "inline" and "(1 clip)" in t.content]
    assert len(credits) == 3
    codes = [t.content for t in _inline(toks) if t.type == "code_inline"]
    assert {"a`c|d", "b", "c"} <= set(codes)  # each id shown as it is
    text = " ".join(t.content for t in _inline(toks) if t.type == "text")
    assert "Sunset # Injected heading <!--" in text and "- Bob" in text and "Alice" in text
