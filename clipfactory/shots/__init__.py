"""clipfactory.shots."""
