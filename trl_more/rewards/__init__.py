"""Scoring (prompt, response) pairs with one or several reward models, and combining their rewards."""

from .ensemble import ENSEMBLE_MODES, combine_rewards
from .scoring import (
    Prompt,
    RewardModelScorer,
    RewardScores,
    align_pad_token,
    load_reward_model,
    prepare_reward_model,
)


__all__ = [
    "ENSEMBLE_MODES",
    "Prompt",
    "RewardModelScorer",
    "RewardScores",
    "align_pad_token",
    "combine_rewards",
    "load_reward_model",
    "prepare_reward_model",
]
