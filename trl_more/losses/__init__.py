"""The pairwise preference loss every reward trainer of trl-more optimises, and its derivative.

For a pair with reward difference delta = r(x, y_chosen) - r(x, y_rejected), margin m and label smoothing a:

    L = -[(1 - a) log sigmoid(delta - m) + a log sigmoid(-(delta - m))]

Plain Bradley-Terry is a = 0, m = 0; TRL's `margin` column is m; a > 0 is the label smoothing of the noisy-preference
losses, which trusts each label only with probability 1 - a (docs/noisy_preferences.md). `log sigmoid` is computed
with `logsigmoid`, so a badly mis-ranked pair keeps its full gradient (no `log(sigmoid(d) + eps)` cap).

The derivative is what MORE's closed-form head gradient needs (docs/more.md):

    dL / d delta = -(1 - a) sigmoid(-(delta - m)) + a sigmoid(delta - m)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


__all__ = ["pairwise_loss", "pairwise_loss_slope", "split_rewards"]

Weights = torch.Tensor | float | None


def split_rewards(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) rewards from TRL's layout: a (2N,) vector (or (2N, 1) logits), chosen rows first."""
    rewards_chosen, rewards_rejected = rewards.reshape(-1).chunk(2)
    return rewards_chosen, rewards_rejected


def _shifted_difference(rewards: torch.Tensor, margin: torch.Tensor | None) -> torch.Tensor:
    rewards_chosen, rewards_rejected = split_rewards(rewards)
    difference = rewards_chosen - rewards_rejected
    return difference if margin is None else difference - margin.to(difference)


def pairwise_loss(rewards: torch.Tensor, margin: torch.Tensor | None = None, label_smoothing: Weights = None):
    """Per-pair loss (N,) from TRL-layout rewards (2N,), with optional per-pair margins (N,) and label smoothing
    (a number, or one value per pair)."""
    shifted = _shifted_difference(rewards, margin)
    loss = -F.logsigmoid(shifted)
    if label_smoothing is None:
        return loss
    return loss + label_smoothing * (F.logsigmoid(shifted) - F.logsigmoid(-shifted))


def pairwise_loss_slope(
    rewards: torch.Tensor, margin: torch.Tensor | None = None, label_smoothing: Weights = None
) -> torch.Tensor:
    """dL/d delta of `pairwise_loss` for every pair (N,), computed from detached rewards."""
    shifted = _shifted_difference(rewards.detach().float(), margin if margin is None else margin.float())
    slope = -torch.sigmoid(-shifted)
    if label_smoothing is None:
        return slope
    return slope + label_smoothing  # -(1 - a) sigmoid(-x) + a sigmoid(x), as sigmoid(-x) + sigmoid(x) = 1
