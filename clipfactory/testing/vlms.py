"""A tiny random Qwen2-VL checkpoint for tests, laid out as a real one on the hub is (config,
safetensors weights, ``generation_config.json``, ``preprocessor_config.json``, a fast
``Qwen2Tokenizer`` with Qwen's special tokens, ``chat_template.json``), built offline with
transformers and tokenizers in well under a second. It writes random bytes, not captions: it
exercises the loading, prompting and decoding of :mod:`clipfactory.annotate.vlm_local`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clipfactory.testing.clipmodels import seeded

__all__ = ["QWEN2VL_CHAT_TEMPLATE", "QWEN_SPECIAL_TOKENS", "make_tiny_qwen2vl"]

# in Qwen's order (ids 151643... in the real vocabulary), after the 256 byte tokens here
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL-Instruct's own chat template (chat_template.json on the hub)
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

HIDDEN, PATCH, MERGE = 32, 8, 2
MIN_PIXELS, MAX_PIXELS = 16 * 16, 64 * 64  # 1 to 16 merged image tokens per image


def _byte_tokenizer():
    """A byte-level BPE without merges (one token per UTF-8 byte, any text round-trips) and
    the Qwen specials after the 256 bytes, as a ``Qwen2TokenizerFast``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in QWEN_SPECIAL_TOKENS])
    return Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                              pad_token="<|endoftext|>", unk_token=None, model_max_length=4096,
                              errors="replace")


def make_tiny_qwen2vl(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random Qwen2-VL (text: 2 layers, width 32, mrope; vision: 1 block, 8-pixel patches,
    2x2 merge) saved in ``path`` with a Qwen2-VL image processor taking 256 to 4,096 pixels
    per image, Qwen's special tokens and chat template, and Qwen's end-of-turn ids
    (``<|im_end|>``, ``<|endoftext|>``) in ``generation_config.json``; returns ``path``.
    About 0.3 MB; the same ``seed`` gives the same files."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    tok = _byte_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    pad, eos = ids["<|endoftext|>"], ids["<|im_end|>"]
    text = dict(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                max_position_embeddings=4096, tie_word_embeddings=True,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},  # head_dim 16 / 2
                bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    vision = dict(depth=1, embed_dim=HIDDEN, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2,
                  patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                           image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"])
    model = seeded(seed, lambda: Qwen2VLForConditionalGeneration(config))
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = pad, [eos, pad], pad

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=PATCH,
                          merge_size=MERGE, temporal_patch_size=2).save_pretrained(out)
    (out / "chat_template.json").write_text(
        json.dumps({"chat_template": QWEN2VL_CHAT_TEMPLATE}, indent=2) + "\n")
    return out
