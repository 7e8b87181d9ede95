"""Samplers that build source-balanced batches for multi-source reward training, optionally grouped by length."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


__all__ = ["SourceGroupedSampler"]


# Mega-batches of transformers' `LengthGroupedSampler`: at most 50 micro-batches, and at least 4 of them per epoch.
MAX_MEGA_BATCH_MULT = 50
MIN_MEGA_BATCHES = 4


class SourceGroupedSampler(Sampler[int]):
    """Yields row indices so that every consecutive block of `batch_size` rows holds `batch_size / K` rows per source.

    The data loader cuts the stream into batches of `batch_size`, so every micro-batch is balanced; under
    multi-process training accelerate hands out whole batches to the ranks, so every rank's micro-batch is balanced
    too. One epoch is as long as the largest source needs: `ceil(max_source_size / per_source)` batches. Smaller
    sources are cycled through fresh random permutations (every row of a source is used once before any is repeated),
    so with sources resampled to a common size an epoch is exactly one pass over the data. With one source (K = 1)
    an epoch is one pass over the rows and the last batch holds the remainder, as with a plain random sampler.

    With `lengths`, rows of similar length share a micro-batch (transformers' `group_by_length`, kept balanced): each
    source's shuffled stream is cut into mega-batches of `mega_batch_mult` micro-batches' worth of rows, each
    mega-batch is sorted by length (longest first), and micro-batch j of a mega-batch takes the j-th slice of every
    source's sorted mega-batch (equal length ranks together, which gives the least padding for a fixed composition).
    The micro-batches are then shuffled in blocks of `num_processes` consecutive ones (the batches the ranks run side
    by side are of similar length), and the block holding the longest row goes first, so that an out-of-memory error
    shows at the first step. Which rows an epoch uses, and how often, is the same as without `lengths`.

    Args:
        source_index (`Sequence[int]`):
            Source index (0 .. K-1) of every row of the data set.
        batch_size (`int`):
            Rows per batch; must be a multiple of the number of sources K.
        seed (`int`, defaults to `0`):
            Seed of the shuffling; the order depends only on the seed and the epoch (see `set_epoch`), so a resumed
            run that skips the batches already seen continues the uninterrupted order.
        num_sources (`int`, *optional*):
            K; defaults to `max(source_index) + 1`. Every source must have at least one row.
        lengths (`Sequence[int]`, *optional*):
            Padded cost of every row (tokens of the row it becomes); `None` keeps batches i.i.d. in length.
        mega_batch_mult (`int`, *optional*):
            Micro-batches per mega-batch; defaults to transformers' rule, `min(50, num_batches // 4)` (at least 1).
        num_processes (`int`, defaults to `1`):
            Ranks that take consecutive batches (accelerate's sharding); only the shuffling of grouped batches reads it.
    """

    def __init__(
        self,
        source_index: Sequence[int],
        batch_size: int,
        seed: int = 0,
        num_sources: int | None = None,
        lengths: Sequence[int] | None = None,
        mega_batch_mult: int | None = None,
        num_processes: int = 1,
    ):
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
        self.lengths = None
        if lengths is not None:
            self.lengths = torch.as_tensor(lengths, dtype=torch.long)
            if self.lengths.shape != source_index.shape:
                raise ValueError(f"`lengths` has {len(self.lengths)} entries for {len(source_index)} rows.")
        if mega_batch_mult is None:
            mega_batch_mult = min(MAX_MEGA_BATCH_MULT, max(1, self.num_batches // MIN_MEGA_BATCHES))
        if mega_batch_mult < 1 or num_processes < 1:
            raise ValueError(
                f"`mega_batch_mult` and `num_processes` must be >= 1, got {mega_batch_mult}, {num_processes}."
            )
        self.mega_batch_mult = mega_batch_mult
        self.num_processes = num_processes

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of an epoch (called by the Trainer at the start of every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.num_sources == 1:
            return len(self.rows_by_source[0])
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.num_sources == 1:
            rows = self.rows_by_source[0]
            streams = [rows[torch.randperm(len(rows), generator=generator)]]
        else:
            needed = self.num_batches * self.per_source
            streams = []
            for rows in self.rows_by_source:
                cycles = [
                    rows[torch.randperm(len(rows), generator=generator)] for _ in range(math.ceil(needed / len(rows)))
                ]
                streams.append(torch.cat(cycles)[:needed])
        if self.lengths is None:
            # (num_batches, K, per_source) -> one flat stream, batch after batch, source after source within a batch.
            batched = [stream.view(-1, self.per_source) for stream in streams] if self.num_sources > 1 else streams
            yield from torch.stack(batched, dim=1).flatten().tolist()
            return
        streams = [self._sorted_in_mega_batches(stream) for stream in streams]
        batches = [
            torch.cat([stream[start : start + self.per_source] for stream in streams])
            for start in range(0, len(streams[0]), self.per_source)
        ]
        for index in self._batch_order(batches, generator):
            yield from batches[index].tolist()

    def _sorted_in_mega_batches(self, stream: torch.Tensor) -> torch.Tensor:
        """`stream` with every mega-batch's rows sorted by length, longest first (stable: ties keep the shuffle)."""
        size = self.mega_batch_mult * self.per_source
        chunks = [stream[start : start + size] for start in range(0, len(stream), size)]
        return torch.cat([chunk[torch.sort(-self.lengths[chunk], stable=True).indices] for chunk in chunks])

    def _batch_order(self, batches: list[torch.Tensor], generator: torch.Generator) -> list[int]:
        """Batches shuffled in blocks of `num_processes` consecutive ones, the block with the longest row first. What
        fills no whole block (and a short last batch, with one source) stays at the end, so blocks stay aligned with
        the ranks' rounds and the short batch is last, where the data loader expects it."""
        full = len(batches) - (len(batches[-1]) < self.batch_size)
        num_blocks = full // self.num_processes
        blocks = [range(block * self.num_processes, (block + 1) * self.num_processes) for block in range(num_blocks)]
        blocks = [blocks[index] for index in torch.randperm(num_blocks, generator=generator).tolist()]
        if blocks:
            longest_row = [max(int(self.lengths[batches[index]].max()) for index in block) for block in blocks]
            first = max(range(num_blocks), key=longest_row.__getitem__)
            blocks[0], blocks[first] = blocks[first], blocks[0]
        return [index for block in blocks for index in block] + list(
            range(num_blocks * self.num_processes, len(batches))
        )


def check_batch_size_fits_sources(batch_size: int, num_sources: int) -> None:
    """Raise a clear error when `batch_size` cannot hold the same number of pairs from each of `num_sources`."""
    if batch_size % num_sources != 0 or batch_size == 0:
        valid = ", ".join(str(num_sources * multiple) for multiple in range(1, 5))
        raise ValueError(
            f"`per_device_train_batch_size={batch_size}` is not a multiple of the number of sources ({num_sources}): "
            f"every micro-batch must hold the same number of pairs from each source. Use {valid}, ..."
        )
