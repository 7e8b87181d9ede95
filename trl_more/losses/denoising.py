"""Losses for incorrect and ambiguous preference pairs, driven by each pair's preference strength mu.

Three options of `MORERewardConfig` (docs/noisy_preferences.md), all inactive at their defaults:

- flipping: chosen and rejected of the training pairs with the lowest strength are swapped before training (below a
  threshold, or the lowest fraction of every source), and their strength becomes -mu;
- label smoothing alpha, on every pair or only on those with mu below a threshold;
- an adaptive margin gamma * mu inside the sigmoid, optionally clipped, added to TRL's own `margin`.

Smoothing and margin enter `trl_more.losses.pairwise_loss` per pair, so MORE's closed-form head gradient uses the
derivative of the same loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset

from ..constants import SOURCE_INDEX_COLUMN


__all__ = ["PairLossTerms", "check_strengths", "flip_weak_pairs"]


@dataclass(frozen=True)
class PairLossTerms:
    """The per-pair label smoothing and margin of the denoising options, from a batch's strengths."""

    label_smoothing: float = 0.0
    label_smoothing_below_strength: float | None = None
    adaptive_margin: float = 0.0
    adaptive_margin_clip: float | None = None

    @property
    def active(self) -> bool:
        return self.label_smoothing > 0 or self.adaptive_margin != 0.0

    def smoothing(self, strength: torch.Tensor | None) -> torch.Tensor | float | None:
        """alpha for every pair: `None` (no smoothing), one number, or one value per pair (N,)."""
        if self.label_smoothing == 0:
            return None
        if self.label_smoothing_below_strength is None:
            return self.label_smoothing
        return (strength < self.label_smoothing_below_strength).to(strength.dtype) * self.label_smoothing

    def margin(self, margin: torch.Tensor | None, strength: torch.Tensor | None) -> torch.Tensor | None:
        """TRL's margin plus gamma * mu (clipped), per pair; `None` when there is neither."""
        if self.adaptive_margin == 0.0:
            return margin
        adaptive = self.adaptive_margin * strength
        if self.adaptive_margin_clip is not None:
            adaptive = adaptive.clamp(-self.adaptive_margin_clip, self.adaptive_margin_clip)
        return adaptive if margin is None else margin + adaptive


def check_strengths(dataset: Dataset, column: str, dataset_name: str, describe_row) -> None:
    """Refuse a missing strength column or strengths that are not finite numbers, naming a row and its source."""
    if column not in dataset.column_names:
        raise ValueError(
            f"The options flip_below_strength / flip_fraction / label_smoothing_below_strength / adaptive_margin read "
            f"each pair's preference strength from the `{column}` column, which the {dataset_name} set does not have "
            f"(columns: {dataset.column_names}). Estimate it with `trl_more.noisy_preferences.estimate_preference_"
            "strength` (or `trl-more strength`), load a set that has it, or set `strength_column`."
        )
    values = np.asarray(dataset.with_format("arrow")[column].to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(
            f"{bad.size} pair(s) of the {dataset_name} set have a strength that is not a finite number (e.g. "
            f"{describe_row(bad[0])}: {values[bad[0]]}). Fix or drop these rows."
        )


def flip_weak_pairs(
    dataset: Dataset,
    column: str,
    sources: Sequence[str],
    below: float | None = None,
    fraction: float | None = None,
) -> tuple[Dataset, dict[str, int]]:
    """Swap `chosen_ids` and `rejected_ids` (and negate the strength) of the weakest pairs of a tokenized dataset.

    The pairs flipped are those with strength below `below`, or the `fraction` of every source with the lowest
    strength (ties broken by row order). A source all of whose pairs would be flipped is an error: the threshold is
    wrong for it. Returns the dataset and the number of pairs flipped per source (`"all"` for a set without sources).
    """
    strengths = np.asarray(dataset[column], dtype=np.float64)
    groups = np.asarray(dataset[SOURCE_INDEX_COLUMN]) if SOURCE_INDEX_COLUMN in dataset.column_names else None
    names = list(sources) if groups is not None else ["all"]
    groups = groups if groups is not None else np.zeros(len(dataset), dtype=np.int64)
    flip = np.zeros(len(dataset), dtype=bool)
    for index, name in enumerate(names):
        rows = np.flatnonzero(groups == index)
        if below is not None:
            chosen = rows[strengths[rows] < below]
        else:
            count = int(round(fraction * len(rows)))
            chosen = rows[np.argsort(strengths[rows], kind="stable")[:count]]
        if len(rows) and len(chosen) == len(rows):
            rule = f"strength below {below}" if below is not None else f"flip_fraction={fraction}"
            raise ValueError(
                f"The rule {rule} flips every one of the {len(rows)} training pairs of source {name!r}, which would "
                "invert the source instead of cleaning it. Lower the threshold (look at the strength summary of that "
                "source), or flip a fraction of it."
            )
        flip[chosen] = True
    counts = {name: int(flip[groups == index].sum()) for index, name in enumerate(names)}
    if not flip.any():
        return dataset, counts
    flipped_rows = set(np.flatnonzero(flip).tolist())

    def swap(example, row):
        if row not in flipped_rows:
            return {
                "chosen_ids": example["chosen_ids"],
                "rejected_ids": example["rejected_ids"],
                column: example[column],
            }
        return {"chosen_ids": example["rejected_ids"], "rejected_ids": example["chosen_ids"], column: -example[column]}

    return dataset.map(swap, with_indices=True, desc="Flipping the weakest pairs"), counts
