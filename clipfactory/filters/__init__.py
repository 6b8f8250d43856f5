"""clipfactory.filters."""
