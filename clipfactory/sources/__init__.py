"""clipfactory.sources."""
