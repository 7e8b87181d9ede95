"""Scoring (prompt, response) pairs with one or several reward models, and combining their rewards."""

from ..tokenization import align_pad_token
from .averaging import average_reward_models, averaging_weights, write_averaged_model_card
from .calibration import (
    ENSEMBLE_CALIBRATIONS,
    RewardScale,
    fit_reward_statistics,
    reward_scale,
    reward_statistics,
    set_reward_statistics,
)
from .ensemble import ENSEMBLE_MODES, combine_rewards, ensemble_spread
from .function_reward import FunctionRewardModel
from .scoring import (
    Prompt,
    RewardModelScorer,
    RewardScores,
    ensemble_scales,
    load_reward_model,
    load_reward_models,
    prepare_reward_model,
)


__all__ = [
    "ENSEMBLE_CALIBRATIONS",
    "ENSEMBLE_MODES",
    "FunctionRewardModel",
    "Prompt",
    "RewardModelScorer",
    "RewardScale",
    "RewardScores",
    "align_pad_token",
    "average_reward_models",
    "averaging_weights",
    "combine_rewards",
    "ensemble_scales",
    "ensemble_spread",
    "fit_reward_statistics",
    "load_reward_model",
    "load_reward_models",
    "prepare_reward_model",
    "reward_scale",
    "reward_statistics",
    "set_reward_statistics",
    "write_averaged_model_card",
]
