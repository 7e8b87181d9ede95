"""Combining the rewards of several reward models into one."""

from __future__ import annotations

import torch

from ..constants import check_choice


ENSEMBLE_MODES = ("mean", "min", "mean_minus_std")


def combine_rewards(rewards: torch.Tensor, mode: str = "mean", std_coef: float = 1.0) -> torch.Tensor:
    """One reward per sample from the rewards of M reward models.

    Args:
        rewards: Shape `(num_samples, M)`.
        mode: `"mean"` (average), `"min"` (worst case over the models) or `"mean_minus_std"` (uncertainty-weighted:
            mean - `std_coef` * standard deviation across the models, the population one (divisor M), so that a single
            model gets its own reward and two models r1, r2 get mean - std_coef * |r1 - r2| / 2).
        std_coef: The k of `"mean_minus_std"`.

    Returns:
        Shape `(num_samples,)`. Example: rewards `[[1, 3], [2, 2]]` give mean `[2, 2]`, min `[1, 2]` and, with k = 1,
        mean_minus_std `[1, 2]`.
    """
    if rewards.dim() != 2 or rewards.shape[1] == 0:
        raise ValueError(f"`rewards` must have shape (num_samples, num_models >= 1), got {tuple(rewards.shape)}.")
    check_choice("ensemble mode", mode, ENSEMBLE_MODES, option=False)
    if mode == "mean":
        return rewards.mean(dim=1)
    if mode == "min":
        return rewards.min(dim=1).values
    return rewards.mean(dim=1) - std_coef * ensemble_spread(rewards)  # "mean_minus_std"


def ensemble_spread(rewards: torch.Tensor) -> torch.Tensor:
    """The uncertainty of an ensemble's reward: the population standard deviation (divisor M) of the `(num_samples,
    M)` rewards over the models, so one model has spread 0 and two models r1, r2 have |r1 - r2| / 2."""
    return rewards.std(dim=1, correction=0)
