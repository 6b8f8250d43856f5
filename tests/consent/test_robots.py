"""robots.txt matching as RFC 9309 specifies it (the cases its section 2.2 describes)."""

from __future__ import annotations

from clipfactory.consent.robots import parse_robots

BODY = """\
# a site with rules for everybody and for us
User-agent: *
Disallow: /private/
Allow: /private/public-*.mp4$

User-agent: SomeBot
User-agent: clipfactory
Disallow: /media/
Allow: /media/cc/
Disallow: /media/cc/nc-*
Sitemap: https://example.org/sitemap.xml
Disallow: /*.webm$
"""


def _allowed(robots, path):
    return robots.verdict("https://example.org" + path)[0]


def test_our_group_applies_and_the_star_group_does_not():
    r = parse_robots(BODY, "clipfactory")
    assert r.group == "clipfactory"
    assert _allowed(r, "/private/x.mp4")  # the * group's rule is not ours
    assert not _allowed(r, "/media/a.mp4")
    _, rule = r.verdict("https://example.org/media/a.mp4")
    assert rule is not None and rule.text() == "Disallow: /media/" and rule.line == 8


def test_longest_match_wins_and_wildcards():
    r = parse_robots(BODY, "ClipFactory")  # the token is case-insensitive
    assert _allowed(r, "/media/cc/a.mp4")  # Allow: /media/cc/ is longer than /media/
    assert not _allowed(r, "/media/cc/nc-1.mp4")  # and Disallow: /media/cc/nc-* longer still
    assert not _allowed(r, "/clips/a.webm")  # "*" and "$" (a Sitemap line ends no group)
    assert _allowed(r, "/clips/a.webm?x=1")  # "$" anchors at the end of path and query


def test_star_group_when_ours_is_absent_and_end_anchor():
    r = parse_robots(BODY, "otherbot")
    assert r.group == "*"
    assert not _allowed(r, "/private/x.mp4")
    assert _allowed(r, "/private/public-1.mp4")
    assert not _allowed(r, "/private/public-1.mp4.bak")


def test_allow_wins_a_tie_and_empty_disallow_matches_nothing():
    r = parse_robots("User-agent: *\nDisallow: /a\nAllow: /a\nDisallow:\n", "clipfactory")
    assert _allowed(r, "/a/b") and _allowed(r, "/z")


def test_no_group_allows_everything_and_robots_txt_is_always_allowed():
    assert parse_robots("User-agent: other\nDisallow: /\n", "clipfactory").verdict(
        "http://h/x")[0]
    r = parse_robots("User-agent: *\nDisallow: /\n", "clipfactory")
    assert not _allowed(r, "/x") and _allowed(r, "/robots.txt")


def test_percent_encoding_is_compared_decoded():
    r = parse_robots("User-agent: *\nDisallow: /a%20b/\n", "clipfactory")
    assert not _allowed(r, "/a b/c.mp4") and not _allowed(r, "/a%20b/c.mp4")
