"""Putting several reward models on one scale before their rewards are combined.

Reward models trained separately have rewards on unrelated scales: a model whose rewards happen to spread 100 times
wider decides every mean, min or mean-minus-std of an ensemble alone. Each model's rewards are therefore mapped to a
common scale with what is stored in its config:

- reward statistics (`config.reward_mean`, `config.reward_std`: the mean and population standard deviation of its
  rewards on held-out responses, see `fit_reward_statistics`; also stored as `config.mean`, `config.std`, the keys
  OpenRLHF's reward model reads for `--normalize_reward`, and read from there for a model that has only those):
  standardised, (r - mean) / std;
- else a reward temperature (`config.reward_temperature`, from `trl_more.metrics.fit_temperature`): r / T, the
  scale on which reward differences are calibrated log-odds;
- else nothing: such a model cannot be combined with others unless the caller asks for raw rewards knowingly.

Both are saved with `save_pretrained` and read back; users can also set them by hand. docs/calibration.md has the
details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import (
    OPENRLHF_MEAN_ATTRIBUTE,
    OPENRLHF_STD_ATTRIBUTE,
    REWARD_MEAN_ATTRIBUTE,
    REWARD_STD_ATTRIBUTE,
    TEMPERATURE_ATTRIBUTE,
)


__all__ = [
    "ENSEMBLE_CALIBRATIONS",
    "RewardScale",
    "fit_reward_statistics",
    "reward_scale",
    "reward_statistics",
    "set_reward_statistics",
    "stored_temperature",
]

ENSEMBLE_CALIBRATIONS = ("stored", "none")


@dataclass(frozen=True)
class RewardScale:
    """rewards -> (rewards - shift) / scale, and where the two numbers come from ("statistics" or "temperature")."""

    shift: float
    scale: float
    source: str

    def apply(self, rewards: Any) -> Any:
        return (rewards - self.shift) / self.scale


def fit_reward_statistics(rewards: Any) -> tuple[float, float]:
    """Mean and population standard deviation of a model's rewards on held-out responses (e.g. the chosen and the
    rejected responses of held-out pairs: `RewardEvaluation.rewards`)."""
    values = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if values.size < 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"Reward statistics need at least 2 finite rewards, got {values.size} values.")
    std = float(values.std())
    if not std > 0:
        raise ValueError("All the rewards are equal: their standard deviation is 0, so they cannot be standardised.")
    return float(values.mean()), std


def set_reward_statistics(model: Any, mean: float, std: float) -> None:
    """Store the reward statistics in the model config, saved with `save_pretrained`: as `reward_mean`, `reward_std`
    (trl-more's ensemble calibration) and as `mean`, `std` (the keys OpenRLHF's reward model reads: loaded with
    `--normalize_reward`, it returns (r - mean) / std)."""
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise ValueError(f"The reward statistics must be finite numbers, got mean {mean} and std {std}.")
    if not std > 0:
        raise ValueError(f"The reward standard deviation must be positive, got {std}.")
    config = _config(model)
    for attribute, value in (
        (REWARD_MEAN_ATTRIBUTE, mean),
        (REWARD_STD_ATTRIBUTE, std),
        (OPENRLHF_MEAN_ATTRIBUTE, mean),
        (OPENRLHF_STD_ATTRIBUTE, std),
    ):
        setattr(config, attribute, float(value))


def reward_statistics(model: Any) -> tuple[float, float] | None:
    """The (mean, std) stored by `set_reward_statistics` (`reward_mean`, `reward_std`), else those of a model that
    has only OpenRLHF's `mean` and `std` (a reward model trained by OpenRLHF), else `None`."""
    config = _config(model)
    for mean_key, std_key in (
        (REWARD_MEAN_ATTRIBUTE, REWARD_STD_ATTRIBUTE),
        (OPENRLHF_MEAN_ATTRIBUTE, OPENRLHF_STD_ATTRIBUTE),
    ):
        mean, std = getattr(config, mean_key, None), getattr(config, std_key, None)
        if isinstance(mean, (int, float)) and isinstance(std, (int, float)) and not isinstance(mean, bool):
            return float(mean), float(std)
    return None


def reward_scale(model: Any) -> RewardScale | None:
    """The common scale of a model's rewards: its statistics, else its temperature, else `None`."""
    statistics = reward_statistics(model)
    if statistics is not None:
        return RewardScale(statistics[0], statistics[1], "statistics")
    temperature = stored_temperature(model)
    if temperature is not None:
        return RewardScale(0.0, temperature, "temperature")
    return None


def stored_temperature(model: Any) -> float | None:
    """The reward temperature T stored in a model's config (`trl_more.metrics.set_reward_temperature`), also through
    a DeepSpeed or DDP wrapper; `None` when there is none. The one reading of it: the ensemble calibration, the
    evaluation (`trl_more.metrics.reward_temperature`) and the server divide rewards by this T."""
    temperature = getattr(_config(model), TEMPERATURE_ATTRIBUTE, None)
    return None if temperature is None else float(temperature)


def _config(model: Any) -> Any:
    """The config of a model, also when it is wrapped (DeepSpeed engine, DDP)."""
    return getattr(model, "module", model).config
