"""trl-more: better-calibrated reward models from diversified human preferences, as drop-in TRL components."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING


__version__ = "0.1.0"

# Public names and the module that defines each; imported on first use so that `import trl_more` stays fast and the
# light modules (solvers, metrics, data) do not pull in trl and transformers.
_EXPORTS = {
    # MORE
    "MORERewardConfig": "trl_more.more",
    "MORERewardTrainer": "trl_more.more",
    # multi-objective reward model (ArmoRM)
    "MultiObjectiveRewardConfig": "trl_more.multi_objective",
    "MultiObjectiveRewardModel": "trl_more.multi_objective",
    "MultiObjectiveRewardModelConfig": "trl_more.multi_objective",
    "MultiObjectiveRewardTrainer": "trl_more.multi_objective",
    # MetaRM
    "MetaRMConfig": "trl_more.metarm",
    "MetaRMTrainer": "trl_more.metarm",
    # rejection sampling
    "RejectionSamplingConfig": "trl_more.rejection_sampling",
    "RejectionSamplingTrainer": "trl_more.rejection_sampling",
    # Hub
    "HubUploadError": "trl_more.hub",
    # data
    "MixtureConfig": "trl_more.data",
    "SourceConfig": "trl_more.data",
    "load_mixture": "trl_more.data",
    "load_preference_source": "trl_more.data",
    "mix_sources": "trl_more.data",
    # metrics
    "PreferenceMetrics": "trl_more.metrics",
    "RewardEvaluation": "trl_more.metrics",
    "TemperatureFit": "trl_more.metrics",
    "average_calibration_error": "trl_more.metrics",
    "confidence_calibration_error": "trl_more.metrics",
    "evaluate_reward_model": "trl_more.metrics",
    "expected_calibration_error": "trl_more.metrics",
    "fit_temperature": "trl_more.metrics",
    "maximum_calibration_error": "trl_more.metrics",
    "preference_accuracy": "trl_more.metrics",
    "preference_metrics": "trl_more.metrics",
    "reward_difference_outliers": "trl_more.metrics",
    "reward_temperature": "trl_more.metrics",
    "set_reward_temperature": "trl_more.metrics",
    # rewards
    "RewardModelScorer": "trl_more.rewards",
    "average_reward_models": "trl_more.rewards",
    "combine_rewards": "trl_more.rewards",
    # solvers
    "fit_ridge": "trl_more.solvers",
    "min_norm_weights": "trl_more.solvers",
    "verbosity_penalties": "trl_more.solvers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trl_more' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from .data import MixtureConfig, SourceConfig, load_mixture, load_preference_source, mix_sources  # noqa: F401
    from .hub import HubUploadError  # noqa: F401
    from .metarm import MetaRMConfig, MetaRMTrainer  # noqa: F401
    from .metrics import (  # noqa: F401
        PreferenceMetrics,
        RewardEvaluation,
        TemperatureFit,
        average_calibration_error,
        confidence_calibration_error,
        evaluate_reward_model,
        expected_calibration_error,
        fit_temperature,
        maximum_calibration_error,
        preference_accuracy,
        preference_metrics,
        reward_difference_outliers,
        reward_temperature,
        set_reward_temperature,
    )
    from .more import MORERewardConfig, MORERewardTrainer  # noqa: F401
    from .multi_objective import (  # noqa: F401
        MultiObjectiveRewardConfig,
        MultiObjectiveRewardModel,
        MultiObjectiveRewardModelConfig,
        MultiObjectiveRewardTrainer,
    )
    from .rejection_sampling import RejectionSamplingConfig, RejectionSamplingTrainer  # noqa: F401
    from .rewards import RewardModelScorer, average_reward_models, combine_rewards  # noqa: F401
    from .solvers import fit_ridge, min_norm_weights, verbosity_penalties  # noqa: F401
