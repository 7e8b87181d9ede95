"""The multi-objective reward model with gated scalarization (ArmoRM) and its two training stages.

- `MultiObjectiveRewardModel` / `MultiObjectiveRewardModelConfig`: backbone, k-objective regression layer, gate,
  reward transform; steering (`objective_weights=`, `steer()`) and `score_breakdown()`; `save_pretrained` /
  `push_to_hub` with the modeling code and a model card.
- Stage 1 (`regression`): `prepare_rating_dataset`, `extract_features` + `fit_regression_layer` (ridge probe) or
  `regression_trainer` (end-to-end fine-tuning), `r2_per_objective`.
- Verbosity debiasing: `debias_verbosity`. Stage 2 (the gate): `MultiObjectiveRewardConfig` /
  `MultiObjectiveRewardTrainer`.

The configuration and modeling files are self-contained (torch and transformers only) so that a saved model loads with
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` where trl-more is not installed.
Importing this package also registers them with the Auto classes, so that saved models load without
`trust_remote_code` where trl-more is installed (e.g. `RewardTrainer(model=path)`). The method is described in
docs/multi_objective.md.
"""

from transformers import AutoConfig, AutoModelForSequenceClassification

from .configuration_multi_objective import MultiObjectiveRewardModelConfig
from .debiasing import debias_verbosity
from .features import SequenceFeatures, extract_features
from .modeling_multi_objective import GatingNetwork, MultiObjectiveRewardModel, MultiObjectiveRewardOutput
from .multi_objective_config import MultiObjectiveRewardConfig
from .multi_objective_trainer import MultiObjectiveRewardTrainer
from .regression import (
    DataCollatorForRatings,
    fit_regression_layer,
    prepare_rating_dataset,
    r2_per_objective,
    rating_targets,
    regression_trainer,
)


AutoConfig.register(MultiObjectiveRewardModelConfig.model_type, MultiObjectiveRewardModelConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MultiObjectiveRewardModelConfig, MultiObjectiveRewardModel, exist_ok=True)

__all__ = [
    "DataCollatorForRatings",
    "GatingNetwork",
    "MultiObjectiveRewardConfig",
    "MultiObjectiveRewardModel",
    "MultiObjectiveRewardModelConfig",
    "MultiObjectiveRewardOutput",
    "MultiObjectiveRewardTrainer",
    "SequenceFeatures",
    "debias_verbosity",
    "extract_features",
    "fit_regression_layer",
    "prepare_rating_dataset",
    "r2_per_objective",
    "rating_targets",
    "regression_trainer",
]
