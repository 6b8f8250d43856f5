"""The in-process Qwen-VL captioning backend on a tiny random Qwen2-VL: loading offline,
prompting with images of different shapes, generation parameters, how generation ended, and
the errors a broken folder gives."""

from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest

from clipfactory.annotate.vlm_local import LocalVLM, generation_kwargs
from clipfactory.annotate.vlm_types import VLMError
from clipfactory.testing.vlms import make_tiny_qwen2vl

pytest.importorskip("torch")
pytest.importorskip("transformers")

PROMPT = "Describe this clip in one sentence."


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_qwen2vl(tmp_path_factory.mktemp("vlm") / "qwen2vl")


@pytest.fixture(scope="module")
def vlm(tiny_dir):
    return LocalVLM(str(tiny_dir), device="cpu", threads=1, params={"max_tokens": 12})


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def frames() -> list[np.ndarray]:
    """A landscape 64x36 and a portrait 36x64 random RGB frame."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (36, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, (64, 36, 3), dtype=np.uint8)]


def test_tiny_checkpoint_is_small_and_deterministic(tiny_dir, tmp_path):
    files = {p.name: p.read_bytes() for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
            "chat_template.json", "generation_config.json"} <= set(files)
    assert sum(map(len, files.values())) < 5 << 20
    again = make_tiny_qwen2vl(tmp_path / "again")
    assert {p.name: p.read_bytes() for p in again.iterdir()} == files
    other = make_tiny_qwen2vl(tmp_path / "other", seed=1)
    assert other.joinpath("model.safetensors").read_bytes() != files["model.safetensors"]


def test_loads_offline(tiny_dir, no_network):
    vlm = LocalVLM(str(tiny_dir), device="auto", threads=1)
    assert vlm.model_id == str(tiny_dir)
    assert vlm.revision.startswith("sha256:") and len(vlm.revision) == 23
    assert vlm.device in ("cpu", "cuda")


def test_caption_two_aspect_ratios(vlm):
    res = vlm.caption(PROMPT, frames())
    assert isinstance(res.text, str)
    assert res.finish_reason in ("stop", "length")
    assert res.usage["prompt_tokens"] > 0 and res.usage["completion_tokens"] > 0
    # 64x36 and 36x64 become 8x4 and 4x8 patches of 8 pixels, 2x2-merged: 8 tokens each,
    # plus a vision start and end token around each image
    text_only = vlm.caption(PROMPT, [], params={"max_tokens": 1})
    assert res.usage["prompt_tokens"] - text_only.usage["prompt_tokens"] == 2 * (8 + 2)


def test_max_tokens_gives_length(vlm):
    res = vlm.caption(PROMPT, frames(), params={"max_tokens": 3})
    assert res.finish_reason == "length" and res.status == "truncated"
    assert res.usage["completion_tokens"] == 3


def test_end_of_turn_gives_stop(tiny_dir, tmp_path, vlm):
    """Make the token greedy decoding emits first an end-of-turn token: generation stops
    after it, with finish_reason stop."""
    first = vlm._model.generate(**vlm._encode(PROMPT, frames()), max_new_tokens=1,
                                do_sample=False, pad_token_id=vlm._pad)[0, -1].item()
    folder = shutil.copytree(tiny_dir, tmp_path / "eos")
    gen = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": [first]}))
    stopping = LocalVLM(str(folder), device="cpu", threads=1)
    assert stopping.revision != vlm.revision
    res = stopping.caption(PROMPT, frames(), params={"max_tokens": 5, "temperature": 0})
    assert (res.finish_reason, res.status) == ("stop", "ok")
    assert res.usage["completion_tokens"] == 1


def test_same_seed_same_text(vlm):
    greedy = {"temperature": 0, "seed": 7, "max_tokens": 8}
    assert vlm.caption(PROMPT, frames(), params=greedy) == vlm.caption(PROMPT, frames(),
                                                                       params=greedy)
    sampled = {"temperature": 1.0, "top_p": 0.9, "seed": 7, "max_tokens": 8}
    one, two = (vlm.caption(PROMPT, frames(), params=sampled) for _ in range(2))
    assert one.text == two.text and one.text


def test_generation_kwargs_maps_openai_names():
    kwargs, seed = generation_kwargs({"max_tokens": 5, "temperature": 0, "top_p": 0.5,
                                      "seed": 3, "stop": ["\n"]})
    assert seed == 3
    assert kwargs == {"max_new_tokens": 5, "do_sample": False, "temperature": None,
                      "top_p": None, "top_k": None}
    kwargs, seed = generation_kwargs({"temperature": 0.7, "top_p": 0.9})
    assert seed is None
    assert kwargs == {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7,
                      "top_p": 0.9}
    with pytest.raises(ValueError, match="max_tokens"):
        generation_kwargs({"max_tokens": 0})


def test_rejects_non_rgb_arrays(vlm):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        vlm.caption(PROMPT, [np.zeros((8, 8), np.uint8)])


def test_missing_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(VLMError) as e:
        LocalVLM(str(missing))
    assert e.value.reason == "model_error" and str(missing) in str(e.value)


def test_truncated_weights(tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(VLMError) as e:
        LocalVLM(str(folder), device="cpu")
    assert e.value.reason == "model_error" and str(folder) in str(e.value)
    assert "weights" in str(e.value)


def test_missing_processor_files(tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "no-processor")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(VLMError, match=r"preprocessor_config\.json") as e:
        LocalVLM(str(folder), device="cpu")
    assert e.value.reason == "model_error"


@pytest.mark.gpu
def test_caption_on_gpu(tiny_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    vlm = LocalVLM(str(tiny_dir), device="cuda", params={"max_tokens": 12})
    assert vlm.device == "cuda"
    res = vlm.caption(PROMPT, frames())
    assert isinstance(res.text, str) and res.finish_reason in ("stop", "length")
    assert res.usage["prompt_tokens"] > 0 and res.usage["completion_tokens"] > 0
    res = vlm.caption(PROMPT, frames(), params={"max_tokens": 3})
    assert res.finish_reason == "length" and res.usage["completion_tokens"] == 3
    greedy = {"temperature": 0, "seed": 7, "max_tokens": 8}
    assert vlm.caption(PROMPT, frames(), params=greedy).text == vlm.caption(
        PROMPT, frames(), params=greedy).text
