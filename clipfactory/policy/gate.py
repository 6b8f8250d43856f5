"""The gate: a run's policy, dataset terms, opt-out list and takedowns, applied to one input.

An input is decided twice. At ingest, from what the manifest says (before anything is fetched
or decoded, so a quarantined or opted-out input costs nothing). After processing, once more
with what only the file could tell (its content hash and derived video id), so content that
was taken down under another name does not come back, and every clip is stamped with the
normalised license, the raw text and the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clipfactory.config import PolicyConfig
from clipfactory.policy.licenses import normalise
from clipfactory.policy.optout import OptOutList, SourceFacts, facts_of_item, facts_of_row
from clipfactory.policy.policy import Decision, Policy, build_policy, ungated
from clipfactory.records import Rejection, SourceItem, VideoResult

__all__ = ["Gate"]


@dataclass
class Gate:
    """Everything that decides whether an input may enter the dataset.

    ``takedowns`` are the rules of earlier takedowns (kept in the ledger); ``removed_hashes``
    the content hashes of removed sources.
    """

    cfg: PolicyConfig = field(default_factory=PolicyConfig)
    optout: OptOutList = field(default_factory=OptOutList)
    takedowns: OptOutList = field(default_factory=OptOutList)
    removed_hashes: frozenset[str] = frozenset()
    policy: Policy | None = None

    @classmethod
    def build(cls, cfg: PolicyConfig, takedowns: OptOutList | None = None,
              removed_hashes: frozenset[str] = frozenset()) -> Gate:
        """A gate for a config section; reads the opt-out file (``ValueError`` if invalid)."""
        optout = OptOutList.from_file(cfg.opt_out_file) if cfg.opt_out_file else OptOutList()
        policy = build_policy(cfg.name, cfg.allow, cfg.deny, cfg.allow_unknown)
        return cls(cfg, optout, takedowns or OptOutList(), removed_hashes, policy)

    @property
    def gating(self) -> bool:
        """True when anything at all can keep an input out."""
        return bool(self.policy or self.optout or self.takedowns or self.removed_hashes)

    def raw_license(self, license_text: str | None) -> str | None:
        """The item's own license text, or the declared one when it carries none."""
        if license_text is not None and license_text.strip():
            return license_text
        return self.cfg.declared_license

    def decide(self, facts: SourceFacts, license_text: str | None) -> Decision:
        """Opt-outs and takedowns first, then the license under the policy and terms."""
        lid = normalise(self.raw_license(license_text))
        rule = self.optout.match(facts)
        if rule is not None:
            return Decision(False, "opted_out", lid,
                            f"matches opt-out rule {rule.text!r}")
        rule = self.takedowns.match(facts)
        if rule is not None:
            return Decision(False, "taken_down", lid,
                            f"matches the takedown rule {rule.text!r}")
        if facts.sha256 and facts.sha256 in self.removed_hashes:
            return Decision(False, "taken_down", lid,
                            "same content as a source that was taken down")
        if self.policy is None:
            return ungated(lid)
        return self.policy.decide(lid, self.cfg.dataset_terms)

    def decide_item(self, item: SourceItem) -> Decision:
        """Decide an input at ingest, from what its manifest row says."""
        return self.decide(facts_of_item(item), item.license)

    def decide_row(self, row: Mapping[str, Any]) -> Decision:
        """Decide an input from its ledger ``videos`` row."""
        return self.decide(facts_of_row(row), row["license"])

    def check(self, result: VideoResult) -> Rejection | None:
        """After processing: decide again with the content hash, then stamp every clip."""
        item = result.item
        facts = facts_of_item(item, result.source_sha256, result.video_id)
        d = self.decide(facts, item.license)
        if not d.allowed:
            return Rejection(item.item_key, item.source, "policy", d.reason, d.detail,
                             video_id=result.video_id)
        raw = self.raw_license(item.license)
        for clip in result.clips:
            clip.license, clip.license_raw = d.license, raw
            clip.policy_decision, clip.policy_reason = d.status, d.reason
        return None

    def decision_row(self, item_key: str, d: Decision, license_text: str | None
                     ) -> tuple[str, str, str | None, str | None, str, str, str]:
        """The ledger ``decisions`` row of one decision."""
        name = self.policy.name if self.policy else None
        return (item_key, d.license, self.raw_license(license_text), name, d.status, d.reason,
                d.detail)
