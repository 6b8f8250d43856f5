"""clipfactory.exec."""
