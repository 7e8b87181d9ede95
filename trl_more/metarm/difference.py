"""MetaRM's difference loss J: how well a reward model tells apart several responses to the same prompt.

For a prompt with k responses s_1..s_k and rewards r_i = r(x, s_i),

    J = (2 / k^2) * sum_{i<j} sigmoid(|r_i - r_j|)

averaged over the prompts of a batch. J grows as the rewards of a prompt's responses spread apart (each term lies in
[1/2, 1)); MetaRM ascends it on responses sampled from the current policy (docs/metarm.md).
"""

from __future__ import annotations

import torch


__all__ = ["difference_loss"]


def difference_loss(rewards: torch.Tensor, abs_epsilon: float = 0.0) -> torch.Tensor:
    """J of a (num_prompts, k) matrix of rewards (one row per prompt), a scalar.

    `abs_epsilon=0` takes |d| itself (subgradient 0 at d = 0); a positive value the smooth surrogate
    sqrt(d^2 + abs_epsilon^2), differentiable everywhere.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"Expected rewards of shape (num_prompts, k >= 2), got {tuple(rewards.shape)}.")
    k = rewards.shape[1]
    first, second = torch.triu_indices(k, k, offset=1, device=rewards.device)
    differences = rewards[:, first] - rewards[:, second]
    if abs_epsilon > 0:
        magnitudes = torch.sqrt(differences.square() + abs_epsilon**2)
    else:
        magnitudes = differences.abs()
    return (2.0 / k**2) * torch.sigmoid(magnitudes).sum(dim=1).mean()
