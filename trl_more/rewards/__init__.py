"""Rewards for sampled responses: scoring with reward models, ensembles, and the selection rejection sampling uses."""

from .ensemble import ENSEMBLE_MODES, combine_rewards
from .scoring import (
    Prompt,
    RewardModelScorer,
    RewardScores,
    align_pad_token,
    load_reward_model,
    prepare_reward_model,
)
from .selection import SELECTION_STRATEGIES, max_selected, select_samples


__all__ = [
    "ENSEMBLE_MODES",
    "SELECTION_STRATEGIES",
    "Prompt",
    "RewardModelScorer",
    "RewardScores",
    "align_pad_token",
    "combine_rewards",
    "load_reward_model",
    "max_selected",
    "prepare_reward_model",
    "select_samples",
]
