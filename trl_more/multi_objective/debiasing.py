"""Verbosity debiasing of a multi-objective reward model, written into its reward transform (docs/multi_objective.md)."""

from __future__ import annotations

import numpy as np
import torch

from ..solvers.debias import debias_transform, verbosity_penalties
from .modeling_multi_objective import MultiObjectiveRewardModel


__all__ = ["debias_verbosity"]


def debias_verbosity(
    model: MultiObjectiveRewardModel,
    reference_features: torch.Tensor,
    verbosity_objective: str,
    method: str = "root",
    threshold: float = 0.03,
) -> np.ndarray:
    """Decorrelate every objective from the verbosity objective on a reference set; set the model's transform.

    Computes the objective rewards r of the reference set from its cached last-token features (see
    `extract_features`), finds lambda_i with Spearman(r_i - lambda_i r_v, r_v) = 0 (`method="root"`, exact) or the
    reference's grid-plus-threshold rule (`method="grid"`), and sets the reward transform to `M = I, M[v, i] -=
    lambda_i`. The verbosity objective itself gets lambda_v = 1, so it no longer enters the score.

    Returns:
        The (k,) penalties lambda.
    """
    verbosity_index = model.config.objective_index(verbosity_objective)
    layer = model.regression_layer
    with torch.no_grad():
        rewards = layer(reference_features.to(device=layer.weight.device, dtype=layer.weight.dtype))
    penalties = verbosity_penalties(
        rewards.double().cpu().numpy(),
        verbosity_index,
        method=method,
        threshold=threshold,
        objective_names=model.config.objectives,
    )
    model.set_reward_transform(debias_transform(penalties, verbosity_index))
    return penalties
