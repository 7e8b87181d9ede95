"""Heat maps of RM-Bench's style matrix, one per domain (needs matplotlib).

Drawn on matplotlib's Agg canvas without pyplot, like every figure of `trl_more.plots`; see docs/evaluation.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..metrics.rmbench import STYLES, RMBenchResult
from .canvas import new_figure, save_figure


__all__ = ["plot_rmbench"]

_SHORT_STYLES = ("concise", "detailed", "markdown")


def plot_rmbench(
    result: RMBenchResult,
    path: str | os.PathLike,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """One heat map per domain with rows: cell (i, j) is the accuracy of chosen style i against rejected style j.

    Cells above the diagonal are the hard comparisons (the chosen response plainer than the rejected one), the
    diagonal the normal ones, below it the easy ones; each panel's title gives the three and the domain's average. A
    model that prefers style over substance is green below the diagonal and red above it.

    Args:
        result: an `RMBenchResult` (from `score_rmbench`, or `score_rmbench_rewards`).
        path: the PNG file to write.
        figsize: inches (width, height); by default 3.6 inches per domain.
        dpi: pixels per inch.
        title: the figure title; by default the overall score, hard / normal / easy and the domains without rows.

    Returns:
        The path of the PNG.
    """
    domains = list(result.domains)
    figure = new_figure(figsize or (3.6 * len(domains) + 1.2, 4.0), dpi)
    axes = figure.subplots(1, len(domains), squeeze=False)[0]
    image = None
    for axis, domain in zip(axes, domains):
        row = result.domains[domain]
        matrix = [[100 * value for value in values] for values in row["matrix"]]
        image = axis.imshow(matrix, vmin=0, vmax=100, cmap="RdYlGn")
        for i, values in enumerate(matrix):
            for j, value in enumerate(values):
                axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize="small")
        axis.set_xticks(range(len(STYLES)), _SHORT_STYLES, fontsize="small")
        axis.set_yticks(range(len(STYLES)), _SHORT_STYLES if axis is axes[0] else [], fontsize="small")
        axis.set_xlabel("rejected style", fontsize="small")
        if axis is axes[0]:
            axis.set_ylabel("chosen style", fontsize="small")
        axis.set_title(
            f"{domain} ({row['count']} rows): {100 * row['average']:.1f}\nhard {100 * row['hard']:.1f} · normal "
            f"{100 * row['normal']:.1f} · easy {100 * row['easy']:.1f}",
            fontsize="small",
        )
    figure.colorbar(image, ax=list(axes), label="accuracy (%)", shrink=0.8)
    missing = f"; no rows for {', '.join(result.missing_domains)}" if result.missing_domains else ""
    figure.suptitle(
        title
        or f"RM-Bench: overall {100 * result.overall:.1f} (hard {100 * result.hard:.1f} · normal "
        f"{100 * result.normal:.1f} · easy {100 * result.easy:.1f}{missing})",
        fontsize="medium",
    )
    return save_figure(figure, path)
