"""Usable CPUs and memory (affinity, cgroup v1/v2 limits), the thread split, workers: auto."""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError

from clipfactory.config import Config, load_config
from clipfactory.exec import cores
from clipfactory.exec.cores import (
    MAX_VIDEO_THREADS,
    cpu_quota,
    default_workers,
    memory_limit,
    resolve_workers,
    thread_split,
    usable_cpus,
)
from clipfactory.exec.local import LocalExecutor
from clipfactory.records import SourceItem, VideoResult

GiB = 1 << 30


@pytest.fixture
def eight_cpus(monkeypatch):
    monkeypatch.setattr(cores, "_affinity", lambda: 8)


def _cgroup(tmp_path, files: dict[str, str], own: str = "0::/\n"):
    """A fake cgroup mount under tmp_path, and a /proc/self/cgroup naming ``own``."""
    root = tmp_path / f"cg{len(list(tmp_path.glob('cg*')))}"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(own)
    return root, proc


def _meminfo(tmp_path, total_kib: int):
    p = tmp_path / "meminfo"
    p.write_text(f"MemTotal:       {total_kib} kB\nMemFree:        1000 kB\n")
    return p


@pytest.mark.parametrize(("text", "cpus"), [
    ("200000 100000\n", 2),  # docker --cpus 2: below the 8 of the affinity
    ("150000 100000", 2),  # 1.5 CPUs round up
    ("50000 100000", 1),  # half a CPU is still one worker
    ("max 100000", 8),  # no quota
    ("1600000 100000", 8),  # a quota above the affinity does not add CPUs
])
def test_cgroup_v2_quota(tmp_path, eight_cpus, text, cpus):
    root, proc = _cgroup(tmp_path, {"cpu.max": text})
    assert usable_cpus(root, proc) == cpus


def test_cgroup_v1_quota(tmp_path, eight_cpus):
    root, proc = _cgroup(tmp_path, {"cpu/cpu.cfs_quota_us": "300000",
                                    "cpu/cpu.cfs_period_us": "100000"}, own="3:cpu:/\n")
    assert cpu_quota(root, proc) == 3.0 and usable_cpus(root, proc) == 3
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no quota"
    assert cpu_quota(root, proc) is None and usable_cpus(root, proc) == 8


def test_the_tightest_limit_on_the_way_to_the_root_wins(tmp_path, eight_cpus):
    root, proc = _cgroup(tmp_path, {"kube/pod/cpu.max": "max 100000",
                                    "kube/cpu.max": "400000 100000",
                                    "cpu.max": "max 100000"}, own="0::/kube/pod\n")
    assert usable_cpus(root, proc) == 4
    # v1 with a combined cpu,cpuacct mount and a nested container path
    root, proc = _cgroup(tmp_path, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000",
                                    "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"},
                         own="5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n")
    assert usable_cpus(root, proc) == 3


@pytest.mark.parametrize("files", [
    {"cpu.max": "lots\n"},
    {"cpu.max": "100000"},  # no period
    {"cpu.max": "100000 0"},
    {"cpu.max": "\xff\xfe"},
    {"cpu/cpu.cfs_quota_us": "abc", "cpu/cpu.cfs_period_us": "100000"},
    {"cpu/cpu.cfs_quota_us": "200000"},  # no period file
    {},  # no cgroup files at all
])
def test_garbage_or_missing_files_fall_back_to_the_affinity(tmp_path, eight_cpus, files):
    root, proc = _cgroup(tmp_path, files, own="garbage without colons\n")
    assert usable_cpus(root, proc) == 8
    assert usable_cpus(tmp_path / "nowhere", tmp_path / "no-proc-file") == 8


def test_this_machine():
    n = usable_cpus()
    assert 1 <= n <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert n <= len(os.sched_getaffinity(0))


def test_memory_limit_and_default_workers(tmp_path, eight_cpus):
    mem = _meminfo(tmp_path, 16 * GiB // 1024)
    root, proc = _cgroup(tmp_path, {"memory.max": "max\n"})
    assert memory_limit(root, proc, mem) == 16 * GiB
    assert default_workers(root, proc, mem) == 8  # the CPUs limit
    (root / "memory.max").write_text(f"{2 * GiB}\n")
    assert memory_limit(root, proc, mem) == 2 * GiB
    # 1.5 GiB past the driver's 512 MiB: 3 workers of 512 MiB would get 2 threads each (+40
    # MiB): too much; 2 workers with 4 threads each fit
    assert default_workers(root, proc, mem) == 2
    (root / "memory.max").write_text(f"{4608 << 20}\n")
    assert default_workers(root, proc, mem) == 8  # 512 MiB + 8 x 512 MiB
    (root / "memory.max").write_text(f"{4 * GiB}\n")
    assert default_workers(root, proc, mem) == 7  # 512 MiB + 7 x 512 MiB, 1 thread each
    (root / "memory.max").write_text(f"{300 << 20}\n")
    assert default_workers(root, proc, mem) == 1  # never fewer than one
    # v1: "unlimited" is a huge number; the machine's RAM is the limit
    root, proc = _cgroup(tmp_path, {"memory/memory.limit_in_bytes": "9223372036854771712"},
                         own="4:memory:/\n")
    assert memory_limit(root, proc, _meminfo(tmp_path, GiB // 1024)) == GiB
    assert default_workers(root, proc, _meminfo(tmp_path, GiB // 1024)) == 1
    # nothing readable: the CPUs decide
    assert memory_limit(tmp_path / "none", tmp_path / "none", tmp_path / "none") is None
    assert default_workers(tmp_path / "none", tmp_path / "none", tmp_path / "none") == 8


@pytest.mark.parametrize(("cores_", "workers", "threads"), [
    (1, 1, 1), (1, 4, 1),
    (2, 1, 2), (2, 2, 1), (2, 3, 1),
    (32, 1, MAX_VIDEO_THREADS), (32, 2, MAX_VIDEO_THREADS), (32, 4, 8), (32, 8, 4),
    (32, 16, 2), (32, 32, 1), (32, 64, 1), (32, 5, 6),
    (64, 1, MAX_VIDEO_THREADS), (64, 8, 8), (64, 16, 4), (64, 64, 1), (64, 128, 1),
    (0, 0, 1),  # nonsense in, one thread out
])
def test_thread_split(cores_, workers, threads):
    assert thread_split(cores_, workers) == threads


def test_thread_split_never_oversubscribes():
    for c in range(1, 70):
        for w in range(1, 70):
            t = thread_split(c, w)
            assert 1 <= t <= MAX_VIDEO_THREADS
            assert w * t <= c or t == 1


def test_workers_auto_in_the_config(tmp_path):
    assert Config().workers == "auto"
    assert Config().worker_count == default_workers() == resolve_workers("auto")
    assert Config(workers=3).worker_count == 3
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workers: auto\n")
    assert load_config(cfg).workers == "auto"
    cfg.write_text("workers: 2\n")
    assert load_config(cfg).worker_count == 2
    assert load_config(cfg, workers="auto").workers == "auto"  # the flag wins
    for bad in (0, -1, "many"):
        with pytest.raises(ValidationError):
            Config(workers=bad)


def test_the_workers_flag(tmp_path):
    from clipfactory.cli import main

    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as e:
            main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                  "--workers", bad])
        assert e.value.code == 2


def report_workers(item: SourceItem, cfg: Config, staging: str) -> VideoResult:
    """The worker count the task sees (a spawned worker imports this module by name)."""
    return VideoResult(item=item, video_id=item.source, decoded_frames=cfg.worker_count)


def test_workers_see_the_pool_size(tmp_path):
    items = [SourceItem(item_key=f"k:{n}", source=n) for n in "ab"]
    results = list(LocalExecutor(workers=3, task=report_workers).map(items, Config(), tmp_path))
    assert [r.decoded_frames for r in results] == [3, 3]


def test_a_default_run_uses_every_usable_cpu(tmp_path):
    from clipfactory.pipeline import run
    from clipfactory.testing.synth import ShotSpec, write_video

    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        write_video(src / f"v{k}.mp4", [ShotSpec(70, "texture", k + 1)], width=160, height=90)
    summary = run(src, tmp_path / "out", Config(), quiet=True)
    used = json.loads((tmp_path / "out" / "summary.json").read_text())["throughput"]["workers"]
    assert used == summary["throughput"]["workers"] == default_workers()
    assert used == usable_cpus()  # this machine has the memory for one worker per CPU
    assert summary["counts"]["clips"]["kept"] == 2
