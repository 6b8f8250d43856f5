"""Input readers: a folder of videos or a manifest (.jsonl, .csv, .parquet) -> source items."""

from clipfactory.sources.reader import InputRow, read_input

__all__ = ["InputRow", "read_input"]
