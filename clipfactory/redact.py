"""URLs as a dataset may publish them: without the credentials a manifest's URLs can carry.

A manifest often lists signed URLs: S3/GCS presigned links (``X-Amz-Signature``,
``X-Amz-Credential``, ``X-Goog-Signature``), CloudFront (``Signature``, ``Policy``,
``Key-Pair-Id``), Azure SAS (``sig``), CDN tokens (``token``, ``hdnts``), API keys, or
``user:password@host``. The fetch needs them; the dataset must not carry them: anyone holding
a signed URL can read the object until it expires, and ``X-Amz-Credential`` names the access
key. So what leaves the run for others to read (clip records and so the index, the shards'
``KEY.json``, the dataset card and the report; ``rejected.parquet``; ``run.log``; the
takedown audit trail) holds
:func:`public_url`, where each such query value reads ``REDACTED`` and the user-info is gone.
The ledger keeps the URLs as given (``retry`` and ``revalidate`` fetch them again): it is the
run's state, not a file to publish.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["REDACTED", "public_url", "redact_text"]

REDACTED = "REDACTED"
# query parameter names that carry a secret (whole names, case-insensitive)
_SECRET_NAMES = {"sig", "policy", "key-pair-id", "auth", "pwd", "hdnts", "hdnea", "hmac", "jwt",
                 "googleaccessid", "awsaccesskeyid", "sessionid", "session_id", "phpsessid",
                 "jsessionid"}
# ...and words that make any name one (X-Amz-Signature, access_token, client_secret, ...)
_SECRET_WORDS = re.compile(r"signature|credential|token|secret|passw|api[-_]?key|authoriz",
                           re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def _secret(name: str) -> bool:
    name = unquote_plus(name).strip().lower()
    return name in _SECRET_NAMES or bool(_SECRET_WORDS.search(name))


def public_url(url: str | None) -> str | None:
    """``url`` without its credentials: user-info dropped, secret query values ``REDACTED``
    (the rest of the URL byte for byte as given). Anything that is not a URL comes back as
    it is."""
    if not url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable (a bad IPv6 host): its whole query may be a secret
        head, mark, _ = url.partition("?")
        return head + (f"?{REDACTED}" if mark else "")
    netloc = parts.netloc.rpartition("@")[2]
    fields = parts.query.split("&") if parts.query else []
    query = "&".join(f"{name}={REDACTED}" if eq and value and _secret(name) else field
                     for field in fields
                     for name, eq, value in [field.partition("=")])
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str | None) -> str | None:
    """``text`` with every URL in it made :func:`public_url` (an error's detail, a log line)."""
    if not text or "://" not in text:
        return text
    return _URL.sub(lambda m: public_url(m.group(0)) or "", text)
