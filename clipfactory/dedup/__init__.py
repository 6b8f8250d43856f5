"""clipfactory.dedup."""
