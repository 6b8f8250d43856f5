"""Command line: parse, load the config, call the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from clipfactory import __version__
from clipfactory.annotate import cli as annotate_cli
from clipfactory.cliargs import count, frame_side, seconds
from clipfactory.config import MAX_WORKERS, ConfigError
from clipfactory.errors import ManifestError, OutputError, StorageRefused, storage_refusal
from clipfactory.fetch import cli as fetch_cli
from clipfactory.provenance import cli as provenance_cli
from clipfactory.report import cli as report_cli
from clipfactory.shots import cli as shots_cli
from clipfactory.sinks import cli as sinks_cli

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "EXIT_STORAGE", "main"]

EXIT_STORAGE = 3  # any command: a disk it writes to is full, over quota or read-only
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
EXIT_BROKEN_PIPE = 141  # stdout's reader went away (128 + SIGPIPE)


def _workers_flag(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a number from 1 to {MAX_WORKERS} or auto, "
                                         f"not {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clipfactory", description=__doc__)
    p.add_argument("--version", action="version", version=f"clipfactory {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="curate a folder or manifest into WebDataset shards")
    r.add_argument("--input", required=True, help="folder of videos or .jsonl/.csv/.parquet")
    r.add_argument("--output", required=True, help="output folder (rerun to resume)")
    r.add_argument("--workers", type=_workers_flag, default=None,
                   help="worker processes, or auto (default): one per usable CPU")
    r.add_argument("--config", default=None, help="YAML config file")
    r.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="local process pool (default) or a Ray cluster (docs/ray.md)")
    r.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (default: RAY_ADDRESS, else a private one)")
    r.add_argument("--skip", action="append", choices=["filters", "dedup"], default=None,
                   help="turn a stage off (repeatable)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--no-wait", action="store_true",
                   help="fail at once if another clipfactory process is writing the output")
    provenance_cli.add_run_flags(r)
    fetch_cli.add_run_flags(r)

    s = sub.add_parser("status", help="what a run has done so far")
    s.add_argument("output")
    s.add_argument("--json", action="store_true", help="print the counts as JSON")

    b = sub.add_parser("bench", help="measure throughput against decode-only on a generated "
                       "corpus or your own files (CPU split by stage, peak RSS)")
    b.add_argument("--minutes", type=seconds, default=10.0, help="minutes of video to generate")
    b.add_argument("--width", type=frame_side, default=640)
    b.add_argument("--height", type=frame_side, default=360)
    b.add_argument("--resolution", default=None, metavar="LIST",
                   help="generated corpus sizes, e.g. 360p,720p,1080p or 640x360: a corpus and "
                   "a table each (default: --width x --height)")
    b.add_argument("--workdir", default="bench-out", help="where the corpus and outputs go")
    b.add_argument("--workers", type=count(1, MAX_WORKERS), default=1)
    b.add_argument("--input", "--real", dest="input", nargs="+", default=None,
                   metavar="FILE_OR_FOLDER",
                   help="measure on these videos (files, folders) instead of a generated corpus")
    b.add_argument("--detector", default=None, choices=["hybrid", "builtin", "content", "transnet"],
                   help="shot detector (default: the config's, hybrid)")
    b.add_argument("--embed", action="store_true",
                   help="also measure the embedding stage (clips/s, frames/s vs decode-only)")
    b.add_argument("--embed-only", action="store_true",
                   help="measure the embedding stage alone")
    b.add_argument("--embed-model", default=None, metavar="PATH",
                   help="checkpoint for --embed (default: random weights, ViT-B/32 shape)")
    b.add_argument("--embed-clips", type=count(1), default=48, metavar="N",
                   help="clips for --embed (3 s each)")
    b.add_argument("--caption", action="store_true",
                   help="also measure the caption stage against a local test server")
    b.add_argument("--caption-only", action="store_true", help="the caption stage alone")

    br = sub.add_parser("bench-ray", help="the Ray executor against the local one (1, 2 workers)")
    br.add_argument("--videos", type=count(1), default=16)
    br.add_argument("--seconds", type=seconds, default=6.0, help="seconds per video")
    br.add_argument("--width", type=frame_side, default=320)
    br.add_argument("--height", type=frame_side, default=180)
    br.add_argument("--workdir", default="bench-out", help="where the corpus and outputs go")
    br.add_argument("--repeats", type=count(1), default=2, help="runs of each, the fastest counts")

    bc = sub.add_parser("bench-cut", help="exact (smart) cut vs full re-encode vs stream copy")
    bc.add_argument("--videos", type=count(1), default=3, help="sources per GOP length")
    bc.add_argument("--seconds", type=seconds, default=60.0, help="seconds per source")
    bc.add_argument("--gops", default=(2.0, 5.0), type=_positive_numbers(),
                    help="GOP lengths in seconds, comma-separated")
    bc.add_argument("--clip-seconds", default=(4.0, 12.0), type=_positive_numbers(2),
                    help="clip lengths: min,max seconds")
    bc.add_argument("--width", type=frame_side, default=640)
    bc.add_argument("--height", type=frame_side, default=360)
    bc.add_argument("--workdir", default="bench-out", help="where sources and clips go")
    bc.add_argument("--codec", choices=["h264", "hevc"], default="h264",
                    help="the generated sources' codec")

    bs = sub.add_parser("bench-scale", help="run, status, audit, takedown and re-dedup on "
                        "synthetic datasets of N clips (time, peak RSS)")
    bs.add_argument("--clips", default=(1e5, 1e6), type=_positive_numbers(),
                    help="comma-separated sizes, e.g. 1e5,1e6,1e7")
    bs.add_argument("--keep", default=None, metavar="DIR",
                    help="leave the dataset of N clips in DIR/clips-N (default: deleted)")
    bs.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    bs.add_argument("--rededup", action="store_true",
                    help="measure `dedup --full` at every size (default: at 10^6 only)")
    bs.add_argument("--add", type=count(0), default=100, metavar="N",
                    help="clips the measured run adds (default 100)")
    bs.add_argument("--no-captions", action="store_true",
                    help="synthetic clips without captions: 1.5 KB less disk a clip")

    d = sub.add_parser("demo", help="generate a small sample corpus and curate it")
    d.add_argument("--workdir", default="demo-out")
    d.add_argument("--workers", type=count(1, MAX_WORKERS), default=2)

    c = sub.add_parser("config", help="print the default config as YAML")
    c.add_argument("--config", default=None, help="show this file merged with the defaults")
    provenance_cli.add_commands(sub)
    fetch_cli.add_commands(sub)
    shots_cli.add_commands(sub)
    annotate_cli.add_commands(sub)
    report_cli.add_commands(sub)
    sinks_cli.add_commands(sub)
    return p


def _cmd_run(a: argparse.Namespace) -> int:
    from clipfactory.config import load_config
    from clipfactory.filters.text_overlay import TextModelError
    from clipfactory.pipeline import run
    from clipfactory.shots.learned import ModelError
    from clipfactory.stages import StageError

    executor = a.executor or ("ray" if a.ray_address else None)  # an address implies ray
    cfg = load_config(a.config, workers=a.workers, executor=executor,
                      ray_address=a.ray_address)
    if a.skip:
        cfg.skip = sorted(set(cfg.skip) | set(a.skip))
    try:
        cfg = provenance_cli.apply_run_flags(cfg, a)
        cfg = fetch_cli.apply_run_flags(cfg, a)
    except ValueError as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    if not Path(a.input).exists():
        print(f"clipfactory: input not found: {a.input}", file=sys.stderr)
        return 2
    try:
        summary = run(a.input, a.output, cfg, quiet=a.quiet)
    except (ModelError, StageError, TextModelError) as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    _print_counts(summary["counts"], Path(a.output))
    t = summary.get("throughput") or {}
    if t:
        print(f"throughput: {t['x_realtime']}x realtime on {t['workers']} workers, "
              f"{t['x_realtime_per_core']}x realtime per core-second")
    if (Path(a.output) / "report.html").is_file():
        print(f"report: {Path(a.output) / 'report.html'}")
    return 0


def _print_counts(counts: dict, out: Path) -> None:
    v, c = counts["videos"], counts["clips"]
    print(f"{out}: videos {v['done']} done, {v['failed']} failed, {v['pending']} pending "
          f"(of {v['total']})")
    print(f"clips: {c['kept']} kept, {c['dropped']} dropped, {c['staged']} staged")
    for reason, n in counts["dropped_by_reason"].items():
        print(f"  dropped {reason}: {n}")
    for reason, n in counts["failed_by_reason"].items():
        print(f"  failed  {reason}: {n}")
    for reason, n in counts.get("removed_by_reason", {}).items():
        print(f"  removed {reason}: {n}")
    print(f"hours: {counts['hours_in']:.4f} in, {counts['hours_out']:.4f} out")


def _cmd_status(a: argparse.Namespace) -> int:
    from clipfactory.ledger import Ledger

    path = Path(a.output) / "ledger.sqlite"
    if not path.is_file():
        print(f"clipfactory: no run found in {a.output}", file=sys.stderr)
        return 2
    ledger = Ledger(path)
    try:
        counts = ledger.counts()
    finally:
        ledger.close()
    if a.json:
        print(json.dumps(counts, indent=2))
    else:
        _print_counts(counts, Path(a.output))
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from clipfactory.bench.run import parse_resolutions, run_bench, run_bench_sizes

    try:
        sizes = parse_resolutions(a.resolution) if a.resolution else [(a.width, a.height)]
    except ValueError as e:
        print(f"clipfactory bench: {e}", file=sys.stderr)
        return 2
    if a.input and a.resolution:
        print("clipfactory bench: --resolution sizes the generated corpus; not with --input",
              file=sys.stderr)
        return 2
    if not (a.embed_only or a.caption_only):
        try:
            if a.input:
                run_bench(workdir=a.workdir, workers=a.workers, detector=a.detector,
                          inputs=a.input)
            else:
                run_bench_sizes(sizes, minutes=a.minutes, workdir=a.workdir, workers=a.workers,
                                detector=a.detector)
        except FileNotFoundError as e:  # an --input that is not there, or holds no video
            print(f"clipfactory bench: {e}", file=sys.stderr)
            return 2
    if a.embed or a.embed_only:
        from clipfactory.bench.embed import run_embed_bench

        run_embed_bench(a.workdir, model=a.embed_model, clips=a.embed_clips, width=a.width,
                        height=a.height)
    if a.caption or a.caption_only:
        from clipfactory.bench.caption import run_caption_bench

        run_caption_bench(a.workdir, width=a.width, height=a.height)
    return 0


def _cmd_bench_ray(a: argparse.Namespace) -> int:
    from clipfactory.bench.ray import run_ray_bench

    run_ray_bench(videos=a.videos, seconds=a.seconds, width=a.width, height=a.height,
                  workdir=a.workdir, repeats=a.repeats)
    return 0


def _positive_numbers(count: int | None = None) -> Callable[[str], tuple[float, ...]]:
    """An argparse type: comma-separated numbers above 0 (``count`` of them, in increasing
    order, when given): a typo is a usage error, not a traceback after the work began."""
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: not comma-separated numbers") from None
        if not values or not all(v > 0 and math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: want numbers above 0")
        if count is not None and (len(values) != count or list(values) != sorted(values)):
            raise argparse.ArgumentTypeError(f"{text!r}: want {count} numbers, smallest first")
        return values
    return parse


def _cmd_bench_cut(a: argparse.Namespace) -> int:
    from clipfactory.bench.cut import run_cut_bench

    run_cut_bench(a.workdir, videos=a.videos, seconds=a.seconds, width=a.width,
                  height=a.height, gops=a.gops, clip_s=a.clip_seconds, codec=a.codec)
    return 0


def _cmd_bench_scale(a: argparse.Namespace) -> int:
    from clipfactory.bench.scale import run_scale_bench

    sizes = [int(x) for x in a.clips]
    rows = run_scale_bench(sizes, keep=a.keep, json_path=a.json, rededup=a.rededup, add=a.add,
                           captions=not a.no_captions)
    return 1 if any(r["problems"] for r in rows) else 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from clipfactory.bench.demo import run_demo

    run_demo(Path(a.workdir), workers=a.workers)
    return 0


def _cmd_config(a: argparse.Namespace) -> int:
    from clipfactory.config import load_config

    print(load_config(a.config).to_yaml(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clipfactory`` command."""
    a = _parser().parse_args(argv)
    handlers = {"run": _cmd_run, "status": _cmd_status, "bench": _cmd_bench,
                "bench-ray": _cmd_bench_ray, "bench-cut": _cmd_bench_cut,
                "bench-scale": _cmd_bench_scale, "demo": _cmd_demo,
                "config": _cmd_config, **provenance_cli.COMMANDS, **fetch_cli.COMMANDS,
                **shots_cli.COMMANDS, **annotate_cli.COMMANDS,
                **report_cli.COMMANDS, **sinks_cli.COMMANDS}
    restore = _first_ctrl_c_stops_cleanly()
    interrupted = False
    try:
        if getattr(a, "no_wait", False):  # take the output's lock now, or say who holds it
            from clipfactory.lock import OutputLocked, output_lock, remove_if_only_lock

            fresh = a.command == "run" and not os.path.lexists(a.output)
            try:
                with output_lock(a.output, a.command, wait=False, create=a.command == "run"):
                    status = handlers[a.command](a)
            except OutputLocked as e:
                print(f"clipfactory: {e}", file=sys.stderr)
                return 2
            finally:  # refused before any work (a missing input, a bad config): no folder
                # of only a lock file is left behind, as without --no-wait
                if fresh:
                    remove_if_only_lock(Path(a.output))
        else:
            status = handlers[a.command](a)
        sys.stdout.flush()  # a reader that has gone is found here, not at the exit
        return status
    except (ConfigError, ManifestError, OutputError) as e:  # the config, the input list or
        # the output folder says what to fix
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what was recorded stays, like after any kill
        interrupted = True
        print(f"\nclipfactory: {a.command} interrupted. Nothing recorded is lost; run the same "
              "command again to carry on from there.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `clipfactory status out | head`: the reader has gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (so that the exit's flush is quiet too)
        return EXIT_BROKEN_PIPE
    except Exception as e:
        what = storage_refusal(e)
        if what is None:
            raise
        fix = "Free some space" if what == "full" else \
            "Make it writable (a disk the system remounted read-only after errors needs checking)"
        print(f"clipfactory: {a.command} stopped: a disk it writes to is {what} "
              f"({_first_line(e)}).\n"
              "Nothing already recorded is lost: inputs that were in flight stay pending and "
              f"every output file is replaced whole or not at all. {fix}, then run the same "
              "command again; it carries on from there.", file=sys.stderr)
        return EXIT_STORAGE
    finally:
        # after Ctrl-C the process is ending: a second one that lands in the exit (the
        # process pool's clean-up at interpreter exit) still stops it at once, not with a
        # traceback from that clean-up
        if not interrupted:
            restore()


def _first_ctrl_c_stops_cleanly() -> Callable[[], None]:
    """Ctrl-C raises KeyboardInterrupt once: the command stops its workers and says so. A
    second one, which would otherwise land anywhere in that clean-up (a traceback from a
    destructor, a pool left waiting), ends the process at once instead, as a kill would, which
    every command survives. Only where SIGINT has Python's default handler (not when it is
    ignored, as for a background job, or when an embedding program set its own); returns what
    puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return lambda: None

    def again(signum: int, frame: object) -> None:
        os.write(2, b"\nclipfactory: interrupted again, stopping now; the same command "
                    b"carries on from what was recorded.\n")
        os._exit(EXIT_INTERRUPTED)

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


def _first_line(e: BaseException) -> str:
    """What refused: the first line of a :class:`StorageRefused` (it names the write), or of
    the error that reached here (``OSError: [Errno 28] ...``)."""
    lines = str(e).strip().splitlines()
    first = lines[0] if lines else ""
    return first if isinstance(e, StorageRefused) else f"{type(e).__name__}: {first}"


if __name__ == "__main__":
    sys.exit(main())
