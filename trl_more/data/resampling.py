"""Resampling every source of a training set to a common size: MORE's source balancing (docs/more.md).

This is the only place that resamples sources; `MORERewardConfig.samples_per_source` is the one option that asks
for it, applied by the trainer after tokenization and the length limit, so that the pairs a source loses there are
not counted towards its size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


__all__ = ["resample_indices", "resample_sources"]


def resample_indices(num_rows: int, target: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `target` rows drawn from `num_rows`, as the MORE reference balances its sources.

    A larger source is cut: `target` distinct rows, drawn without replacement. A smaller source is over-sampled from
    repeated copies: every row appears `target // num_rows` times, plus `target % num_rows` distinct extra rows.
    """
    if num_rows <= 0:
        raise ValueError("Cannot resample an empty source.")
    if target <= 0:
        raise ValueError(f"The target size must be positive, got {target}.")
    copies, remainder = divmod(target, num_rows)
    extra = rng.permutation(num_rows)[:remainder]
    return np.concatenate([np.tile(np.arange(num_rows), copies), np.sort(extra)])


def resample_sources(source_index: Sequence[int], target: int, seed: int) -> np.ndarray:
    """Row indices that resample every source (rows sharing a source index) of a data set to `target` rows.

    Deterministic for a seed; sources are processed in increasing index order, each row index refers to
    `source_index`.
    """
    source_index = np.asarray(source_index)
    rng = np.random.default_rng(seed)
    selected = []
    for source in np.unique(source_index):
        rows = np.flatnonzero(source_index == source)
        selected.append(rows[resample_indices(len(rows), target, rng)])
    return np.concatenate(selected) if selected else np.zeros(0, dtype=np.int64)
