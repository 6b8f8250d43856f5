"""CLIP/SigLIP model module on tiny random checkpoints: resolving, preprocessing numerics,
embedding shapes and norms, zero-shot scores, and the errors a broken setup gives."""

from __future__ import annotations

import json
import os
import shutil
import socket

import numpy as np
import pytest

from clipfactory.annotate.clip_model import (
    DEFAULT_CATEGORIES,
    DEFAULT_PROMPTS,
    DEFAULT_TEMPLATES,
    ClipEmbedder,
    ImageTransform,
    ModelLoadError,
    folder_fingerprint,
    pick_device,
    resolve_model,
)
from clipfactory.testing.clipmodels import make_tiny_clip, make_tiny_siglip

pytest.importorskip("torch")
pytest.importorskip("transformers")

OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("clipmodels")
    return {"clip": make_tiny_clip(root / "clip"), "siglip": make_tiny_siglip(root / "siglip")}


@pytest.fixture(scope="session")
def embedders(tiny_dirs):
    return {k: ClipEmbedder(resolve_model(str(p)), "cpu", threads=1, batch_size=3)
            for k, p in tiny_dirs.items()}


@pytest.fixture(params=["clip", "siglip"])
def emb(request, embedders):
    return embedders[request.param]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def blocks(seed: int = 0) -> np.ndarray:
    """A 48x64 image of 8x8 random-colour blocks (so resizing it keeps it recognisable)."""
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)


def test_image_vectors_have_shape_and_unit_norm(emb):
    frames = [blocks(i) for i in range(5)] + [np.zeros((7, 90, 3), np.uint8)]
    vecs = emb.embed_images(frames)  # batch_size 3: two batches
    assert vecs.shape == (6, emb.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert emb.embed_images([]).shape == (0, emb.dim)
    assert emb.model_id == str(emb.resolved.path) and emb.revision.startswith("sha256:")


def test_same_image_at_two_sizes_is_closer_than_a_different_one(emb):
    img = blocks()
    big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
    noise = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    flat = np.full((48, 64, 3), 200, np.uint8)
    v = emb.embed_images([img, big, noise, flat])
    assert v[0] @ v[1] > 0.99
    assert v[2] @ v[3] < v[0] @ v[1]


def test_pooled_vectors_are_group_means(emb):
    a, b, c = blocks(1), blocks(2), blocks(3)
    pooled = emb.embed_frames_pooled([[a], [b, c]])
    assert pooled.shape == (2, emb.dim)
    single, bc = emb.embed_images([a]), emb.embed_images([b, c]).mean(axis=0)
    np.testing.assert_allclose(pooled[0], single[0], atol=1e-5)
    np.testing.assert_allclose(pooled[1], bc / np.linalg.norm(bc), atol=1e-5)
    assert emb.embed_frames_pooled([]).shape == (0, emb.dim)
    with pytest.raises(ValueError):
        emb.embed_frames_pooled([[a], []])


def test_text_vectors_and_labels(emb):
    texts = ["a video frame of driving.", "aerial drone footage", "word " * 200, "ünïcode ✓"]
    vecs = emb.embed_texts(texts)  # the long one is truncated, the odd one is unknown tokens
    assert vecs.shape == (4, emb.dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert vecs[0] @ vecs[1] < 0.9999
    labels = emb.label_vectors(DEFAULT_CATEGORIES, DEFAULT_TEMPLATES, DEFAULT_PROMPTS)
    assert labels.shape == (len(DEFAULT_CATEGORIES), emb.dim)
    np.testing.assert_allclose(np.linalg.norm(labels, axis=1), 1, atol=1e-5)
    assert emb.label_vectors([], DEFAULT_TEMPLATES).shape == (0, emb.dim)
    templ = emb.label_vectors(["driving"], ["a photo of {}."])
    manual = emb.embed_texts(["a photo of driving."])
    np.testing.assert_allclose(templ, manual, atol=1e-5)
    assert not np.allclose(templ, labels[DEFAULT_CATEGORIES.index("driving")], atol=1e-3)


def test_zero_shot_probabilities(embedders):
    frames = [blocks(i) for i in range(3)]
    for kind, emb in embedders.items():
        probs = emb.zero_shot(emb.embed_images(frames),
                              emb.label_vectors(DEFAULT_CATEGORIES, DEFAULT_TEMPLATES,
                                                DEFAULT_PROMPTS))
        assert probs.shape == (3, len(DEFAULT_CATEGORIES))
        assert np.all((probs > 0) & (probs < 1))
        if kind == "clip":
            np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
        else:  # independent sigmoids: no reason to sum to 1
            assert not np.allclose(probs.sum(axis=1), 1, atol=1e-2)


def read_transform(folder, kind, **override):
    cfg = json.loads((folder / "preprocessor_config.json").read_text()) | override
    return ImageTransform.from_config(cfg, kind)


def test_clip_preprocess_constant_colour(tiny_dirs):
    t = read_transform(tiny_dirs["clip"], "clip")
    colour = np.array([10, 128, 250], np.uint8)
    out = t([np.broadcast_to(colour, (50, 80, 3)).copy()])
    assert out.shape == (1, 3, 32, 32) and out.dtype == np.float32
    expect = (colour / 255 - OPENAI_MEAN) / OPENAI_STD
    np.testing.assert_allclose(out[0], np.broadcast_to(expect[:, None, None], (3, 32, 32)),
                               atol=1e-5)
    assert t.resized_hw(48, 64) == (32, 42)  # shortest edge 32, long side truncated
    assert t.resized_hw(100, 37) == (86, 32)


def test_crop_keeps_the_centre_and_siglip_squashes(tiny_dirs):
    img = np.full((20, 80, 3), 255, np.uint8)
    img[:, :20] = 0  # the left quarter black
    clip = read_transform(tiny_dirs["clip"], "clip")([img])[0]
    siglip = read_transform(tiny_dirs["siglip"], "siglip")([img])[0]
    white_clip = (1 - OPENAI_MEAN[0]) / OPENAI_STD[0]
    np.testing.assert_allclose(clip[0], white_clip, atol=1e-4)  # the crop cut the black away
    assert siglip.shape == (3, 32, 32)  # a 4:1 image squashed to a square, nothing cut
    np.testing.assert_allclose(siglip[:, :, :6], -1, atol=1e-6)  # black: (0 - 0.5) / 0.5
    np.testing.assert_allclose(siglip[:, :, 10:], 1, atol=1e-6)


def test_preprocess_flags_and_int_sizes(tiny_dirs):
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    raw = read_transform(tiny_dirs["clip"], "clip", do_resize=False, do_normalize=False,
                         do_rescale=False, crop_size=32)([img])[0]
    np.testing.assert_array_equal(raw, img[4:36, 4:36].transpose(2, 0, 1))
    small = read_transform(tiny_dirs["clip"], "clip", do_resize=False)(
        [np.full((21, 37, 3), 255, np.uint8)])[0]  # smaller than the crop: zero padding
    assert small.shape == (3, 32, 32) and np.isclose(small[0, 0, 0], -OPENAI_MEAN[0] / OPENAI_STD[0])
    square = read_transform(tiny_dirs["siglip"], "siglip", size=16)
    assert square([img]).shape == (1, 3, 16, 16)
    assert read_transform(tiny_dirs["clip"], "clip", size=16, do_center_crop=False
                          ).resized_hw(40, 80) == (16, 32)


def test_preprocess_matches_transformers_processors(tiny_dirs):
    """Same numbers as the transformers (slow, Pillow) processors, where they are installed."""
    try:
        from transformers import CLIPImageProcessor, SiglipImageProcessor
    except ImportError:
        pytest.skip("transformers image processors not available")
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(48, 64, 3), (101, 37, 3)]]
    for kind, cls in [("clip", CLIPImageProcessor), ("siglip", SiglipImageProcessor)]:
        ref = cls.from_pretrained(tiny_dirs[kind])(images=imgs, return_tensors="np")
        ours = read_transform(tiny_dirs[kind], kind)(imgs)
        np.testing.assert_allclose(ours, ref["pixel_values"], atol=1e-5)


def test_folder_missing_preprocessor_config(tiny_dirs, tmp_path):
    folder = shutil.copytree(tiny_dirs["clip"], tmp_path / "m")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"preprocessor_config\.json"):
        resolve_model(str(folder))
    loose = resolve_model(str(folder), strict=False)
    assert loose.missing == ["preprocessor_config.json"] and loose.kind == "clip"


def test_unsupported_or_missing_folder(tiny_dirs, tmp_path):
    folder = shutil.copytree(tiny_dirs["siglip"], tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(cfg | {"model_type": "siglip2"}))
    with pytest.raises(ModelLoadError, match="siglip2"):
        resolve_model(str(folder))
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))


def test_corrupt_weights_fail_at_load(tiny_dirs, tmp_path):
    folder = shutil.copytree(tiny_dirs["clip"], tmp_path / "m")
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    resolved = resolve_model(str(folder))
    with pytest.raises(ModelLoadError, match=str(folder)):
        ClipEmbedder(resolved, "cpu", threads=1)


def test_weights_not_matching_config_fail_at_load(tiny_dirs, tmp_path):
    folder = shutil.copytree(tiny_dirs["clip"], tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vision_config"]["num_hidden_layers"] = 3  # weights hold 2: one layer would be random
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="do not match"):
        ClipEmbedder(resolve_model(str(folder)), "cpu", threads=1)


def test_fingerprint_follows_the_weights(tiny_dirs, tmp_path):
    folder = shutil.copytree(tiny_dirs["clip"], tmp_path / "m")
    first = resolve_model(str(folder))
    assert first.source == "folder" and first.revision == folder_fingerprint(tiny_dirs["clip"])
    assert resolve_model(str(folder), revision=first.revision).revision == first.revision
    make_tiny_clip(tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    assert resolve_model(str(folder)).revision != first.revision
    with pytest.raises(ModelLoadError, match="pinned"):
        resolve_model(str(folder), revision=first.revision)


def test_hub_id_not_cached_does_not_download(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError, match="allow_download") as err:
        resolve_model("openai/clip-vit-base-patch32")
    assert str(tmp_path / "hub") in str(err.value)


def test_hub_id_from_local_cache(tiny_dirs, tmp_path, monkeypatch, no_network):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-siglip"
    shutil.copytree(tiny_dirs["siglip"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    got = resolve_model("tiny-org/tiny-siglip")
    assert (got.revision, got.source, got.kind) == (commit, "hf-cache", "siglip")
    assert got.path == repo / "snapshots" / commit
    assert resolve_model("tiny-org/tiny-siglip", revision=commit).revision == commit
    emb = ClipEmbedder(got, "cpu", threads=1)
    assert emb.revision == commit and emb.model_id == "tiny-org/tiny-siglip"


def test_pick_device(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu" and pick_device("cpu") == "cpu"
    with pytest.raises(ModelLoadError, match="no CUDA"):
        pick_device("cuda:0")
    with pytest.raises(ModelLoadError, match="unknown device"):
        pick_device("tpu")
