"""A manifest row corrected after its input was cut: a new attribution or source URL reaches
the clips (ledger, index, each sample's KEY.json), and a license the policy no longer allows
takes the clips out, each with an audit record. Before, the corrected row was ignored."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.sinks.parts import read_index
from clipfactory.testing.killpoint import kill_point_script
from clipfactory.testing.synth import ShotSpec, write_video

_HEAD = "path,license,attribution,source_url\n"
_FIRST = ("media/a.mp4,CC-BY-4.0,Alice,https://example.org/a\n"
          "media/b.mp4,CC-BY-4.0,Bob,https://example.org/b\n")
_FIXED = ("media/a.mp4,CC BY 4.0,Alice Smith,https://example.org/a?sig=SECRET123\n"
          "media/b.mp4,CC-BY-NC-4.0,Bob,https://example.org/b\n")


def _cfg() -> Config:
    return Config.model_validate({"workers": 1, "skip": ["dedup"],
                                  "policy": {"name": "commercial"}})


def _build(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "media").mkdir()
    for name, seed in (("a.mp4", 1), ("b.mp4", 3)):
        write_video(tmp_path / "media" / name, [ShotSpec(60, "texture", seed),
                                                ShotSpec(66, "texture", seed + 1)])
    manifest = tmp_path / "list.csv"
    manifest.write_text(_HEAD + _FIRST, encoding="utf-8")
    run(manifest, tmp_path / "out", _cfg())
    return manifest, tmp_path / "out"


def _index(out: Path) -> list[tuple[str, str, str, str]]:
    return sorted((Path(r["source"]).name, r["license"], r["attribution"], r["source_url"])
                  for r in read_index(out).to_pylist())


def _samples(out: Path) -> dict[str, dict]:
    """Every sample's KEY.json in the shards, by key."""
    found = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        with tarfile.open(shard) as t:
            for m in t.getmembers():
                if m.name.endswith(".json"):
                    found[m.name[:-5]] = json.loads(t.extractfile(m).read())  # type: ignore[union-attr]
    return found


def _audit_records(out: Path) -> list[dict]:
    path = out / "audit.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] \
        if path.is_file() else []


def _check_fixed(out: Path) -> None:
    # (a signed URL's secret is published REDACTED, as at the first cut)
    assert _index(out) == [("a.mp4", "CC-BY-4.0", "Alice Smith",
                            "https://example.org/a?sig=REDACTED")] * 2
    samples = _samples(out)
    assert len(samples) == 2
    assert {(s["attribution"], s["source_url"]) for s in samples.values()} == {
        ("Alice Smith", "https://example.org/a?sig=REDACTED")}
    ledger = Ledger(out / "ledger.sqlite")
    try:
        states = {Path(r["source"]).name: (r["state"], r["stage"], r["reason"])
                  for r in ledger.videos()}
        assert ledger.db.execute("SELECT COUNT(*) FROM relabels").fetchone()[0] == 0
    finally:
        ledger.close()
    assert states["a.mp4"] == ("done", None, None)
    assert states["b.mp4"] == ("failed", "policy", "license_not_allowed:CC-BY-NC-4.0")
    assert audit(out).ok


def test_a_corrected_manifest_row_reaches_the_clips(tmp_path: Path) -> None:
    manifest, out = _build(tmp_path)
    assert _index(out) == sorted([("a.mp4", "CC-BY-4.0", "Alice", "https://example.org/a")] * 2
                                 + [("b.mp4", "CC-BY-4.0", "Bob", "https://example.org/b")] * 2)
    b_clips = {r["clip_id"] for r in read_index(out).to_pylist() if r["source"].endswith("b.mp4")}

    manifest.write_text(_HEAD + _FIXED, encoding="utf-8")
    run(manifest, out, _cfg())
    _check_fixed(out)
    records = _audit_records(out)
    assert [r["kind"] for r in records] == ["relabelled", "policy"]
    fixed = records[0]["videos"][0]
    assert fixed["before"] == {"license": "CC-BY-4.0", "attribution": "Alice",
                               "source_url": "https://example.org/a"}
    assert fixed["after"]["attribution"] == "Alice Smith"
    assert fixed["after"]["license"] == "CC BY 4.0"
    assert "SECRET123" not in json.dumps(records)  # a signed URL's secret is not published
    assert set(records[1]["clips"]) == b_clips

    # the same manifest again: nothing to correct, nothing recorded
    run(manifest, out, _cfg())
    assert len(_audit_records(out)) == 2
    _check_fixed(out)


_KILLER = kill_point_script("""
from clipfactory.config import Config
from clipfactory.pipeline import run
run(sys.argv[3], sys.argv[4], Config.model_validate({"workers": 1, "skip": ["dedup"],
                                                     "policy": {"name": "commercial"}}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["clipfactory.provenance.relabel:append_audit",
                                   "clipfactory.sinks.refresh:rewrite_shard_members"])
def test_a_run_killed_while_relabelling_is_finished_by_the_next(tmp_path: Path,
                                                                 point: str) -> None:
    """The manifest is not parsed again by the next run (it has not changed since): what
    carries the correction over a kill is the ``relabels`` row, committed with the input's."""
    manifest, out = _build(tmp_path)
    manifest.write_text(_HEAD + _FIXED, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, "1", str(manifest), str(out)],
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it died where we said
    run(manifest, out, _cfg())
    _check_fixed(out)
    kinds = [r["kind"] for r in _audit_records(out)]
    assert set(kinds) == {"relabelled", "policy"} and kinds.count("policy") == 1
