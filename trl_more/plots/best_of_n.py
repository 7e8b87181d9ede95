"""The best-of-N curves against the KL-like cost, with the over-optimisation points (needs matplotlib).

Drawn on matplotlib's Agg canvas without pyplot, like every figure of `trl_more.plots`; see docs/evaluation.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..metrics.best_of_n import GOLD_PICK, PROXY_PICK, RANDOM_PICK, BestOfNResult
from .canvas import new_figure, save_figure


__all__ = ["plot_best_of_n"]


def plot_best_of_n(
    result: BestOfNResult,
    path: str | os.PathLike,
    figsize: tuple[float, float] = (12.0, 4.8),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Two panels against KL = log N - (N - 1) / N (N on the top axis): the gold reward of every pick with its
    bootstrap band, a dotted line at each selector's over-optimisation point; and the proxy reward of the proxy's pick
    (what the proxy believes it gains). Where the proxy's curve climbs while its gold curve falls, the proxy is
    over-optimised.

    Args:
        result: a `BestOfNResult`.
        path: the PNG file to write.
        figsize: inches (width, height).
        dpi: pixels per inch.
        title: the figure title; by default the prompts and samples.

    Returns:
        The path of the PNG.
    """
    figure = new_figure(figsize, dpi)
    gold_axis, proxy_axis = figure.subplots(1, 2)
    styles = {GOLD_PICK: dict(linestyle="--"), RANDOM_PICK: dict(linestyle=":")}
    colours = {name: f"C{index}" for index, name in enumerate(result.curves)}
    for name, curve in result.curves.items():
        gold_axis.plot(result.kl, curve["mean"], marker="o", color=colours[name], label=name, **styles.get(name, {}))
        gold_axis.fill_between(result.kl, curve["lower"], curve["upper"], color=colours[name], alpha=0.15)
    for selector, row in result.overoptimisation.items():
        if row["n"] is not None:
            kl = result.kl[result.ns.index(row["n"])]
            gold_axis.axvline(kl, color=colours[selector], linestyle=":", linewidth=1.2)
            gold_axis.annotate(
                f"{selector}: over-optimised after N = {row['n']}",
                (kl, row["gold_at_peak"]),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize="x-small",
                color=colours[selector],
            )
    gold_axis.set(xlabel="KL = log N - (N - 1) / N", ylabel="gold reward of the pick")
    gold_axis.legend(fontsize="small")
    proxy_axis.plot(result.kl, result.proxy_reward["mean"], marker="o", color=colours[PROXY_PICK])
    proxy_axis.fill_between(
        result.kl, result.proxy_reward["lower"], result.proxy_reward["upper"], color=colours[PROXY_PICK], alpha=0.15
    )
    proxy_axis.set(xlabel="KL = log N - (N - 1) / N", ylabel="proxy reward of the proxy's pick")
    for axis in (gold_axis, proxy_axis):
        axis.grid(alpha=0.3)
        top = axis.secondary_xaxis("top")
        top.set_xticks(result.kl, [str(n) for n in result.ns], fontsize="small")
        top.set_xlabel("N", fontsize="small")
    level = f"{100 * result.confidence:g}%"
    figure.suptitle(
        title
        or f"Best-of-N against the gold reward: {result.num_prompts} prompts x {result.num_samples} samples "
        f"(bands: {level} bootstrap over prompts)",
        fontsize="medium",
    )
    figure.tight_layout()
    return save_figure(figure, path)
