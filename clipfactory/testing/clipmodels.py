"""Tiny random CLIP and SigLIP checkpoints for tests, laid out as ``save_pretrained`` writes
real ones (config, safetensors weights, ``preprocessor_config.json``, a fast tokenizer), built
offline with transformers and tokenizers in well under a second each. The building blocks
(:func:`tiny_tokenizer`, :func:`seeded`, :func:`save_checkpoint`) also make the embedding
bench's full-size random checkpoint (:mod:`clipfactory.bench.embed_model`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from clipfactory.annotate.clip_model import DEFAULT_CATEGORIES, DEFAULT_PROMPTS, DEFAULT_TEMPLATES

__all__ = ["make_tiny_aesthetic", "make_tiny_clip", "make_tiny_siglip", "save_checkpoint", "seeded", "tiny_tokenizer",
           "tiny_vocab"]

IMAGE_SIZE, PATCH, HIDDEN, MAX_TEXT = 32, 8, 32, 32
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
EXTRA_WORDS = "a an the of on in from with and or to is are this that photo video cat dog car"


def tiny_vocab() -> list[str]:
    """Every word of the default templates, categories and prompts, plus every lowercase
    letter, digit and punctuation mark, whole and as a ``##`` continuation: WordPiece then
    covers any lowercase ASCII text without an unknown token."""
    text = " ".join([*DEFAULT_TEMPLATES, *DEFAULT_CATEGORIES, EXTRA_WORDS,
                     *(p for ps in DEFAULT_PROMPTS.values() for p in ps)]).lower()
    words = set(re.findall(r"\w+|[^\w\s]", text))
    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,'-!?:;()/{}"
    return sorted(words | set(chars) | {"##" + c for c in chars})


def tiny_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str, unk: str,
                   max_len: int, inputs: list[str]):
    """A lowercasing WordPiece tokenizer that appends ``eos`` (after a ``bos``, if any); the
    specials come last in the vocabulary, in the order given. Returns the fast tokenizer
    and its vocabulary (token -> id)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(tiny_vocab() + specials)}
    tok = Tokenizer(WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    single = f"{bos} $A {eos}" if bos else f"$A {eos}"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, vocab[t]) for t in (bos, eos) if t])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   pad_token=pad, unk_token=unk, model_max_length=max_len,
                                   model_input_names=inputs)
    return fast, vocab


def save_checkpoint(path: str | os.PathLike[str], model, tokenizer, preprocessor: dict) -> Path:
    """Write ``model`` (safetensors), ``tokenizer`` and ``preprocessor_config.json`` in
    ``path`` (created), as ``save_pretrained`` lays a real checkpoint out; returns ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    return out


def seeded(seed: int, build):
    """``build()`` under ``torch.manual_seed(seed)``, leaving the global RNG state as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _towers(vocab_size: int, **text: int) -> tuple[dict, dict]:
    common = dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                  num_attention_heads=2)
    return (dict(common, vocab_size=vocab_size, max_position_embeddings=MAX_TEXT, **text),
            dict(common, image_size=IMAGE_SIZE, patch_size=PATCH))


def make_tiny_clip(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random CLIP (ViT, 2 layers, width 32, 32x32 images, 16-dim projection) saved in
    ``path`` with a CLIP ``preprocessor_config.json`` (shortest edge, centre crop, OpenAI
    mean/std) and a tokenizer padding with ``<|endoftext|>`` as real CLIP does."""
    from transformers import CLIPConfig, CLIPModel

    tok, vocab = tiny_tokenizer(["<|startoftext|>", "<|endoftext|>"], "<|startoftext|>",
                                "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", MAX_TEXT,
                                ["input_ids", "attention_mask"])
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    text, vision = _towers(len(vocab), bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    model = seeded(seed, lambda: CLIPModel(config))
    return save_checkpoint(path, model, tok, {
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": OPENAI_MEAN, "image_processor_type": "CLIPImageProcessor",
        "image_std": OPENAI_STD, "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": IMAGE_SIZE}})


def make_tiny_siglip(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random SigLIP (2 layers, width 32, 32x32 images) saved in ``path`` with a SigLIP
    ``preprocessor_config.json`` (exact resize, no crop, mean/std 0.5) and a tokenizer that
    ends texts with ``</s>`` and pads with it, as real SigLIP does."""
    from transformers import SiglipConfig, SiglipModel

    tok, vocab = tiny_tokenizer(["<pad>", "</s>", "<unk>"], None, "</s>", "</s>", "<unk>",
                                MAX_TEXT, ["input_ids"])
    eos = vocab["</s>"]
    text, vision = _towers(len(vocab), eos_token_id=eos, pad_token_id=eos)
    config = SiglipConfig(text_config=text, vision_config=vision)
    model = seeded(seed, lambda: SiglipModel(config))
    return save_checkpoint(path, model, tok, {
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor", "resample": 3,
        "rescale_factor": 1 / 255, "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}})


def make_tiny_aesthetic(path: str | os.PathLike[str], dim: int, *, seed: int = 0) -> Path:
    """A random predictor in the LAION "improved aesthetic predictor" layout (a state dict of
    ``Linear(dim, 1024), Dropout, Linear(1024, 128), Dropout, Linear(128, 64), Dropout,
    Linear(64, 16), Linear(16, 1)`` as ``layers.N``), at a tiny width, saved with torch."""
    import torch
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = nn.Sequential(nn.Linear(dim, 32), nn.Dropout(0.2), nn.Linear(32, 16),
                               nn.Dropout(0.2), nn.Linear(16, 8), nn.Dropout(0.1),
                               nn.Linear(8, 4), nn.Linear(4, 1))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"layers.{k}": v for k, v in layers.state_dict().items()}, p)
    return p
