"""A CLIP checkpoint in the exact shape of openai/clip-vit-base-patch32 with seeded random
weights, for the embedding bench (:mod:`clipfactory.bench.embed`): it costs what the real
weights cost and needs no download. torch and transformers are imported when it is built.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["VITB32_TEXT", "VITB32_VISION", "make_vitb32_shaped"]

VITB32_TEXT = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                   num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                   hidden_act="quick_gelu")
VITB32_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12, image_size=224, patch_size=32,
                     hidden_act="quick_gelu")


def make_vitb32_shaped(path: str | os.PathLike[str]) -> Path:
    """A CLIP checkpoint with exactly the architecture of openai/clip-vit-base-patch32 (ViT
    768 wide, 12 layers, 12 heads, 32 px patches of 224 px images; text 512 wide, 12 layers,
    8 heads, 77 positions, vocabulary 49408; projection 512) and seeded random weights, saved
    in ``path`` with a CLIP ``preprocessor_config.json`` and an offline tokenizer (the small
    WordPiece of :mod:`clipfactory.testing.clipmodels`; its ids stay below 49408). Random
    weights cost exactly what the real ones cost, which is all a throughput bench needs, and
    need no download. Reused when ``path`` already holds it (written to a temporary folder
    and renamed, so a killed run leaves no half checkpoint)."""
    from transformers import CLIPConfig, CLIPModel

    from clipfactory.testing.clipmodels import (
        OPENAI_MEAN,
        OPENAI_STD,
        save_checkpoint,
        seeded,
        tiny_tokenizer,
    )

    out = Path(path)
    if (out / "config.json").is_file():
        return out
    size = VITB32_VISION["image_size"]
    tok, vocab = tiny_tokenizer(["<|startoftext|>", "<|endoftext|>"], "<|startoftext|>",
                                "<|endoftext|>", "<|endoftext|>", "<|endoftext|>",
                                VITB32_TEXT["max_position_embeddings"],
                                ["input_ids", "attention_mask"])
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = CLIPConfig(text_config=dict(VITB32_TEXT, bos_token_id=bos, eos_token_id=eos,
                                         pad_token_id=eos),
                        vision_config=VITB32_VISION, projection_dim=512)
    model = seeded(0, lambda: CLIPModel(config))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, model, tok, {
        "crop_size": {"height": size, "width": size}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": OPENAI_MEAN, "image_processor_type": "CLIPImageProcessor",
        "image_std": OPENAI_STD, "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": size}})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
