"""A manifest already registered is not parsed again: only appended rows are, with the keys a
parse of the whole file would give them."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipfactory.config import IngestConfig
from clipfactory.errors import ManifestError
from clipfactory.ledger import Ledger
from clipfactory.sources import read_input
from clipfactory.sources.manifest_state import register_input

_COLUMNS = ("item_key", "source", "manifest_id", "source_url", "license", "attribution",
            "start_s", "end_s", "extra", "spans", "state", "stage", "reason", "detail",
            "video_id")


@pytest.fixture
def ledgers(tmp_path):
    """A factory of fresh ledgers, all closed at the end."""
    opened: list[Ledger] = []

    def make(name: str = "ledger") -> Ledger:
        opened.append(Ledger(tmp_path / f"{name}.sqlite"))
        return opened[-1]

    yield make
    for ledger in opened:
        ledger.close()


def _rows(ledger: Ledger) -> list[tuple]:
    """Every registered input, in registration order (seq values themselves may differ)."""
    return [tuple(r[c] for c in _COLUMNS)
            for r in ledger.db.execute("SELECT * FROM videos ORDER BY seq")]


def _line(i: int, vid: str | None = None) -> str:
    return json.dumps({"path": f"v{i}.mp4", "id": vid or f"v{i}", "license": "CC0-1.0"}) + "\n"


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as fh:
        fh.write(text)


def _full_parse(ledgers, path: Path, cfg: IngestConfig | None = None) -> list[tuple]:
    ref = ledgers("reference")
    ref.register(read_input(path, cfg))
    return _rows(ref)


def test_an_unchanged_manifest_is_not_parsed(tmp_path, ledgers):
    m = tmp_path / "m.jsonl"
    m.write_text("".join(_line(i) for i in range(50)), encoding="utf-8")
    ledger = ledgers()
    first = register_input(ledger, m)
    assert (first.mode, first.rows, first.added) == ("full", 50, 50)
    again = register_input(ledger, m)
    assert (again.mode, again.rows, again.added) == ("unchanged", 0, 0)
    os.utime(m, ns=(m.stat().st_atime_ns, m.stat().st_mtime_ns + 10**9))  # touched only
    touched = register_input(ledger, m)
    assert (touched.mode, touched.rows, touched.added) == ("appended", 0, 0)


def test_appended_rows_alone_are_parsed_with_the_keys_of_a_full_parse(tmp_path, ledgers):
    m = tmp_path / "m.jsonl"
    m.write_text("".join(_line(i) for i in range(100)) + "{broken\n\n", encoding="utf-8")
    ledger = ledgers()
    assert register_input(ledger, m).rows == 101
    # new rows, an id already given in the first part, one given twice in the new part
    _append(m, "".join(_line(i) for i in range(100, 130)) + _line(7) + _line(131, "v120")
            + "[1]\r\n" + _line(140))
    stats = register_input(ledger, m)
    assert (stats.mode, stats.rows, stats.added) == ("appended", 34, 34)
    assert _rows(ledger) == _full_parse(ledgers, m)
    dup = ledger.db.execute("SELECT item_key, reason FROM videos WHERE detail LIKE "
                            "'%duplicate id%' ORDER BY seq").fetchall()
    assert [tuple(r) for r in dup] == [("row:m.jsonl:133", "duplicate_id"),
                                       ("row:m.jsonl:134", "duplicate_id")]


def test_csv_appends_keep_the_header_and_quoted_newlines(tmp_path, ledgers):
    m = tmp_path / "m.csv"
    m.write_bytes(b"path,id,license\r\nv0.mp4,A,CC0-1.0\r\n\r\nv1.mp4,,\r\n")
    ledger = ledgers()
    assert register_input(ledger, m).rows == 2
    _append(m, '"v 2\nx.mp4",B,CC-BY-4.0\r\nv3.mp4,A,\r\nv4.mp4,C,x,extra\r\n')
    stats = register_input(ledger, m)
    assert (stats.mode, stats.rows) == ("appended", 3)
    assert _rows(ledger) == _full_parse(ledgers, m)
    assert ledger.db.execute("SELECT reason FROM videos WHERE item_key = 'row:m.csv:5'"
                             ).fetchone()[0] == "duplicate_id"


def _clip(vid: str, start: int) -> str:
    return json.dumps({"YoutubeID": vid, "Start_timestamp": f"00:00:{start:02d}.000",
                       "End_timestamp": f"00:00:{start + 2:02d}.000", "Caption": "c"}) + "\n"


def _spans_by_video(ledger: Ledger) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in ledger.db.execute("SELECT manifest_id, spans FROM videos ORDER BY seq"):
        out.setdefault(r["manifest_id"], []).extend(json.loads(r["spans"] or "[]"))
    return {k: sorted(v) for k, v in out.items()}


def test_clip_rows_get_the_same_video_numbers_as_a_full_parse(tmp_path, ledgers):
    """InternVid-style rows, one per clip: a video coming back later is ``id:X#2``. Rows
    appended right after the group open at the end of the last pass are an item of their own,
    ``id:X@N`` (N: their first row), with their spans: before, they were dropped (the
    registered item kept its spans, and the new ones were never cut)."""
    m = tmp_path / "clips.jsonl"
    first = [_clip("a", 0), _clip("a", 3), _clip("b", 0), _clip("a", 9), _clip("c", 0),
             _clip("c", 4)]
    m.write_text("".join(first), encoding="utf-8")
    ledger = ledgers()
    assert register_input(ledger, m).added == 4  # a, b, a#2, c (still open at the end)
    _append(m, _clip("c", 8) + _clip("c", 12) + _clip("a", 20) + _clip("b", 5) + _clip("d", 0))
    stats = register_input(ledger, m)
    assert (stats.mode, stats.rows, stats.added) == ("appended", 5, 4)
    keys = [r[0] for r in _rows(ledger)]
    assert keys == ["id:a", "id:b", "id:a#2", "id:c", "id:c@7", "id:a#3", "id:b#2", "id:d"]
    full = ledgers("full")
    full.register(read_input(m))
    # every span of the whole file is registered, once: none dropped, none twice
    assert _spans_by_video(ledger) == _spans_by_video(full)
    assert {k for k in keys if "@" not in k} == {r[0] for r in _rows(full)}


def test_a_torn_last_line_waits_until_it_is_complete(tmp_path, ledgers):
    m = tmp_path / "m.jsonl"
    m.write_text(_line(0) + _line(1), encoding="utf-8")
    ledger = ledgers()
    register_input(ledger, m)
    _append(m, _line(2) + '{"path": "v3.mp4", "id": "v3", "lic')
    stats = register_input(ledger, m)
    assert (stats.mode, stats.rows, stats.added) == ("appended", 1, 1)
    assert ledger.pending_count() == 3 and ledger.counts()["videos"]["failed"] == 0
    _append(m, 'ense": "CC0-1.0"}\n')
    stats = register_input(ledger, m)
    assert (stats.mode, stats.rows, stats.added) == ("appended", 1, 1)
    assert _rows(ledger) == _full_parse(ledgers, m)
    # a last line without its end that stays so: the next run finding the file unchanged
    # takes it as complete
    _append(m, _line(4).rstrip("\n"))
    assert register_input(ledger, m).added == 0
    tail = register_input(ledger, m)
    assert (tail.mode, tail.rows, tail.added) == ("tail", 1, 1)
    assert register_input(ledger, m).mode == "unchanged"
    _append(m, "\n" + _line(5))
    assert register_input(ledger, m).added == 1
    assert _rows(ledger) == _full_parse(ledgers, m)



def test_a_clip_row_read_unterminated_is_numbered_again_when_read_whole(tmp_path, ledgers):
    m = tmp_path / "clips.jsonl"
    m.write_text(_clip("a", 0) + _clip("a", 3), encoding="utf-8")
    ledger = ledgers()
    register_input(ledger, m)
    _append(m, _clip("b", 0).rstrip("\n"))
    assert register_input(ledger, m).added == 0  # held back: may be half written
    assert register_input(ledger, m).mode == "tail"  # unchanged since: taken as it is
    _append(m, "\n" + _clip("b", 5) + _clip("c", 0))
    register_input(ledger, m)
    assert [r[0] for r in _rows(ledger)] == ["id:a", "id:b", "id:c"]


@pytest.mark.parametrize("change", ["same_size", "shrunk"])
def test_a_rewritten_manifest_is_parsed_whole(tmp_path, ledgers, change):
    m = tmp_path / "m.jsonl"
    m.write_text("".join(_line(i) for i in range(20)), encoding="utf-8")
    ledger = ledgers()
    register_input(ledger, m)
    before = m.stat()
    text = m.read_text(encoding="utf-8").replace('"v5"', '"w5"')
    if change == "shrunk":
        text = text.split("\n", 3)[3]
    m.write_text(text, encoding="utf-8")
    os.utime(m, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    stats = register_input(ledger, m)
    assert stats.mode == "full" and stats.rows == (20 if change == "same_size" else 17)
    assert stats.added == 1  # id w5; the rest is in the ledger already
    _append(m, _line(30))
    assert (register_input(ledger, m).rows, ledger.pending_count()) == (1, 22)


def test_a_run_killed_while_registering_reads_the_rows_again(tmp_path, ledgers):
    m = tmp_path / "m.jsonl"
    m.write_text("".join(_line(i) for i in range(10)), encoding="utf-8")
    ledger = ledgers()
    register_input(ledger, m)
    bad = "[" * 100_000 + "\n"  # the JSON parser gives up with RecursionError: a crash
    _append(m, "".join(_line(i) for i in range(10, 2510)) + bad)
    with pytest.raises(RecursionError):
        register_input(ledger, m)
    assert 10 < ledger.pending_count() < 2510  # the first batches were committed
    m.write_text(m.read_text(encoding="utf-8").replace(bad, _line(3000)), encoding="utf-8")
    stats = register_input(ledger, m)  # the state was not saved: from the old position
    assert (stats.mode, stats.rows) == ("appended", 2501)
    assert ledger.pending_count() == 2511
    assert _rows(ledger) == _full_parse(ledgers, m)


def test_parquet_and_settings_changes_parse_whole(tmp_path, ledgers):
    p = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": ["a.mp4", "b.mp4"], "id": ["A", "B"]}), p)
    ledger = ledgers()
    assert register_input(ledger, p).mode == "full"
    assert register_input(ledger, p).mode == "unchanged"
    pq.write_table(pa.table({"path": ["a.mp4", "b.mp4", "c.mp4"], "id": ["A", "B", "C"]}), p)
    stats = register_input(ledger, p)
    assert (stats.mode, stats.rows, stats.added) == ("full", 3, 1)
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"file": "x.mp4", "id": "X"}) + "\n", encoding="utf-8")
    assert register_input(ledger, m).added == 1  # no ``path`` column: a failed input
    assert ledger.counts()["videos"]["failed"] == 1
    stats = register_input(ledger, m, IngestConfig(columns={"path": "file"}))
    assert (stats.mode, stats.added) == ("full", 1)  # other settings: parsed again
    assert ledger.pending_count() == 4  # A, B, C and X


def test_a_folder_is_scanned_as_before(tmp_path, ledgers):
    (tmp_path / "a.mp4").write_bytes(b"0")
    ledger = ledgers()
    stats = register_input(ledger, tmp_path)
    assert (stats.mode, stats.rows, stats.added) == ("scan", 1, 1)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_csv_split_by_semicolons_or_tabs_is_read_so_after_an_append_too(tmp_path, ledgers, sep):
    """Excel writes ``;`` where the decimal mark is a comma; TSV files end in .csv too. The
    header says which: every row, the appended ones included (read from an offset, past the
    header), splits the same way."""
    m = tmp_path / "m.csv"
    m.write_bytes(b"\xef\xbb\xbf" + sep.join(["path", "id", "license"]).encode() + b"\r\n"
                  + b"".join(sep.join([f"v{i}.mp4", f"v{i}", "CC-BY-4.0"]).encode() + b"\r\n"
                             for i in range(3)))
    ledger = ledgers()
    assert register_input(ledger, m).added == 3
    _append(m, "".join(sep.join([f"v{i}.mp4", f"v{i}", "CC0-1.0"]) + "\r\n" for i in (3, 4)))
    stats = register_input(ledger, m)
    assert (stats.mode, stats.added) == ("appended", 2)
    rows = _rows(ledger)
    assert rows == _full_parse(ledgers, m)
    assert [(r[2], r[4], r[11]) for r in rows] == \
        [(f"v{i}", "CC-BY-4.0" if i < 3 else "CC0-1.0", None) for i in range(5)]


@pytest.mark.parametrize("kind", [".jsonl", ".csv", ".txt"])
def test_a_gzip_compressed_manifest_is_read_as_its_plain_self(tmp_path, ledgers, kind):
    """``NAME.jsonl.gz`` (and ``.csv.gz``, ``.txt.gz``) as big lists are shipped: the same rows
    as the plain file; unchanged it is not parsed again; grown, only new rows are added (it is
    parsed whole: a compressed file cannot be read from an offset)."""
    lines = {".jsonl": [_line(i) for i in range(4)],
             ".csv": ["path,id,license\n"] + [f"v{i}.mp4,v{i},CC0-1.0\n" for i in range(4)],
             ".txt": ["# list\n"] + [f"v{i}.mp4\n" for i in range(4)]}[kind]
    plain, packed = tmp_path / f"m{kind}", tmp_path / f"m{kind}.gz"
    plain.write_text("".join(lines), encoding="utf-8")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    ledger = ledgers()
    first = register_input(ledger, packed)
    assert (first.mode, first.added) == ("full", 4)
    assert [r[1] for r in _rows(ledger)] == [r[1] for r in _full_parse(ledgers, plain)]
    assert register_input(ledger, packed).mode == "unchanged"
    more = {".jsonl": _line(4), ".csv": "v4.mp4,v4,CC0-1.0\n", ".txt": "v4.mp4\n"}[kind]
    packed.write_bytes(gzip.compress(plain.read_bytes() + more.encode()))
    again = register_input(ledger, packed)
    assert (again.mode, again.added) == ("full", 1)
    assert len(_rows(ledger)) == 5


def test_a_manifest_that_cannot_be_read_is_one_clear_error(tmp_path, ledgers):
    whole = gzip.compress(b"".join(_line(i).encode() for i in range(200)))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[:len(whole) // 2])  # a download cut short
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"PAR1 not parquet")
    for path, said in ((cut, "EOFError"), (fake, "ArrowInvalid")):
        with pytest.raises(ManifestError, match=f"cannot read the manifest {path}: {said}"):
            register_input(ledgers(path.stem.replace(".", "-")), path)


def test_a_manifest_that_is_not_utf8_text_says_what_it_is(tmp_path, ledgers):
    """A workbook saved under a .csv name, Excel's UTF-16 "Unicode Text", a compressed or a
    binary file: read as text, each made rows that all failed as `row has no 'path' or 'url'`,
    or no rows at all, with nothing saying why. A text manifest with one stray NUL byte keeps
    its other rows (that row alone is rejected)."""
    import zipfile

    book = tmp_path / "sheet.csv"
    with zipfile.ZipFile(book, "w") as z:  # the start of every .xlsx
        z.writestr("[Content_Types].xml", "<Types/>")
    utf16 = tmp_path / "unicode.csv"
    utf16.write_bytes("path\tlicense\r\nv0.mp4\tCC0-1.0\r\n".encode("utf-16"))
    zipped = tmp_path / "list.jsonl"
    zipped.write_bytes(gzip.compress(_line(0).encode()))
    binary = tmp_path / "noise.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    for path, said in ((book, "ZIP archive .*CSV UTF-8"), (utf16, "UTF-16 text"),
                       (zipped, r"gzip-compressed, .*name it list\.jsonl\.gz"),
                       (binary, "NUL bytes")):
        with pytest.raises(ManifestError, match=f"cannot read the manifest {path}: .*{said}"):
            register_input(ledgers(path.stem), path)
    stray = tmp_path / "stray.csv"
    stray.write_bytes(b"path,license\nv0.mp4,CC0-1.0\nv1.mp4\x00,CC0-1.0\nv2.mp4,CC0-1.0\n")
    ledger = ledgers("stray")
    stats = register_input(ledger, stray)
    rows = _rows(ledger)
    assert stats.rows == 3 and sorted(r[1].rsplit("/", 1)[-1] for r in rows
                                      if r[10] != "failed") == ["v0.mp4", "v2.mp4"], rows


def test_an_excel_ansi_csv_keeps_its_names_after_an_append_too(tmp_path, ledgers, caplog):
    """Excel's "CSV (Comma delimited)" is Windows-1252 in Western locales. Read as UTF-8, the
    author the card must credit (CC BY) came out as ``Jos\ufffd Garc\ufffda``. UTF-8 lines of
    the same file stay UTF-8."""
    m = tmp_path / "m.csv"
    m.write_bytes("path,id,license,author\r\nv0.mp4,v0,CC-BY-4.0,José García\r\n"
                  .encode("cp1252") + "v1.mp4,v1,CC-BY-4.0,Zoë Ørsted\r\n".encode())
    ledger = ledgers()
    assert register_input(ledger, m).added == 2
    with m.open("ab") as fh:  # read from an offset: decided line by line, as a whole read
        fh.write("v2.mp4,v2,CC-BY-4.0,Fran\u00e7ois Ł\u00f3d\u017a\r\n".encode("utf-8"))
        fh.write("v3.mp4,v3,CC-BY-4.0,Jürgen Müller – Straße\r\n".encode("cp1252"))
    assert register_input(ledger, m).added == 2
    rows = _rows(ledger)
    assert rows == _full_parse(ledgers, m)
    assert [r[5] for r in rows] == ["José García", "Zoë Ørsted", "François Łódź",
                                    "Jürgen Müller – Straße"], rows
    assert "read as Windows-1252" in caplog.text


def test_a_row_refused_under_old_columns_is_not_failed_for_ever(tmp_path, ledgers):
    """The columns fixed (a url_template typo): the row reads as an item now, and its old
    refusal goes (it kept a one-row manifest at 2 inputs, 1 failed, with nothing to retry)."""
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"id": "v0"}) + "\n" + json.dumps({"id": "../v1"}) + "\n",
                 encoding="utf-8")  # the second row's id is refused under any columns
    ledger = ledgers()
    bad = IngestConfig(columns={"url_template": "https://videos.example.org/{vid}.mp4"})
    register_input(ledger, m, bad)
    before = {r[0]: r[10] for r in _rows(ledger)}
    assert before == {"row:m.jsonl:1": "failed", "row:m.jsonl:2": "failed"}
    good = IngestConfig(columns={"url_template": "https://videos.example.org/{id}.mp4"})
    register_input(ledger, m, good)
    after = {r[0]: (r[10], r[12]) for r in _rows(ledger)}
    assert after == {"row:m.jsonl:2": ("failed", "invalid_id"),
                     "id:v0": ("pending", None)}, after
