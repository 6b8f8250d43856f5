"""License normalisation: free text, URLs and yt-dlp strings to SPDX ids, never a guess."""

from __future__ import annotations

import pytest

from clipfactory.policy.licenses import family, license_url, normalise, requires_attribution

CASES = [
    # YouTube's two strings (yt-dlp's `license` field and the page text)
    ("Creative Commons Attribution license (reuse allowed)", "CC-BY-3.0"),
    ("Standard YouTube License", "LicenseRef-all-rights-reserved"),
    # short forms, any case and separator
    ("CC BY-NC-SA 4.0", "CC-BY-NC-SA-4.0"),
    ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0"),
    ("CC-BY 4.0", "CC-BY-4.0"),
    ("CC BY-SA 2.5", "CC-BY-SA-2.5"),
    ("CC BY-ND 4.0", "CC-BY-ND-4.0"),
    ("CC_BY_NC_ND_3.0", "CC-BY-NC-ND-3.0"),
    ("CC BY 1.0", "CC-BY-1.0"),
    ("CC BY-SA 3.0 IGO", "CC-BY-SA-3.0-IGO"),
    ("CC BY 3.0 US", "CC-BY-3.0-US"),
    ("CC BY-NC-SA", "CC-BY-NC-SA"),  # no version given: the family, no version invented
    # verbose names
    ("Attribution-NonCommercial-ShareAlike 4.0 International", "CC-BY-NC-SA-4.0"),
    ("Creative Commons Attribution-ShareAlike 4.0 International License", "CC-BY-SA-4.0"),
    ("Creative Commons Attribution 4.0 International (CC BY 4.0)", "CC-BY-4.0"),
    ("Creative Commons Attribution-NoDerivatives 4.0 International", "CC-BY-ND-4.0"),
    ("Creative Commons Attribution-Non Commercial 2.0 Generic", "CC-BY-NC-2.0"),
    # URLs, with or without deed / legalcode / jurisdiction
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by-nc/4.0", "CC-BY-NC-4.0"),
    ("https://creativecommons.org/licenses/by-nc-nd/4.0/deed.en", "CC-BY-NC-ND-4.0"),
    ("https://creativecommons.org/licenses/by-sa/4.0/legalcode", "CC-BY-SA-4.0"),
    ("creativecommons.org/licenses/by-sa/2.0/de/", "CC-BY-SA-2.0-DE"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("https://creativecommons.org/publicdomain/mark/1.0/", "CC-PDM-1.0"),
    # public domain family
    ("CC0", "CC0-1.0"),
    ("CC0 1.0 Universal Public Domain Dedication", "CC0-1.0"),
    ("Public Domain Mark", "CC-PDM-1.0"),
    ("PDM", "CC-PDM-1.0"),
    ("public domain", "LicenseRef-public-domain"),
    # the user's own declarations
    ("owned", "LicenseRef-owned"),
    ("licensed", "LicenseRef-licensed"),
    ("All rights reserved.", "LicenseRef-all-rights-reserved"),
    # never a guess
    ("MIT", "unknown"),
    ("free to use I think", "unknown"),
    ("CC BY 4.0 except the music", "unknown"),
    ("CC BY-NC 4.0 / CC BY-SA 4.0", "unknown"),  # two licenses are not merged
    ("CC-BY-4.0 OR CC-BY-SA-4.0", "unknown"),
    ("CC BY 5.0", "unknown"),
    ("CC BY 4.0 DE", "unknown"),  # 4.0 was never ported
    # an element after the version is not a jurisdiction (no port was named NC, ND, SA or
    # BY): read as a New Caledonian CC BY, a non-commercial clip passed `commercial`
    ("CC BY 3.0 NC", "unknown"),
    ("CC-BY-2.0-NC", "unknown"),
    ("CC BY 3.0 ND", "unknown"),
    ("CC BY-SA 2.5 NC", "unknown"),
    ("cc-by-3.0-by", "unknown"),
    ("CC BY 2.0 SA", "unknown"),
    ("CC BY-SA-ND 4.0", "unknown"),
    ("by 4.0", "unknown"),
    ("https://example.com/license", "unknown"),
    ("https://creativecommons.org/licenses/by/", "unknown"),
    ("© 2020 Someone", "unknown"),
    (None, "missing"),
    ("", "missing"),
    ("   ", "missing"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_family_and_helpers():
    assert family("CC-BY-NC-SA-4.0") == "CC-BY-NC-SA"
    assert family("CC-BY-SA-2.0-DE") == "CC-BY-SA"
    assert family("CC0-1.0") == "CC0-1.0"
    assert requires_attribution("CC-BY-SA-3.0") and not requires_attribution("CC0-1.0")
    assert license_url("CC-BY-SA-2.0-DE") == "https://creativecommons.org/licenses/by-sa/2.0/de/"
    assert license_url("CC0-1.0") == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert license_url("unknown") is None
    # every URL the card prints normalises back to the same id
    for lid in ("CC-BY-4.0", "CC-BY-NC-ND-3.0", "CC-BY-SA-2.0-DE", "CC0-1.0", "CC-PDM-1.0"):
        assert normalise(license_url(lid)) == lid
