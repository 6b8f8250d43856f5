"""clipfactory.bench."""
