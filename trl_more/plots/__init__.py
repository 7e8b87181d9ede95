"""Figures of reward models, saved as PNG (needs the `plots` extra: matplotlib); every plot of trl-more lives here.

- `plot_reliability_diagrams`: per source, the observed preference frequency against the predicted probability.
- `plot_reward_differences`: box plots of reward margins per source and per model (the MORE paper's Figures 3, 5).
- `plot_lambda_history`: MORE's per-source weights lambda over training steps, from a trainer's log history.
- `plot_preference_strength`: histograms of every source's strength mean and std, and the std against the mean.
- `plot_rewardbench`, `plot_rmbench`, `plot_best_of_n`: the benchmark results of `trl_more.metrics` (docs/evaluation.md).
- `new_figure`, `save_figure`: the canvas they are all drawn on (matplotlib's Agg canvas, no pyplot).

This package stands above `trl_more.metrics`: it draws metrics' results, and metrics imports nothing from it. Every
function returns the path of the PNG it wrote; its size in pixels is `figsize * dpi`.
"""

from .best_of_n import plot_best_of_n
from .canvas import new_figure, save_figure
from .figures import (
    load_log_history,
    plot_lambda_history,
    plot_preference_strength,
    plot_reliability_diagrams,
    plot_reward_differences,
)
from .rewardbench import plot_rewardbench
from .rmbench import plot_rmbench


__all__ = [
    "load_log_history",
    "new_figure",
    "plot_best_of_n",
    "plot_lambda_history",
    "plot_preference_strength",
    "plot_reliability_diagrams",
    "plot_reward_differences",
    "plot_rewardbench",
    "plot_rmbench",
    "save_figure",
]
