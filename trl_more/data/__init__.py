"""Preference and rating data sources, converted to TRL's formats, and their mixtures.

- `load_preference_source(name, path=None, split="train", ...)`: one known source (HH-RLHF, OASST1, WebGPT,
  Summarize, UltraFeedback, HelpSteer, Topical-Chat), from the Hub or local files, as explicit-prompt preference pairs
  (`prompt`, `chosen`, `rejected`, `source`) or rated responses, with a `ConversionReport` of every row not converted.
- `mix_sources([...])` / `load_mixture("recipes/mixtures/....yaml")`: K sources as one train and one test `Dataset`
  with a `source` column (ready for `MORERewardTrainer`) and a summary.
"""

from ..constants import SOURCE_COLUMN, SOURCE_INDEX_COLUMN
from .conversion import ConversionReport, ConvertedSource, InvalidRowsError
from .formats import ASSISTANT_TAG, HUMAN_TAG
from .hh_rlhf import convert_hh_rlhf
from .hh_rlhf_strength import convert_hh_rlhf_strength
from .loading import KNOWN_SOURCES, known_source_names, load_preference_source, read_records
from .mixture import (
    MixtureConfig,
    MixtureSummary,
    SourceConfig,
    SourceMixture,
    SourceSummary,
    load_mixture,
    mix_sources,
)
from .oasst import convert_oasst
from .ratings import RATING_SCALES, convert_helpsteer, convert_topical_chat
from .resampling import resample_indices, resample_sources
from .sources import attach_source_indices
from .summarize import convert_summarize
from .ultrafeedback import convert_ultrafeedback
from .webgpt import convert_webgpt


__all__ = [
    "ASSISTANT_TAG",
    "HUMAN_TAG",
    "KNOWN_SOURCES",
    "RATING_SCALES",
    "SOURCE_COLUMN",
    "SOURCE_INDEX_COLUMN",
    "ConversionReport",
    "ConvertedSource",
    "InvalidRowsError",
    "MixtureConfig",
    "MixtureSummary",
    "SourceConfig",
    "SourceMixture",
    "SourceSummary",
    "attach_source_indices",
    "convert_hh_rlhf",
    "convert_hh_rlhf_strength",
    "convert_helpsteer",
    "convert_oasst",
    "convert_summarize",
    "convert_topical_chat",
    "convert_ultrafeedback",
    "convert_webgpt",
    "known_source_names",
    "load_mixture",
    "load_preference_source",
    "mix_sources",
    "read_records",
    "resample_indices",
    "resample_sources",
]
