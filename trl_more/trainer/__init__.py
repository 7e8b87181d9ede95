"""Trainers and their configs, each a subclass of the TRL trainer it extends."""

from .more_config import MORERewardConfig
from .more_trainer import MORERewardTrainer


__all__ = ["MORERewardConfig", "MORERewardTrainer"]
