"""License policies: presets plus custom allow and deny lists, and the per-item decision.

A policy is a set of allowed license patterns and a set of denied ones. A pattern is a license
id (``CC-BY-4.0``), any alias :func:`~clipfactory.policy.licenses.normalise` accepts
(``owned``, ``public domain``), a family without version (``CC-BY-SA`` matches every version
and port) or a glob (``CC-BY-NC-*``). Deny wins over allow.

Presets:

- ``commercial``: CC0, CC-PDDC, the Public Domain Mark, public domain, CC BY, CC BY-SA, and
  footage the user declares owned or licensed.
- ``research``: the above plus CC BY-NC and CC BY-NC-SA, and research-only dataset terms.
- ``custom``: exactly the ``allow`` list.

Under every preset ``unknown``, ``missing`` and all-rights-reserved are quarantined unless
allowed explicitly (``allow_unknown`` or naming them in ``allow``); ND licenses are excluded
by default because a clip is a derivative of its video.

Dataset terms (for example "research-only" for a manifest whose terms forbid commercial use)
apply on top of each item's own license: an item passes only if both are allowed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from clipfactory.policy.licenses import (
    ALL_RIGHTS_RESERVED,
    LICENSED,
    MISSING,
    OWNED,
    PUBLIC_DOMAIN,
    RESEARCH_ONLY,
    UNKNOWN,
    family,
    normalise,
)

__all__ = ["PRESETS", "Decision", "Policy", "build_policy", "ungated"]

_COMMERCIAL = ("CC0-1.0", "CC-PDDC", "CC-PDM-1.0", PUBLIC_DOMAIN, "CC-BY", "CC-BY-SA", OWNED,
               LICENSED)
_RESEARCH = (*_COMMERCIAL, "CC-BY-NC", "CC-BY-NC-SA", RESEARCH_ONLY)
PRESETS: dict[str, tuple[str, ...]] = {"commercial": _COMMERCIAL, "research": _RESEARCH,
                                       "custom": ()}


@dataclass(frozen=True)
class Decision:
    """The outcome for one item: ``allowed`` and a machine-readable ``reason``.

    ``reason`` is ``ungated`` (no policy), ``allowed:<id>``, ``license_unknown``,
    ``license_missing``, ``license_denied:<id>``, ``license_not_allowed:<id>``,
    ``terms_not_allowed:<id>``, ``opted_out`` or ``taken_down`` (the rule is in ``detail``);
    ``detail`` says it in words.
    """

    allowed: bool
    reason: str
    license: str
    detail: str = ""

    @property
    def status(self) -> str:
        """``allowed``, ``quarantined`` or ``ungated`` (no policy chosen)."""
        if self.reason == "ungated":
            return "ungated"
        return "allowed" if self.allowed else "quarantined"


def _pattern(text: str) -> str:
    """A pattern as written by the user, with aliases resolved to ids."""
    if any(ch in text for ch in "*?["):
        return text.strip()
    lid = normalise(text)
    # a family without a version, or an id normalise does not know, is kept as written
    return text.strip() if lid == UNKNOWN and text.strip().lower() != UNKNOWN else lid


def _matches(license_id: str, patterns: Iterable[str]) -> bool:
    fam = family(license_id)
    for p in patterns:
        if any(ch in p for ch in "*?["):
            if fnmatch.fnmatchcase(license_id.upper(), p.upper()):
                return True
        elif p.upper() in (license_id.upper(), fam.upper()):
            return True
    return False


@dataclass(frozen=True)
class Policy:
    """A named set of allowed and denied license patterns (see the module docstring)."""

    name: str
    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    allow_unknown: bool = False

    def decide_license(self, license_id: str) -> Decision:
        """The decision for one normalised license id."""
        if _matches(license_id, self.deny):
            return Decision(False, f"license_denied:{license_id}", license_id,
                            f"{license_id} is on the deny list of policy {self.name}")
        if _matches(license_id, self.allow):
            return Decision(True, f"allowed:{license_id}", license_id)
        if license_id in (UNKNOWN, MISSING):
            if self.allow_unknown:
                return Decision(True, f"allowed:{license_id}", license_id)
            what = "no license given" if license_id == MISSING else "license not recognised"
            return Decision(False, f"license_{license_id}", license_id,
                            f"{what}; quarantined under policy {self.name}")
        extra = ""
        if license_id == ALL_RIGHTS_RESERVED:
            extra = " (all rights reserved: allow it explicitly if you hold the rights)"
        elif "-ND" in license_id:
            extra = " (no derivatives: a clip is a derivative of its video)"
        return Decision(False, f"license_not_allowed:{license_id}", license_id,
                        f"{license_id} is not allowed under policy {self.name}{extra}")

    def decide(self, license_id: str, dataset_terms: str | None = None) -> Decision:
        """Decide an item: its own license first, then the dataset's terms on top."""
        own = self.decide_license(license_id)
        if not own.allowed or dataset_terms is None:
            return own
        terms = normalise(dataset_terms)
        if terms in (UNKNOWN, MISSING):
            return Decision(False, f"terms_not_allowed:{terms}", license_id,
                            f"dataset terms {dataset_terms!r} are not recognised")
        t = self.decide_license(terms)
        if not t.allowed:
            return Decision(False, f"terms_not_allowed:{terms}", license_id,
                            f"dataset terms {terms} are not allowed under policy {self.name}")
        return Decision(True, f"{own.reason};terms:{terms}", license_id)


def build_policy(name: str | None, allow: Iterable[str] = (), deny: Iterable[str] = (),
                 allow_unknown: bool = False) -> Policy | None:
    """The policy for a config section; ``None`` when nothing is gated."""
    if name is None or name == "none":
        return None
    if name not in PRESETS:
        raise ValueError(f"unknown policy {name!r}; expected one of {sorted(PRESETS)}")
    allowed = tuple(dict.fromkeys([*PRESETS[name], *(_pattern(a) for a in allow)]))
    if name == "custom" and not allowed and not allow_unknown:
        raise ValueError("a custom policy needs an allow list")
    return Policy(name, allowed, tuple(_pattern(d) for d in deny), allow_unknown)


def ungated(license_id: str) -> Decision:
    """The decision recorded when no policy is chosen: nothing is gated."""
    return Decision(True, "ungated", license_id)
