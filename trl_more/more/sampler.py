"""Samplers that build source-balanced batches for multi-source reward training."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


__all__ = ["SourceGroupedSampler"]


class SourceGroupedSampler(Sampler[int]):
    """Yields row indices so that every consecutive block of `batch_size` rows holds `batch_size / K` rows per source.

    The data loader cuts the stream into batches of `batch_size`, so every micro-batch is balanced; under
    multi-process training accelerate hands out whole batches to the ranks, so every rank's micro-batch is balanced
    too. One epoch is as long as the largest source needs: `ceil(max_source_size / per_source)` batches. Smaller
    sources are cycled through fresh random permutations (every row of a source is used once before any is repeated),
    so with sources resampled to a common size an epoch is exactly one pass over the data.

    Args:
        source_index (`Sequence[int]`):
            Source index (0 .. K-1) of every row of the data set.
        batch_size (`int`):
            Rows per batch; must be a multiple of the number of sources K.
        seed (`int`, defaults to `0`):
            Seed of the shuffling; the order depends only on the seed and the epoch (see `set_epoch`).
        num_sources (`int`, *optional*):
            K; defaults to `max(source_index) + 1`. Every source must have at least one row.
    """

    def __init__(self, source_index: Sequence[int], batch_size: int, seed: int = 0, num_sources: int | None = None):
        source_index = torch.as_tensor(source_index, dtype=torch.long)
        self.num_sources = num_sources if num_sources is not None else int(source_index.max()) + 1
        check_batch_size_fits_sources(batch_size, self.num_sources)
        self.rows_by_source = [torch.nonzero(source_index == source).flatten() for source in range(self.num_sources)]
        empty = [source for source, rows in enumerate(self.rows_by_source) if len(rows) == 0]
        if empty:
            raise ValueError(f"Sources {empty} have no rows; every source needs at least one pair.")
        self.batch_size = batch_size
        self.per_source = batch_size // self.num_sources
        self.seed = seed
        self.epoch = 0
        self.num_batches = math.ceil(max(len(rows) for rows in self.rows_by_source) / self.per_source)

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of an epoch (called by the Trainer at the start of every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        needed = self.num_batches * self.per_source
        streams = []
        for rows in self.rows_by_source:
            cycles = [
                rows[torch.randperm(len(rows), generator=generator)] for _ in range(math.ceil(needed / len(rows)))
            ]
            streams.append(torch.cat(cycles)[:needed].view(self.num_batches, self.per_source))
        # (num_batches, K, per_source) -> one flat stream, batch after batch, source after source within a batch.
        yield from torch.stack(streams, dim=1).flatten().tolist()


def check_batch_size_fits_sources(batch_size: int, num_sources: int) -> None:
    """Raise a clear error when `batch_size` cannot hold the same number of pairs from each of `num_sources`."""
    if batch_size % num_sources != 0 or batch_size == 0:
        valid = ", ".join(str(num_sources * multiple) for multiple in range(1, 5))
        raise ValueError(
            f"`per_device_train_batch_size={batch_size}` is not a multiple of the number of sources ({num_sources}): "
            f"every micro-batch must hold the same number of pairs from each source. Use {valid}, ..."
        )
