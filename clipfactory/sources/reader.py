"""Turn a folder or a manifest into :class:`SourceItem` rows (or rejections for bad rows).

A manifest is ``.jsonl``, ``.csv``, ``.parquet``, or a ``.txt`` list of URLs or paths, one per
line (``#`` comments, as in yt-dlp's batch files). A row names its media by ``path`` or by
``url``; optional ``id``, ``license``, ``source_url`` (or ``url`` beside a ``path``),
``author``/``attribution``, ``start``/``end`` (to restrict a row to a span), ``spans`` and
``sha256``. Published dataset layouts (HD-VILA-100M, Panda-70M, InternVid, WebVid) are detected
from their columns, and ``ingest.columns`` maps other column names (see
:mod:`clipfactory.sources.layouts`). Relative paths are resolved against the manifest's
folder. Rows are streamed: a manifest of millions of rows is never loaded whole. A run reads
again only what was appended to a manifest since the last one
(:mod:`clipfactory.sources.manifest_state`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from clipfactory.config import IngestConfig
from clipfactory.records import Rejection, SourceItem
from clipfactory.sources.lines import manifest_kind
from clipfactory.sources.parse import ManifestParse
from clipfactory.sources.rows import REMOTE_PREFIXES, InputRow
from clipfactory.sources.sidecar import with_sidecar

__all__ = ["MANIFEST_SUFFIXES", "REMOTE_PREFIXES", "InputRow", "count_rows", "read_folder",
           "read_input"]

MANIFEST_SUFFIXES = (".jsonl", ".csv", ".txt", ".parquet")


def read_input(path: str | Path, cfg: IngestConfig | None = None, *,
               skip: str | Path | None = None) -> Iterator[InputRow]:
    """Yield one item (or rejection) per video in a folder or per manifest row. ``skip``: a
    folder whose files are never inputs (the output, when it lies inside the input folder)."""
    cfg = cfg or IngestConfig()
    p = Path(path)
    if p.is_dir():
        yield from read_folder(p, cfg, skip=skip)
    elif manifest_kind(p) in MANIFEST_SUFFIXES:
        yield from ManifestParse(p, cfg)
    elif p.is_file():
        full = os.path.realpath(p)
        yield _not_utf8(f"file:{full}", full) or with_sidecar(
            SourceItem(item_key=f"file:{full}", source=full), p)
    else:
        raise FileNotFoundError(f"input not found: {p}")


def read_folder(root: Path, cfg: IngestConfig, *,
               skip: str | Path | None = None) -> Iterator[InputRow]:
    """The inputs of a folder: every file named like a video (``cfg.extensions``), searched
    recursively, in sorted order.

    - Symlinked folders are followed (``videos/disk2 -> /mnt/disk2/footage``), each real
      folder once, so a link back up the tree is no loop.
    - Hidden names are skipped, folders too (``.Trash-1000``, ``.git``, macOS ``._x.mp4``).
    - A folder that cannot be listed (no permission, say) is rejected as
      ``ingest/unreadable_folder``, and the others go on.
    - A path that is not valid UTF-8 is rejected (``ingest/path_not_utf8``).
    - Files under ``skip`` are left out: with ``--output`` inside the input folder, a killed
      run's staged clips would otherwise come back as new inputs.
    - A video's ``NAME.info.json`` (``yt-dlp --write-info-json``) gives its license, author,
      page and title (:mod:`clipfactory.sources.sidecar`).
    """
    exts = {e.lower() for e in cfg.extensions}
    pruned = _pruned_folders(root, skip)
    found: list[Path] = []
    unreadable: list[tuple[Path, OSError]] = []
    seen: set[tuple[int, int]] = set()
    for here, dirs, files in os.walk(root, followlinks=True,
                                     onerror=lambda e: unreadable.append((Path(e.filename), e))):
        try:
            st = os.stat(here)
        except OSError:  # gone since its parent was listed
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen or (st.st_dev, st.st_ino) in pruned:
            dirs[:] = []  # reached again through a link, or the output's
            continue
        seen.add((st.st_dev, st.st_ino))
        # sorted, so that a folder reached by two paths is always reached by the same one
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # Everything named like a video is an input: a directory, a FIFO or a dangling link
        # then gets its specific rejection from the probe (not_a_file, missing_file) instead
        # of vanishing from the run without a trace.
        found += [Path(here, n) for n in files + dirs
                  if Path(n).suffix.lower() in exts and not n.startswith(".")]
    for f in sorted(set(found)):
        # realpath, not Path.resolve: a symlink loop stays its own (unresolved) path, which
        # the probe rejects, instead of raising out of the whole run
        rel, full = f.relative_to(root).as_posix(), os.path.realpath(f)
        yield _not_utf8(f"file:{rel}", full) or with_sidecar(
            SourceItem(item_key=f"file:{rel}", source=full), f)
    for folder, err in sorted(unreadable, key=lambda x: x[0]):
        rel = folder.relative_to(root).as_posix() if folder != root else "."
        yield _not_utf8(f"folder:{rel}", str(folder)) or Rejection(
            f"folder:{rel}", str(folder), "ingest", "unreadable_folder",
            f"cannot list the folder ({err.strerror or err}); its videos are not inputs")


def _pruned_folders(root: Path, skip: str | Path | None) -> set[tuple[int, int]]:
    """The folders a folder scan leaves out, as (device, inode): the output ``skip`` itself,
    or its clip and download folders when it is ``root`` itself; none without ``skip`` or
    while they do not exist. The scan stats every folder it enters anyway, so the output is
    left out however the scan reaches it, through a link or a relative name."""
    if skip is None:
        return set()
    try:
        out = os.stat(skip)
    except OSError:
        return set()
    if os.path.samestat(out, os.stat(root)):
        folders = [os.path.join(skip, "staging"), os.path.join(skip, "sources")]
    else:
        folders = [os.fspath(skip)]
    found = set()
    for folder in folders:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def _not_utf8(item_key: str, path: str) -> Rejection | None:
    """The rejection of a path the file system gave in bytes that are not UTF-8 (a name from
    a Latin-1 or CP-1252 system: Python holds it with surrogate escapes), or None. The ledger,
    the index and the shards hold text, so it cannot be recorded as it is; it is shown with
    its bytes escaped (``caf\\xe9.mp4``) and the user renames it."""
    try:
        path.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass

    def shown(text: str) -> str:
        return os.fsencode(text).decode("utf-8", "backslashreplace")

    return Rejection(shown(item_key), shown(path), "ingest", "path_not_utf8",
                     "the file's path is not valid UTF-8, so it cannot be recorded; rename it "
                     "(for example `convmv -f latin1 -t utf-8 -r --notest FOLDER`) and run "
                     "again")


def count_rows(rows: Iterable[InputRow]) -> int:
    """Count rows without keeping them (for progress totals)."""
    return sum(1 for _ in rows)
