"""Provenance after the fact: takedowns, audits and upstream revalidation of a dataset.

- :mod:`clipfactory.provenance.ingest`: the policy gate of a run (inherit, gate, re-check).
- :mod:`clipfactory.provenance.removal`: the one removal path (shards, ledger, audit record).
- :mod:`clipfactory.provenance.takedown`: ``takedown(out, rules, reason)``.
- :mod:`clipfactory.provenance.audit`: ``audit(out, shards=..., sample=..., full=...)``, with
  ``audit_index`` (the index one shard at a time), ``audit_shards``, ``audit_sources`` and
  ``audit_embeddings``.
- :mod:`clipfactory.provenance.revalidate`: ``revalidate(out, purge=...)``.

Submodules are imported where used, so the command line stays light.
"""

__all__: list[str] = []
