"""Does an ensemble's spread predict its errors? Accuracy by spread quantile and the AUROC of the spread for wrong pairs.

An ensemble of M reward models gives every preference pair M margins d_m = r_m(chosen) - r_m(rejected), on one scale
(see `trl_more.rewards.ensemble_scales`). The ensemble's margin is their mean, its uncertainty their spread (the
population standard deviation, `trl_more.rewards.ensemble_spread`). A useful uncertainty is larger on the pairs the
ensemble gets wrong (mean margin <= 0) than on those it gets right:

- accuracy by spread quantile: the pairs cut into `num_quantiles` groups of equal size by their spread, lowest first;
  accuracy should fall from the first group to the last;
- AUROC: the probability that a wrong pair has a larger spread than a right one (ties count one half), the
  Mann-Whitney statistic; 0.5 is a spread that says nothing about errors, 1 one that separates them perfectly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


__all__ = ["spread_error_auroc", "uncertainty_metrics"]


def spread_error_auroc(spread: Any, wrong: Any) -> float:
    """P(spread of a wrong pair > spread of a right pair), ties one half; NaN without both right and wrong pairs."""
    from scipy.stats import rankdata  # imported here: importing trl_more.metrics needs only numpy

    spread, wrong = np.asarray(spread, dtype=np.float64), np.asarray(wrong, dtype=bool)
    num_wrong, num_right = int(wrong.sum()), int((~wrong).sum())
    if num_wrong == 0 or num_right == 0:
        return float("nan")
    ranks = rankdata(spread)  # average ranks: a tie counts one half
    return float((ranks[wrong].sum() - num_wrong * (num_wrong + 1) / 2) / (num_wrong * num_right))


def uncertainty_metrics(member_margins: Any, num_quantiles: int = 4) -> dict[str, Any]:
    """How well the spread of the members' margins predicts the ensemble's errors.

    Args:
        member_margins: shape `(num_pairs, M)`, every member's margin of every pair, on one scale; M >= 2.
        num_quantiles: groups of pairs by spread (the last takes the remainder when they do not divide evenly).

    Returns:
        `accuracy` (of the mean margin; a tie is wrong, as in `preference_accuracy`), `spread_mean`,
        `spread_mean_wrong` and `spread_mean_right`, `auroc` (`spread_error_auroc`), and `by_quantile`: per group,
        lowest spread first, `{"spread_max", "pairs", "accuracy"}`.

    Example: margins `[[1, 1], [2, 0], [-1, 3], [-3, 1]]` have mean `[1, 1, 1, -1]` and spread `[0, 1, 2, 2]`; the one
    wrong pair has the largest spread, tied with a right one: AUROC = (1 + 1 + 0.5) / 3 = 0.833.
    """
    margins = np.asarray(member_margins, dtype=np.float64)
    if margins.ndim != 2 or margins.shape[1] < 2 or margins.shape[0] == 0:
        raise ValueError(f"`member_margins` must have shape (num_pairs >= 1, M >= 2), got {margins.shape}.")
    if num_quantiles < 1:
        raise ValueError(f"`num_quantiles` must be >= 1, got {num_quantiles}.")
    mean, spread = margins.mean(axis=1), margins.std(axis=1)  # population std, as ensemble_spread
    wrong = mean <= 0
    order = np.argsort(spread, kind="stable")
    groups = np.array_split(order, min(num_quantiles, len(order)))
    return {
        "accuracy": float(1 - wrong.mean()),
        "spread_mean": float(spread.mean()),
        "spread_mean_wrong": float(spread[wrong].mean()) if wrong.any() else float("nan"),
        "spread_mean_right": float(spread[~wrong].mean()) if (~wrong).any() else float("nan"),
        "auroc": spread_error_auroc(spread, wrong),
        "by_quantile": [
            {
                "spread_max": float(spread[rows].max()),
                "pairs": int(len(rows)),
                "accuracy": float(1 - wrong[rows].mean()),
            }
            for rows in groups
        ],
    }
