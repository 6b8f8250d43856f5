"""Policy presets, custom lists and dataset terms: the decision for each license."""

from __future__ import annotations

import pytest

from clipfactory.config import PolicyConfig
from clipfactory.policy.licenses import normalise
from clipfactory.policy.policy import build_policy

IDS = {
    "cc0": "CC0-1.0", "by": "CC-BY-4.0", "by3": "CC-BY-3.0", "by_sa": "CC-BY-SA-4.0",
    "by_nc": "CC-BY-NC-4.0", "by_nc_sa": "CC-BY-NC-SA-4.0", "by_nd": "CC-BY-ND-4.0",
    "by_nc_nd": "CC-BY-NC-ND-4.0", "pdm": "CC-PDM-1.0", "pd": "LicenseRef-public-domain",
    "owned": "LicenseRef-owned", "licensed": "LicenseRef-licensed",
    "arr": "LicenseRef-all-rights-reserved", "unknown": "unknown", "missing": "missing",
    "family": "CC-BY-SA", "ported": "CC-BY-SA-2.0-DE",
}
COMMERCIAL = {"cc0", "by", "by3", "by_sa", "pdm", "pd", "owned", "licensed", "family", "ported"}
RESEARCH = COMMERCIAL | {"by_nc", "by_nc_sa"}


def allowed(policy, terms=None):
    return {k for k, lid in IDS.items() if policy.decide(lid, terms).allowed}


def test_presets():
    assert allowed(build_policy("commercial")) == COMMERCIAL
    assert allowed(build_policy("research")) == RESEARCH
    assert build_policy(None) is None and build_policy("none") is None


def test_reasons_are_specific():
    p = build_policy("commercial")
    assert p.decide("unknown").reason == "license_unknown"
    assert p.decide("missing").reason == "license_missing"
    assert p.decide("CC-BY-NC-4.0").reason == "license_not_allowed:CC-BY-NC-4.0"
    d = p.decide("CC-BY-ND-4.0")
    assert not d.allowed and "derivative" in d.detail
    assert p.decide("CC-BY-4.0").reason == "allowed:CC-BY-4.0"
    assert p.decide("CC-BY-4.0").status == "allowed"
    assert p.decide("unknown").status == "quarantined"


def test_custom_lists_globs_families_and_aliases():
    p = build_policy("custom", allow=["CC-BY-ND-*", "owned", "CC-BY"])
    assert allowed(p) == {"by_nd", "owned", "by", "by3"}
    p = build_policy("commercial", deny=["CC-BY-SA"], allow=["all rights reserved"])
    assert allowed(p) == (COMMERCIAL - {"by_sa", "family", "ported"}) | {"arr"}
    assert build_policy("commercial", deny=["CC-BY-SA"]).decide(
        "CC-BY-SA-4.0").reason == "license_denied:CC-BY-SA-4.0"


def test_unknown_needs_explicit_consent():
    assert allowed(build_policy("research", allow_unknown=True)) == RESEARCH | {"unknown",
                                                                                "missing"}
    # naming one lets exactly that one through
    assert allowed(build_policy("commercial", allow=["unknown"])) == COMMERCIAL | {"unknown"}


def test_dataset_terms_apply_on_top():
    research, commercial = build_policy("research"), build_policy("commercial")
    assert allowed(research, "research-only") == RESEARCH
    assert allowed(commercial, "research-only") == set()
    d = commercial.decide("CC-BY-4.0", "non-commercial")
    assert d.reason == "terms_not_allowed:LicenseRef-research-only"
    # terms that are themselves a license: both must pass
    assert allowed(commercial, "CC BY-NC 4.0") == set()
    assert allowed(research, "CC BY-NC 4.0") == RESEARCH
    assert allowed(commercial, "CC BY 4.0") == COMMERCIAL
    assert not commercial.decide("CC0-1.0", "whatever they said").allowed


def test_config_validation():
    with pytest.raises(ValueError, match="need a policy name"):
        PolicyConfig(allow=["CC-BY-ND"])
    with pytest.raises(ValueError, match="allow list"):
        PolicyConfig(name="custom")
    assert normalise(PolicyConfig(declared_license="owned").declared_license) == IDS["owned"]
