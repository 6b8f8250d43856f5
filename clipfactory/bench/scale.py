"""``clipfactory bench-scale``: what a run's global work costs on a dataset of N clips.

    clipfactory bench-scale --clips 1e5,1e6,1e7 [--keep DIR] [--json FILE] [--rededup]
                            [--add 100] [--no-captions]

For each N, a synthetic dataset of N clips is built in bulk (:mod:`clipfactory.bench.
scale_data`: a valid output folder, no video decoded), then each of these steps runs on it as
the user would run it, in a fresh ``python -m clipfactory.cli`` process:

1. ``run``: a real run that adds ~100 clips (a few generated videos with hard cuts), with its
   finalize's share read from ``run.log``;
2. ``status``;
3. ``audit --shard NAME`` of one shard;
4. ``takedown --video-id ID`` of one input (10 clips);
5. ``dedup --full``: at N = 10^6 only, or every N with ``--rededup``.

Each step's wall time includes the interpreter's start (~0.5 s); its peak RSS is the step
process's own ``VmHWM`` (``ru_maxrss`` would carry the parent's peak over a fork), not that of
worker processes it starts. A step whose command or flag this clipfactory lacks is "n/a".
The build's own time is reported apart. The disk a dataset needs is estimated first (~8 KB a
clip: 5 KB of tar blocks, 2.9 KB of ledger; ``--no-captions`` saves 1.5 KB) and nothing is
built when it does not fit. Timings are of this machine and this run: docs, never tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clipfactory.bench.ledger_scale import CLIPS_PER_VIDEO
from clipfactory.bench.scale_data import SHARD_CLIPS, disk_refusal, estimate_bytes, item
from clipfactory.testing.synth import ShotSpec, write_video

__all__ = ["Step", "make_increment", "measure", "run_scale_bench", "table"]

_SHOTS_PER_VIDEO = 25
_REDEDUP_AT = 10**6
# runs a module as __main__, then leaves this process's peak RSS (kB) in the file argv[1]
_PROBE = """import runpy, sys
hwm, mod = sys.argv[1], sys.argv[2]
sys.argv = [mod, *sys.argv[3:]]
try:
    runpy.run_module(mod, run_name="__main__", alter_sys=True)
finally:
    try:
        with open("/proc/self/status") as f, open(hwm, "w") as o:
            o.write(next(x for x in f if x.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        pass
"""
_MISSING = re.compile(r"invalid choice: '[\w-]+'|unrecognized arguments")


@dataclass
class Step:
    """One measured command: wall and CPU seconds, peak RSS, exit code and output."""

    wall_s: float
    cpu_s: float
    peak_mib: float
    rc: int
    stdout: str
    stderr: str

    @property
    def missing(self) -> bool:
        """The command or one of its flags does not exist in this clipfactory."""
        return self.rc == 2 and bool(_MISSING.search(self.stderr))

    def figures(self) -> dict[str, Any]:
        """What goes in the JSON: everything but the output."""
        return {k: v for k, v in asdict(self).items() if k not in ("stdout", "stderr")}


def measure(module: str, *args: str) -> Step:
    """Run ``python -m module args`` in a fresh process and measure it."""
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        hwm, out, err = (Path(tmp) / n for n in ("hwm", "out", "err"))
        with open(out, "w") as fo, open(err, "w") as fe:
            t0 = time.perf_counter()
            p = subprocess.Popen([sys.executable, "-c", _PROBE, str(hwm), module, *args],
                                 stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        kb = float(hwm.read_text() or 0) if hwm.is_file() else usage.ru_maxrss
        return Step(round(wall, 3), round(usage.ru_utime + usage.ru_stime, 3),
                    round(kb / 1024, 1), p.returncode, out.read_text(), err.read_text())


def make_increment(directory: str | Path, clips: int = 100) -> Path:
    """Videos whose run cuts ``clips`` clips: 160x96 texture shots of 2.2-2.6 s (each one
    clip) joined by hard cuts, 25 to a video."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for v in range(-(-clips // _SHOTS_PER_VIDEO)):
        n = min(_SHOTS_PER_VIDEO, clips - v * _SHOTS_PER_VIDEO)
        shots = [ShotSpec(66 + (i % 3) * 6, "texture", 7000 + v * 100 + i) for i in range(n)]
        write_video(d / f"increment_{v:03d}.mp4", shots, width=160, height=96, gop=30)
    return d


def _cli(*args: str) -> Step:
    return measure("clipfactory.cli", *args)


def _kept(text: str) -> int | None:
    m = re.search(r"clips: (\d+) kept", text)
    return int(m.group(1)) if m else None


def _finalize_s(log: Path, offset: int) -> float | None:
    """Seconds of the last finalize that ``run.log`` has logged after ``offset``."""
    if not log.is_file():
        return None
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        found = re.findall(r"finalize: ([0-9.]+) s", f.read())
    return float(found[-1]) if found else None


def _step_row(step: Step, **extra: Any) -> dict[str, Any]:
    if step.missing:
        return {"na": True, "why": step.stderr.strip().splitlines()[-1]}
    if step.rc not in (0, 1):
        print(f"  failed (rc {step.rc}): {step.stderr.strip()[-2000:]}", file=sys.stderr)
    return {**step.figures(), **extra}


def bench_size(n: int, out: Path, increment: Path, rededup: bool = False,
               captions: bool = True) -> dict[str, Any]:
    """Build the dataset of ``n`` clips in ``out`` and measure each step on it."""
    row: dict[str, Any] = {"clips": n}
    figures = out.with_name(f".{out.name}.figures.json")
    build = measure("clipfactory.bench.scale_data", str(out), "--clips", str(n),
                    "--figures", str(figures), *([] if captions else ["--no-captions"]))
    if build.rc != 0:
        raise RuntimeError(f"building {n} clips failed:\n{build.stderr[-3000:]}")
    row["build"] = {**build.figures(), **json.loads(figures.read_text())}
    figures.unlink()
    b = row["build"]
    print(f"  built: {b['wall_s']:.1f} s ({b['write_s']:.1f} s ledger and shards at "
          f"{b['clips_per_s']} clips/s, {b['finalize_s']:.1f} s first finalize), "
          f"{b['peak_mib']:.0f} MiB, {b['bytes'] / 2**30:.2f} GiB", flush=True)

    log = out / "run.log"
    offset = log.stat().st_size if log.is_file() else 0
    step = _cli("run", "--input", str(increment), "--output", str(out), "--quiet")
    kept = _kept(step.stdout)
    row["run"] = _step_row(step, finalize_s=_finalize_s(log, offset),
                           added=None if kept is None else kept - n)
    print(f"  run: {step.wall_s:.1f} s, added {row['run'].get('added')} clips", flush=True)

    step = _cli("status", str(out), "--json")
    status = json.loads(step.stdout) if step.rc == 0 else {}
    row["status"] = _step_row(step, kept=status.get("clips", {}).get("kept"))

    victim = -(-n // CLIPS_PER_VIDEO) // 2  # an input in the middle, and its clips' shard
    shard = f"shard-{victim * CLIPS_PER_VIDEO // SHARD_CLIPS:06d}.tar"
    step = _cli("audit", str(out), "--shard", shard)
    row["audit"] = _step_row(step, shard=shard, ok=step.rc == 0)

    video_id = str(item(victim).id)
    step = _cli("takedown", str(out), "--video-id", video_id, "--reason",
                "bench-scale: one takedown")
    m = re.search(r"(\d+) clips removed", step.stdout)
    row["takedown"] = _step_row(step, video_id=video_id, removed=int(m.group(1)) if m else None)

    if rededup or n == _REDEDUP_AT:
        step = _cli("dedup", str(out), "--full")
        m = re.search(r'"removed": (\d+)', step.stdout)
        row["rededup"] = _step_row(step, removed=int(m.group(1)) if m else None)
    return row


def _cell(step: dict[str, Any] | None, key: str = "wall_s", fmt: str = ".1f") -> str:
    """A table cell: "-" not run, "n/a" command missing, "?" not known."""
    if step is None:
        return "-"
    if step.get("na"):
        return "n/a"
    v = step.get(key)
    return "?" if v is None else format(v, fmt)


_STEPS = ("run", "status", "audit", "takedown", "rededup")


def table(rows: list[dict[str, Any]]) -> str:
    """One line per N: the build, then each step's seconds and peak MiB."""
    head = (f"{'clips':>10} {'build s':>8} {'MiB':>6} | {'run s':>7} {'final s':>7} "
            f"{'added':>5} {'MiB':>6} | " + " | ".join(f"{s + ' s':>10} {'MiB':>6}"
                                                      for s in _STEPS[1:]))
    lines = [head, "-" * len(head)]
    for r in rows:
        b, run = r["build"], r.get("run")
        lines.append(
            f"{r['clips']:>10} {b['wall_s']:>8.1f} {b['peak_mib']:>6.0f} | "
            f"{_cell(run):>7} {_cell(run, 'finalize_s'):>7} {_cell(run, 'added', 'd'):>5} "
            f"{_cell(run, 'peak_mib', '.0f'):>6} | "
            + " | ".join(f"{_cell(r.get(s)):>10} {_cell(r.get(s), 'peak_mib', '.0f'):>6}"
                         for s in _STEPS[1:]))
    return "\n".join(lines)


def _check(row: dict[str, Any]) -> list[str]:
    """What in a row says the dataset or a step is not what it should be."""
    bad = []
    added = row["run"].get("added")
    if not row["run"].get("na") and not added:
        bad.append(f"the run added {added} clips")
    kept = row["status"].get("kept")
    if added is not None and kept != row["clips"] + added:
        bad.append(f"status says {kept} kept, expected {row['clips'] + added}")
    if not row["audit"].get("na") and not row["audit"].get("ok"):
        bad.append(f"audit of {row['audit']['shard']} found problems")
    if not row["takedown"].get("na") and not row["takedown"].get("removed"):
        bad.append("the takedown removed no clip")
    if row.get("rededup", {}).get("removed"):  # the synthetic clips have random hashes
        bad.append(f"the full re-dedup removed {row['rededup']['removed']} clips")
    return bad


def _disk_check(root: Path, sizes: list[int], keep: bool, captions: bool) -> None:
    """Print the estimate; stop before building anything when the disk cannot hold it."""
    def need(captions: bool) -> int:
        each = [estimate_bytes(n, captions) for n in sizes]
        return sum(each) if keep else max(each)  # without --keep, one dataset at a time

    print("disk estimate: " + ", ".join(f"{n:,} clips ~{estimate_bytes(n, captions) / 2**30:.1f}"
                                        " GiB" for n in sizes)
          + f" (10^7 clips: ~{estimate_bytes(10**7, captions) / 2**30:.0f} GiB)", flush=True)
    refusal = disk_refusal(root, need(captions))
    if refusal:
        hint = ""
        if captions and not disk_refusal(root, need(False)):
            hint = f"; with --no-captions ~{need(False) / 2**30:.0f} GiB, which fits"
        raise SystemExit(f"clipfactory bench-scale: {refusal}{hint}; nothing was built")


def run_scale_bench(sizes: list[int], keep: str | Path | None = None,
                    json_path: str | Path | None = None, rededup: bool = False,
                    add: int = 100, captions: bool = True) -> list[dict[str, Any]]:
    """Measure every size in turn (module docstring); print and return the rows."""
    _disk_check(Path(keep or tempfile.gettempdir()), sizes, bool(keep), captions)
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-input-") as tmp:
        increment = make_increment(Path(tmp) / "increment", add)
        try:
            for n in sizes:
                out = root / f"clips-{n}"
                if out.exists():
                    raise SystemExit(f"clipfactory bench-scale: {out} exists; remove it or "
                                     "keep elsewhere")
                print(f"{n} clips: building in {out}", flush=True)
                row = bench_size(n, out, increment, rededup, captions)
                row["problems"] = _check(row)
                for p in row["problems"]:
                    print(f"  PROBLEM: {p}", flush=True)
                rows.append(row)
                if json_path:
                    Path(json_path).write_text(json.dumps(rows, indent=2), encoding="utf-8")
                if not keep:
                    shutil.rmtree(out, ignore_errors=True)
        finally:
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(rows))
    return rows
