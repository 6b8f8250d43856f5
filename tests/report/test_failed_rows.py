"""Failed inputs on the report page: a long URL or detail is cut, so 60 inputs of 20 KB URLs
no longer make a 2 MB page; the text shown is the start of the real one, escaped."""

from __future__ import annotations

import pyarrow as pa

from clipfactory.report.gallery import failed_section
from tests.report.htmltree import parse


def test_long_sources_and_details_are_cut():
    url = "https://videos.example.org/" + "a" * 20_000 + "<b>"
    rows = pa.table({"source": [url] * 60, "stage": ["fetch"] * 60,
                     "reason": ["connection_error"] * 60,
                     "detail": ["refused: " + "x" * 20_000] * 60})
    html = failed_section(rows)
    assert len(html) < 100_000  # was ~2.4 MB
    root, errors = parse(html)
    assert errors == []
    cells = root.find_all(lambda n: n.tag == "td")
    assert len(cells) == 2 * 50  # at most 50 rows a reason
    source, detail = cells[0], cells[1]
    assert len(source.attrs["title"]) == 500 and url.startswith(source.attrs["title"][:-1])
    assert source.attrs["title"].endswith("…")
    assert detail.all_text().startswith("refused: xxx") and len(detail.all_text()) == 500
