"""Post-hoc temperature scaling of a reward model: one scalar T with calibrated preference probabilities sigmoid(d / T).

Dividing every reward by T > 0 keeps the order of any two responses, so accuracy (and any ranking, e.g. best-of-n
selection) is unchanged; only the confidence of the Bradley-Terry probabilities changes. T is fitted on held-out
pairs by minimising their BT negative log-likelihood, which is convex in the inverse temperature 1/T, so the optimum
is the unique root of its derivative and is found to machine precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import TEMPERATURE_ATTRIBUTE
from .calibration import as_margins, expected_calibration_error


__all__ = ["TemperatureFit", "fit_temperature", "reward_temperature", "set_reward_temperature"]


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and what it changes on the pairs it was fitted on.

    Attributes:
        temperature: T; calibrated rewards are `rewards / T` (T > 1: the model was over-confident).
        num_pairs: number of held-out pairs.
        nll_before, nll_after: mean BT negative log-likelihood of the margins before and after dividing by T.
        ece_before, ece_after: expected calibration error (MORE form, `n_bins` bins) before and after.
        accuracy: preference accuracy, the same before and after.
    """

    temperature: float
    num_pairs: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    accuracy: float


def _nll(margins: np.ndarray) -> float:
    return float(np.logaddexp(0.0, -margins).mean())  # -log sigmoid(d), without overflow


def _nll_slope(inverse_temperature: float, margins: np.ndarray) -> float:
    """d/ds of mean -log sigmoid(s * d): mean of -d * sigmoid(-s * d); increasing in s (the NLL is convex in s)."""
    return float((-margins * np.exp(-np.logaddexp(0.0, inverse_temperature * margins))).mean())


def fit_temperature(margins: Any, n_bins: int = 10) -> TemperatureFit:
    """Fit the temperature T > 0 minimising the mean BT negative log-likelihood of `margins / T` on held-out pairs.

    The fit needs pairs the model gets wrong and a positive mean margin: with no wrong pair the likelihood keeps
    growing as T -> 0, and with a mean margin <= 0 the model is no better than chance and T -> infinity.
    """
    from scipy.optimize import brentq

    margins = as_margins(margins)
    if not (margins < 0).any():
        raise ValueError(
            "Every held-out pair has a positive margin: the likelihood grows without bound as T -> 0, so no "
            "temperature is optimal. Fit on more (or harder) held-out pairs."
        )
    if not margins.mean() > 0:
        raise ValueError(
            f"The mean held-out margin is {margins.mean():.4g} <= 0: the model is no better than chance on these "
            "pairs, so the best temperature is infinite. Check the model and the data (chosen/rejected swapped?)."
        )
    # The slope is negative at s = 0 (mean margin > 0) and positive for large s (some margins < 0): bracket its root.
    upper = 1.0
    while _nll_slope(upper, margins) < 0:
        upper *= 2.0
    inverse_temperature = brentq(_nll_slope, 0.0, upper, args=(margins,), xtol=1e-15, rtol=4 * np.finfo(float).eps)
    temperature = 1.0 / inverse_temperature
    scaled = margins / temperature
    return TemperatureFit(
        temperature=temperature,
        num_pairs=int(margins.size),
        nll_before=_nll(margins),
        nll_after=_nll(scaled),
        ece_before=expected_calibration_error(margins, n_bins),
        ece_after=expected_calibration_error(scaled, n_bins),
        accuracy=float((margins > 0).mean()),
    )


def set_reward_temperature(model: Any, temperature: float) -> None:
    """Store T in the model config as `reward_temperature`; it is saved with `save_pretrained` and read back.

    Apply it by dividing the model's rewards: `rewards = model(**inputs).logits / model.config.reward_temperature`.
    `evaluate_reward_model` (and `trl-more evaluate`) do so on their own.
    """
    if not temperature > 0:
        raise ValueError(f"The temperature must be positive, got {temperature}.")
    setattr(model.config, TEMPERATURE_ATTRIBUTE, float(temperature))


def reward_temperature(model: Any) -> float:
    """The temperature stored in the model config by `set_reward_temperature` (read by
    `trl_more.rewards.calibration.stored_temperature`), or 1.0 when there is none."""
    from ..rewards.calibration import stored_temperature

    temperature = stored_temperature(model)
    return 1.0 if temperature is None else temperature
