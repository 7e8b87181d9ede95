"""Calibration-first evaluation of reward models: accuracy, ECE/ACE/MCE, reward-difference outliers, per source.

Importing this package needs only numpy (and tqdm); torch, transformers and trl are imported when a model is scored.
"""

from .calibration import (
    DEFAULT_OUTLIER_THRESHOLD,
    CalibrationBins,
    average_calibration_error,
    calibration_bins,
    confidence_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    preference_accuracy,
    preference_metrics,
    reward_difference_outliers,
)
from .evaluation import RewardEvaluation, Truncation, evaluate_reward_model
from .temperature import TemperatureFit, fit_temperature, reward_temperature, set_reward_temperature
from .trainer_metrics import PreferenceMetrics
from .uncertainty import spread_error_auroc, uncertainty_metrics


__all__ = [
    "DEFAULT_OUTLIER_THRESHOLD",
    "CalibrationBins",
    "PreferenceMetrics",
    "RewardEvaluation",
    "TemperatureFit",
    "Truncation",
    "average_calibration_error",
    "calibration_bins",
    "confidence_calibration_error",
    "evaluate_reward_model",
    "expected_calibration_error",
    "fit_temperature",
    "maximum_calibration_error",
    "preference_accuracy",
    "preference_metrics",
    "reward_difference_outliers",
    "reward_temperature",
    "set_reward_temperature",
    "spread_error_auroc",
    "uncertainty_metrics",
]
