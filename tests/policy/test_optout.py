"""Opt-out lists: parsing every rule kind and matching sources."""

from __future__ import annotations

import pytest

from clipfactory.policy.optout import OptOutList, SourceFacts, canonical_url, parse_rule

LIST = """
# creators who asked to be left out
https://www.Example.org/videos/one/
https://youtu.be/dQw4w9WgXcQ
id:manifest-7
bare-id-9
channel:@SomeChannel
domain:blocked.net
regex:^/data/private/
sha256:{sha}
"""
SHA = "ab" * 32


def facts(**kw) -> SourceFacts:
    kw.setdefault("source", "/data/public/x.mp4")
    return SourceFacts(**kw)


@pytest.fixture
def rules():
    return OptOutList.parse(LIST.format(sha=SHA).splitlines())


def test_parse(rules):
    kinds = [r.kind for r in rules.rules]
    assert kinds == ["url", "url", "id", "id", "channel", "domain", "regex", "sha256"]
    assert [r.canonical for r in rules.rules][:2] == ["url:https://example.org/videos/one",
                                                       "url:youtube:dQw4w9WgXcQ"]
    for r in rules.rules:  # the canonical form is what the ledger keeps: it parses back
        assert parse_rule(r.canonical) == r
    with pytest.raises(ValueError, match="line 2"):
        OptOutList.parse(["ok", "regex:("])
    with pytest.raises(ValueError):
        parse_rule("sha256:nothex")


@pytest.mark.parametrize(("fields", "rule"), [
    ({"source_url": "http://example.org/videos/one#t=3"}, "https://www.Example.org/videos/one/"),
    ({"source_url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=10"},
     "https://youtu.be/dQw4w9WgXcQ"),
    ({"source_url": "https://m.youtube.com/shorts/dQw4w9WgXcQ"}, "https://youtu.be/dQw4w9WgXcQ"),
    ({"ids": ("manifest-7",)}, "id:manifest-7"),
    ({"ids": ("x", "bare-id-9")}, "bare-id-9"),
    ({"channels": ("somechannel",)}, "channel:@SomeChannel"),
    ({"attribution": "@SomeChannel"}, "channel:@SomeChannel"),
    ({"source_url": "https://cdn.blocked.net/a.mp4"}, "domain:blocked.net"),
    ({"source": "https://blocked.net/a.mp4"}, "domain:blocked.net"),
    ({"source": "/data/private/a.mp4"}, "regex:^/data/private/"),
    ({"sha256": SHA.upper()}, f"sha256:{SHA}"),
])
def test_match(rules, fields, rule):
    hit = rules.match(facts(**fields))
    assert hit is not None and hit.text == rule


@pytest.mark.parametrize("fields", [
    {"source_url": "https://example.org/videos/one/two"},
    {"source_url": "https://www.youtube.com/watch?v=other123456"},
    {"ids": ("manifest-70",)},
    {"channels": ("SomeChannel2",)},
    {"source_url": "https://notblocked.net/a.mp4"},
    {"source": "/data/public/private/a.mp4"},
    {"sha256": "cd" * 32},
])
def test_no_match(rules, fields):
    assert rules.match(facts(**fields)) is None


def test_canonical_url():
    assert canonical_url("HTTPS://WWW.A.org:8080/x/?q=1#frag") == "https://a.org:8080/x?q=1"
    assert canonical_url("https://www.youtube.com/embed/abcdefghijk") == "youtube:abcdefghijk"
    assert canonical_url("not a url") == "not a url"


def test_the_documented_list_with_comments_after_its_rules():
    """docs/provenance.md's example writes a comment after each rule. The comment became
    part of the rule: `id:clip-000123  # a manifest id` matched no id, and a URL rule kept
    the spaces before its `#` and matched no URL. A takedown of such a file removed
    nothing and said `no source matched`."""
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "provenance.md").read_text(encoding="utf-8")
    block = doc.split("## Opt-out lists", 1)[1].split("```", 2)[1]
    listed = OptOutList.parse(block.replace("<64 hex>", SHA).splitlines())
    assert [r.kind for r in listed.rules] == [
        "url", "url", "id", "channel", "domain", "regex", "sha256", "path"]
    assert all("#" not in r.text and r.text == r.text.strip() for r in listed.rules)
    for fields, text in [
            ({"source_url": "https://youtu.be/dQw4w9WgXcQ"},
             "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
            ({"source_url": "http://example.org/videos/42/"}, "https://example.org/videos/42"),
            ({"ids": ("clip-000123",)}, "id:clip-000123"),
            ({"channels": ("somecreator",)}, "channel:@SomeCreator"),
            ({"source": "https://cdn.example.net/v.mp4"}, "domain:example.net"),
            ({"source": "/abs/path/video.mp4"}, "/abs/path/video.mp4")]:
        hit = listed.match(facts(**fields))
        assert hit is not None and hit.text == text, (fields, hit)
    # a `#` without a space before it is the rule's: a fragment, an id holding one
    assert parse_rule("https://e.org/v#t=3").value == "https://e.org/v"
    assert parse_rule("id:vid#2").value == "vid#2"
    assert parse_rule("   # only a comment") is None


def test_a_url_written_without_its_scheme_is_a_url_and_a_slash_is_never_an_id():
    """`youtube.com/watch?v=...` and `www.example.org/v/1` were taken for bare ids, which
    hold no '/', so they matched nothing and said nothing."""
    listed = OptOutList.parse(["youtube.com/watch?v=dQw4w9WgXcQ", "www.example.org/v/1"])
    assert [r.canonical for r in listed.rules] == ["url:youtube:dQw4w9WgXcQ",
                                                    "url:https://example.org/v/1"]
    assert listed.match(facts(source_url="https://youtu.be/dQw4w9WgXcQ")) is listed.rules[0]
    assert listed.match(facts(source_url="http://example.org/v/1/")) is listed.rules[1]
    for r in listed.rules:
        assert parse_rule(r.canonical) == r
    with pytest.raises(ValueError, match=r"line 1: .*no id"):
        OptOutList.parse(["videos/a.mp4"])  # a relative path is written path:videos/a.mp4


def test_urls_that_cannot_be_split_are_compared_as_written():
    """A port out of range or a broken IPv6 host made urlsplit raise, and with it the opt-out
    check of the run (a traceback, every input left pending)."""
    from clipfactory.fetch.router import needs_fetch

    listed = OptOutList.parse(["domain:a.org", "https://b.org/x"])
    for url, hit in (("https://a.org:99999/x.mp4", "domain:a.org"),  # its host still reads
                     ("https://[::1/x.mp4", None)):
        assert canonical_url(url) == url
        rule = listed.match(facts(source=url, source_url=url))
        assert (rule.text if rule else None) == hit
        assert needs_fetch(url)
