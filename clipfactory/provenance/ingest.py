"""What a run does about licenses and opt-outs before and after each video is processed.

- :func:`inherit_policy`: an output keeps its policy. A run that does not name a policy uses
  the one the output was made with (so forgetting ``--policy`` never lets quarantined videos
  in); dataset terms, the declared license and the opt-out file are kept unless given again.
- :func:`gate_inputs`: decide every input that is pending or was quarantined before (a looser
  policy requeues it; nothing is decoded for a quarantined input), and apply opt-outs and a
  changed policy retroactively to inputs already in the dataset, removing their clips.
- :meth:`Gate.check` (called per result) stamps each clip with its license and decision.
- :func:`finish_consent_purges` and :func:`finish_takedowns`: finish removals that a killed
  command decided and recorded (refusing consent evidence, kept takedown rules) but did not
  complete; a run and ``revalidate --purge`` call them first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

from clipfactory.config import Config, PolicyConfig, stored_config
from clipfactory.consent.store import unfinished_purges
from clipfactory.ledger import Ledger, query_in
from clipfactory.policy.gate import Gate
from clipfactory.policy.optout import OptOutList, facts_of_row
from clipfactory.policy.policy import Decision
from clipfactory.provenance.removal import remove_inputs

__all__ = ["CONSENT_PURGE_REASON", "TAKEDOWN_REASONS", "TAKEDOWN_RULES", "build_gate",
           "finish_consent_purges", "finish_takedowns", "gate_inputs", "inherit_policy",
           "keep_takedown_rules"]

log = logging.getLogger("clipfactory")
TAKEDOWN_RULES = "takedown_rules"  # ledger meta key: rule texts of every takedown so far
# ledger meta key: {rule text: the reason given with the takedown that added it}, so that a
# takedown interrupted before its audit record is recorded with its own reason by the run that
# finishes it
TAKEDOWN_REASONS = "takedown_reasons"
# the audit record's kind for a decision's reason, in the re-check of inputs already in
# the dataset (any other reason: the policy)
_KIND_OF = {"taken_down": "takedown", "opted_out": "opt_out"}
_UNRECORDED = "a takedown whose reason was not recorded"
# the audit reason of inputs purged because their sites' consent signals now refuse them
CONSENT_PURGE_REASON = "the source's site reserves it from AI training"
_GATING = ("name", "allow", "deny", "allow_unknown")
_INPUT = ("dataset_terms", "declared_license", "opt_out_file")


def keep_takedown_rules(ledger: Ledger, rules: Iterable[str], reason: str, *,
                        kind: str = "takedown", code: str = "taken_down") -> None:
    """Add takedown rule texts to the ledger's, with ``reason`` kept for each new one (the
    first reason a rule was given stays), and the audit kind and the code of the command that
    gave it where they are not a takedown's (``revalidate``, ``source_gone``). The reasons go
    first: a takedown killed before its audit record is finished by the next run, which
    records it as that command would have."""
    rules = list(rules)
    reasons: dict[str, str | dict] = ledger.get_meta(TAKEDOWN_REASONS, {})
    said: str | dict = reason if (kind, code) == ("takedown", "taken_down") else {
        "reason": reason, "kind": kind, "code": code}
    new = {r: said for r in rules if r not in reasons}
    if new:
        ledger.set_meta(TAKEDOWN_REASONS, {**reasons, **new})
    ledger.set_meta(TAKEDOWN_RULES, list(dict.fromkeys([*ledger.get_meta(TAKEDOWN_RULES, []),
                                                        *rules])))


def _takedown_said(said: str | dict | None) -> tuple[str, str, str]:
    """(reason, audit kind, code) of a rule's entry in ``TAKEDOWN_REASONS``."""
    if isinstance(said, dict):
        return (said.get("reason") or _UNRECORDED, said.get("kind") or "takedown",
                said.get("code") or "taken_down")
    return said or _UNRECORDED, "takedown", "taken_down"


def finish_consent_purges(ledger: Ledger, out: str | Path, by: str) -> int:
    """Finish what a killed ``revalidate --purge`` decided (the refusals it recorded against
    inputs still in the dataset) whatever the consent mode is now: a purge that began may have
    rewritten shards already, and only finishing it leaves them matching the ledger. The audit
    record says it was finished ``by`` a later command. Returns the inputs removed."""
    found = unfinished_purges(ledger)
    if not found:
        return 0
    rows = list(query_in(ledger.db, "SELECT * FROM videos WHERE item_key IN ({})"
                         " ORDER BY seq", found))
    text = f"{CONSENT_PURGE_REASON} (finished by a later {by})"
    removal = remove_inputs(out, ledger, rows, {k: d for k, (_, d) in found.items()},
                            kind="revalidate", reason=text, state="removed", stage="consent",
                            codes={k: code for k, (code, _) in found.items()})
    log.warning("%s: removed %d inputs (%d clips)", text, len(rows), len(removal.clips))
    return len(rows)


def inherit_policy(cfg: Config, previous: dict | None) -> Config:
    """``cfg`` with the policy fields it leaves unset taken from the previous run's config."""
    given = cfg.policy.model_fields_set
    data = cfg.policy.model_dump()
    prev = (previous or {}).get("policy") or {}
    names = [*_INPUT] + ([] if "name" in given else [*_GATING])
    for k in names:
        if k not in given and k in prev:
            data[k] = prev[k]
    if data.get("opt_out_file"):
        data["opt_out_file"] = str(Path(data["opt_out_file"]).expanduser().resolve())
    return cfg.model_copy(update={"policy": PolicyConfig.model_validate(data)})


def build_gate(ledger: Ledger, cfg: PolicyConfig) -> Gate:
    """The gate of an output: the config's policy plus the takedowns recorded in its ledger."""
    rules = OptOutList.parse(ledger.get_meta(TAKEDOWN_RULES, []), "takedown rules")
    # a consent refusal is about the URL's site, not the bytes: the same video published
    # elsewhere under a licence is not refused with it
    removed = frozenset(r["source_sha256"] for r in ledger.videos("removed")
                        if r["source_sha256"] and r["stage"] != "consent")
    return Gate.build(cfg, rules, removed)


def _group(rows: Iterable[tuple[str, Decision]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for key, d in rows:
        out.setdefault((d.reason, d.detail), []).append(key)
    return out


def gate_inputs(ledger: Ledger, cfg: Config, out: str | Path) -> Gate:
    """Decide pending and quarantined inputs, and re-check the dataset (module docstring)."""
    gate = build_gate(ledger, cfg.policy)
    rows = ledger.videos("pending") + [r for r in ledger.videos("failed")
                                       if r["stage"] == "policy"]
    decided = [(r, gate.decide_row(r)) for r in rows]
    blocked = [(r["item_key"], d) for r, d in decided if not d.allowed
               and (r["state"] != "failed" or r["reason"] != d.reason)]
    for (reason, detail), keys in _group(blocked).items():
        ledger.set_video_state(keys, "failed", "policy", reason, detail)
    requeue = [r["item_key"] for r, d in decided if d.allowed and r["state"] == "failed"]
    if requeue:
        ledger.set_video_state(requeue, "pending")
        log.info("policy: %d quarantined inputs are allowed now and requeued", len(requeue))
    ledger.record_decisions(gate.decision_row(r["item_key"], d, r["license"])
                            for r, d in decided)
    finish_consent_purges(ledger, out, "run")
    if gate.gating and ledger.get_meta(_CHECKED) != (fp := _fingerprint(gate)):
        # inputs done since the last check were gated when they were recorded, so the whole
        # dataset is re-checked only when the policy, the opt-outs or the takedowns changed
        _recheck_done(ledger, gate, Path(out))
        ledger.set_meta(_CHECKED, fp)
    return gate


_CHECKED = "gate_checked"


def _fingerprint(gate: Gate) -> str:
    """What the dataset was last checked against: policy, opt-out and takedown rules, and
    the content hashes of removed sources."""
    facts = {"policy": gate.cfg.model_dump(mode="json"),
             "opt_out": [r.text for r in gate.optout.rules],
             "takedowns": [r.text for r in gate.takedowns.rules],
             "removed": sorted(gate.removed_hashes)}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _by_takedown_reason(gate: Gate, rows: list[sqlite3.Row], reasons: dict[str, str | dict],
                        by: str
                        ) -> dict[tuple[str, str, str], tuple[list[sqlite3.Row], list[str]]]:
    """Rows grouped by the (reason, audit kind, code) of the takedown whose rule they match:
    one audit record each, with the rules matched, said to be finished ``by`` this command."""
    out: dict[tuple[str, str, str], tuple[list[sqlite3.Row], list[str]]] = {}
    for r in rows:
        rule = gate.takedowns.match(facts_of_row(r))
        if rule is None:  # the bytes of a source taken down (Gate.decide)
            text, kind, code = "same content as a source that was taken down", "takedown", \
                "taken_down"
        else:
            text, kind, code = _takedown_said(reasons.get(rule.text))
        part, rules = out.setdefault((f"{text} (finished by a later {by})", kind, code),
                                     ([], []))
        part.append(r)
        if rule is not None and rule.text not in rules:
            rules.append(rule.text)
    return out


def _finish_takedowns(ledger: Ledger, gate: Gate, out: Path,
                      hits: list[tuple[sqlite3.Row, Decision]], by: str) -> None:
    """Remove inputs a kept takedown rule matches (``hits``, each with its decision), each
    group recorded as the command that kept the rule would have, finished ``by`` this one."""
    why = {r["item_key"]: f"{d.reason}: {d.detail}" for r, d in hits}
    reasons: dict[str, str | dict] = ledger.get_meta(TAKEDOWN_REASONS, {})
    for (text, kind, code), (part, rules) in _by_takedown_reason(
            gate, [r for r, _ in hits], reasons, by).items():
        removal = remove_inputs(out, ledger, part, why, kind=kind, reason=text,
                                state="removed", stage="takedown",
                                codes=dict.fromkeys((r["item_key"] for r in part), code),
                                rules=rules)
        log.warning("%s: removed %d inputs (%d clips)", text, len(part), len(removal.clips))


def finish_takedowns(ledger: Ledger, out: str | Path, by: str) -> int:
    """Finish the takedowns (and ``revalidate --purge`` removals of gone sources) whose rules
    were kept and that stopped before they removed everything they match: inputs still in the
    dataset that a kept rule matches go, as :func:`gate_inputs` does for a run. For commands
    other than a run, which re-check the dataset only when its rules or policy change.
    Returns the inputs removed."""
    cfg = stored_config(ledger.get_meta("config"))
    gate = build_gate(ledger, cfg.policy)
    if not gate.takedowns.rules and not gate.removed_hashes:
        return 0
    hits = _decide_done(ledger, gate, lambda d: d.reason == "taken_down")
    if hits:
        _finish_takedowns(ledger, gate, Path(out), hits, by)
    return len(hits)


def _decide_done(ledger: Ledger, gate: Gate, hit: Callable[[Decision], bool]
                 ) -> list[tuple[sqlite3.Row, Decision]]:
    """The inputs in the dataset whose decision now is a ``hit``, with it; their decisions
    are recorded."""
    hits = [(r, d) for r in ledger.iter_videos("done") if hit(d := gate.decide_row(r))]
    if hits:
        ledger.record_decisions(gate.decision_row(r["item_key"], d, r["license"])
                                for r, d in hits)
    return hits


def _recheck_done(ledger: Ledger, gate: Gate, out: Path) -> None:
    """Remove inputs already in the dataset that the current opt-outs or policy exclude.

    An input that matches a takedown rule here belongs to a takedown that stopped before it
    was finished (a takedown removes what it matches before it returns): it is removed and
    recorded as that takedown, with the reason given to it."""
    hits = _decide_done(ledger, gate, lambda d: not d.allowed)
    for kind in ("takedown", "opt_out", "policy"):
        group = [(r, d) for r, d in hits if _KIND_OF.get(d.reason, "policy") == kind]
        if not group:
            continue
        if kind == "takedown":
            _finish_takedowns(ledger, gate, out, group, "run")
            continue
        rows = [r for r, _ in group]
        why = {r["item_key"]: f"{d.reason}: {d.detail}" for r, d in group}
        codes = {r["item_key"]: d.reason for r, d in group}
        if kind == "opt_out":
            text = (f"opt-out list {gate.cfg.opt_out_file} applied to the dataset"
                    if gate.cfg.opt_out_file else "opt-out list applied to the dataset")
            removal = remove_inputs(out, ledger, rows, why, kind=kind, reason=text,
                                    state="removed", stage="takedown", codes=codes,
                                    rules=[r.text for r in gate.optout.rules])
        else:
            text = f"policy {gate.policy.name if gate.policy else 'none'} applied to the dataset"
            removal = remove_inputs(out, ledger, rows, why, kind=kind, reason=text,
                                    state="failed", stage="policy", codes=codes)
        log.warning("%s: removed %d inputs (%d clips) already in the dataset", text, len(rows),
                    len(removal.clips))
