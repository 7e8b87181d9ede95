"""Accuracy, calibration errors and reward-difference statistics of a reward model, from its reward margins.

Every function takes the reward margins `r(x, y_chosen) - r(x, y_rejected)` of a set of preference pairs (a torch
tensor, a numpy array or a list) and reads them as Bradley-Terry probabilities `p = sigmoid(margin)` that the chosen
response is preferred. Definitions follow the MORE paper (docs/calibration.md); only numpy is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


__all__ = [
    "DEFAULT_OUTLIER_THRESHOLD",
    "CalibrationBins",
    "as_margins",
    "average_calibration_error",
    "calibration_bins",
    "confidence_calibration_error",
    "expected_calibration_error",
    "maximum_calibration_error",
    "preference_accuracy",
    "preference_metrics",
    "reward_difference_outliers",
]

# |margin| > 5 means the model is more than sigmoid(5) = 99.3% sure of its preference.
DEFAULT_OUTLIER_THRESHOLD = 5.0


def as_margins(margins: Any) -> np.ndarray:
    """The margins as a 1-D float64 array; accepts tensors (any device), arrays, lists, or a column of shape (N, 1)."""
    if hasattr(margins, "detach"):  # a torch tensor, converted without importing torch
        margins = margins.detach().cpu().double().numpy()
    array = np.asarray(margins, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"Expected one reward margin r(chosen) - r(rejected) per pair (shape (N,)), got shape {array.shape}."
        )
    if array.size == 0:
        raise ValueError("No reward margins given: the metrics need at least one preference pair.")
    if not np.isfinite(array).all():
        raise ValueError(
            f"{int((~np.isfinite(array)).sum())} of {array.size} reward margins are NaN or infinite; check the model "
            "outputs (e.g. an overflow in half precision)."
        )
    return array


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))  # no overflow for large |x|


def preference_accuracy(margins: Any) -> float:
    """Fraction of pairs whose chosen response gets the higher reward; a tie counts as wrong."""
    return float((as_margins(margins) > 0).mean())


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of the probabilities `p` and their 0/1 labels, for calibration errors and reliability plots.

    Attributes:
        edges: the `n_bins + 1` bin edges; a value on an edge belongs to the lower bin.
        counts: number of values in every bin.
        mean_probability: mean `p` in every bin (NaN for an empty bin).
        mean_label: fraction of label 1 in every bin (NaN for an empty bin).
        total: number of values over all bins (the `N` of the ECE).
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_probability: np.ndarray
    mean_label: np.ndarray
    total: int

    @property
    def gaps(self) -> np.ndarray:
        """|mean p - mean label| of every non-empty bin."""
        filled = self.counts > 0
        return np.abs(self.mean_probability[filled] - self.mean_label[filled])

    @property
    def expected_error(self) -> float:
        """sum over bins of |sum p - sum labels| / N."""
        filled = self.counts > 0
        return float((self.counts[filled] * self.gaps).sum() / self.total)


def _bin(probabilities: np.ndarray, labels: np.ndarray, low: float, n_bins: int) -> CalibrationBins:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive integer, got {n_bins!r}.")
    edges = np.linspace(low, 1.0, n_bins + 1)
    # side="left": a value equal to an inner edge falls in the bin below it; values below `low` go to the first bin.
    index = np.searchsorted(edges[1:-1], probabilities, side="left")
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_probability = np.bincount(index, weights=probabilities, minlength=n_bins) / counts
        mean_label = np.bincount(index, weights=labels, minlength=n_bins) / counts
    return CalibrationBins(edges, counts, mean_probability, mean_label, int(probabilities.size))


def calibration_bins(margins: Any, n_bins: int = 10) -> CalibrationBins:
    """Bins of the MORE calibration error: both orderings of every pair, binned uniformly on [0, 1].

    A pair with margin d gives `p = sigmoid(d)` with label 1 (the true order) and `1 - p` with label 0 (the reversed
    order), so the statistics are symmetric around 1/2 and need no choice of a "positive" class.
    """
    margins = as_margins(margins)
    probabilities = _sigmoid(np.concatenate([margins, -margins]))
    labels = np.concatenate([np.ones_like(margins), np.zeros_like(margins)])
    return _bin(probabilities, labels, 0.0, n_bins)


def expected_calibration_error(margins: Any, n_bins: int = 10) -> float:
    """Expected calibration error as MORE defines it: sum over bins of |sum p - sum y| / N (see `calibration_bins`).

    For an even `n_bins` this equals `confidence_calibration_error(margins, n_bins // 2)` (up to ties and values on
    bin edges). Example: margins [2, -1] with 10 bins give 0.425131.
    """
    return calibration_bins(margins, n_bins).expected_error


def average_calibration_error(margins: Any, n_bins: int = 10) -> float:
    """ACE: the unweighted mean of |mean p - mean y| over the non-empty bins of `calibration_bins`."""
    return float(calibration_bins(margins, n_bins).gaps.mean())


def maximum_calibration_error(margins: Any, n_bins: int = 10) -> float:
    """MCE: the largest |mean p - mean y| over the non-empty bins of `calibration_bins`."""
    return float(calibration_bins(margins, n_bins).gaps.max())


def confidence_calibration_error(margins: Any, n_bins: int = 5) -> float:
    """The usual (confidence) ECE: confidence max(p, 1 - p), correct when p > 1/2, `n_bins` uniform bins on [1/2, 1].

    A tie (margin 0) has confidence 1/2 and counts as wrong, whereas in the MORE form it adds nothing; otherwise the
    two forms agree when the MORE form uses twice as many bins.
    """
    margins = as_margins(margins)
    probabilities = _sigmoid(margins)
    confidence = np.maximum(probabilities, 1.0 - probabilities)
    return _bin(confidence, (margins > 0).astype(np.float64), 0.5, n_bins).expected_error


def reward_difference_outliers(margins: Any, threshold: float = DEFAULT_OUTLIER_THRESHOLD) -> dict[str, float]:
    """Counts and means of the reward differences beyond +-`threshold` (the paper's Table 1).

    Returns `positive_outliers` (margins > threshold), `positive_outlier_mean`, `negative_outliers`
    (margins < -threshold) and `negative_outlier_mean`; a mean over no outliers is NaN. The default threshold 5 marks
    pairs the model is more than 99.3% sure about: many of them, especially negative ones (confidently wrong), are
    the reward drift that poor calibration shows up as.
    """
    if not threshold >= 0:
        raise ValueError(f"`threshold` must be a non-negative number, got {threshold!r}.")
    margins = as_margins(margins)
    positive, negative = margins[margins > threshold], margins[margins < -threshold]
    return {
        "positive_outliers": int(positive.size),
        "positive_outlier_mean": float(positive.mean()) if positive.size else math.nan,
        "negative_outliers": int(negative.size),
        "negative_outlier_mean": float(negative.mean()) if negative.size else math.nan,
    }


def preference_metrics(
    margins: Any, n_bins: int = 10, outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD
) -> dict[str, float]:
    """Every metric of one set of pairs, as the row of an evaluation table and the output of the trainers' metrics.

    Keys: `num_pairs`, `preference_accuracy` (not `accuracy`, which TRL's trainers already log as a mean over
    batches), `ece`, `ace`, `mce` (with `n_bins` bins, MORE form), `margin_mean`, `margin_std`
    (population standard deviation), and the outlier statistics of `reward_difference_outliers`.
    """
    margins = as_margins(margins)
    bins = calibration_bins(margins, n_bins)
    return {
        "num_pairs": int(margins.size),
        "preference_accuracy": preference_accuracy(margins),
        "ece": bins.expected_error,
        "ace": float(bins.gaps.mean()),
        "mce": float(bins.gaps.max()),
        "margin_mean": float(margins.mean()),
        "margin_std": float(margins.std()),
        **reward_difference_outliers(margins, outlier_threshold),
    }
