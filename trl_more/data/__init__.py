"""Preference and rating data sources, converted to TRL's formats, and their mixtures.

- `load_preference_source(name, path=None, split="train", ...)`: one known source (HH-RLHF, OASST1, WebGPT,
  Summarize, UltraFeedback, HelpSteer, Topical-Chat, and the rating sets and gate sources of the ArmoRM paper), from
  the Hub or local files, as explicit-prompt preference pairs (`prompt`, `chosen`, `rejected`, `source`) or rated
  responses, with a `ConversionReport` of every row not converted; with `ratings=DeclaredRatingSet(...)`, any rating
  set described by its columns.
- `load_trl_preferences(name, path=None, ...)`: data of your own already in one of TRL's preference formats (a local
  file, a Hub dataset or a saved folder), kept as it is, as one source or one per value of its `source` column.
- `mix_sources([...])` / `load_mixture("recipes/mixtures/....yaml")`: K sources as one train and one test `Dataset`
  with a `source` column (ready for `MORERewardTrainer`) and a summary; known sources and your own data mix
  (`{name: my-data, path: my_pairs.jsonl}`).
"""

from ..constants import SOURCE_COLUMN, SOURCE_INDEX_COLUMN
from .armorm_preferences import (
    convert_capybara,
    convert_codeultrafeedback,
    convert_helpsteer_pairs,
    convert_math_preference,
    convert_pku_saferlhf_better,
    convert_pku_saferlhf_safer,
    convert_prm800k,
    convert_prometheus_preference,
    convert_shp,
)
from .armorm_ratings import (
    convert_beavertails,
    convert_capybara_ratings,
    convert_codeultrafeedback_ratings,
    convert_math_preference_ratings,
    convert_openorca_ratings,
    convert_prometheus_feedback,
    convert_ultrafeedback_ratings,
)
from .conversion import ConversionReport, ConvertedSource, InvalidRowsError
from .declared import DeclaredRatingSet, RatingObjective, convert_declared_ratings
from .formats import ASSISTANT_TAG, HUMAN_TAG
from .hh_rlhf import convert_hh_rlhf
from .hh_rlhf_strength import convert_hh_rlhf_strength
from .loading import (
    KNOWN_SOURCES,
    canonical_source_name,
    known_source_names,
    load_preference_source,
    load_trl_preferences,
    read_records,
    reads_trl_preferences,
)
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
from .ratings import ARMORM_OBJECTIVES, RATING_SCALES, convert_helpsteer, convert_topical_chat
from .resampling import resample_indices, resample_sources
from .sources import attach_source_indices
from .summarize import convert_summarize
from .trl_preferences import convert_trl_preferences
from .ultrafeedback import convert_ultrafeedback
from .webgpt import convert_webgpt


__all__ = [
    "ARMORM_OBJECTIVES",
    "ASSISTANT_TAG",
    "HUMAN_TAG",
    "KNOWN_SOURCES",
    "RATING_SCALES",
    "SOURCE_COLUMN",
    "SOURCE_INDEX_COLUMN",
    "ConversionReport",
    "ConvertedSource",
    "DeclaredRatingSet",
    "InvalidRowsError",
    "MixtureConfig",
    "MixtureSummary",
    "RatingObjective",
    "SourceConfig",
    "SourceMixture",
    "SourceSummary",
    "attach_source_indices",
    "canonical_source_name",
    "convert_beavertails",
    "convert_capybara",
    "convert_capybara_ratings",
    "convert_codeultrafeedback",
    "convert_codeultrafeedback_ratings",
    "convert_declared_ratings",
    "convert_helpsteer",
    "convert_helpsteer_pairs",
    "convert_hh_rlhf",
    "convert_hh_rlhf_strength",
    "convert_math_preference",
    "convert_math_preference_ratings",
    "convert_oasst",
    "convert_openorca_ratings",
    "convert_pku_saferlhf_better",
    "convert_pku_saferlhf_safer",
    "convert_prm800k",
    "convert_prometheus_feedback",
    "convert_prometheus_preference",
    "convert_shp",
    "convert_summarize",
    "convert_topical_chat",
    "convert_trl_preferences",
    "convert_ultrafeedback",
    "convert_ultrafeedback_ratings",
    "convert_webgpt",
    "known_source_names",
    "load_mixture",
    "load_preference_source",
    "load_trl_preferences",
    "mix_sources",
    "read_records",
    "reads_trl_preferences",
    "resample_indices",
    "resample_sources",
]
