"""The local stage runner: batches in worker processes, failures kept with their clips."""

from __future__ import annotations

import numpy as np
import pytest

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.stages.base import ClipInput
from clipfactory.stages.local import StageRunner
from clipfactory.stages.store import AnnotationStore
from clipfactory.testing.stages import MeanColourStage


@pytest.fixture(scope="module")
def clips(stage_corpus, tmp_path_factory):
    """The corpus' clips as stage inputs (from shards, i.e. tar members), plus a broken one."""
    out = tmp_path_factory.mktemp("runner_out")
    run(stage_corpus, out, Config(workers=1))
    ledger = Ledger(out / "ledger.sqlite")
    try:
        inputs = AnnotationStore(out, ledger).pending("colour")
    finally:
        ledger.close()
    assert len(inputs) == 8 and all(c.member for c in inputs)
    return inputs


def _by_id(outs):
    return {o.clip_id: o for o in outs}


def test_every_clip_gets_a_vector_from_its_own_frames(clips):
    with StageRunner(MeanColourStage(batch_size=3)) as runner:
        runner.submit(clips)
        outs = runner.drain()
        assert runner.batches == 3  # 3 + 3 + the partial 2, sent by drain
    got = _by_id(outs)
    assert set(got) == {c.clip_id for c in clips} and len(outs) == len(clips)
    for o in outs:
        assert o.ok and o.vector is not None
        assert abs(float(np.linalg.norm(o.vector)) - 1.0) < 1e-5
    # one process, set up once, did every batch
    assert len({o.fields["colour_pid"] for o in outs}) == 1
    # clips of different texture shots have different colours
    assert len({round(o.scores["colour.luma"], 3) for o in outs}) >= 6


def test_a_failing_batch_marks_its_clips_and_the_rest_goes_on(clips):
    bad = clips[4].clip_id
    with StageRunner(MeanColourStage(batch_size=2, raise_on=frozenset({bad}))) as runner:
        runner.submit(clips)
        outs = _by_id(runner.drain())
    failed = {cid for cid, o in outs.items() if not o.ok}
    assert failed == {clips[4].clip_id, clips[5].clip_id}  # the batch holding it
    assert outs[bad].reason == "colour_failed" and "500" in outs[bad].detail
    assert all(outs[c.clip_id].ok for c in clips[:4] + clips[6:])


def test_a_crashing_worker_fails_one_batch_and_is_replaced(clips):
    bad = clips[2].clip_id
    with StageRunner(MeanColourStage(batch_size=2, crash_on=frozenset({bad}))) as runner:
        runner.submit(clips)
        outs = _by_id(runner.drain())
        assert runner.crashes == 1
    assert {cid for cid, o in outs.items() if not o.ok} == {clips[2].clip_id, clips[3].clip_id}
    assert outs[bad].reason == "colour_crashed" and "exit code 3" in outs[bad].detail
    pids = {o.fields["colour_pid"] for o in outs.values() if o.ok}
    assert len(pids) == 2  # the replacement did the batches after the crash


def test_a_broken_setup_fails_every_batch_with_its_reason(clips):
    with StageRunner(MeanColourStage(batch_size=4, fail_setup=True)) as runner:
        runner.submit(clips)
        outs = runner.drain()
    assert len(outs) == len(clips)
    assert {o.reason for o in outs} == {"colour_setup_failed"}
    assert "corrupt" in outs[0].detail


def test_unreadable_clip_fails_alone(clips, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    broken = ClipInput("broken", str(junk), None, num_frames=30, fps=30.0, width=64, height=64)
    with StageRunner(MeanColourStage(batch_size=4)) as runner:
        runner.submit([broken, *clips[:3]])
        outs = _by_id(runner.drain())
    assert outs["broken"].reason == "frames_unreadable"
    assert all(outs[c.clip_id].ok for c in clips[:3])


def test_two_workers_share_the_batches(clips):
    with StageRunner(MeanColourStage(batch_size=1, workers=2, sleep_s=0.2)) as runner:
        runner.submit(clips)
        outs = runner.drain()
    assert len(outs) == 8 and all(o.ok for o in outs)
    assert len({o.fields["colour_pid"] for o in outs}) == 2


def test_a_stage_whose_workers_keep_dying_gives_up_after_three(clips):
    """docs/annotate.md: after three deaths in a row with no batch done, the stage gives up
    and fails its clips. It gave up at the fourth, and then waited on the dead worker's
    closed pipe: OSError, the run stopped instead of failing the clips."""
    doomed = frozenset(c.clip_id for c in clips)
    with StageRunner(MeanColourStage(batch_size=1, crash_on=doomed)) as runner:
        runner.submit(clips)
        outs = runner.drain()
        assert runner.crashes == 3
    assert len(outs) == len(clips) and not any(o.ok for o in outs)
    assert {o.reason for o in outs} == {"colour_crashed"}
    assert any(o.detail.startswith("3 colour worker processes in a row died") for o in outs)
