"""Find a CLIP or SigLIP checkpoint on this machine: a ``save_pretrained`` folder, or a hub id
in the local Hugging Face cache (downloaded only when the caller allows it), check that it has
every file the model and its processor need, and pin it by hub commit or folder fingerprint.

No torch or transformers here; huggingface_hub is imported only to look up hub ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelLoadError", "ResolvedModel", "folder_fingerprint", "hub_cache_dir",
           "resolve_model"]

KINDS = {"clip": "clip", "siglip": "siglip"}  # config.json model_type -> kind
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "spiece.model")
MIB = 1 << 20


class ModelLoadError(RuntimeError):
    """A model could not be resolved or loaded: the message names the path or hub id, what
    is missing or broken, and what to do about it."""


@dataclass(frozen=True)
class ResolvedModel:
    """A checkpoint found on this machine. ``revision``: the hub commit hash, or for a plain
    folder its :func:`folder_fingerprint`. ``missing``: required files that are absent (only
    ever non-empty with ``resolve_model(..., strict=False)``)."""

    spec: str
    path: Path
    kind: str
    revision: str
    source: str  # "folder" | "hf-cache" | "download"
    missing: list[str] = field(default_factory=list)


def _missing_files(folder: Path) -> list[str]:
    """Required files a ``save_pretrained`` folder lacks (CLIP/SigLIP model + processor)."""
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    index = next((folder / i for i in WEIGHT_INDEXES if (folder / i).is_file()), None)
    if index is not None:
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            missing.append(f"a readable {index.name} ({e})")
        else:
            missing += [s for s in shards if not (folder / s).is_file()]
    elif not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append("weights (model.safetensors, pytorch_model.bin or a sharded index)")
    if not (folder / "preprocessor_config.json").is_file():
        missing.append("preprocessor_config.json")
    has = {f for f in TOKENIZER_FILES if (folder / f).is_file()}
    if not ("tokenizer.json" in has or {"vocab.json", "merges.txt"} <= has
            or "spiece.model" in has):
        missing.append("tokenizer files (tokenizer.json, vocab.json + merges.txt, or "
                       "spiece.model)")
    return missing


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """A cheap content fingerprint of a checkpoint folder, ``"sha256:<16 hex>"``: the config,
    preprocessor and tokenizer files whole, and for each weights file its name, size and the
    sha256 of its first and last MiB. A fingerprint, not a full hash: it does not read
    multi-GB weights, so an edit in the middle of a weights file of the same size is missed."""
    folder = Path(folder)
    h = hashlib.sha256()
    small = ("config.json", "preprocessor_config.json", *TOKENIZER_FILES)
    for name in small:
        if (folder / name).is_file():
            h.update(b"file\0" + name.encode() + b"\0" + (folder / name).read_bytes())
    weights = sorted(p for p in folder.iterdir()
                     if p.is_file() and p.suffix in (".safetensors", ".bin"))
    for p in weights:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(MIB)
            f.seek(max(size - MIB, 0))
            tail = f.read(MIB)
        h.update(f"weights\0{p.name}\0{size}\0".encode())
        h.update(hashlib.sha256(head).digest() + hashlib.sha256(tail).digest())
    return "sha256:" + h.hexdigest()[:16]


def _model_kind(folder: Path) -> str:
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise ModelLoadError(f"{folder / 'config.json'}: cannot read it ({e})") from e
    if model_type == "siglip2":
        raise ModelLoadError(f"{folder}: model_type 'siglip2' needs NaFlex patch preprocessing, "
                             "which is not supported; use a checkpoint whose config.json "
                             "model_type is 'clip' or 'siglip'")
    if model_type not in KINDS:
        raise ModelLoadError(f"{folder}: config.json model_type is {model_type!r}; supported: "
                             "'clip' and 'siglip' (a full two-tower checkpoint)")
    return KINDS[model_type]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it
    once at import): HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, then
    $XDG_CACHE_HOME/huggingface/hub or ~/.cache/huggingface/hub."""
    env = os.environ
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not hub:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
        hub = os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith(("/", "./", "../", "~", ".\\")) or spec.count("/") > 1
            or os.path.exists(os.path.expanduser(spec)))


def resolve_model(spec: str, *, allow_download: bool = False, revision: str | None = None,
                  strict: bool = True) -> ResolvedModel:
    """Find the checkpoint ``spec`` names: an existing folder (as ``save_pretrained`` writes
    it), else a hub id looked up in the local Hugging Face cache, else (only with
    ``allow_download``) downloaded. ``revision``: for a hub id a branch, tag or commit; for a
    folder the expected fingerprint (checked). ``strict=False`` returns missing files in
    ``missing`` instead of raising. Raises :class:`ModelLoadError`."""
    folder = Path(os.path.expanduser(spec))
    if folder.is_dir():
        source, rev = "folder", None
    elif _looks_like_path(spec):
        raise ModelLoadError(f"model folder {spec!r} does not exist (or is not a folder)")
    else:
        folder, rev, source = _from_hub(spec, revision, allow_download)
    missing = _missing_files(folder)
    if "config.json" in missing:
        raise ModelLoadError(f"{folder}: no config.json, so this is not a checkpoint folder "
                             "as save_pretrained writes it")
    kind = _model_kind(folder)
    if missing and strict:
        fix = ("save the model and its processor there with save_pretrained"
               if source == "folder" else "the cached snapshot is incomplete: download it again")
        raise ModelLoadError(f"{folder} ({spec}) lacks {', '.join(missing)}; {fix}")
    if rev is None:
        rev = folder_fingerprint(folder)
        if revision is not None and revision != rev:
            raise ModelLoadError(f"{folder}: fingerprint is {rev} but revision {revision} was "
                                 "pinned; the folder's contents changed")
    return ResolvedModel(spec, folder, kind, rev, source, missing)


def _from_hub(repo_id: str, revision: str | None, allow_download: bool
              ) -> tuple[Path, str, str]:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import HFValidationError
    except ImportError as e:
        raise ModelLoadError(f"{repo_id!r} is not a folder, and huggingface_hub (needed to "
                             "look up hub ids) is not installed") from e
    cache = hub_cache_dir()
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                 local_files_only=True)
        source = "hf-cache"
    except HFValidationError as e:
        raise ModelLoadError(f"{repo_id!r} is neither a folder nor a valid hub id ({e})") from e
    except Exception as e:
        if not allow_download:
            raise ModelLoadError(
                f"{repo_id!r} (revision {revision or 'main'}) is not a folder and not in the "
                f"local Hugging Face cache {cache} (set by HF_HUB_CACHE or HF_HOME); download "
                f"it there first, or set allow_download: true to fetch it "
                f"[{type(e).__name__}]") from e
        path, source = _download(repo_id, revision, cache), "download"
    return Path(path), Path(path).name, source


def _download(repo_id: str, revision: str | None, cache: Path) -> str:
    from huggingface_hub import snapshot_download

    # configs, tokenizer and safetensors only: skip the TF/Flax copies many repos carry
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                 allow_patterns=patterns)
        if not any(Path(path).glob("*.safetensors")):
            path = snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                     allow_patterns=[*patterns, "pytorch_model*.bin"])
    except Exception as e:
        raise ModelLoadError(f"could not download {repo_id!r} (revision {revision or 'main'}) "
                             f"into {cache}: {type(e).__name__}: {e}") from e
    return path
