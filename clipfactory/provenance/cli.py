"""Command-line pieces for licensing and provenance: ``run``'s policy flags and the
``takedown``, ``audit`` and ``revalidate`` commands. Thin: parse, call the library, print."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipfactory.config import Config

__all__ = ["COMMANDS", "add_commands", "add_run_flags", "apply_run_flags"]


def add_run_flags(r: argparse.ArgumentParser) -> None:
    """The policy flags of ``clipfactory run``."""
    g = r.add_argument_group("license policy (see docs/provenance.md)")
    g.add_argument("--policy", choices=["commercial", "research", "custom", "none"],
                   default=None, help="gate inputs by license (default: the output's "
                   "previous policy, else none: record licenses, gate nothing)")
    g.add_argument("--license", dest="declared_license", default=None, metavar="ID",
                   help="license of inputs that carry none, e.g. a folder: 'owned', "
                   "'CC-BY-4.0'")
    g.add_argument("--dataset-terms", default=None, metavar="TERMS",
                   help="terms of the whole input that apply on top, e.g. 'research-only'")
    g.add_argument("--opt-out-file", default=None, metavar="FILE",
                   help="URLs, ids, channel:, domain:, regex: rules to keep out and take out")
    g.add_argument("--allow", action="append", default=None, metavar="PATTERN",
                   help="also allow this license id, family or glob (repeatable)")
    g.add_argument("--deny", action="append", default=None, metavar="PATTERN",
                   help="deny this license id, family or glob (repeatable)")
    g.add_argument("--allow-unknown", action="store_true", default=None,
                   help="let unknown and missing licenses through the policy")


def apply_run_flags(cfg: Config, a: argparse.Namespace) -> Config:
    """``cfg`` with the policy flags that were given (only those) set on its policy.

    Raises ``ValueError`` for an invalid combination or an unreadable or invalid opt-out file.
    """
    from pydantic import ValidationError

    from clipfactory.config import PolicyConfig, describe_errors

    given = {k: v for k, v in {
        "name": a.policy, "declared_license": a.declared_license,
        "dataset_terms": a.dataset_terms, "opt_out_file": a.opt_out_file,
        "allow": [*cfg.policy.allow, *a.allow] if a.allow else None,
        "deny": [*cfg.policy.deny, *a.deny] if a.deny else None,
        "allow_unknown": a.allow_unknown}.items() if v is not None}
    if given:
        data = {k: getattr(cfg.policy, k) for k in cfg.policy.model_fields_set}
        data.update(given)
        try:
            policy = PolicyConfig.model_validate(data)
        except ValidationError as e:  # the flags' words, not pydantic's three lines and a URL
            raise ValueError("the policy flags: " + "; ".join(
                line.strip().removeprefix("(top level): ")
                for line in describe_errors(e, "").splitlines()[1:])) from None
        cfg = cfg.model_copy(update={"policy": policy})
    if cfg.policy.opt_out_file:  # a bad list is a usage error, before anything runs
        from clipfactory.policy.optout import OptOutList

        try:
            OptOutList.from_file(cfg.policy.opt_out_file)
        except OSError as e:
            raise ValueError(f"cannot read the opt-out file: {e}") from e
    return cfg


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``takedown``, ``audit`` and ``revalidate``."""
    t = sub.add_parser("takedown", help="remove sources and every clip derived from them")
    t.add_argument("output", help="output folder of a run")
    t.add_argument("--source", action="append", default=[], metavar="URL",
                   help="source URL or local path (repeatable)")
    t.add_argument("--video-id", action="append", default=[], metavar="ID",
                   help="manifest id or video id (repeatable)")
    t.add_argument("--opt-out-file", default=None, metavar="FILE", help="rules, one a line")
    t.add_argument("--reason", required=True, help="why (kept in the audit record)")
    t.add_argument("--no-wait", action="store_true",
                   help="fail at once if another clipfactory process is writing the output")

    a = sub.add_parser("audit", help="verify shards against index, ledger and policy")
    a.add_argument("output", help="output folder of a run")
    a.add_argument("--opt-out-file", default=None, metavar="FILE",
                   help="also check against these opt-out rules")
    m = a.add_mutually_exclusive_group()
    m.add_argument("--full", action="store_true", help="read every shard and check every "
                   "clip (the default up to 64 shards)")
    m.add_argument("--sample", type=int, default=None, metavar="N", help="audit N shards "
                   "drawn at random, plus the dataset-wide shard checks (the default above "
                   "64 shards: 16)")
    m.add_argument("--shard", action="append", default=None, metavar="NAME",
                   help="audit only this shard, e.g. shard-000012.tar (repeatable)")
    a.add_argument("--seed", type=int, default=None,
                   help="seed of the sample's draw (default: random, printed)")
    a.add_argument("--no-wait", action="store_true",
                   help="fail at once if another clipfactory process is writing the output "
                   "(by default the audit waits for it: an output half-written is not corrupt)")

    v = sub.add_parser("revalidate", help="check that sources still exist upstream and that "
                       "their sites do not reserve them from AI training")
    v.add_argument("output", help="output folder of a run")
    v.add_argument("--purge", action="store_true", help="take down sources that are gone")
    v.add_argument("--no-wait", action="store_true",
                   help="fail at once if another clipfactory process is writing the output")
    v.add_argument("--rate", type=float, default=1.0,
                   help="requests per second per host (default 1)")
    v.add_argument("--timeout", type=float, default=15.0, help="seconds per request")
    v.add_argument("--reason", default="source no longer available upstream",
                   help="reason recorded for purged sources")
    v.add_argument("--allow-private-network", action="store_true",
                   help="let sources on loopback/private addresses be checked")


def _no_output(out: str) -> int:
    print(f"clipfactory: no run found in {out}", file=sys.stderr)
    return 2


def _cmd_takedown(a: argparse.Namespace) -> int:
    from clipfactory.provenance.takedown import takedown, takedown_rules

    if not (Path(a.output) / "ledger.sqlite").is_file():
        return _no_output(a.output)
    if not (a.source or a.video_id or a.opt_out_file):
        print("clipfactory: takedown needs --source, --video-id or --opt-out-file",
              file=sys.stderr)
        return 2
    try:
        rules = takedown_rules(a.source, a.video_id, a.opt_out_file)
        removal = takedown(a.output, rules, a.reason)
    except (ValueError, OSError) as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    print(f"takedown: {len(removal.videos)} sources, {len(removal.clips)} clips removed; "
          f"{len(removal.shards)} shards rewritten")
    for s in removal.shards:
        after = s.sha256_after[:16] if s.sha256_after else "(deleted)"
        before = s.sha256_before[:16] if s.sha256_before else "(missing)"
        print(f"  {s.name}: -{s.removed} clips, sha256 {before} -> {after}")
    if not removal.videos:
        print("  no source matched; the rules are kept so they are never ingested")
    return 0


def _cmd_audit(a: argparse.Namespace) -> int:
    from clipfactory.provenance.audit import audit

    if not (Path(a.output) / "ledger.sqlite").is_file():
        return _no_output(a.output)
    try:
        report = audit(a.output, opt_out_file=a.opt_out_file, shards=a.shard, sample=a.sample,
                       seed=a.seed, full=a.full)
    except OSError as e:  # the opt-out file missing, a folder, unreadable
        print(f"clipfactory: cannot read {e.filename or a.opt_out_file}: "
              f"{e.strerror or e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"clipfactory: {e}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1


def _cmd_revalidate(a: argparse.Namespace) -> int:
    from clipfactory.provenance.revalidate import revalidate

    if not (Path(a.output) / "ledger.sqlite").is_file():
        return _no_output(a.output)
    report = revalidate(a.output, purge=a.purge, rate=a.rate, timeout=a.timeout,
                        reason=a.reason, allow_private_network=a.allow_private_network)
    print(report.render())
    return 1 if (report.gone() or report.refused()) and not a.purge else 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "takedown": _cmd_takedown, "audit": _cmd_audit, "revalidate": _cmd_revalidate}
