"""X-Robots-Tag, HTML meta tags and tdmrep.json, parsed."""

from __future__ import annotations

import pytest

from clipfactory.consent.signals import (
    match_tdmrep,
    parse_page,
    parse_tdmrep,
    robots_tag_directives,
)


def test_x_robots_tag_values_and_scopes():
    assert robots_tag_directives(["noai, noimageai"], "clipfactory") == [
        ("noai", "noai, noimageai"), ("noimageai", "noai, noimageai")]
    assert robots_tag_directives(["clipfactory: noai"], "clipfactory") == [
        ("noai", "clipfactory: noai")]
    assert robots_tag_directives(["googlebot: noai", "noindex"], "clipfactory") == []
    # a scope holds for the directives after it, in the same value
    assert robots_tag_directives(["otherbot: noindex, noai"], "clipfactory") == []
    assert robots_tag_directives(["max-snippet: 20, NOAI"], "clipfactory") == [
        ("noai", "max-snippet: 20, NOAI")]
    # an RFC 850 date holds a comma: its second half ("25-Jun-27 15:00:00 PST") was taken
    # for a crawler's scope, and the `noai` after it for a directive meant for that crawler
    value = "unavailable_after: Friday, 25-Jun-27 15:00:00 PST, noai"
    assert robots_tag_directives([value], "clipfactory") == [("noai", value)]
    assert robots_tag_directives(["otherbot: unavailable_after: Friday, 25-Jun-27 15:00:00 PST, "
                                  "noai"], "clipfactory") == []


def test_page_meta_tags():
    html = ('<html><head><META name="Robots" content="index, noimageai">'
            '<meta name="tdm-reservation" content="1">'
            '<meta name="tdm-policy" content="https://example.org/policy.json">'
            "<title>x</title></head><body><p>unclosed <b>markup</body>")
    meta = parse_page(html, "clipfactory")
    assert meta.robots == ("index, noimageai",)
    assert (meta.tdm_reservation, meta.tdm_policy) == ("1", "https://example.org/policy.json")
    assert parse_page('<meta name="clipfactory" content="noai">', "clipfactory").robots == (
        "noai",)
    assert parse_page("<<<>>> not html", "clipfactory").robots == ()


def test_tdmrep_first_matching_rule_applies():
    rules = parse_tdmrep('[{"location": "/open/*", "tdm-reservation": 0},'
                         ' {"location": "/*.mp4$", "tdm-reservation": 1,'
                         '  "tdm-policy": "https://example.org/p"},'
                         ' {"location": "/", "tdm-reservation": 0}, "junk"]')
    assert [r.reservation for r in rules] == [0, 1, 0]
    assert match_tdmrep(rules, "https://h/open/a.mp4").reservation == 0
    hit = match_tdmrep(rules, "https://h/v/a.mp4")
    assert (hit.reservation, hit.index, hit.policy) == (1, 1, "https://example.org/p")
    assert match_tdmrep(rules, "https://h/v/a.mp4.html").reservation == 0
    with pytest.raises(ValueError):
        parse_tdmrep('{"location": "/"}')
