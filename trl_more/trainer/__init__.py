"""Trainers and their configs, each a subclass of the TRL trainer it extends."""

from .more_config import MORERewardConfig
from .more_model_card import HubUploadError
from .more_trainer import MORERewardTrainer
from .multi_objective_config import MultiObjectiveRewardConfig
from .multi_objective_trainer import MultiObjectiveRewardTrainer
from .rejection_sampling_config import RejectionSamplingConfig
from .rejection_sampling_trainer import RejectionSamplingTrainer


__all__ = [
    "HubUploadError",
    "MORERewardConfig",
    "MORERewardTrainer",
    "MultiObjectiveRewardConfig",
    "MultiObjectiveRewardTrainer",
    "RejectionSamplingConfig",
    "RejectionSamplingTrainer",
]
