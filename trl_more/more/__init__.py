"""MORE: multi-objective reward learning on diversified preferences, as a drop-in `trl.RewardTrainer`.

- `MORERewardConfig` / `MORERewardTrainer`: source-balanced batches and per-source losses weighted by lambda.
- `SourceGroupedSampler`: batches holding the same number of pairs of every source.
- `reward_head`: the head input captured by a forward hook and the closed-form per-source head gradients.
- `lambdas`: MORE's lambda, the min-norm point of the smoothed, normalised head gradients.
- `model_card`: the model card of a trained reward model.

The method, its formulas and where this implementation departs from the reference are in docs/more.md.
"""

from .lambdas import MinNormLambda
from .more_config import MORERewardConfig
from .more_trainer import MORERewardTrainer
from .sampler import SourceGroupedSampler


__all__ = ["MORERewardConfig", "MORERewardTrainer", "MinNormLambda", "SourceGroupedSampler"]
