"""NVDEC for the analysis pass (clipfactory.media.nvdec): the digest and the analysis frames do
not depend on the decoder's output layout, the choice falls back or fails as configured, and the
run says which decoder it used. The ``gpu`` tests compare NVDEC with software on 1080p."""

from __future__ import annotations

import shutil

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation, VideoReformatter

from clipfactory.config import AnalysisConfig, Config, ShotConfig
from clipfactory.errors import MediaError
from clipfactory.ledger import Ledger
from clipfactory.media import nvdec
from clipfactory.media.analyse import analyse
from clipfactory.media.digest import plane_digest
from clipfactory.media.probe import open_video, probe
from clipfactory.pipeline import run
from clipfactory.shots import make_detector
from clipfactory.testing.synth import ShotSpec, write_video

HAS_NVDEC = nvdec.cuda_device_opens()
no_gpu_here = pytest.mark.skipif(HAS_NVDEC, reason="a CUDA device opens on this machine")
needs_nvdec = pytest.mark.skipif(not HAS_NVDEC, reason="no CUDA device opens here (no GPU)")


@pytest.fixture(scope="module")
def padded(media_dir):
    """318 px wide: every plane's rows are padded (yuv420p 384/192 bytes, nv12 320)."""
    return write_video(media_dir / "w318.mp4", [ShotSpec(12, "texture", 1),
                                                ShotSpec(12, "flash", 2)], width=318, gop=8)


@pytest.fixture(scope="module")
def ten_bit(media_dir):
    return write_video(media_dir / "p10.mp4", [ShotSpec(8, "texture", 3)], pix_fmt="yuv420p10le")


def _frames(path: str) -> list[av.VideoFrame]:
    with av.open(path) as c:
        return list(c.decode(video=0))


def test_semi_planar_frames_hash_like_their_planar_twin(three_shots, padded, ten_bit):
    for path in (three_shots.path, padded.path):
        frames = _frames(path)[::5]
        assert {f.format.name for f in frames} == {"yuv420p"}
        digests = [plane_digest(f) for f in frames]
        assert [plane_digest(f.reformat(format="nv12")) for f in frames] == digests
        assert len(set(digests)) == len(digests)  # distinct frames, distinct digests
    nv = _frames(padded.path)[0].reformat(format="nv12")
    assert nv.planes[1].line_size > 2 * nv.planes[1].width  # the padding really is there
    tens = _frames(ten_bit.path)
    assert {f.format.name for f in tens} == {"yuv420p10le"}
    assert [plane_digest(f.reformat(format="p010le")) for f in tens] == \
        [plane_digest(f) for f in tens]
    sixteen = [f.reformat(format="yuv420p16le") for f in tens]
    assert [plane_digest(f.reformat(format="p016le")) for f in sixteen] == \
        [plane_digest(f) for f in sixteen]


def test_nv12_scales_to_the_same_analysis_frame(padded):
    """swscale reads nv12 and yuv420p into the same intermediate: the RGB analysis frame (and
    so every signal) is bit-identical, with no conversion to yuv420p first."""
    a, b = VideoReformatter(), VideoReformatter()
    for f in _frames(padded.path):
        planar = a.reformat(f, width=160, height=90, format="rgb24",
                            interpolation=Interpolation.AREA).to_ndarray()
        semi = b.reformat(f.reformat(format="nv12"), width=160, height=90, format="rgb24",
                          interpolation=Interpolation.AREA).to_ndarray()
        assert np.array_equal(planar, semi)


def test_gpu_never_and_auto_pick_a_decoder_and_record_it(three_shots):
    info = probe(three_shots.path)
    container, stream = open_video(three_shots.path, gpu="never")
    container.close()
    assert nvdec.decoder_of(stream) == "software"
    never = analyse(info, AnalysisConfig(gpu="never"), None)
    auto = analyse(info, AnalysisConfig(gpu="auto"), None)
    assert never.decoder == "software"
    assert auto.decoder == ("nvdec" if HAS_NVDEC else "software")
    assert np.array_equal(never.digest, auto.digest)


@no_gpu_here
def test_gpu_always_without_a_device_is_a_clear_error(three_shots):
    info = probe(three_shots.path)
    with pytest.raises(MediaError) as e:
        analyse(info, AnalysisConfig(gpu="always"), None)
    assert (e.value.stage, e.value.reason) == ("analyse", "nvdec_unavailable")
    assert "no CUDA device" in e.value.detail


@no_gpu_here
def test_a_device_that_fails_at_open_falls_back_or_fails(three_shots, monkeypatch):
    """The device check passed but creating the device in ``av.open`` fails (here: for real,
    FFmpeg cannot load libcuda): auto decodes in software, always names FFmpeg's error."""
    monkeypatch.setattr(nvdec, "cuda_device_opens", lambda: True)
    container, stream = open_video(three_shots.path, gpu="auto")
    container.close()
    assert nvdec.decoder_of(stream) == "software"
    with pytest.raises(MediaError) as e:
        open_video(three_shots.path, gpu="always")
    assert e.value.reason == "nvdec_unavailable" and "NVDEC did not open" in e.value.detail


@no_gpu_here
def test_a_run_with_gpu_always_fails_each_input_and_finishes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in (1, 2):
        write_video(src / f"v{i}.mp4", [ShotSpec(70, "texture", i)], width=160, height=90)
    auto = run(src, tmp_path / "auto", Config(workers=1))
    assert auto["counts"]["videos"]["done"] == 2
    assert auto["throughput"]["decoders"] == {"software": 2}
    always = Config(workers=1)
    always.analysis.gpu = "always"
    summary = run(src, tmp_path / "always", always)
    assert summary["counts"]["videos"]["failed"] == 2
    ledger = Ledger(tmp_path / "always" / "ledger.sqlite")
    try:
        rows = ledger.videos("failed")
    finally:
        ledger.close()
    assert {(r["stage"], r["reason"]) for r in rows} == {("analyse", "nvdec_unavailable")}


# -- on a GPU (pytest -m gpu; bench/gpu/run.sh) ------------------------------------------------

@pytest.fixture(scope="module")
def full_hd(media_dir):
    shots = [ShotSpec(40, "texture", 1), ShotSpec(30, "fastpan", 2),
             ShotSpec(30, "texture", 3, enter="dissolve", enter_frames=12)]
    return write_video(media_dir / "full_hd.mp4", shots, width=1920, height=1080, gop=30)


@pytest.mark.gpu
@needs_nvdec
def test_nvdec_frames_arrive_in_system_memory_as_nv12(full_hd):
    container, stream = open_video(full_hd.path, gpu="always")
    try:
        assert nvdec.decoder_of(stream) == "nvdec"
        frame = next(container.decode(stream))
    finally:
        container.close()
    assert frame.format.name == "nv12" and (frame.width, frame.height) == (1920, 1080)


@pytest.mark.gpu
@needs_nvdec
def test_nvdec_analysis_gives_the_software_signals(full_hd):
    info = probe(full_hd.path)
    cpu = analyse(info, AnalysisConfig(gpu="never"), make_detector(ShotConfig()))
    gpu = analyse(info, AnalysisConfig(gpu="always"), make_detector(ShotConfig()))
    assert (cpu.decoder, gpu.decoder) == ("software", "nvdec")
    assert gpu.frames == cpu.frames == full_hd.frames and gpu.decode_errors == 0
    assert np.array_equal(gpu.digest, cpu.digest)  # H.264 decodes bit-exactly
    assert np.array_equal(gpu.pts, cpu.pts) and np.array_equal(gpu.keyframe, cpu.keyframe)
    assert gpu.transitions == cpu.transitions
    assert np.array_equal(gpu.phash, cpu.phash)
    for name in ("brightness", "sharpness", "motion"):
        assert np.allclose(getattr(gpu, name), getattr(cpu, name), atol=1e-4), name
    # no decoder vectors from NVDEC: camera motion by phase correlation of the same frames
    assert cpu.motion_source == "vectors" and gpu.motion_source == "phase"
    assert np.isfinite(gpu.camera[:, 0]).sum() >= 5


@pytest.mark.gpu
@needs_nvdec
def test_a_run_says_nvdec_decoded_it(full_hd, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(full_hd.path, src / "a.mp4")
    summary = run(src, tmp_path / "out", Config(workers=1))
    assert summary["throughput"]["decoders"] == {"nvdec": 1}
