"""Trainers and their configs, each a subclass of the TRL trainer it extends."""

from .more_config import MORERewardConfig
from .more_trainer import MORERewardTrainer
from .rejection_sampling_config import RejectionSamplingConfig
from .rejection_sampling_trainer import RejectionSamplingTrainer


__all__ = ["MORERewardConfig", "MORERewardTrainer", "RejectionSamplingConfig", "RejectionSamplingTrainer"]
