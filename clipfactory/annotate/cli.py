"""``clipfactory models`` (what each model stage loads, checked before a run) and
``clipfactory mix`` (a dataset with a target category mix): parse and call."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "add_commands"]


def add_commands(sub: Any) -> None:
    """Register the subcommands on the main parser's subparsers."""
    m = sub.add_parser("models", help="the models a config loads: where from, which revision, "
                                      "what is missing (exit 2 if anything is)")
    m.add_argument("--config", default=None, help="YAML config file")
    m.add_argument("--json", action="store_true", help="one JSON object per model")

    c = sub.add_parser("caption", help="caption an existing dataset's clips with a VLM "
                                       "(shards rewritten atomically)")
    c.add_argument("output", help="an output folder")
    c.add_argument("--config", default=None,
                   help="YAML with annotate.captions (default: the output's own config)")
    c.add_argument("--force", action="store_true",
                   help="caption every clip again, not only those without an ok caption")
    c.add_argument("--no-wait", action="store_true",
                   help="fail at once if another clipfactory process is writing the output")

    x = sub.add_parser("mix", help="write a new dataset whose category shares follow a target")
    x.add_argument("source", help="an output folder with categorised clips")
    x.add_argument("--target", required=True,
                   help='shares per category, summing to 1: "driving=0.2,nature=0.3,other=0.5"'
                        ' (other: every category not named)')
    x.add_argument("--output", required=True, help="a new folder")
    x.add_argument("--max-clips", type=int, default=None, help="at most this many clips")
    x.add_argument("--seed", type=int, default=0, help="which clips of a category are taken")


def _shot_model_row(cfg: Any) -> dict[str, Any] | None:
    from clipfactory.shots import MODEL_DETECTORS
    from clipfactory.shots.learned import default_model_path

    if cfg.shots.detector not in MODEL_DETECTORS:
        return None
    path = Path(cfg.shots.model or default_model_path())
    row = {"stage": f"shots ({cfg.shots.detector})", "model": "TransNetV2 (ONNX)",
           "source": "shipped" if not cfg.shots.model else "file", "path": str(path),
           "revision": "", "device": cfg.shots.transnet_device, "missing": []}
    if path.is_file():
        row["revision"] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    else:
        row["missing"] = [f"{path} does not exist"]
        return row
    from clipfactory.shots import check_detector
    from clipfactory.shots.learned import ModelError

    try:  # what `run` checks before it starts: the file loads, CUDA is there if asked for
        check_detector(cfg.shots)
    except ModelError as e:
        row["missing"] = [str(e)]
    return row


def _cmd_models(a: argparse.Namespace) -> int:
    from clipfactory.config import load_config
    from clipfactory.stages import build_stages

    try:
        cfg = load_config(a.config)
    except (ValueError, OSError) as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    rows = [r for r in [_shot_model_row(cfg)] if r]
    for stage in build_stages(cfg):
        st = stage.check()
        missing = list(st.missing)
        probe = getattr(stage, "probe", None)
        if probe is not None and not missing and (why := probe()):
            missing.append(why)
        rows.append({"stage": st.stage, "model": st.model, "source": st.source, "path": st.path,
                     "revision": st.revision, "device": st.device, "missing": missing})
    if not cfg.annotate.embeddings.model and not cfg.annotate.captions.backend:
        print("no annotation stage configured (annotate.embeddings.model and annotate.captions."
              "backend are empty)",
              file=sys.stderr)
    for r in rows:
        if a.json:
            print(json.dumps(r))
            continue
        status = "ok" if not r["missing"] else "MISSING: " + "; ".join(r["missing"])
        print(f"{r['stage']}: {r['model']}\n  source   {r['source']}\n  path     {r['path']}\n"
              f"  revision {r['revision']}\n  device   {r['device']}\n  status   {status}")
    return 2 if any(r["missing"] for r in rows) else 0


def _cmd_mix(a: argparse.Namespace) -> int:
    from clipfactory.annotate.mix import MixError, parse_target, write_mix

    try:
        target = parse_target(a.target)
        summary = write_mix(a.source, a.output, target, max_clips=a.max_clips, seed=a.seed)
    except MixError as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    mix = summary.get("mix") or {}
    print(f"{a.output}: {mix.get('clips', 0)} clips")
    for k, share in target.items():
        got = (mix.get("achieved") or {}).get(k, 0.0)
        print(f"  {k}: target {100 * share:.1f} %, achieved {100 * got:.1f} % "
              f"({(mix.get('counts') or {}).get(k, 0)} of {(mix.get('available') or {}).get(k, 0)})")
    return 0


def _cmd_caption(a: argparse.Namespace) -> int:
    from clipfactory.annotate.after import caption_dataset
    from clipfactory.config import load_config
    from clipfactory.stages import StageError

    try:
        captions = load_config(a.config).annotate.captions if a.config else None
        summary = caption_dataset(a.output, captions, force=a.force)
    except (ValueError, OSError, StageError) as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    cap = ((summary.get("annotations") or {}).get("captions") or {}).get("by_status", {})
    print(f"{a.output}: captions " + (", ".join(f"{n} {k}" for k, n in cap.items()) or "none"))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "models": _cmd_models, "mix": _cmd_mix, "caption": _cmd_caption}
