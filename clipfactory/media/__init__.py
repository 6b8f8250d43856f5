"""clipfactory.media."""
