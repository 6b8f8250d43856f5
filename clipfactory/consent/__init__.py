"""Consent signals: what sites say, in machine-readable form, about AI training on their media.

robots.txt (RFC 9309), ``X-Robots-Tag: noai``/``noimageai`` and the W3C TDM Reservation
Protocol are read before any media byte is kept (:mod:`clipfactory.fetch.gate` applies them);
the evidence goes to the ledger (:mod:`clipfactory.consent.store`). See docs/consent.md.
"""

from clipfactory.consent.checker import REFUSALS, TOKEN, ConsentChecker, Evidence, Response
from clipfactory.consent.robots import Robots, RobotsRule, parse_robots

__all__ = ["REFUSALS", "TOKEN", "ConsentChecker", "Evidence", "Response", "Robots",
           "RobotsRule", "parse_robots"]
