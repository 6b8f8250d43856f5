"""clipfactory.sinks."""
