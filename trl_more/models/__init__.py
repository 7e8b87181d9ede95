"""The multi-objective reward model with gated scalarization (ArmoRM, SPEC section 3) and its training stages.

- `MultiObjectiveRewardModel` / `MultiObjectiveRewardModelConfig`: backbone, k-objective regression layer, gate,
  reward transform; steering (`objective_weights=`, `steer()`) and `score_breakdown()`; `save_pretrained` /
  `push_to_hub` with the modeling code and a model card.
- Stage 1 (`regression`): `prepare_rating_dataset`, `extract_features` + `fit_regression_layer` (ridge probe) or
  `regression_trainer` (end-to-end fine-tuning), `r2_per_objective`.
- Verbosity debiasing: `debias_verbosity`. Stage 2: `trl_more.trainer.MultiObjectiveRewardTrainer`.

The configuration and modeling files are self-contained (torch and transformers only) so that a saved model loads with
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` where trl-more is not installed.
Importing this package also registers them with the Auto classes, so that saved models load without
`trust_remote_code` where trl-more is installed (e.g. `RewardTrainer(model=path)`).
"""

from transformers import AutoConfig, AutoModelForSequenceClassification

from .configuration_multi_objective import MultiObjectiveRewardModelConfig
from .debiasing import debias_verbosity
from .features import SequenceFeatures, extract_features
from .modeling_multi_objective import GatingNetwork, MultiObjectiveRewardModel, MultiObjectiveRewardOutput
from .regression import (
    DataCollatorForRatings,
    fit_regression_layer,
    prepare_rating_dataset,
    r2_per_objective,
    rating_targets,
    regression_trainer,
)
from .tokenization import fit_to_max_length, prompt_length_of, tokenize_prompt, tokenize_prompt_response


AutoConfig.register(MultiObjectiveRewardModelConfig.model_type, MultiObjectiveRewardModelConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MultiObjectiveRewardModelConfig, MultiObjectiveRewardModel, exist_ok=True)

__all__ = [
    "DataCollatorForRatings",
    "GatingNetwork",
    "MultiObjectiveRewardModel",
    "MultiObjectiveRewardModelConfig",
    "MultiObjectiveRewardOutput",
    "SequenceFeatures",
    "debias_verbosity",
    "extract_features",
    "fit_regression_layer",
    "fit_to_max_length",
    "prepare_rating_dataset",
    "prompt_length_of",
    "r2_per_objective",
    "rating_targets",
    "regression_trainer",
    "tokenize_prompt",
    "tokenize_prompt_response",
]
