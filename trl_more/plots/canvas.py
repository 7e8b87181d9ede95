"""The canvas every figure of trl-more is drawn on: a matplotlib `Figure` on the Agg canvas, saved as PNG.

No pyplot, so no global backend or open-figure state changes. Public so that every plotting module (and a user's own
figure next to ours) shares one rule for the missing-matplotlib error and for saving.
"""

from __future__ import annotations

from pathlib import Path


__all__ = ["new_figure", "save_figure"]


def new_figure(figsize: tuple[float, float], dpi: int):
    """A matplotlib `Figure` of `figsize` inches at `dpi`; an `ImportError` naming the `plots` extra without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plots need matplotlib: `pip install trl-more[plots]` (or `pip install matplotlib`)."
        ) from error
    return Figure(figsize=figsize, dpi=dpi)


def save_figure(figure, path: str | Path) -> Path:
    """Write `figure` as a PNG at its own dpi (creating the folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=figure.dpi)
    return path
