"""A bar plot of RewardBench scores per section, with the length baselines next to the model (needs matplotlib).

Drawn on matplotlib's Agg canvas without pyplot, like every figure of `trl_more.plots`; see docs/evaluation.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..metrics.rewardbench import RewardBenchResult
from .canvas import new_figure, save_figure


__all__ = ["plot_rewardbench"]

# Chance level of a row: a coin flip between two responses (v1), one of four (v2 outside Ties).
_CHANCE = {1: 0.5, 2: 0.25}


def plot_rewardbench(
    result: RewardBenchResult,
    path: str | os.PathLike,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Grouped bars, one group per section and one for the overall score: the model, then each length baseline.

    A dashed line marks chance (50% in v1, 25% in v2's best-of-4). A section where a baseline's bar reaches the
    model's is one that length alone explains.

    Args:
        result: a `RewardBenchResult` (from `score_rewardbench`, or `score_v1`/`score_v2` without baselines).
        path: the PNG file to write.
        figsize: inches (width, height); by default wide enough for every group.
        dpi: pixels per inch.
        title: the figure title; by default the version and the overall score.

    Returns:
        The path of the PNG.
    """
    groups = [*result.sections, "overall"]
    series = {"model": result, **result.baselines}
    figure = new_figure(figsize or (max(6.0, 1.1 * len(groups) + 2.0), 4.5), dpi)
    axis = figure.subplots()
    width = 0.8 / len(series)
    for index, (name, scores) in enumerate(series.items()):
        values = [100 * scores.sections.get(group, np.nan) for group in groups[:-1]] + [100 * scores.overall]
        positions = np.arange(len(groups)) + (index - (len(series) - 1) / 2) * width
        bars = axis.bar(
            positions, values, width * 0.95, label=name, color=f"C{index}", alpha=1.0 if index == 0 else 0.6
        )
        if index == 0:
            axis.bar_label(bars, fmt="%.1f", fontsize="small", padding=2)
    chance = 100 * _CHANCE[result.version]
    axis.axhline(chance, color="gray", linestyle="--", linewidth=1, label=f"chance ({chance:g}%)")
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylim(top=118)  # room for the legend above the bars; the bottom stays below a negative Ties score
    axis.set_ylabel("score (%)")
    axis.set_title(title or f"RewardBench v{result.version}: overall {100 * result.overall:.1f}", fontsize="medium")
    axis.legend(fontsize="small", loc="upper center", ncol=len(series) + 1, frameon=False)
    figure.tight_layout()
    return save_figure(figure, path)
