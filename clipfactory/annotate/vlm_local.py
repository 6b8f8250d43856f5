"""Captions from a Qwen-VL checkpoint folder run in this process with ``transformers``, on the
GPU when there is one: the local twin of an OpenAI-compatible server, returning the same
:class:`~clipfactory.annotate.vlm_types.ChatResult`.

Works without torchvision: transformers' ``AutoProcessor`` for these models insists on a
torchvision-only video processor, so this module renders the chat template with the tokenizer,
resizes and patches images with the slow (numpy + Pillow) ``Qwen2VLImageProcessor``, and
expands each image placeholder to its patch count itself, as ``Qwen2VLProcessor`` does for
images. Nothing is ever downloaded. torch and transformers are imported when a
:class:`LocalVLM` is built, never at import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from clipfactory.annotate.clip_model import pick_device
from clipfactory.annotate.model_files import ModelLoadError, _missing_files, folder_fingerprint
from clipfactory.annotate.vlm_types import ChatResult, VLMError

__all__ = ["DEFAULT_MAX_TOKENS", "SUPPORTED_MODEL_TYPES", "LocalVLM", "generation_kwargs"]

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
DEFAULT_MAX_TOKENS = 256
# OpenAI-style names -> generate() names; anything else in params is ignored with a warning
PARAM_NAMES = {"max_tokens": "max_new_tokens", "max_new_tokens": "max_new_tokens",
               "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
               "repetition_penalty": "repetition_penalty", "seed": "seed"}
DTYPES = ("auto", "float32", "bfloat16", "float16")
CHAT_FILES = ("chat_template.json", "chat_template.jinja", "generation_config.json")


def generation_kwargs(params: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """``generate()`` keyword arguments and the seed for OpenAI-style ``params``:
    ``max_tokens`` → ``max_new_tokens`` (default :data:`DEFAULT_MAX_TOKENS`), ``temperature``
    0 → greedy, above 0 → sampling at that temperature; ``top_p``, ``top_k`` and
    ``repetition_penalty`` pass through. Unset ones keep the checkpoint's
    ``generation_config.json`` values."""
    unknown = sorted(set(params) - set(PARAM_NAMES))
    if unknown:
        log.warning("local VLM ignores the generation parameters %s", ", ".join(unknown))
    mapped = {PARAM_NAMES[k]: v for k, v in params.items() if k in PARAM_NAMES and v is not None}
    seed = mapped.pop("seed", None)
    kwargs: dict[str, Any] = {"max_new_tokens": int(mapped.pop("max_new_tokens",
                                                               DEFAULT_MAX_TOKENS))}
    if kwargs["max_new_tokens"] < 1:
        raise ValueError(f"max_tokens must be at least 1, got {kwargs['max_new_tokens']}")
    temperature = mapped.pop("temperature", None)
    if temperature is not None and float(temperature) <= 0:
        # greedy; clear the checkpoint's sampling settings so generate() does not warn
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        mapped.pop("top_p", None)
        mapped.pop("top_k", None)
    elif temperature is not None:
        kwargs.update(do_sample=True, temperature=float(temperature))
    kwargs.update(mapped)
    return kwargs, None if seed is None else int(seed)


def _fail(path: Path | str, what: str, e: BaseException | None = None) -> VLMError:
    return VLMError("model_error", f"{path}: {what}" + (f" ({type(e).__name__}: {e})" if e else ""))


class LocalVLM:
    """A Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint folder (as ``save_pretrained`` writes it,
    or a hub snapshot folder) loaded for captioning. Build once per worker; ``params`` are
    default generation parameters (OpenAI names, see :func:`generation_kwargs`) that each
    :meth:`caption` call's own ``params`` override. ``dtype``: ``auto`` is bfloat16 on a GPU
    that supports it (else float16) and float32 on the CPU. Raises :class:`VLMError`
    (``model_error``) naming the folder and what is missing or broken."""

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", threads: int = 0,
                 params: dict | None = None) -> None:
        self._path = path
        self.params = dict(params or {})
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise _fail(path, "no such model folder")
        missing = _missing_files(folder)
        if missing:
            raise _fail(path, f"lacks {', '.join(missing)}; save the model and its processor "
                              "there with save_pretrained, or download the whole hub snapshot")
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError) as e:
            raise _fail(path, "cannot read config.json", e) from e
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise _fail(path, f"config.json model_type is {model_type!r}; supported: "
                              f"{', '.join(SUPPORTED_MODEL_TYPES)}")
        try:
            import PIL  # noqa: F401  (the image processor resizes with it)
            import torch
            import transformers  # noqa: F401
        except ImportError as e:
            raise _fail(path, "local VLMs need torch, transformers and Pillow", e) from e
        if dtype not in DTYPES:
            raise _fail(path, f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        self._torch = torch
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            self.device = pick_device(device)
        except ModelLoadError as e:
            raise _fail(path, str(e)) from e
        self.dtype = self._pick_dtype(dtype)
        self._tokenizer, self._image_processor, self._template = self._load_processor(folder)
        self._model = self._load_model(folder)
        cfg = self._model.config
        self._image_token = self._tokenizer.convert_ids_to_tokens(int(cfg.image_token_id))
        gen = self._model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self._tokenizer.eos_token_id
        self._eos = {int(t) for t in (eos if isinstance(eos, list) else [eos]) if t is not None}
        pad = gen.pad_token_id if gen.pad_token_id is not None else self._tokenizer.pad_token_id
        self._pad = pad if pad is not None else min(self._eos, default=None)
        self._revision = self._fingerprint(folder)

    def _pick_dtype(self, dtype: str) -> Any:
        torch = self._torch
        if dtype != "auto":
            return getattr(torch, dtype)
        if self.device == "cpu":
            return torch.float32  # bf16 matmuls are slow on most CPUs
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _load_processor(self, folder: Path) -> tuple[Any, Any, str | None]:
        from transformers import AutoImageProcessor, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:
            raise _fail(folder, "cannot load the tokenizer", e) from e
        try:
            images = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True,
                                                        use_fast=False)
        except Exception as e:
            raise _fail(folder, "cannot load the image processor in preprocessor_config.json",
                        e) from e
        if not hasattr(images, "merge_size"):
            raise _fail(folder, f"preprocessor_config.json makes a {type(images).__name__}, "
                                "not a Qwen2-VL image processor")
        template = None
        try:
            if (folder / "chat_template.jinja").is_file():
                template = (folder / "chat_template.jinja").read_text()
            elif (folder / "chat_template.json").is_file():
                template = json.loads((folder / "chat_template.json").read_text())[
                    "chat_template"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise _fail(folder, "cannot read its chat template", e) from e
        if template is None and not tokenizer.chat_template:
            raise _fail(folder, "has no chat template (chat_template.jinja, chat_template.json "
                                "or tokenizer_config.json)")
        return tokenizer, images, template

    def _load_model(self, folder: Path) -> Any:
        from transformers import AutoModelForImageTextToText

        try:
            model, info = AutoModelForImageTextToText.from_pretrained(
                str(folder), local_files_only=True, dtype=self.dtype, output_loading_info=True)
        except Exception as e:
            raise _fail(folder, "cannot load the weights (missing, truncated or corrupt?)",
                        e) from e
        if info.get("missing_keys"):  # transformers would fill them with random values
            keys = sorted(info["missing_keys"])
            raise _fail(folder, f"the weights do not match config.json; {len(keys)} tensors "
                                f"missing (e.g. {keys[:3]})")
        try:
            return model.to(self.device).eval()
        except Exception as e:  # out of GPU memory, mostly
            raise _fail(folder, f"cannot move the model to {self.device}", e) from e

    @staticmethod
    def _fingerprint(folder: Path) -> str:
        """:func:`folder_fingerprint`, with the chat template and generation defaults, which
        change captions too."""
        h = hashlib.sha256(folder_fingerprint(folder).encode())
        for name in CHAT_FILES:
            if (folder / name).is_file():
                h.update(b"file\0" + name.encode() + b"\0" + (folder / name).read_bytes())
        return "sha256:" + h.hexdigest()[:16]

    @property
    def model_id(self) -> str:
        """The folder the model was loaded from, as given."""
        return self._path

    @property
    def revision(self) -> str:
        """A fingerprint of the folder's weights, configs, tokenizer and chat template."""
        return self._revision

    def _encode(self, prompt: str, images: list[np.ndarray]) -> dict[str, Any]:
        from PIL import Image

        content = [*({"type": "image"} for _ in images), {"type": "text", "text": prompt}]
        text = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], chat_template=self._template,
            tokenize=False, add_generation_prompt=True)
        inputs: dict[str, Any] = {}
        if images:
            pixels = self._image_processor(images=[Image.fromarray(im) for im in images],
                                           input_data_format="channels_last",
                                           return_tensors="pt")
            inputs.update(pixel_values=pixels["pixel_values"].to(self.dtype),
                          image_grid_thw=pixels["image_grid_thw"])
            per_image = (pixels["image_grid_thw"].prod(-1)
                         // self._image_processor.merge_size ** 2).tolist()
            parts = text.split(self._image_token)
            if len(parts) != len(images) + 1:
                raise VLMError("model_error", f"{self.model_id}: the chat template made "
                               f"{len(parts) - 1} image placeholders for {len(images)} images")
            text = parts[0] + "".join(self._image_token * n + p
                                      for n, p in zip(per_image, parts[1:], strict=True))
        enc = self._tokenizer(text, return_tensors="pt", add_special_tokens=False)
        inputs.update(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return {k: v.to(self.device) for k, v in inputs.items()}

    def caption(self, prompt: str, images: list[np.ndarray], *,
                params: dict | None = None) -> ChatResult:
        """Generate a reply to ``prompt`` about ``images`` (HxWx3 uint8 RGB, each at its own
        size and aspect ratio; the processor resizes within its pixel budget), in one user
        turn. ``finish_reason`` is ``length`` when it stopped at ``max_tokens`` without an
        end-of-turn token. Raises :class:`VLMError` (``model_error``) when preprocessing or
        generation fails (an image the processor cannot take, out of memory), ``ValueError``
        for arrays that are not RGB images or a ``max_tokens`` below 1."""
        kwargs, seed = generation_kwargs({**self.params, **(params or {})})
        for i, im in enumerate(images):
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"image {i}: expected HxWx3 uint8 RGB, got {im.shape} "
                                 f"{im.dtype}")
        torch = self._torch
        try:
            inputs = self._encode(prompt, images)
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                out = self._model.generate(**inputs, **kwargs, pad_token_id=self._pad)
        except VLMError:
            raise
        except Exception as e:
            if self.device != "cpu":
                torch.cuda.empty_cache()
            raise VLMError("model_error", f"{self.model_id}: captioning failed: "
                           f"{type(e).__name__}: {e}") from e
        n_prompt = inputs["input_ids"].shape[1]
        new = out[0, n_prompt:].tolist()
        stopped = bool(new) and new[-1] in self._eos
        limit = kwargs["max_new_tokens"]
        return ChatResult(
            text=self._tokenizer.decode(new, skip_special_tokens=True).strip(),
            finish_reason="length" if len(new) >= limit and not stopped else "stop",
            usage={"prompt_tokens": int(n_prompt), "completion_tokens": len(new)})
