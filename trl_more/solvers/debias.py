"""Verbosity debiasing of multi-objective rewards: r'_i = r_i - lambda_i r_v, decorrelated from r_v.

For a verbosity objective v, lambda_i is chosen so that the Spearman correlation of r_i - lambda_i r_v with r_v is
zero on a reference set (docs/multi_objective.md). As a function of lambda that correlation is a non-increasing step function:
the ranking of r_i - lambda r_v only changes when two rows a, b swap places, at lambda_ab = (r_ia - r_ib) / (r_va - r_vb),
and each swap moves the row with the larger r_v down. Beyond every swap point, i.e. for |lambda| larger than
B = range(r_i) / (smallest gap between distinct r_v values), the ranking follows r_v (correlation > 0 at -B) or its
reverse (< 0 at +B). [-B, B] therefore brackets the sign change, and Brent's method finds it to machine precision;
the penalty returned is the middle of the flat step next to it, whose correlation is at most one ranking swap,
O(1/n^2), and which rounding of the rewards does not move.

The reference code instead scans a fixed grid of non-negative penalties and keeps the first one whose correlation
drops to a threshold (0.03); that is available as `method="grid"`.

The result is stored as a k x k transform matrix M applied as `rewards @ M` (the convention of the ArmoRM code):
M = I, then M[v, i] -= lambda_i.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.stats import spearmanr

from ..constants import check_choice


__all__ = ["REFERENCE_PENALTY_GRID", "debias_transform", "verbosity_penalties"]

# The penalties the reference code tries, in increasing order.
REFERENCE_PENALTY_GRID = (
    0.0, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4,
    0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
)  # fmt: skip


def _spearman(values: np.ndarray, reference: np.ndarray) -> float:
    return float(spearmanr(values, reference)[0])


def _root_penalty(rewards: np.ndarray, verbosity: np.ndarray) -> float:
    def correlation(penalty: float) -> float:
        return _spearman(rewards - penalty * verbosity, verbosity)

    if correlation(0.0) == 0.0:
        return 0.0
    gaps = np.diff(np.unique(verbosity))
    bound = 1.01 * (rewards.max() - rewards.min()) / gaps.min() + 1.0
    root = brentq(correlation, -bound, bound, xtol=1e-12 * bound, rtol=4 * np.finfo(float).eps)
    # The root sits on a jump of the correlation (a swap of two rows). Move to the middle of the flat step on the side
    # closer to zero, so that rounding the debiased rewards (e.g. to float32) cannot undo or add swaps.
    step = 2e-12 * bound
    side = min((-1.0, 1.0), key=lambda direction: abs(correlation(root + direction * step)))
    return (root + _next_swap(rewards, verbosity, root + side * step, side, bound)) / 2


def _next_swap(rewards: np.ndarray, verbosity: np.ndarray, penalty: float, direction: float, bound: float) -> float:
    """The first penalty beyond `penalty` (in `direction`) where two rows of r_i - penalty r_v swap places.

    Until the first swap the order is fixed, so that swap is between rows adjacent in the current order.
    """
    order = np.argsort(rewards - penalty * verbosity, kind="stable")
    reward_gaps, verbosity_gaps = np.diff(rewards[order]), np.diff(verbosity[order])
    moving = verbosity_gaps != 0
    crossings = reward_gaps[moving] / verbosity_gaps[moving]
    ahead = crossings[(crossings - penalty) * direction > 0]
    if ahead.size == 0:
        return direction * bound
    return ahead[np.argmin(np.abs(ahead - penalty))]


def _grid_penalty(rewards: np.ndarray, verbosity: np.ndarray, grid: Sequence[float], threshold: float) -> float | None:
    for penalty in sorted(grid):
        if _spearman(rewards - penalty * verbosity, verbosity) <= threshold:
            return float(penalty)
    return None


def verbosity_penalties(
    rewards: np.ndarray,
    verbosity_index: int,
    method: str = "root",
    threshold: float = 0.03,
    grid: Sequence[float] = REFERENCE_PENALTY_GRID,
    objective_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Per-objective penalties lambda_i that decorrelate r_i - lambda_i r_v from the verbosity reward r_v.

    Args:
        rewards: (n, k) multi-objective rewards on a reference set.
        verbosity_index: column v of the verbosity objective.
        method: `"root"` (Spearman correlation exactly zero, up to one ranking swap) or `"grid"` (the reference:
            the smallest penalty of `grid` whose correlation is <= `threshold`; a negative correlation passes).
        threshold: correlation threshold of the grid method.
        grid: penalties tried by the grid method.
        objective_names: names used in error messages.

    Returns:
        (k,) penalties; the verbosity objective's own entry is 1 (r'_v = r_v - r_v = 0), because no other penalty
        makes r_v uncorrelated with itself.

    Raises:
        ValueError: for a verbosity column that does not exist, a constant verbosity reward, non-finite rewards,
            an unknown method, or (grid) an objective that no penalty of the grid decorrelates.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[0] < 3:
        raise ValueError(f"`rewards` must be (n, k) with at least 3 rows, got shape {rewards.shape}.")
    num_objectives = rewards.shape[1]
    names = list(objective_names) if objective_names is not None else [str(i) for i in range(num_objectives)]
    if not 0 <= verbosity_index < num_objectives:
        raise ValueError(f"`verbosity_index` {verbosity_index} is out of range for {num_objectives} objectives.")
    if not np.isfinite(rewards).all():
        raise ValueError("The reference rewards contain NaN or infinite values.")
    check_choice("debiasing method", method, ("root", "grid"), option=False)
    verbosity = rewards[:, verbosity_index]
    if np.ptp(verbosity) == 0:
        raise ValueError(
            f"The verbosity reward {names[verbosity_index]!r} is constant on the reference set, so its Spearman "
            "correlation is undefined; use a reference set where it varies."
        )
    penalties = np.ones(num_objectives)
    unreachable = []
    for objective in range(num_objectives):
        if objective == verbosity_index:
            continue
        column = rewards[:, objective]
        if method == "root":
            penalties[objective] = _root_penalty(column, verbosity)
        else:
            penalty = _grid_penalty(column, verbosity, grid, threshold)
            if penalty is None:
                unreachable.append(names[objective])
            else:
                penalties[objective] = penalty
    if unreachable:
        raise ValueError(
            f"No penalty in the grid {list(grid)} brings the Spearman correlation of {unreachable} with the verbosity "
            f"reward down to {threshold}; extend the grid or use method='root'."
        )
    return penalties


def debias_transform(penalties: np.ndarray, verbosity_index: int) -> np.ndarray:
    """The k x k matrix M with `rewards @ M` = debiased rewards: M = I, M[v, i] -= lambda_i."""
    penalties = np.asarray(penalties, dtype=np.float64)
    transform = np.eye(penalties.size)
    transform[verbosity_index] -= penalties
    return transform
