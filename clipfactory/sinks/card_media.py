"""What the card says the clips are, counted from the kept clips themselves (their mergeable
statistics, :mod:`clipfactory.sinks.stats`), and how to load them.

A smart cut keeps the source's codec (VP9, MPEG-4 Part 2, AV1 ...) and a transcode sets its
own, so the card never assumes one: codecs and pixel formats come from each clip's cut record
(the pixel format read back from the written file), frame sizes from the clip, buckets from
its shard name, caption models from its caption columns. The loading lines are the ones
``docs/loaders.md`` shows, and tests run them as the card prints them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from clipfactory.policy.report import md_cell, md_code

__all__ = ["CODEC_NAMES", "layout_lines", "loading_lines", "media_counts", "media_lines"]

CODEC_NAMES = {"h264": "H.264/AVC", "hevc": "H.265/HEVC", "vp9": "VP9", "vp8": "VP8",
               "av1": "AV1", "mpeg4": "MPEG-4 Part 2", "mpeg2video": "MPEG-2",
               "mpeg1video": "MPEG-1", "prores": "ProRes", "mjpeg": "Motion JPEG"}
_TOP_SIZES = 12


def _sorted(c: Mapping[Any, int]) -> list[tuple[Any, int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))


def media_counts(stats: Mapping[str, Any]) -> dict[str, Counter]:
    """Counts over the kept clips, from their statistics: ``codec`` (codec, pixel format),
    ``size``, ``method`` (cut method), ``audio``, ``bucket`` (clips and shards) and
    ``caption_model``."""
    return {
        "codec": Counter({(codec, pix): n for codec, fmts in stats["codecs"].items()
                          for pix, n in fmts.items()}),
        "size": Counter(stats["sizes"]), "method": Counter(stats["cut_methods"]),
        "audio": Counter(stats["audio"]),
        "bucket": Counter({b: v["clips"] for b, v in stats["buckets"].items()}),
        "bucket_shards": Counter({b: len(v["shards"]) for b, v in stats["buckets"].items()}),
        "caption_model": Counter(stats["caption_models"])}


def layout_lines(stats: Mapping[str, Any]) -> list[str]:
    """The shard line of the card's layout list, for the layout the clips are in."""
    where = ("`shards/<bucket>/shard-NNNNNN.tar` (one folder per bucket, see Clips)"
             if stats["buckets"] else "`shards/shard-NNNNNN.tar`")
    return [f"- {where}: WebDataset shards; each clip is `KEY.mp4` (codecs and pixel formats"
            " under Clips; timestamps from 0), `KEY.json` (its index row) and, for a captioned"
            " clip, `KEY.txt`."]


def media_lines(stats: Mapping[str, Any], summary: dict[str, Any]) -> list[str]:
    """The card's ``## Clips`` section: codecs, pixel formats, sizes, buckets and models."""
    if not stats["clips"]:
        return []
    m = media_counts(stats)
    lines = ["## Clips", "", "| video codec | pixel format | clips |", "|---|---|---|"]
    for (codec, pix), n in _sorted(m["codec"]):
        name = CODEC_NAMES.get(codec)
        lines.append(f"| {md_cell(name) + f' ({md_code(codec, table=True)})' if name else md_code(codec, table=True)} | "
                     f"{md_cell(pix)} | {n} |")
    lines += ["", "| frame size | clips |", "|---|---|"]
    sizes = _sorted(m["size"])
    lines += [f"| {s} | {n} |" for s, n in sizes[:_TOP_SIZES]]
    if len(sizes) > _TOP_SIZES:
        rest = sizes[_TOP_SIZES:]
        lines.append(f"| {len(rest)} other sizes | {sum(n for _, n in rest)} |")
    lines += ["", "Cut: " + ", ".join(f"{n} {k}" for k, n in _sorted(m["method"]))
              + " (`cut_method`; docs/cutting.md); " + ", ".join(
                  f"{n} {k}" for k, n in _sorted(m["audio"])) + ".", ""]
    if m["bucket"]:
        lines += ["Shards are bucketed (`shards.bucket_by`; the folder name joins the classes"
                  " with `_`; the index's `bucket` column):", "",
                  "| bucket | clips | shards |", "|---|---|---|"]
        lines += [f"| {md_code(b, table=True)} | {n} | {m['bucket_shards'][b]} |"
                  for b, n in sorted(m["bucket"].items())]
        lines.append("")
    models = _model_rows(m["caption_model"], summary)
    if models:
        lines += ["| model | for | clips |", "|---|---|---|", *models, ""]
    return lines


def _model_rows(captions: Mapping[str, int], summary: dict[str, Any]) -> list[str]:
    rows = [f"| {md_code(k, table=True)}{' (the manifest’s own captions)' if k == 'source' else ''} | "
            f"captions | {n} |" for k, n in _sorted(captions)]
    a = summary.get("annotations") or {}
    for e in a.get("embedding_models") or []:
        rev = f" @ {md_code(e['revision'], table=True)}" if e.get("revision") else ""
        rows.append(f"| {md_code(e['model'], table=True)}{rev} | embeddings ({e['dim']} dims) | {e['clips']} |")
    return rows


def loading_lines(stats: Mapping[str, Any]) -> list[str]:
    """The card's ``## Loading`` section: the lines of docs/loaders.md, run from the dataset
    folder (one bucket's glob named when the shards are bucketed)."""
    buckets = sorted(stats["buckets"])
    one = (f'  # one bucket: "shards/{buckets[0]}/*.tar"' if buckets else "")
    return [
        "## Loading", "",
        "From this folder (clipfactory's docs/loaders.md explains each line):", "",
        "```python",
        "import glob",
        "import io",
        "import os",
        "",
        "import av",
        "import pandas as pd",
        "import webdataset as wds",
        "from datasets import Video, load_dataset, load_dataset_builder",
        "",
        'shards = sorted(glob.glob("shards/**/*.tar", recursive=True))' + one,
        'ds = wds.WebDataset(shards, shardshuffle=False).decode().to_tuple("__key__", "mp4",'
        ' "json")',
        "for key, mp4, meta in ds:  # the clip's bytes and its index row",
        "    with av.open(io.BytesIO(mp4)) as clip:",
        '        frames = [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]',
        "",
        "features = load_dataset_builder(os.getcwd()).info.features  # from this card's header",
        'features["mp4"] = Video(decode=False)  # bytes (decoding in datasets needs torchcodec)',
        'hf = load_dataset("webdataset", data_files={"train": "shards/**/*.tar"}, split="train",',
        "                  features=features, streaming=True)",
        "",
        'index = pd.read_parquet("index.parquet")  # one row per clip: shard, bucket, key',
        "```", ""]
