"""``clipfactory audit``: verify a dataset's shards against its index, ledger and policy.

Three modes (``audit(out, ...)``, ``clipfactory audit OUT ...``):

- ``full``: every shard read in full, every index row, ledger clip and source checked, plus
  ``staging/`` and ``embeddings/``. The default for a dataset of at most
  :data:`FULL_UP_TO` shards.
- ``sample``: ``n`` shards drawn at random (seeded; the seed is reported, so the same draw can
  be repeated) audited like ``shards`` below, plus the dataset-wide checks that read no shard
  (O(number of shards)). The default above :data:`FULL_UP_TO` shards, with
  :data:`DEFAULT_SAMPLE` shards.
- ``shards``: only the named shards: each shard file, its index rows, the ledger's clips in it
  and their sources.

The index is read one shard at a time (:mod:`clipfactory.provenance.audit_index`): from its part
``index/<shard>.parquet`` when the index is partitioned, else from ``index.parquet``; next to
the parts, ``index.parquet`` is a compacted copy that must agree with them. The audit fails
(``AuditReport.ok`` is False) when:

- a shard's sha256 differs from the ledger's or ``summary.json``'s, a shard the ledger lists is
  missing, a shard file or an index part is unknown to the ledger, or the ledger and
  ``summary.json`` list different shards (``shard_hash_mismatch``, ``shard_missing``,
  ``orphan_shard``, ``orphan_index_part``, ``summary_mismatch``, ``unreadable_shard``);
- a shard holds a sample the index does not list, the index lists a clip its shard does not
  hold, a clip's bytes differ from its ``file_sha256``, or its ``KEY.json`` disagrees with its
  index row (``orphan_clip``, ``missing_clip``, ``clip_hash_mismatch``,
  ``clip_metadata_mismatch``); the index and the ledger disagree (``index_mismatch``); a
  clip file lies in ``staging/`` that no staged or sharded clip owns (``orphan_file``); the
  compacted ``index.parquet`` disagrees with the parts (``stale_compacted_index``, and its rows
  are checked like the parts');
- a clip present is not allowed under the dataset's policy, comes from a removed or
  quarantined source, or from a source the opt-out list or an earlier takedown names
  (``not_allowed``, ``removed_source``, ``quarantined_source``, ``opted_out``);
- ``embeddings/`` disagrees with the ledger, or still holds a removed clip's vector
  (:mod:`clipfactory.provenance.audit_embeddings`);
- an index part, ``index.parquet`` or ``summary.json`` cannot be read
  (``unreadable_index_part``, ``unreadable_compacted_index``, ``unreadable_summary``: each
  says which command writes it again).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from clipfactory.annotate.mix import UNFINISHED as UNFINISHED_MIX
from clipfactory.config import Config, stored_config
from clipfactory.lock import holds_output_lock
from clipfactory.policy.optout import OptOutList
from clipfactory.provenance.audit_embeddings import check_embeddings
from clipfactory.provenance.audit_index import COMPACTED, IndexRows, compare_rows
from clipfactory.provenance.audit_shards import (
    Inventory,
    check_inventory,
    check_presence,
    compare_samples,
    read_shard_file,
    take_inventory,
)
from clipfactory.provenance.audit_sources import SourceCheck
from clipfactory.provenance.takedown import open_output
from clipfactory.sinks.layout import unowned_staged_files

__all__ = ["DEFAULT_SAMPLE", "FULL_UP_TO", "AuditReport", "Problem", "audit"]

FULL_UP_TO = 64  # shards: up to this many the default audit reads every one
DEFAULT_SAMPLE = 16  # shards the default audit draws above FULL_UP_TO
_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    """One finding: its ``kind``, where (shard, clip) and what exactly."""

    kind: str
    detail: str
    shard: str | None = None
    clip: str | None = None


@dataclass
class AuditReport:
    """The findings of one audit; ``ok`` when there are no problems (warnings allowed).

    ``checked`` says what was checked: ``mode`` (full, sample, shards), ``default`` (the mode
    was chosen by size), ``shards`` read of ``shards_total``, index rows (``clips``) of
    ``clips_total``, ``videos`` (sources decided), and for sample and shards modes the
    ``shard_names`` audited (and the sample's ``seed``).
    """

    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, detail: str, shard: str | None = None,
            clip: str | None = None) -> None:
        self.problems.append(Problem(kind, detail, shard, clip))

    def _headline(self) -> list[str]:
        c = self.checked
        mode = c.get("mode", "full")
        if mode == "full":
            why = f", the default up to {FULL_UP_TO} shards" if c.get("default") else ""
            return [f"audit (full{why}): {c.get('shards', 0)} shards, {c.get('clips', 0)} "
                    f"clips, {c.get('videos', 0)} sources checked"]
        if mode == "sample":
            why = (f", the default above {FULL_UP_TO} shards; --full checks every shard"
                   if c.get("default") else "")
            head = f"audit (sample of {c.get('sample')} shards, seed {c.get('seed')}{why})"
        else:
            head = "audit (shards)"
        return [f"{head}: {c.get('shards', 0)} of {c.get('shards_total', 0)} shards, "
                f"{c.get('clips', 0)} of {c.get('clips_total', 0)} clips, "
                f"{c.get('videos', 0)} sources checked",
                "shards: " + ", ".join(c.get("shard_names", []))]

    def render(self) -> str:
        """A readable report: what was checked, then problems grouped by kind."""
        lines = self._headline()
        for w in self.warnings:
            lines.append(f"warning: {w}")
        if self.ok:
            lines.append("OK: shards, index, ledger and policy agree")
            return "\n".join(lines)
        kinds = Counter(p.kind for p in self.problems)
        lines.append(f"FAILED: {len(self.problems)} problems")
        for kind, n in kinds.most_common():
            lines.append(f"  {kind}: {n}")
            for p in [p for p in self.problems if p.kind == kind][:_EXAMPLES]:
                where = " ".join(x for x in (p.shard, p.clip) if x)
                lines.append(f"    - {where + ': ' if where else ''}{p.detail}")
            if n > _EXAMPLES:
                lines.append(f"    ... and {n - _EXAMPLES} more")
        return "\n".join(lines)


def _check_staging(out: Path, ledger: Any, report: AuditReport) -> None:
    """Clip files in ``staging/`` that no staged or sharded clip owns (finalize removes them:
    the same test, :func:`~clipfactory.sinks.layout.unowned_staged_files`)."""
    for f in unowned_staged_files(out / "staging", ledger):
        report.add("orphan_file", f"staged clip file no clip owns: {f.relative_to(out)}")


def _policy(ledger: Any, report: AuditReport) -> Config:
    """The dataset's config; a missing opt-out list is a problem, and is left out."""
    cfg = stored_config(ledger.get_meta("config"))
    oo = cfg.policy.opt_out_file
    if oo and not Path(oo).is_file():
        report.add("opt_out_file_missing", f"the dataset's opt-out list {oo} is missing; "
                   "opted-out sources cannot be verified")
        cfg.policy = cfg.policy.model_copy(update={"opt_out_file": None})
    return cfg


def _check_partition(name: str, index: IndexRows, inv: Inventory, sources: SourceCheck,
                     report: AuditReport) -> bool:
    """One shard: its file against its index rows, those rows and the ledger's clips of the
    shard against each other and the policy. A compacted copy that disagrees with the part is
    reported and checked the same way. True when the shard file was read."""
    label = index.label(name)
    try:
        table = index.table(name)
    except (pa.ArrowException, OSError) as e:  # a corrupt part: said, and its shard skipped
        report.add("unreadable_index_part", f"{label}: {e}; delete it and run `clipfactory run`"
                   " on this output again: the part is written again from the ledger", name)
        return False
    rows = table.to_pylist() if table is not None else []
    samples = read_shard_file(name, inv, report) if name in inv.files else None
    if samples is not None:
        compare_samples(name, samples, rows, label, report)
    sources.check(name, rows, label, report)
    copy_table = index.copy_table(name)
    if index.compacted_copy and (diff := compare_rows(copy_table, table)) is not None:
        report.add("stale_compacted_index", f"{COMPACTED} disagrees with {label}: {diff}", name)
        copy = copy_table.to_pylist() if copy_table is not None else []
        if samples is not None:
            compare_samples(name, samples, copy, COMPACTED, report)
        sources.check(name, copy, COMPACTED, report, count=False)
    return samples is not None


def _shard_name(name: str) -> str:
    return name if name.endswith(".tar") else f"{name}.tar"


def _all_shards(ledger: Any, inv: Inventory, index: IndexRows) -> list[str]:
    """Every shard anything names: files, ledger, index, and the ledger's sharded clips."""
    clip_shards = {r[0] or "" for r in ledger.db.execute(
        "SELECT DISTINCT shard FROM clips WHERE state = 'sharded'")}
    return sorted(set(inv.files) | set(inv.ledger) | index.shards() | clip_shards)


def _select(inv: Inventory, c: dict[str, Any], shards: Sequence[str] | None,
            sample: int | None, seed: int | None, full: bool) -> list[str] | None:
    """The mode (recorded in ``c``) and its shards; None for every shard (full)."""
    c["default"] = not (shards or sample is not None or full)
    if shards:
        c["mode"] = "shards"
        return sorted(dict.fromkeys(_shard_name(s) for s in shards))
    if full or (sample is None and len(set(inv.files) | set(inv.ledger)) <= FULL_UP_TO):
        c["mode"] = "full"
        return None
    c["mode"], c["sample"] = "sample", sample or DEFAULT_SAMPLE
    # a fresh seed by default, so repeated audits cover different shards; it is reported,
    # so any one draw can be repeated
    c["seed"] = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
    pool = sorted(inv.ledger)
    return sorted(random.Random(c["seed"]).sample(pool, min(c["sample"], len(pool))))


@holds_output_lock("audit")  # a run or a takedown half-way through is not corruption
def audit(out: str | Path, opt_out_file: str | Path | None = None, *,
          shards: Sequence[str] | None = None, sample: int | None = None,
          seed: int | None = None, full: bool = False) -> AuditReport:
    """Audit an output folder (see the module docstring); ``opt_out_file`` adds rules.

    Give at most one of ``shards`` (names, ``.tar`` optional), ``sample`` (a number of shards,
    drawn with ``seed``; a random seed when None) and ``full``; with none the mode follows the
    dataset's size. Raises ``ValueError`` for several modes at once or an unknown shard.
    """
    if sum((bool(shards), sample is not None, full)) > 1:
        raise ValueError("give at most one of shards, sample and full")
    if sample is not None and sample < 1:
        raise ValueError(f"a sample needs at least one shard, got {sample}")
    out = Path(out)
    report = AuditReport()
    ledger = open_output(out)
    try:
        if (out / UNFINISHED_MIX).is_file():
            report.add("unfinished_mix", "a `clipfactory mix` into this folder stopped before "
                       "it finished: run the same command again to finish it")
        cfg = _policy(ledger, report)
        extra = OptOutList.from_file(opt_out_file) if opt_out_file else OptOutList()
        inv = take_inventory(out, ledger)
        c = report.checked
        names = _select(inv, c, shards, sample, seed, full)
        index = IndexRows(out, only=names)
        if inv.summary_error is not None:  # a corrupt file is a finding, not a crash
            report.add("unreadable_summary", f"summary.json: {inv.summary_error}; the next "
                       "`clipfactory run` on this output writes it again")
        if index.compacted_error is not None:
            report.add("unreadable_compacted_index", f"{COMPACTED}: {index.compacted_error}; "
                       "`clipfactory compact` writes it again from the index parts")
        if not index.present:
            report.add("index_missing", "index.parquet is missing")
        if c["mode"] == "shards":
            unknown = [n for n in names if n not in inv.files and n not in inv.ledger
                       and not index.rows(n)]
            if unknown:
                raise ValueError(f"no shard named {', '.join(unknown)} in {out}")
        else:
            check_inventory(inv, index, report)
        if names is None:
            names = _all_shards(ledger, inv, index)
        else:
            c["shard_names"] = names
        sources = SourceCheck(ledger, cfg, extra, deferred=c["mode"] == "full")
        read = 0
        for name in names:  # one shard's rows and clips in memory at a time
            if c["mode"] == "shards":
                check_presence(name, inv, report)
            read += _check_partition(name, index, inv, sources, report)
        sources.finish(report)
        c.update(shards=read, shards_total=len(inv.ledger), clips=sources.rows,
                 videos=len(sources.videos))
        c["clips_total"] = ledger.db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM shards").fetchone()[0]
        if c["mode"] == "full":
            _check_staging(out, ledger, report)
            check_embeddings(out, ledger, report)
        return report
    finally:
        ledger.close()
