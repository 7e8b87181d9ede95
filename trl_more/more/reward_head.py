"""MORE's per-source reward-head gradients, in closed form from the head input.

MORE weights sources with gradients taken with respect to the reward head weight only. For a linear head
r = w . z + b the gradient of the pairwise loss has a closed form in the head input z (docs/more.md), so the forward
hook of `trl_more.reward_head.RewardHeadInputCapture` that keeps z is all that is needed: no extra backward pass
through the backbone, and the head weight is never read, which keeps the computation valid when ZeRO-3 partitions it.
"""

from __future__ import annotations

import torch

from ..losses import pairwise_loss_slope, split_rewards


__all__ = ["per_source_head_gradients", "per_source_mean"]


def per_source_head_gradients(
    features: torch.Tensor,
    rewards: torch.Tensor,
    source_index: torch.Tensor,
    num_sources: int,
    margin: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
    label_smoothing: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Gradient of every source's mean pair loss with respect to the reward head weight, in closed form.

    The loss of pair b is `trl_more.losses.pairwise_loss` (TRL's -log sigmoid(r_w - r_l - margin_b), with the label
    smoothing of the noisy-preference losses) plus TRL's reward-centering term c * (r_w + r_l)^2. With
    s_b = dL/d delta (`pairwise_loss_slope`) its gradient with respect to the head weight is coef_w * z_w + coef_l * z_l,
    with coef_w = s_b + 2c(r_w + r_l) and coef_l = -s_b + 2c(r_w + r_l); averaging over each source's pairs gives g_i.

    Args:
        features: head inputs z, shape (2N, H), chosen sequences first, then rejected ones (TRL's layout).
        rewards: rewards, shape (2N,), same layout.
        source_index: source of every pair, shape (N,), values in [0, num_sources).
        num_sources: K.
        margin: optional per-pair margin, shape (N,).
        center_rewards_coefficient: optional coefficient c of TRL's reward-centering term.
        label_smoothing: optional label smoothing, one number or one value per pair (N,).

    Returns:
        A float32 tensor of shape (K, H); a source without pairs in the batch gets a zero row.
    """
    chosen_features, rejected_features = features.detach().float().chunk(2)
    slope = pairwise_loss_slope(rewards, margin, label_smoothing)
    coef_chosen, coef_rejected = slope, -slope
    if center_rewards_coefficient is not None:
        rewards_chosen, rewards_rejected = split_rewards(rewards.detach().float())
        center = 2.0 * center_rewards_coefficient * (rewards_chosen + rewards_rejected)
        coef_chosen, coef_rejected = coef_chosen + center, coef_rejected + center
    pair_gradients = coef_chosen[:, None] * chosen_features + coef_rejected[:, None] * rejected_features
    return per_source_mean(pair_gradients, source_index, num_sources)


def per_source_mean(values: torch.Tensor, source_index: torch.Tensor, num_sources: int) -> torch.Tensor:
    """Mean of `values` (shape (N, ...)) over the rows of every source; zero for a source without rows."""
    source_index = source_index.to(values.device)
    sums = values.new_zeros((num_sources, *values.shape[1:])).index_add(0, source_index, values)
    counts = torch.bincount(source_index, minlength=num_sources).clamp(min=1).to(values.dtype)
    return sums / counts.view(-1, *([1] * (values.dim() - 1)))
