"""The multi-objective reward model with gated scalarization (ArmoRM, SPEC section 3) and its training stages.

The configuration and modeling files are self-contained (torch and transformers only) so that a saved model loads with
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` where trl-more is not installed.
Importing this package also registers them with the Auto classes, so that saved models load without
`trust_remote_code` where trl-more is installed (e.g. `RewardTrainer(model=path)`).
"""

from transformers import AutoConfig, AutoModelForSequenceClassification

from .configuration_multi_objective import MultiObjectiveRewardModelConfig
from .modeling_multi_objective import GatingNetwork, MultiObjectiveRewardModel, MultiObjectiveRewardOutput


AutoConfig.register(MultiObjectiveRewardModelConfig.model_type, MultiObjectiveRewardModelConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MultiObjectiveRewardModelConfig, MultiObjectiveRewardModel, exist_ok=True)

__all__ = [
    "GatingNetwork",
    "MultiObjectiveRewardModel",
    "MultiObjectiveRewardModelConfig",
    "MultiObjectiveRewardOutput",
]
