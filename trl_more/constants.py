"""Names shared across trl-more: dataset columns, metric prefixes and option values that several modules read.

Each concept has one name, defined here once:

- a pair's *source* is named by the string in the `source` column (`SOURCE_COLUMN`); trainers number the sources
  0 .. K-1 in the order they first appear in the training data (a dict of datasets: its key order) and carry that
  number in the `source_index` column (`SOURCE_INDEX_COLUMN`) and batch key;
- MORE's per-source loss weights are *lambda*, logged as `lambda/<source>` (`LAMBDA_METRIC_PREFIX`);
- a pair's *preference strength* mu is in the `strength_mean` column (`STRENGTH_COLUMN`);
- sequences longer than a limit are cut by one of `TRUNCATION_MODES`;
- a reward model's config records how it reads its input (the `TRAINING_*_ATTRIBUTE` names: token limit,
  truncation mode, rendering, EOS and pad tokens, padding side, pooling rule; read back by `trl_more.input_settings`);
- a trainer's pre-flight checks run in one of `PREFLIGHT_MODES` (`trl_more.preflight`).
"""

from __future__ import annotations


__all__ = [
    "CONTRASTIVE_REPRESENTATIONS",
    "LAMBDA_METRIC_PREFIX",
    "PAIR_ENCODINGS",
    "POOLING_RULES",
    "OPENRLHF_MEAN_ATTRIBUTE",
    "OPENRLHF_STD_ATTRIBUTE",
    "PREFLIGHT_MODES",
    "RENDERINGS",
    "REWARD_MEAN_ATTRIBUTE",
    "REWARD_STATISTICS_ATTRIBUTES",
    "REWARD_STD_ATTRIBUTE",
    "SOURCE_COLUMN",
    "SOURCE_INDEX_COLUMN",
    "STRENGTH_COLUMN",
    "STRENGTH_DIFFERENCES_COLUMN",
    "STRENGTH_STD_COLUMN",
    "TEMPERATURE_ATTRIBUTE",
    "TEXT_REGULARIZATIONS",
    "TRAINING_EOS_TOKEN_ATTRIBUTE",
    "TRAINING_INITIALISATION_ATTRIBUTE",
    "TRAINING_MAX_LENGTH_ATTRIBUTE",
    "TRAINING_PADDING_SIDE_ATTRIBUTE",
    "TRAINING_PAD_TOKEN_ATTRIBUTE",
    "TRAINING_POOLING_ATTRIBUTE",
    "TRAINING_RENDERING_ATTRIBUTE",
    "TRAINING_TRUNCATION_MODE_ATTRIBUTE",
    "TRUNCATION_MODES",
    "check_choice",
]

# Column naming the source of every example (the default `source_column` of `MORERewardConfig`).
SOURCE_COLUMN = "source"
# Column (and batch key) holding the number 0 .. K-1 a trainer gives each example's source.
SOURCE_INDEX_COLUMN = "source_index"
# A pair's preference strength: the mean (mu) and population std (sigma) of the reward differences of an ensemble of
# reward models, and those differences themselves (docs/noisy_preferences.md).
STRENGTH_COLUMN = "strength_mean"
STRENGTH_STD_COLUMN = "strength_std"
STRENGTH_DIFFERENCES_COLUMN = "strength_differences"
# Prefix of MORE's logged per-source weights: `lambda/<source>`.
LAMBDA_METRIC_PREFIX = "lambda/"
# `"keep_end"` keeps the last tokens (the end of the response, where a reward is read), `"keep_start"` the first ones.
TRUNCATION_MODES = ("keep_end", "keep_start")
# Attributes of a reward model's config in which trl-more's reward trainers record how it reads its input, saved with
# the model: the `max_length` and `truncation_mode` it was trained with (`None`: no limit, or longer pairs dropped),
# how its pairs were rendered (one of `RENDERINGS`), the EOS token appended to plain-text pairs, the pad token and the
# side its batches were padded with, and where it reads the reward (one of `POOLING_RULES`). `None`: not recorded.
TRAINING_MAX_LENGTH_ATTRIBUTE = "training_max_length"
TRAINING_TRUNCATION_MODE_ATTRIBUTE = "training_truncation_mode"
TRAINING_RENDERING_ATTRIBUTE = "training_rendering"
TRAINING_EOS_TOKEN_ATTRIBUTE = "training_eos_token"
TRAINING_PAD_TOKEN_ATTRIBUTE = "training_pad_token"
TRAINING_PADDING_SIDE_ATTRIBUTE = "training_padding_side"
TRAINING_POOLING_ATTRIBUTE = "training_pooling"
# Attribute of a reward model's config holding its fitted temperature T (rewards are read as r / T), written by
# `trl_more.metrics.set_reward_temperature` and read by the ensemble calibration and `trl-more serve`.
TEMPERATURE_ATTRIBUTE = "reward_temperature"
# Attributes of a reward model's config holding the mean and standard deviation of its rewards on held-out responses
# (`trl_more.rewards.set_reward_statistics`; trl-more's reward trainers store them after every evaluation), under two
# names each: trl-more's, read by the ensemble calibration and `trl-more serve`, and OpenRLHF's `mean` / `std`, which
# its reward model reads from config.json and, with `--normalize_reward`, uses to standardise every reward,
# (r - mean) / std (`openrlhf/models/model.py`, `_get_reward_model`: `if hasattr(config, "mean"): self.mean[0] =
# config.mean; self.std[0] = config.std`; its own reward trainer writes them, `openrlhf/trainer/rm_trainer.py`).
REWARD_MEAN_ATTRIBUTE = "reward_mean"
REWARD_STD_ATTRIBUTE = "reward_std"
OPENRLHF_MEAN_ATTRIBUTE = "mean"
OPENRLHF_STD_ATTRIBUTE = "std"
REWARD_STATISTICS_ATTRIBUTES = (
    REWARD_MEAN_ATTRIBUTE,
    REWARD_STD_ATTRIBUTE,
    OPENRLHF_MEAN_ATTRIBUTE,
    OPENRLHF_STD_ATTRIBUTE,
)
# Attribute of a reward model's config naming the weights its fine-tuning started from (a fingerprint of the initial
# parameters, reward head included), recorded by `trl-more strength --save_models`: weight averaging (WARM) refuses
# members that record different ones.
TRAINING_INITIALISATION_ATTRIBUTE = "training_initialisation"
# How a (prompt, response) reaches a reward model: its chat template, the Anthropic-HH transcript
# ("\n\nHuman: ...\n\nAssistant: ..."), or other plain text; TRL appends the EOS token to plain text.
RENDERINGS = ("chat", "hh", "plain")
# Where a reward is read: the last token that is not padding (decoders), or the first token, which a bidirectional
# encoder's pooler reads after every token has seen the whole sequence ([CLS]).
POOLING_RULES = ("last_token", "first_token")
# What a trainer does with the findings of its pre-flight checks: raise on errors (warnings logged), log everything
# as warnings, or skip the checks.
PREFLIGHT_MODES = ("error", "warn", "off")
# How the responses to one prompt are encoded (trl_more.pair_encoding): TRL's separate sequences, one row, or one
# row packed with other groups' rows into one sequence.
PAIR_ENCODINGS = ("separate", "shared_prompt", "packed")
# The vectors the contrastive loss compares (trl_more.losses.contrastive): the chosen and rejected representations, or
# their differences.
CONTRASTIVE_REPRESENTATIONS = ("pair", "difference")
# GRM's text regularisation of a decoder reward model's hidden states (trl_more.losses.text_regularization): an SFT
# loss on the chosen responses through the base model's language-model head.
TEXT_REGULARIZATIONS = ("sft",)


def check_choice(name: str, value: object, choices: tuple[str, ...], option: bool = True) -> None:
    """Raise a `ValueError` naming the option and its valid values when `value` is not one of `choices`.

    The message reads "Unknown `name` 'value'; choose one of 'a', 'b'."; with `option=False`, `name` is a description
    written as given ("Unknown ensemble mode 'max'; ...") instead of an option name in backticks.
    """
    if value not in choices:
        what = f"`{name}`" if option else name
        raise ValueError(f"Unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}.")
