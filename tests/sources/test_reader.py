import json
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipfactory.records import Rejection, SourceItem
from clipfactory.sources import read_input
from clipfactory.testing.users import as_another_user


def _items(rows):
    return [r for r in rows if isinstance(r, SourceItem)], [r for r in rows if isinstance(r, Rejection)]


def test_folder_is_searched_recursively_for_videos(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["x.mp4", "a/y.MKV", "a/b/z z.webm", "notes.txt", "a/.hidden.mp4"]:
        (tmp_path / name).write_bytes(b"0")
    items, rej = _items(list(read_input(tmp_path)))
    assert not rej
    assert sorted(i.item_key for i in items) == ["file:a/b/z z.webm", "file:a/y.MKV", "file:x.mp4"]
    assert all(i.id is None for i in items)


def test_jsonl_manifest_fields_and_bad_rows(tmp_path):
    rows = [
        {"path": "v1.mp4", "id": "one", "license": "CC-BY-4.0", "url": "https://e.org/1",
         "author": "Ann", "start": 1.5, "end": 4, "caption": "a dog"},
        {"path": "v2.mp4", "id": "../x"},
        {"path": "v3.mp4", "id": "one"},
        {"path": "v4.mp4", "start": 5, "end": 2},
        {"id": "nopath"},
        {"path": "/abs/v5.mp4", "attribution": "Bob"},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n", encoding="utf-8")
    items, rej = _items(list(read_input(m)))
    assert [i.id for i in items] == ["one", None]
    first = items[0]
    assert first.source == str(tmp_path / "v1.mp4")
    assert (first.license, first.source_url, first.attribution) == ("CC-BY-4.0", "https://e.org/1", "Ann")
    assert (first.start_s, first.end_s) == (1.5, 4.0)
    assert first.extra == {"caption": "a dog"}
    assert items[1].source == "/abs/v5.mp4" and items[1].attribution == "Bob"
    reasons = sorted(r.reason for r in rej)
    assert reasons == ["duplicate_id", "invalid_id", "invalid_manifest_row", "invalid_manifest_row",
                       "invalid_manifest_row"]
    hostile = next(r for r in rej if r.reason == "invalid_id")
    assert hostile.video_id == "../x" and "separator" in hostile.detail


def test_csv_and_parquet_manifests(tmp_path):
    c = tmp_path / "m.csv"
    c.write_text("path,id,license\nsub/a.mp4,A,CC0-1.0\nb.mp4,,\n", encoding="utf-8")
    items, rej = _items(list(read_input(c)))
    assert not rej
    assert [(i.id, i.license) for i in items] == [("A", "CC0-1.0"), (None, None)]
    assert items[0].source == str(tmp_path / "sub" / "a.mp4")
    p = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": ["a.mp4", "a.mp4"], "start": [0.0, 10.0],
                             "end": [5.0, 20.0]}), p)
    items, rej = _items(list(read_input(p)))
    assert len(items) == 2 and items[0].item_key != items[1].item_key
    assert [(i.start_s, i.end_s) for i in items] == [(0.0, 5.0), (10.0, 20.0)]


def test_missing_input_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(read_input(tmp_path / "nope"))


def test_a_folder_leaves_out_the_output_inside_it(tmp_path):
    (tmp_path / "out" / "staging" / "v").mkdir(parents=True)
    for name in ["x.mp4", "out/staging/v/clip.mp4", "outtakes.mp4", "out2/y.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"0")
    keys = sorted(i.item_key for i in read_input(tmp_path, skip=tmp_path / "out"))
    assert keys == ["file:out2/y.mp4", "file:outtakes.mp4", "file:x.mp4"]
    # the same folder named another way (relative, through a symlink) is still the output
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)
    via_link = tmp_path.parent / f"{tmp_path.name}-link" / "out"
    assert sorted(i.item_key for i in read_input(tmp_path, skip=via_link)) == keys
    # an output elsewhere leaves nothing out; the input folder itself as the output, its clip
    # and download folders
    assert len(list(read_input(tmp_path, skip=tmp_path.parent / "elsewhere"))) == 4
    (tmp_path / "staging" / "v").mkdir(parents=True)
    (tmp_path / "staging" / "v" / "clip.mp4").write_bytes(b"0")
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "fetched.mp4").write_bytes(b"0")
    assert sorted(i.item_key for i in read_input(tmp_path, skip=tmp_path)) == \
        ["file:out/staging/v/clip.mp4", *keys]


def test_a_byte_order_mark_opening_a_manifest_is_not_part_of_its_first_row(tmp_path):
    """Excel's "CSV UTF-8" export starts the file with a UTF-8 BOM (and ends lines with CRLF):
    the first column must still be ``path``, and the first JSON line must still parse."""
    bom = b"\xef\xbb\xbf"
    (tmp_path / "m.csv").write_bytes(bom + b"path,license\r\nv1.mp4,CC-BY-4.0\r\nv2.mp4,CC0-1.0\r\n")
    (tmp_path / "m.jsonl").write_bytes(
        bom + b'{"path": "v1.mp4", "license": "CC-BY-4.0"}\r\n{"path": "v2.mp4"}\r\n')
    for name in ("m.csv", "m.jsonl"):
        items, rej = _items(list(read_input(tmp_path / name)))
        assert not rej, (name, rej)
        assert [(Path(i.source).name, i.license) for i in items] == \
            [("v1.mp4", "CC-BY-4.0"), ("v2.mp4", "CC0-1.0" if name == "m.csv" else None)]
    # a mark later in the file is text like any other (only the file's first bytes are one)
    (tmp_path / "late.jsonl").write_bytes(b'{"path": "v1.mp4"}\n' + bom + b'{"path": "v2.mp4"}\n')
    items, rej = _items(list(read_input(tmp_path / "late.jsonl")))
    assert len(items) == 1 and len(rej) == 1


def test_a_manifest_path_under_the_home_folder_is_read_as_a_shell_would(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "videos").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    m = tmp_path / "lists" / "m.jsonl"
    m.parent.mkdir()
    m.write_text('{"path": "~/videos/a.mp4"}\n{"path": "~nosuchuser0/b.mp4"}\n'
                 '{"path": "x~/c.mp4"}\n', encoding="utf-8")
    items, rej = _items(list(read_input(m)))
    assert not rej
    assert [i.source for i in items] == [str(home / "videos" / "a.mp4"),
                                         str(m.parent / "~nosuchuser0" / "b.mp4"),
                                         str(m.parent / "x~" / "c.mp4")]


def test_a_folder_is_searched_through_symlinked_folders_each_real_folder_once(tmp_path):
    """``videos/disk2 -> /mnt/disk2/footage`` is searched; a link back up the tree neither
    loops nor lists a file twice; hidden folders (a USB disk's trash) are skipped; a file
    link that leads back to itself is an input the probe rejects, not the scan's crash."""
    root, far = tmp_path / "videos", tmp_path / "elsewhere"
    for name in ["videos/a/x.mp4", "videos/.Trash-1000/files/old.mp4", "elsewhere/y.mp4",
                 "elsewhere/deep/z.mkv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"0")
    (root / "disk2").symlink_to(far)
    (root / "a" / "up").symlink_to("..")  # back to videos/
    (far / "again").symlink_to(far)  # a folder that holds itself
    (root / "loop.mp4").symlink_to("loop.mp4")
    items, rej = _items(list(read_input(root)))
    assert not rej
    assert [i.item_key for i in items] == [
        "file:a/x.mp4", "file:disk2/deep/z.mkv", "file:disk2/y.mp4", "file:loop.mp4"]
    assert items[2].source == str(far / "y.mp4")  # the real file
    assert items[3].source == str(root / "loop.mp4")  # resolving it would never end
    # the same folder reached by two names is listed under the first in sorted order
    (root / "b").symlink_to(root / "a")
    assert [i.item_key for i in read_input(root)][:2] == ["file:a/x.mp4", "file:disk2/deep/z.mkv"]


def test_a_folder_that_cannot_be_listed_is_rejected_and_the_others_go_on():
    base = Path(tempfile.mkdtemp(prefix="cf-perm-"))  # not under pytest's root-only folder
    try:
        base.chmod(0o755)
        (base / "locked").mkdir()
        (base / "locked" / "hidden_from_us.mp4").write_bytes(b"0")
        (base / "open").mkdir()
        (base / "open" / "ok.mp4").write_bytes(b"0")
        (base / "locked").chmod(0)

        def scan():
            return [[r.item_key, getattr(r, "reason", None), getattr(r, "detail", "")]
                    for r in read_input(base)]

        rows = as_another_user(scan)
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)
    assert [r[:2] for r in rows] == [["file:open/ok.mp4", None],
                                     ["folder:locked", "unreadable_folder"]]
    assert "Permission denied" in rows[1][2]
