"""clipfactory.testing."""
