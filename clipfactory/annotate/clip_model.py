"""CLIP and SigLIP image/text embeddings: resolve a checkpoint (local folder or the local
Hugging Face cache), preprocess frames in numpy + Pillow, embed, and score zero-shot labels.

Pure model module: no pipeline types. torch and transformers are imported when a
:class:`ClipEmbedder` is built, never at import time. Nothing is downloaded unless the caller
passes ``allow_download=True`` to :func:`resolve_model`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipfactory.annotate.taxonomy import DEFAULT_CATEGORIES, DEFAULT_PROMPTS, DEFAULT_TEMPLATES

__all__ = ["DEFAULT_CATEGORIES", "DEFAULT_PROMPTS", "DEFAULT_TEMPLATES", "ClipEmbedder",
           "ImageTransform", "ModelLoadError", "ResolvedModel", "folder_fingerprint",
           "hub_cache_dir", "pick_device", "resolve_model"]

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


def pick_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cpu"``, ``"cuda"``
    and ``"cuda:N"`` pass through when usable."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use device: auto or cpu")
    if int(m.group(1) or 0) >= torch.cuda.device_count():
        raise ModelLoadError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s)")
    return device


def _hw(size: Any, what: str) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) and {"height", "width"} <= size.keys():
        return int(size["height"]), int(size["width"])
    raise ValueError(f"{what} {size!r}: expected an int or {{height, width}}")


@dataclass(frozen=True)
class ImageTransform:
    """The checkpoint's image preprocessing, as its ``preprocessor_config.json`` says, done
    with Pillow (resize, same filter as transformers' processors) and numpy (crop, scale)."""

    shortest_edge: int | None = None  # resize keeping the aspect (CLIP)
    resize_hw: tuple[int, int] | None = None  # resize to exactly this (SigLIP)
    crop_hw: tuple[int, int] | None = None
    rescale: float | None = 1 / 255
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resample: int = 3  # PIL.Image.Resampling.BICUBIC

    @classmethod
    def from_config(cls, cfg: dict[str, Any], kind: str) -> ImageTransform:
        """Read a CLIP or SigLIP ``preprocessor_config.json`` (dict and int forms of size:
        an int is the shortest edge for CLIP, a square for SigLIP)."""
        shortest = resize_hw = crop = None
        if cfg.get("do_resize", True):
            size = cfg["size"]
            if isinstance(size, dict) and "shortest_edge" in size:
                shortest = int(size["shortest_edge"])
            elif isinstance(size, int) and kind == "clip":
                shortest = size
            else:
                resize_hw = _hw(size, "size")
        if cfg.get("do_center_crop", kind == "clip"):
            crop = _hw(cfg["crop_size"], "crop_size")
        norm = cfg.get("do_normalize", True)
        return cls(shortest, resize_hw, crop,
                   float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True)
                   else None,
                   tuple(cfg["image_mean"]) if norm else None,
                   tuple(cfg["image_std"]) if norm else None,
                   int(cfg.get("resample", 3)))

    @property
    def out_hw(self) -> tuple[int, int] | None:
        """The output size when it does not depend on the input's, else None."""
        return self.crop_hw or self.resize_hw

    def resized_hw(self, h: int, w: int) -> tuple[int, int]:
        if self.resize_hw is not None:
            return self.resize_hw
        if self.shortest_edge is None:
            return h, w
        s = self.shortest_edge  # transformers' rule: the long side truncated, not rounded
        return (int(s * h / w), s) if w <= h else (s, int(s * w / h))

    def __call__(self, frames: list[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB frames of any sizes → float32 NCHW (all the same output size)."""
        from PIL import Image

        out = []
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"expected HxWx3 uint8 RGB, got {f.shape} {f.dtype}")
            h, w = self.resized_hw(*f.shape[:2])
            if (h, w) != f.shape[:2]:
                f = np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling(self.resample)))
            if self.crop_hw is not None:
                f = _center_crop(f, *self.crop_hw)
            x = f.astype(np.float32)
            if self.rescale is not None:
                x *= np.float32(self.rescale)
            if self.mean is not None and self.std is not None:
                x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
            out.append(x.transpose(2, 0, 1))
        return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def _center_crop(f: np.ndarray, ch: int, cw: int) -> np.ndarray:
    h, w = f.shape[:2]
    top, left = (h - ch) // 2, (w - cw) // 2
    if top < 0 or left < 0:  # zero-pad around first, exactly as transformers' center_crop
        ph, pw = max(ch, h), max(cw, w)
        pad_top, pad_left = -((h - ph) // 2), -((w - pw) // 2)  # ceil((ph - h) / 2)
        padded = np.zeros((ph, pw, 3), f.dtype)
        padded[pad_top:pad_top + h, pad_left:pad_left + w] = f
        f, top, left = padded, top + pad_top, left + pad_left
    return f[top:top + ch, left:left + cw]


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), np.float32(1e-12))


def _mean_per_group(vecs: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Unit mean of each run of ``sizes`` consecutive rows."""
    if not sizes:
        return vecs[:0]
    bounds = itertools.pairwise(np.cumsum([0, *sizes]))
    return _unit(np.stack([vecs[a:b].mean(axis=0) for a, b in bounds]))


class ClipEmbedder:
    """A loaded CLIP or SigLIP checkpoint: L2-normalised image and text embeddings and
    zero-shot label probabilities. Build once per worker (in a stage's ``setup()``)."""

    def __init__(self, resolved: ResolvedModel, device: str = "auto", threads: int = 0, *,
                 batch_size: int = 32) -> None:
        try:
            import PIL  # noqa: F401  (resizing, at the first frame)
            import torch
            import transformers  # noqa: F401
        except ImportError as e:
            raise ModelLoadError(f"CLIP/SigLIP models need torch, transformers and Pillow: "
                                 f"{e}") from e
        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self.resolved = resolved
        self.device = pick_device(device)
        self.batch_size = max(1, batch_size)
        path = resolved.path
        cfg_path = path / "preprocessor_config.json"
        try:
            self.transform = ImageTransform.from_config(json.loads(cfg_path.read_text()),
                                                        resolved.kind)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{cfg_path}: cannot use it ({type(e).__name__}: {e})") from e
        self._model = self._load_model()
        self._tokenizer = self._load_tokenizer()
        cfg = self._model.config
        clip = resolved.kind == "clip"
        self._dim = int(cfg.projection_dim if clip else cfg.vision_config.hidden_size)
        self._max_len = int(cfg.text_config.max_position_embeddings)
        image_size = int(cfg.vision_config.image_size)
        if self.transform.out_hw != (image_size, image_size):
            raise ModelLoadError(f"{cfg_path} makes images of {self.transform.out_hw or 'varying'}"
                                 f" size but the model expects {image_size}x{image_size}")
        self._scale = float(self._model.logit_scale.detach().exp().item())
        self._bias = 0.0 if clip else float(self._model.logit_bias.detach().item())

    def _load_model(self) -> Any:
        from transformers import CLIPModel, SiglipModel

        cls = CLIPModel if self.resolved.kind == "clip" else SiglipModel
        try:
            model, info = cls.from_pretrained(str(self.resolved.path), local_files_only=True,
                                              output_loading_info=True)
        except Exception as e:
            raise ModelLoadError(f"cannot load the {self.resolved.kind} weights in "
                                 f"{self.resolved.path}: {type(e).__name__}: {e}") from e
        if info.get("missing_keys"):  # transformers would fill them with random values
            keys = sorted(info["missing_keys"])
            raise ModelLoadError(f"{self.resolved.path}: the weights do not match config.json; "
                                 f"{len(keys)} tensors missing (e.g. {keys[:3]})")
        return model.to(self.device).eval()

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(self.resolved.path), local_files_only=True)
        except Exception as e:
            raise ModelLoadError(f"cannot load the tokenizer in {self.resolved.path}: "
                                 f"{type(e).__name__}: {e}") from e
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        return tok

    @property
    def dim(self) -> int:
        """Length of every embedding vector."""
        return self._dim

    @property
    def model_id(self) -> str:
        """The spec the model was resolved from (a hub id or a folder)."""
        return self.resolved.spec

    @property
    def revision(self) -> str:
        """The hub commit hash, or the folder's fingerprint."""
        return self.resolved.revision

    def _run(self, fn: Any, **inputs: Any) -> np.ndarray:
        with self._torch.inference_mode():
            out = fn(**{k: v.to(self.device) for k, v in inputs.items()})
        return out.float().cpu().numpy()

    def embed_images(self, frames: list[np.ndarray]) -> np.ndarray:
        """One unit vector per HxWx3 uint8 RGB frame: (N, dim) float32."""
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(frames), self.batch_size):
            pixels = self._torch.from_numpy(self.transform(frames[i:i + self.batch_size]))
            out.append(self._run(self._model.get_image_features, pixel_values=pixels))
        return _unit(np.concatenate(out))

    def embed_frames_pooled(self, groups: list[list[np.ndarray]]) -> np.ndarray:
        """One unit vector per group of frames (a clip): the mean of its frames' vectors."""
        if any(len(g) == 0 for g in groups):
            raise ValueError("every group needs at least one frame")
        return _mean_per_group(self.embed_images([f for g in groups for f in g]),
                               [len(g) for g in groups])

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text: (N, dim) float32, truncated to the model's positions."""
        clip = self.resolved.kind == "clip"
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(texts), self.batch_size):
            # SigLIP was trained on texts padded to full length, without an attention mask
            enc = self._tokenizer(list(texts[i:i + self.batch_size]), truncation=True,
                                  padding=True if clip else "max_length",
                                  max_length=self._max_len, return_tensors="pt")
            inputs = {"input_ids": enc["input_ids"]}
            if clip and "attention_mask" in enc:
                inputs["attention_mask"] = enc["attention_mask"]
            out.append(self._run(self._model.get_text_features, **inputs))
        return _unit(np.concatenate(out))

    def label_vectors(self, labels: list[str], templates: list[str],
                      prompts: dict[str, list[str]] | None = None) -> np.ndarray:
        """One unit vector per label: the mean over its prompts (its own in ``prompts``, else
        every template formatted with the label)."""
        texts = [(prompts or {}).get(lab) or [t.format(lab) for t in templates] for lab in labels]
        return _mean_per_group(self.embed_texts([t for ts in texts for t in ts]),
                               [len(ts) for ts in texts])

    def zero_shot(self, image_vecs: np.ndarray, label_vecs: np.ndarray) -> np.ndarray:
        """(N images, L labels) probabilities: CLIP a softmax over the labels (rows sum to 1),
        SigLIP an independent sigmoid per label, both with the model's own logit scale."""
        logits = self._scale * (np.asarray(image_vecs, np.float32)
                                @ np.asarray(label_vecs, np.float32).T) + self._bias
        if self.resolved.kind == "siglip":
            return (1 / (1 + np.exp(-logits))).astype(np.float32)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
