"""Preference and rating data sources, converted to TRL's formats, and their mixtures."""

from .resampling import resample_indices, resample_sources
from .source_ids import SOURCE_ID_COLUMN, attach_source_ids


__all__ = ["SOURCE_ID_COLUMN", "attach_source_ids", "resample_indices", "resample_sources"]
