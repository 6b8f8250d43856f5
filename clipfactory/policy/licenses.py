"""License normalisation: free text and URLs to SPDX ids, never a guess.

``normalise`` maps what manifests and yt-dlp say about a video's license to one id:

- SPDX ids for the Creative Commons family: ``CC0-1.0``, ``CC-PDDC``, ``CC-PDM-1.0`` and
  ``CC-BY[-NC][-SA|-ND]-<version>[-<jurisdiction>]`` (versions 1.0, 2.0, 2.5, 3.0, 4.0; a
  ported licence keeps its jurisdiction, ``CC-BY-SA-2.0-DE``). Text that names the family but
  no version ("CC BY-NC-SA") gives the family without a version (``CC-BY-NC-SA``): enough for a
  policy decision, and no version is invented.
- ``LicenseRef-public-domain`` for "public domain" without a mark or dedication.
- ``LicenseRef-all-rights-reserved`` for "All rights reserved" and YouTube's "Standard YouTube
  License".
- ``LicenseRef-owned`` / ``LicenseRef-licensed``: footage the user owns, or has licensed by
  contract; only ever declared by the user (``--license owned``).
- ``unknown``: text that is present but not recognised, word for word. Any word outside the
  license vocabulary ("CC BY 4.0 except the music") makes the whole text unknown.
- ``missing``: no text at all.
"""

from __future__ import annotations

import re

__all__ = [
    "ALL_RIGHTS_RESERVED",
    "LICENSED",
    "MISSING",
    "OWNED",
    "PUBLIC_DOMAIN",
    "RESEARCH_ONLY",
    "UNKNOWN",
    "family",
    "license_url",
    "normalise",
    "requires_attribution",
]

UNKNOWN = "unknown"
MISSING = "missing"
ALL_RIGHTS_RESERVED = "LicenseRef-all-rights-reserved"
OWNED = "LicenseRef-owned"
LICENSED = "LicenseRef-licensed"
PUBLIC_DOMAIN = "LicenseRef-public-domain"
RESEARCH_ONLY = "LicenseRef-research-only"  # dataset terms: non-commercial research use only

_VERSIONS = ("1.0", "2.0", "2.5", "3.0", "4.0")
_CC_URL = re.compile(
    r"^(?:https?://)?(?:www\.)?creativecommons\.org/(licenses|publicdomain)/"
    r"([a-z-]+)(?:/(\d\.\d))?(?:/([a-z]{2,3}))?(?:/(?:deed(?:\.[a-z_-]+)?|legalcode(?:\.[a-z_-]+)?"
    r"|rdf)?)?/?(?:[?#].*)?$")
_SPDX_CC = re.compile(r"^cc-(by(?:-nc)?(?:-sa|-nd)?)(?:-(\d\.\d))?(?:-([a-z]{2,3}))?$")
_ALIASES = {
    "cc0": "CC0-1.0", "cc0-1.0": "CC0-1.0", "cc-zero": "CC0-1.0", "cc-0": "CC0-1.0",
    "cc-pddc": "CC-PDDC", "cc-pdm": "CC-PDM-1.0", "cc-pdm-1.0": "CC-PDM-1.0", "pdm": "CC-PDM-1.0",
    "public domain mark": "CC-PDM-1.0", "public domain mark 1.0": "CC-PDM-1.0",
    "creative commons public domain mark": "CC-PDM-1.0",
    "public domain": PUBLIC_DOMAIN, "public-domain": PUBLIC_DOMAIN, "publicdomain": PUBLIC_DOMAIN,
    "pd": PUBLIC_DOMAIN, "licenseref-public-domain": PUBLIC_DOMAIN,
    "all rights reserved": ALL_RIGHTS_RESERVED, "all-rights-reserved": ALL_RIGHTS_RESERVED,
    "arr": ALL_RIGHTS_RESERVED, "standard youtube license": ALL_RIGHTS_RESERVED,
    "licenseref-all-rights-reserved": ALL_RIGHTS_RESERVED,
    "owned": OWNED, "licenseref-owned": OWNED, "licensed": LICENSED, "licenseref-licensed": LICENSED,
    "research-only": RESEARCH_ONLY, "research only": RESEARCH_ONLY, "non-commercial": RESEARCH_ONLY,
    "noncommercial": RESEARCH_ONLY, "nc": RESEARCH_ONLY, "licenseref-research-only": RESEARCH_ONLY,
    # YouTube's only Creative Commons option is CC BY 3.0 (its help page says so)
    "creative commons attribution license (reuse allowed)": "CC-BY-3.0",
    "unknown": UNKNOWN, "missing": MISSING,
}
# words allowed in a verbose Creative Commons name; anything else makes the text unknown
_PHRASES = (
    ("non-commercial", "noncommercial"), ("non commercial", "noncommercial"),
    ("share-alike", "sharealike"), ("share alike", "sharealike"),
    ("no derivatives", "noderivs"), ("no-derivatives", "noderivs"),
    ("noderivatives", "noderivs"), ("no derivs", "noderivs"), ("no-derivs", "noderivs"),
    ("creative commons", "cc"), ("creative-commons", "cc"),
)
_FILLER = {"cc", "license", "licence", "licensed", "under", "the", "a", "international",
           "unported", "generic", "universal", "version", "v", "public", "deed", "legal", "code"}
_ELEMENTS = {"by": "BY", "attribution": "BY", "nc": "NC", "noncommercial": "NC", "nd": "ND",
             "noderivs": "ND", "sa": "SA", "sharealike": "SA"}
_TOKEN = re.compile(r"\d\.\d|[a-z0-9]+")


def _cc_id(elements: set[str], version: str | None, jurisdiction: str | None = None) -> str:
    """Build ``CC-BY[-NC][-SA|-ND][-ver][-JUR]`` or ``unknown`` for impossible combinations."""
    if "BY" not in elements or {"SA", "ND"} <= elements:
        return UNKNOWN
    if version is not None and version not in _VERSIONS:
        return UNKNOWN
    if jurisdiction and (version in (None, "4.0") or not re.fullmatch(r"[a-z]{2}|igo",
                                                                      jurisdiction.lower())
                         or jurisdiction.lower() in _ELEMENTS):
        # 4.0 was never ported; a jurisdiction is two letters (or IGO), and never an element
        # written after the version (`CC BY 3.0 NC` is not a New Caledonian CC BY: no port
        # was ever named BY, NC, ND or SA; which licence it means is not guessed)
        return UNKNOWN
    parts = ["CC", "BY"] + [e for e in ("NC", "SA", "ND") if e in elements]
    if version:
        parts.append(version)
        if jurisdiction:
            parts.append(jurisdiction.upper())
    return "-".join(parts)


def _from_url(text: str) -> str | None:
    m = _CC_URL.match(text.lower())
    if m is None:
        return None
    kind, code, version, jur = m.groups()
    if kind == "publicdomain":
        if code == "zero" and version in (None, "1.0"):
            return "CC0-1.0"
        if code == "mark" and version in (None, "1.0"):
            return "CC-PDM-1.0"
        return UNKNOWN
    if code == "publicdomain":
        return "CC-PDDC"
    if not re.fullmatch(r"by(-nc)?(-sa|-nd)?|by-nd-nc", code):
        return UNKNOWN
    elements = {_ELEMENTS[p] for p in code.split("-")}
    return _cc_id(elements, version or None, jur) if version else UNKNOWN


def _from_segments(low: str) -> str:
    """Verbose names, possibly repeated in brackets ("... 4.0 International (CC BY 4.0)").

    Every part must name the same license (a bare family agrees with a versioned one of the
    same family); two different licenses ("CC BY-NC / CC BY-SA") are unknown, not merged.
    """
    found = {_from_words(seg) for seg in re.split(r"[()/;,|]+", low) if seg.strip()}
    if not found or UNKNOWN in found:
        return UNKNOWN
    versioned = {f for f in found if f != family(f)}
    if len(versioned) > 1 or len({family(f) for f in found}) > 1:
        return UNKNOWN
    return versioned.pop() if versioned else found.pop()


def _from_words(low: str) -> str:
    for phrase, word in _PHRASES:
        low = low.replace(phrase, word)
    tokens = _TOKEN.findall(low)
    if not tokens:
        return UNKNOWN
    if tokens[0] in ("cc0", "zero") or (tokens[:2] == ["cc", "0"]) or "cc0" in tokens:
        rest = [t for t in tokens if t not in ("cc0", "cc", "0", "zero", "1.0", "dedication",
                                                "domain") and t not in _FILLER]
        return "CC0-1.0" if not rest else UNKNOWN
    elements: set[str] = set()
    versions: list[str] = []
    for t in tokens:
        if t in _ELEMENTS:
            elements.add(_ELEMENTS[t])
        elif re.fullmatch(r"\d\.\d", t) or t in ("4", "3", "2"):
            versions.append(t if "." in t else f"{t}.0")
        elif t not in _FILLER:
            return UNKNOWN
    is_cc = "cc" in tokens or low.lstrip().startswith("attribution")
    if not is_cc or len(set(versions)) > 1:
        return UNKNOWN
    return _cc_id(elements, versions[0] if versions else None)


def normalise(text: str | None) -> str:
    """The license id of a manifest or yt-dlp license text (see the module docstring)."""
    if text is None or not str(text).strip():
        return MISSING
    raw = " ".join(str(text).split())
    low = raw.lower()
    alias = _ALIASES.get(low) or _ALIASES.get(low.rstrip("."))
    if alias:
        return alias
    if "creativecommons.org" in low:
        return _from_url(low) or UNKNOWN
    if low.startswith(("http://", "https://")):
        return UNKNOWN
    m = _SPDX_CC.match(low.replace("_", "-").replace(" ", "-"))
    if m:
        code, version, jur = m.groups()
        return _cc_id({_ELEMENTS[p] for p in code.split("-")}, version, jur)
    return _from_segments(low)


def family(license_id: str) -> str:
    """The id without version and jurisdiction: ``CC-BY-NC-SA-4.0-DE`` -> ``CC-BY-NC-SA``."""
    m = re.match(r"^(CC-BY(?:-NC)?(?:-SA|-ND)?)(?:-\d\.\d(?:-[A-Z]{2,3})?)?$", license_id)
    return m.group(1) if m else license_id


def requires_attribution(license_id: str) -> bool:
    """True for the licenses whose reuse must credit the author (every CC BY variant)."""
    return license_id.startswith("CC-BY")


def license_url(license_id: str) -> str | None:
    """The canonical deed URL of a Creative Commons id, or ``None``."""
    if license_id == "CC0-1.0":
        return "https://creativecommons.org/publicdomain/zero/1.0/"
    if license_id == "CC-PDM-1.0":
        return "https://creativecommons.org/publicdomain/mark/1.0/"
    m = re.match(r"^CC-(BY(?:-NC)?(?:-SA|-ND)?)-(\d\.\d)(?:-([A-Z]{2,3}))?$", license_id)
    if not m:
        return None
    code, version, jur = m.groups()
    tail = f"{jur.lower()}/" if jur else ""
    return f"https://creativecommons.org/licenses/{code.lower()}/{version}/{tail}"
