"""The one place that chains the steps: register inputs, process videos, finalize the dataset.

Per-video work (probe -> analyse -> plan -> filter -> cut) runs in the executor's workers; the
global steps (dedup, shards, index, card, summary) run here on records only. Every output file
is derived from the ledger and written atomically, so ``finalize`` can run again at any time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from clipfactory.config import Config, ConfigError
from clipfactory.errors import StorageRefused, storage_refusal, storage_refused
from clipfactory.fetch.retry import requeue_changed_files
from clipfactory.fetch.stage import FetchStage
from clipfactory.filters import check_filters
from clipfactory.finalize import finalize
from clipfactory.ledger import Ledger
from clipfactory.lock import holds_output_lock, make_output
from clipfactory.media import stagetime
from clipfactory.policy.gate import Gate
from clipfactory.progress import Progress
from clipfactory.provenance.ingest import gate_inputs, inherit_policy
from clipfactory.provenance.recut import recut_orphans
from clipfactory.provenance.relabel import apply_relabels
from clipfactory.provenance.replaced import requeue_replaced_files
from clipfactory.records import Rejection, SourceItem, VideoResult
from clipfactory.redact import redact_text
from clipfactory.shots import check_detector
from clipfactory.sinks.layout import relocate_staged
from clipfactory.sources.manifest_state import register_input
from clipfactory.stages import ModelStage, build_stages, check_stages
from clipfactory.stages.feeder import StageFeeder
from clipfactory.worker import discard_clips

__all__ = ["Executor", "finalize", "run"]

log = logging.getLogger("clipfactory")


class Executor(Protocol):
    """Anything that maps the per-video task over items (local pool, Ray, ...)."""

    def map(self, items: Iterable[SourceItem], cfg: Config,
            staging: str | Path) -> Iterator[VideoResult]: ...


class _RunLog(logging.FileHandler):
    """``run.log``. On a full disk its lines are lost, not the run: the command says on
    stderr why it stopped."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not storage_refused(sys.exc_info()[1]):
            super().handleError(record)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            if not storage_refused(e):
                raise

    def close(self) -> None:
        try:
            super().close()
        except OSError as e:
            if not storage_refused(e):
                raise


class _Redacting(logging.Formatter):
    """Log lines without the credentials of signed URLs (:mod:`clipfactory.redact`)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record)) or ""


def _setup_logging(out: Path) -> logging.Handler:
    handler = _RunLog(out / "run.log", encoding="utf-8")
    handler.setFormatter(_Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


@holds_output_lock("run", "output", create=True)
def run(input_path: str | Path | None, output: str | Path, cfg: Config | None = None, *,
        quiet: bool = True, executor: Executor | None = None,
        stages: list[ModelStage] | None = None) -> dict[str, Any]:
    """Curate ``input_path`` (folder or manifest) into ``output``; resume what is there.
    ``input_path`` None adds nothing and runs what is pending (``clipfactory retry``).
    ``stages`` replaces the model stages the config turns on (``annotate``)."""
    cfg = cfg or Config()
    phases = stagetime.PhaseClock(cfg.stage_times)  # the driver's CPU split (bench)
    check_detector(cfg.shots)  # a broken model file stops the run here, not once per video
    if cfg.fetch.cookies_file and not Path(cfg.fetch.cookies_file).is_file():
        raise ConfigError(f"fetch.cookies_file: {cfg.fetch.cookies_file} is not a file")
    if cfg.fetch.sources_dir and Path(cfg.fetch.sources_dir).exists() and \
            not Path(cfg.fetch.sources_dir).is_dir():
        raise ConfigError(f"fetch.sources_dir: {cfg.fetch.sources_dir} is not a folder")
    if cfg.cut.gpu == "always" or cfg.cut.mode == "transcode":  # said now, not by every
        _check_encoder(cfg)  # video failing later
    if cfg.filters_on:
        check_filters(cfg.filters)  # the text model, when the text filter is on
    stages = build_stages(cfg) if stages is None else stages
    out = Path(output).absolute()  # staged paths must not depend on the working directory
    make_output(out)
    handler = _setup_logging(out)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        previous = ledger.get_meta("config")
        cfg = inherit_policy(cfg, previous)  # an output keeps its license policy
        _check_phash_frames(previous, cfg, ledger)
        if previous is not None and previous != cfg.model_dump(mode="json"):
            _record_config_change(previous, cfg.model_dump(mode="json"), ledger)
        check_stages(stages, ledger)  # missing weights stop the run before any work
        ledger.set_meta("config", cfg.model_dump(mode="json"))
        _sweep_temp_files(out / "staging")
        relocate_staged(out / "staging", ledger)  # before the model stages read any
        added = register_input(ledger, input_path, cfg.ingest).added if input_path else 0
        changed = requeue_changed_files(ledger)
        if changed:
            log.info("%d failed input files changed since they failed: trying them again",
                     len(changed))
        if cfg.ingest.check_replaced:
            _requeue_replaced(ledger, out)
        gate = gate_inputs(ledger, cfg, out)  # quarantine and opt-outs cost no decoding
        _relabel(ledger, gate, out)  # manifest rows corrected since their inputs were cut
        total = ledger.pending_count()
        log.info("run started: %d new inputs, %d pending, %d workers", added, total,
                 cfg.worker_count)
        if executor is None:
            from clipfactory.exec import make_executor

            executor = make_executor(cfg)
        phases.lap("start")
        stats = _process(ledger.pending(), total, ledger, cfg, out, executor, quiet, gate,
                         stages)
        phases.lap("results")
        recut_orphans(out, cfg, ledger)  # duplicates of clips a removal took out
        phases.lap("recut")
        summary = finalize(out, cfg, ledger, stats, phases=phases)
        log.info("run finished: %s", json.dumps(summary["counts"]))
        if phases.enabled:  # returned, not in summary.json (the report is built from that)
            summary["driver_split"] = phases.seconds
        return summary
    except Exception as e:
        what = storage_refusal(e)
        if what is None:
            raise
        log.error("run stopped: a disk it writes to is %s (%s)", what, e)
        if isinstance(e, StorageRefused):
            raise
        raise StorageRefused(f"{type(e).__name__}: {e}", what) from e
    finally:
        ledger.close()
        log.removeHandler(handler)
        handler.close()


def _requeue_replaced(ledger: Ledger, out: Path) -> None:
    """Cut again the finished input files that hold other bytes now (their clips go)."""
    found = requeue_replaced_files(ledger, out)
    if found.inputs:
        log.warning("%d input files hold other bytes than when they were cut: their %d clips "
                    "are removed (audit.jsonl, kind 'replaced') and they are cut again",
                    len(found.inputs), len(found.clips))
    if found.duplicates:
        log.info("%d inputs set aside as the same bytes as a replaced or changed file are cut "
                 "again", len(found.duplicates))


def _relabel(ledger: Ledger, gate: Gate, out: Path) -> None:
    found = apply_relabels(ledger, gate, out)
    if found.inputs:
        log.warning("%d inputs have a corrected license, attribution or source URL in their "
                    "manifest: their %d clips now carry it (audit.jsonl, kind 'relabelled')",
                    len(found.inputs), found.clips)
    if found.removed:
        log.warning("%d inputs' manifest rows now give a license the policy does not allow: "
                    "their clips are removed (audit.jsonl, kind 'policy')", len(found.removed))


def _process(pending: Iterable[SourceItem], total: int, ledger: Ledger, cfg: Config,
             out: Path, executor: Executor, quiet: bool, gate: Gate | None = None,
             stages: list[ModelStage] | None = None) -> dict[str, Any]:
    """Run the per-video work over ``pending`` (pulled lazily; ``total`` sizes the bar)."""
    wall0 = time.perf_counter()
    media_s = cpu_s = sys_s = 0.0
    done = faults = 0
    feeder = StageFeeder(stages, out, ledger, cfg) if stages else None
    stage_stats: dict[str, Any] = {}
    cpu_split: dict[str, float] = {}
    peak_rss = 0.0  # the largest worker's VmHWM
    decoders: dict[str, int] = {}  # videos per analysis decoder (software, nvdec)
    with Progress(total, quiet=quiet) as bar, _closing(feeder):
        def fetch_failed(r: VideoResult) -> None:
            _log_result(r)
            bar.update(0.0, failed=True)

        fetch = FetchStage(cfg, out, ledger, on_failure=fetch_failed)  # URLs -> local files
        if feeder is not None:
            feeder.start()  # clips earlier runs left unannotated go first
        results = executor.map(fetch.wrap(pending), cfg, out / "staging")
        try:
            for result in results:
                if result.halt is not None:  # nothing of it is recorded: it stays pending
                    what, detail = result.halt
                    raise StorageRefused(f"writing the clips of {result.item.source}: {detail}",
                                         what)
                _record(result, ledger, gate)
                if feeder is not None:
                    feeder.feed(result)  # kept clips stream into the model stages
                fetch.done(result)  # the fetched source goes once its outcome is recorded
                media_s += result.analysed_s
                cpu_s += result.cpu_s
                sys_s += result.sys_s
                faults += result.page_faults
                stagetime.merge(cpu_split, result.cpu_split)
                peak_rss = max(peak_rss, result.peak_rss_mib)
                if result.decoder:
                    decoders[result.decoder] = decoders.get(result.decoder, 0) + 1
                done += 1
                _log_result(result)
                bar.update(result.analysed_s, failed=result.rejection is not None)
        finally:
            close = getattr(results, "close", None)  # a generator: its workers stop now,
            if close is not None:  # and the videos they were on stay pending
                close()
            fetch_stats = fetch.close()
        if feeder is not None:
            stage_stats = feeder.finish()
    wall = time.perf_counter() - wall0
    stats = {"videos": done + fetch.failed, "wall_s": round(wall, 3),
             "media_s": round(media_s, 3),
             "cpu_s": round(cpu_s, 3), "sys_cpu_s": round(sys_s, 3), "page_faults": faults,
             "workers": getattr(executor, "workers", cfg.worker_count),
             "x_realtime": round(media_s / wall, 3) if wall > 0 else 0.0,
             "x_realtime_per_core": round(media_s / cpu_s, 3) if cpu_s > 0 else 0.0}
    if fetch_stats is not None:
        stats["fetch"] = fetch_stats
    if stage_stats:
        stats["stages"] = stage_stats
    if cpu_split:
        stats["cpu_split"] = cpu_split
    if decoders:
        stats["decoders"] = decoders
    if peak_rss:
        stats["peak_worker_rss_mib"] = round(peak_rss, 1)
    return stats


@contextlib.contextmanager
def _closing(feeder: StageFeeder | None) -> Iterator[None]:
    try:
        yield
    finally:
        if feeder is not None:
            feeder.close()


def _record(result: VideoResult, ledger: Ledger, gate: Gate | None) -> None:
    """Gate and record one video's outcome."""
    blocked = gate.check(result) if gate and result.rejection is None else None
    if blocked is not None:  # taken-down content under another name, or an opt-out
        discard_clips(result)  # rule only the file could match (hash, derived id)
        result.rejection = blocked
    dup = ledger.find_duplicate_source(result) if result.rejection is None else None
    if dup is not None:
        discard_clips(result)
        result.rejection = Rejection(result.item.item_key, result.item.source, "ingest",
                                     "duplicate_source", f"same bytes as {dup}",
                                     video_id=result.video_id)
    ledger.record(result)


def _log_result(r: VideoResult) -> None:
    if r.rejection is not None:
        log.info("failed %s: %s/%s %s", r.item.source, r.rejection.stage, r.rejection.reason,
                 r.rejection.detail)
        return
    kept = sum(c.state == "staged" for c in r.clips)
    log.info("done %s: %d frames, %d clips staged, %d dropped, %.2fs wall %s", r.item.source,
             r.decoded_frames, kept, len(r.clips) - kept, r.wall_s,
             " ".join(f"{k}={v:.2f}s" for k, v in r.timings.items()))
    for w in r.warnings:
        log.warning("%s: %s", r.item.source, w)


# settings of how a run goes, not of what it makes: a change of them is not worth a word
_HOW_NOT_WHAT = ("workers", "executor", "ray_address", "ray", "video_timeout_s", "stage_times")


def _check_encoder(cfg: Config) -> None:
    """The encoder ``cut`` names opens here (``gpu: always`` without NVENC) and takes the
    pixel format asked for (10-bit VP9 from a libvpx built without it dropped every clip as
    ``unsupported_pix_fmt``)."""
    from clipfactory.media.encoders import encoder_pix_fmt, resolve_encoder

    try:
        encoder = resolve_encoder(cfg.cut)
    except ValueError as e:
        raise ConfigError(str(e) if str(e).startswith("cut.") else f"cut: {e}") from None
    if cfg.cut.mode == "transcode" and encoder_pix_fmt(encoder, cfg.cut.pix_fmt) is None:
        raise ConfigError(f"cut.pix_fmt: {encoder} (for cut.codec {cfg.cut.codec!r}) cannot "
                          f"encode {cfg.cut.pix_fmt} here")


def _changed(old: Any, new: Any, path: str = "") -> dict[str, list[Any]]:
    """The settings (dotted names) whose values differ, as ``[old, new]``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, list[Any]] = {}
        for k in sorted(set(old) | set(new), key=str):
            out.update(_changed(old.get(k), new.get(k), f"{path}.{k}" if path else str(k)))
        return out
    return {} if old == new else {path or "(config)": [old, new]}


def _record_config_change(previous: dict[str, Any], now: dict[str, Any], ledger: Ledger) -> None:
    """A run with other settings than the last one's: said on the console and in run.log, and
    kept in the ledger (``config_changes``), which the card lists under its configuration:
    the clips recorded before keep the settings they were made with."""
    changed = {k: v for k, v in _changed(previous, now).items()
               if k.split(".")[0] not in _HOW_NOT_WHAT
               and not k.rsplit(".", 1)[-1].endswith(("threads", "workers", "concurrency"))}
    if not changed:
        return
    text = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in list(changed.items())[:8])
    more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
    log.warning("config differs from the last run's: %s%s; videos already recorded keep the "
                "settings they were made with", text, more)
    print(f"clipfactory: this output's last run used other settings ({text}{more}); videos "
          "already recorded keep theirs", file=sys.stderr)
    history = ledger.get_meta("config_changes", []) or []
    history.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "changed": changed})
    ledger.set_meta("config_changes", history[-50:])


def _check_phash_frames(previous: dict[str, Any] | None, cfg: Config, ledger: Ledger) -> None:
    """An output's clips are hashed with one number of frames each: perceptual dedup compares
    only hashes of the same length, so a run with another ``dedup.phash_frames`` would keep
    every near duplicate of the clips before it (``dedup --full`` too). Refused, before any
    work."""
    old = ((previous or {}).get("dedup") or {}).get("phash_frames")
    if old is None or old == cfg.dedup.phash_frames:
        return
    if ledger.db.execute("SELECT 1 FROM clips LIMIT 1").fetchone() is None:
        return
    raise ConfigError(f"dedup.phash_frames: this output's clips were hashed with {old} "
                      f"frames each; with {cfg.dedup.phash_frames}, new clips would never be "
                      f"compared with them (near duplicates across runs kept): use {old}, or "
                      "a new output")


def _sweep_temp_files(staging: Path) -> None:
    """Remove half-written clips of a killed run (no worker is alive at this point)."""
    if staging.is_dir():
        for f in staging.rglob(".*"):
            if f.is_file():
                f.unlink()
