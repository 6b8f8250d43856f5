"""The card's YAML header for Hugging Face ``datasets`` (and the Hub): the shards as the
``default`` config, and the features of a sample declared instead of inferred.

Left to infer, ``load_dataset("webdataset", ...)`` types every field from the first five
samples of the first shard: a field that is null in all of them (``caption``, ``license_raw``)
becomes type null and the first real value fails the load; ``KEY.txt`` present in some of
them is refused, and present only later is silently dropped. With the features declared here,
``load_dataset(FOLDER)`` and ``load_dataset("webdataset", data_files=..., features=...)`` read
every sample as it is: ``json`` is the index row (``scores`` a struct of every score name the
kept clips have), ``mp4`` the clip, ``txt`` the caption or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import yaml

from clipfactory.sinks.index import INDEX_SCHEMA

__all__ = ["front_matter", "hf_features"]

_DTYPES = {pa.string(): "string", pa.int64(): "int64", pa.int32(): "int32",
           pa.float64(): "float64", pa.bool_(): "bool"}


def hf_features(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A sample's features in the YAML form of ``datasets`` (``dataset_info.features``), from
    the kept clips' statistics (:mod:`clipfactory.sinks.stats`)."""
    score_names = sorted(stats["score_names"])
    row: list[dict[str, Any]] = []
    for f in INDEX_SCHEMA:
        if f.name == "scores":
            row.append({"name": "scores",
                        "struct": [{"name": k, "dtype": "float64"} for k in score_names]})
        else:
            row.append({"name": f.name, "dtype": _DTYPES[f.type]})
    return [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"},
            {"name": "json", "struct": row}, {"name": "mp4", "dtype": "video"},
            {"name": "txt", "dtype": "string"}]


def front_matter(stats: Mapping[str, Any]) -> list[str]:
    """The card's first lines: ``---``, the YAML, ``---`` (nothing when no clip is kept)."""
    if not stats["clips"]:
        return []
    meta = {"configs": [{"config_name": "default",
                         "data_files": [{"split": "train", "path": "shards/**/*.tar"}]}],
            "dataset_info": {"features": hf_features(stats)}}
    return ["---", *yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).splitlines(),
            "---", ""]
