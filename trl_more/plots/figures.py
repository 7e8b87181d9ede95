"""Figures of reward-model calibration and MORE training, saved as PNG (needs the `plots` extra: matplotlib).

- `plot_reliability_diagrams`: per source, the observed preference frequency against the predicted probability.
- `plot_reward_differences`: box plots of reward margins per source and per model (the MORE paper's Figures 3, 5).
- `plot_lambda_history`: MORE's per-source weights lambda over training steps, from a trainer's log history.
- `plot_preference_strength`: histograms of every source's strength mean and std, and the std against the mean.

Figures are drawn on matplotlib's Agg canvas without pyplot, so no global backend or open-figure state changes.
Every function returns the path of the PNG it wrote; its size in pixels is `figsize * dpi`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import LAMBDA_METRIC_PREFIX
from ..metrics.calibration import as_margins, calibration_bins
from .canvas import new_figure, save_figure


__all__ = [
    "load_log_history",
    "plot_lambda_history",
    "plot_preference_strength",
    "plot_reliability_diagrams",
    "plot_reward_differences",
]


def _source_margins(margins: Any) -> dict[str, np.ndarray]:
    """`{source: margins}` from a mapping or anything with a `.margins` mapping (a `RewardEvaluation`)."""
    margins = getattr(margins, "margins", margins)
    if not isinstance(margins, Mapping) or not margins:
        raise ValueError("Give the reward margins as a non-empty `{source: margins}` dict or a `RewardEvaluation`.")
    return {str(source): as_margins(values) for source, values in margins.items()}


def _grid(count: int) -> tuple[int, int]:
    columns = min(count, 3)
    return math.ceil(count / columns), columns


def plot_reliability_diagrams(
    margins: Any,
    path: str | Path,
    n_bins: int = 10,
    panel_size: float = 3.5,
    dpi: int = 100,
) -> Path:
    """One reliability diagram per source, in a grid of up to 3 columns (`panel_size` inches square per panel).

    Bars show, for every probability bin, the fraction of true orderings among both orderings of the pairs (the
    binning of the MORE ECE); the diagonal is perfect calibration and the title gives the source's ECE. Bars above
    the diagonal in the upper half mean under-confidence, below it over-confidence.

    Args:
        margins: `{source: reward margins}` or a `RewardEvaluation`.
        path: the PNG file to write.
    """
    sources = _source_margins(margins)
    rows, columns = _grid(len(sources))
    figure = new_figure((panel_size * columns, panel_size * rows), dpi)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (source, values) in zip(axes, sources.items()):
        bins = calibration_bins(values, n_bins)
        centers = (bins.edges[:-1] + bins.edges[1:]) / 2
        width = bins.edges[1] - bins.edges[0]
        filled = bins.counts > 0
        axis.bar(centers[filled], bins.mean_label[filled], width=width, edgecolor="black", label="observed")
        axis.bar(
            centers[filled],
            bins.mean_probability[filled] - bins.mean_label[filled],
            bottom=bins.mean_label[filled],
            width=width,
            color="tab:red",
            alpha=0.3,
            label="gap",
        )
        axis.plot([0, 1], [0, 1], linestyle="--", color="gray", label="calibrated")
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(preferred)", ylabel="observed frequency")
        axis.set_title(f"{source} (ECE {bins.expected_error:.4f}, n={values.size})", fontsize="medium")
        axis.legend(loc="upper left", fontsize="small")
    for axis in axes[len(sources) :]:
        axis.set_visible(False)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_reward_differences(
    margins_by_model: Mapping[str, Any] | Any,
    path: str | Path,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Box plots of the reward differences r(chosen) - r(rejected), grouped by source, one box per model.

    Args:
        margins_by_model: `{model_name: {source: margins} or RewardEvaluation}` to compare models (the paper's
            Figure 5), or a single `{source: margins}` / `RewardEvaluation` (Figure 3). Sources missing for a model
            leave a gap.
        path: the PNG file to write.
        figsize: inches (width, height); by default wide enough for every box.
    """
    models = _models(margins_by_model)
    sources = list(dict.fromkeys(source for margins in models.values() for source in margins))
    count = len(models)
    figure = new_figure(figsize or (max(6.0, 0.6 * count * len(sources) + 2.0), 4.5), dpi)
    axis = figure.subplots()
    width = 0.8 / count
    colors = [f"C{index % 10}" for index in range(count)]
    for index, (name, margins) in enumerate(models.items()):
        positions = [place + (index - (count - 1) / 2) * width for place, s in enumerate(sources) if s in margins]
        boxes = axis.boxplot(
            [margins[s] for s in sources if s in margins],
            positions=positions,
            widths=width * 0.9,
            patch_artist=True,
            flierprops={"markersize": 3},
            medianprops={"color": "black"},
        )
        for box in boxes["boxes"]:
            box.set(facecolor=colors[index], alpha=0.6)
        if name:
            axis.plot([], [], color=colors[index], linewidth=8, alpha=0.6, label=name)
    axis.axhline(0.0, color="gray", linestyle="--", linewidth=1)
    axis.set_xticks(range(len(sources)), sources)
    axis.set(xlim=(-0.6, len(sources) - 0.4), ylabel="r(chosen) - r(rejected)", title="Reward differences per source")
    if count > 1:
        axis.legend(fontsize="small")
    figure.tight_layout()
    return save_figure(figure, path)


def _models(margins_by_model: Any) -> dict[str, dict[str, np.ndarray]]:
    """`{model: {source: margins}}`; a single model's `{source: margins}` gets the empty name (no legend)."""
    first = next(iter(margins_by_model.values()), None) if isinstance(margins_by_model, Mapping) else None
    if isinstance(first, Mapping) or hasattr(first, "margins"):
        return {str(name): _source_margins(margins) for name, margins in margins_by_model.items()}
    return {"": _source_margins(margins_by_model)}


def _checkpoint_step(folder: Path) -> int:
    step = folder.name.rpartition("-")[2]
    return int(step) if step.isdigit() else -1


def load_log_history(source: Any) -> list[dict[str, Any]]:
    """A trainer's log history from a `Trainer`, a `TrainerState`, a list of log dicts, a `trainer_state.json` file,
    or a training output folder (its `trainer_state.json`, else that of its last `checkpoint-<step>`)."""
    state = getattr(source, "state", source)  # a Trainer -> its TrainerState
    if hasattr(state, "log_history"):
        return list(state.log_history)
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        return list(source)
    path = Path(source)
    if path.is_dir():
        candidates = [path / "trainer_state.json"]
        checkpoints = sorted(path.glob("checkpoint-*"), key=_checkpoint_step, reverse=True)
        candidates += [checkpoint / "trainer_state.json" for checkpoint in checkpoints]
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"No trainer_state.json in {path} or its checkpoint folders; save one with `trainer.save_state()`."
            )
        path = found
    return json.loads(path.read_text())["log_history"]


def plot_lambda_history(
    source: Any,
    path: str | Path,
    figsize: tuple[float, float] = (7.0, 4.0),
    dpi: int = 100,
) -> Path:
    """MORE's per-source loss weights lambda (logged as `lambda/<source>`) against the training step.

    Args:
        source: what `load_log_history` accepts: a trainer, its state, a log history, a `trainer_state.json` file
            or a training output folder.
        path: the PNG file to write.
    """
    history = load_log_history(source)
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in history:
        for key, value in entry.items():
            if key.startswith(LAMBDA_METRIC_PREFIX):
                steps, values = series.setdefault(key[len(LAMBDA_METRIC_PREFIX) :], ([], []))
                steps.append(entry.get("step", len(steps)))
                values.append(value)
    if not series:
        raise ValueError(
            "The log history has no `lambda/<source>` entries: they are logged by `MORERewardTrainer` on two or more "
            "sources with `lambda_method='min_norm'` (or 'uniform'), at every `logging_steps`."
        )
    figure = new_figure(figsize, dpi)
    axis = figure.subplots()
    for name, (steps, values) in series.items():
        axis.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=name)
    axis.axhline(1.0 / len(series), color="gray", linestyle="--", linewidth=1, label="uniform 1/K")
    axis.set(xlabel="training step", ylabel="lambda", title="MORE source weights")
    axis.legend(fontsize="small")
    figure.tight_layout()
    return save_figure(figure, path)


def plot_preference_strength(dataset: Any, path: str | Path, panel_size: float = 3.2, dpi: int = 100) -> Path:
    """Preference strength per source: a histogram of mu and one of sigma for every source (one column each), and in
    the last column sigma against mu for all pairs, coloured by source.

    Args:
        dataset: pairs with `strength_mean`, `strength_std` and (optionally) `source` columns, e.g.
            `PreferenceStrength.dataset`.
        path: the PNG file to write.
    """
    from ..constants import SOURCE_COLUMN, STRENGTH_COLUMN, STRENGTH_STD_COLUMN

    mu = np.asarray(dataset[STRENGTH_COLUMN], dtype=np.float64)
    sigma = np.asarray(dataset[STRENGTH_STD_COLUMN], dtype=np.float64)
    names = np.asarray(dataset[SOURCE_COLUMN]) if SOURCE_COLUMN in dataset.column_names else np.full(len(mu), "all")
    sources = list(dict.fromkeys(names.tolist()))
    figure = new_figure((panel_size * (len(sources) + 1), panel_size * 2), dpi)
    axes = figure.subplots(2, len(sources) + 1, squeeze=False)
    for column, source in enumerate(sources):
        rows = names == source
        axes[0, column].hist(mu[rows], bins=30, color=f"C{column % 10}")
        axes[0, column].axvline(0.0, color="gray", linestyle="--", linewidth=1)
        axes[0, column].set(
            title=f"{source}: mu < 0 for {100 * (mu[rows] < 0).mean():.0f}%", xlabel="strength mean mu"
        )
        axes[1, column].hist(sigma[rows], bins=30, color=f"C{column % 10}")
        axes[1, column].set(xlabel="strength std sigma")
    scatter = axes[0, -1]
    for column, source in enumerate(sources):
        rows = names == source
        scatter.scatter(mu[rows], sigma[rows], s=4, alpha=0.4, color=f"C{column % 10}", label=source)
    scatter.set(xlabel="mu", ylabel="sigma", title="sigma against mu")
    scatter.legend(fontsize="small", markerscale=3)
    axes[1, -1].set_visible(False)
    figure.tight_layout()
    return save_figure(figure, path)
