"""``clipfactory shots`` (boundaries only) and ``clipfactory eval shots``: parse and call."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clipfactory.cliargs import frame_side

__all__ = ["COMMANDS", "add_commands"]


def add_commands(sub: Any) -> None:
    """Register the subcommands on the main parser's subparsers."""
    s = sub.add_parser("shots", help="print the shot transitions of videos (no clips)")
    s.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video files, or folders (searched recursively as `clipfactory run` "
                        "searches them)")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="one CSV row per transition")
    fmt.add_argument("--json", action="store_true", help="one JSON object per line per video")
    s.add_argument("--detector", choices=["hybrid", "builtin", "content", "transnet"],
                   default=None, help="default: the config's shots.detector (hybrid)")
    s.add_argument("--config", default=None, help="YAML config (its shots and analysis parts)")

    e = sub.add_parser("eval", help="evaluations on generated corpora with ground truth")
    esub = e.add_subparsers(dest="eval_command", required=True)
    es = esub.add_parser("shots", help="shot detectors side by side: F1 per type and speed")
    es.add_argument("--workdir", default="bench-out/shots", help="corpus and results go here")
    es.add_argument("--videos", type=int, default=12)
    es.add_argument("--seconds", type=float, default=25.0, help="seconds per video")
    es.add_argument("--width", type=frame_side, default=640)
    es.add_argument("--height", type=frame_side, default=360)
    es.add_argument("--seed", type=int, default=0)
    es.add_argument("--tolerance", type=float, default=2.0, help="frames")
    es.add_argument("--real", default=None, metavar="SEGMENTS",
                    help="edit real footage instead of generating it: a segments JSON file or "
                         "a folder of single-shot videos (docs/shots.md)")
    es.add_argument("--split", choices=["holdout", "tune", "all"], default="holdout",
                    help="with --real: which sources (held out from tuning by default)")
    es.add_argument("--fps", type=float, default=25.0,
                    help="with --real: the edits' frame rate (every source frame shown once)")
    es.add_argument("--dissolve-frames", default="8-30", metavar="LO-HI",
                    help="with --real: cross-dissolve lengths in frames (default 8-30)")
    es.add_argument("--systems", default=None,
                    help="comma-separated subset of: hybrid, builtin, content, psd-content, "
                         "psd-adaptive, transnet (default: all)")


def _cmd_shots(a: argparse.Namespace) -> int:
    from clipfactory.config import load_config
    from clipfactory.errors import MediaError
    from clipfactory.memory import reuse_freed_memory
    from clipfactory.shots import check_detector
    from clipfactory.shots.detect import detect_shots, format_timecode
    from clipfactory.shots.learned import ModelError

    reuse_freed_memory()  # this command's process analyses videos, as a pipeline worker does
    cfg = load_config(a.config)
    if a.detector:
        cfg.shots.detector = a.detector
    try:
        check_detector(cfg.shots)
    except ModelError as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    writer = csv.writer(sys.stdout, lineterminator="\n") if a.csv else None
    if writer:
        writer.writerow(["video", "type", "start_frame", "end_frame", "start_time", "end_time"])
    failed = 0
    for path, source in _videos(a.videos, cfg.ingest):
        if source is None:  # a folder that holds no video, or cannot be listed
            failed += 1
            continue
        try:
            r = detect_shots(source, cfg.shots, cfg.analysis)
            r.path = path  # a folder's video is named under the folder as given
        except (MediaError, OSError) as e:
            print(f"clipfactory: {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        if a.json:
            print(r.to_json(), flush=True)
        elif writer:
            for t in r.transitions:
                writer.writerow([path, t.kind, t.start_frame, t.end_frame,
                                 f"{r.time_of(t.start_frame):.3f}", f"{r.time_of(t.end_frame):.3f}"])
        else:
            print(f"{path}: {r.frames} frames at {r.fps:.3f} fps, {len(r.transitions)} "
                  f"transitions ({cfg.shots.detector})")
            for t in r.transitions:
                print(f"  {t.kind:8s} {format_timecode(r.time_of(t.start_frame))} -> "
                      f"{format_timecode(r.time_of(t.end_frame))}   frames {t.start_frame} -> "
                      f"{t.end_frame}")
    return 1 if failed else 0


def _videos(args: list[str], ingest: Any) -> Iterator[tuple[str, str | None]]:
    """``(shown path, path to read)`` per video named by ``args``: a file as given, a folder's
    videos found as ``clipfactory run`` finds them (shown under the folder as given). A folder
    with no video, or one that cannot be listed, is said on stderr and gives ``(path, None)``."""
    from clipfactory.records import Rejection
    from clipfactory.sources.reader import read_folder

    for arg in args:
        if not Path(arg).is_dir():
            yield arg, arg
            continue
        found = 0
        for item in read_folder(Path(arg), ingest):
            shown = str(Path(arg, item.item_key.split(":", 1)[1]))
            if isinstance(item, Rejection):
                print(f"clipfactory: {shown}: {item.stage}/{item.reason}: {item.detail}",
                      file=sys.stderr)
                yield shown, None
                continue
            found += 1
            yield shown, item.source
        if not found:
            print(f"clipfactory: {arg}: no video in this folder (extensions: "
                  f"{' '.join(ingest.extensions)})", file=sys.stderr)
            yield arg, None


def _cmd_eval(a: argparse.Namespace) -> int:
    from clipfactory.bench.real_corpus import CorpusError
    from clipfactory.bench.shot_eval import SYSTEMS, run_shot_eval
    from clipfactory.memory import reuse_freed_memory

    systems = [s.strip() for s in a.systems.split(",")] if a.systems else None
    unknown = sorted(set(systems or []) - set(SYSTEMS))
    if unknown:
        print(f"clipfactory: unknown systems {unknown}; known: {sorted(SYSTEMS)}", file=sys.stderr)
        return 2
    try:
        lo, hi = (int(x) for x in a.dissolve_frames.split("-"))
        if not 2 <= lo <= hi:
            raise ValueError
    except ValueError:
        print(f"clipfactory: --dissolve-frames {a.dissolve_frames!r}: want LO-HI frames, "
              "2 <= LO <= HI", file=sys.stderr)
        return 2
    if a.videos < 1 or a.seconds <= 0:
        print("clipfactory: --videos must be at least 1 and --seconds above 0", file=sys.stderr)
        return 2
    reuse_freed_memory()  # as in `clipfactory shots`, for every system compared
    try:
        run_shot_eval(a.workdir, videos=a.videos, seconds=a.seconds, width=a.width,
                      height=a.height, tolerance=a.tolerance, systems=systems, seed=a.seed,
                      real=a.real, split=a.split, fps=a.fps, dissolve=(lo, hi))
    except CorpusError as e:  # a wrong --real: what to fix, in one line
        print(f"clipfactory: --real: {e}", file=sys.stderr)
        return 2
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"shots": _cmd_shots,
                                                            "eval": _cmd_eval}
