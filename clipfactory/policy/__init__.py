"""License normalisation (SPDX ids), policy presets and decisions, opt-out lists, the gate."""

from clipfactory.policy.gate import Gate
from clipfactory.policy.licenses import license_url, normalise, requires_attribution
from clipfactory.policy.optout import OptOutList, Rule, SourceFacts, parse_rule
from clipfactory.policy.policy import PRESETS, Decision, Policy, build_policy

__all__ = [
    "PRESETS",
    "Decision",
    "Gate",
    "OptOutList",
    "Policy",
    "Rule",
    "SourceFacts",
    "build_policy",
    "license_url",
    "normalise",
    "parse_rule",
    "requires_attribution",
]
