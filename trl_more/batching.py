"""Length-sorted batching and per-process sharding of generation and scoring work."""

from __future__ import annotations

from collections.abc import Sequence


def length_sorted_batches(lengths: Sequence[int], batch_size: int, sort: bool = True) -> list[list[int]]:
    """Indices of the items grouped into batches of at most `batch_size`, longest items first.

    Items of similar length share a batch, so little compute is spent on padding. With `sort=False` the batches keep
    the input order (the naive baseline the benchmark compares against). The number of batches depends only on
    `len(lengths)` and `batch_size`, never on the lengths themselves.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}.")
    order = list(range(len(lengths)))
    if sort:
        order.sort(key=lambda index: -lengths[index])  # stable: equal lengths keep their order
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def shard_for_process(lengths: Sequence[int], num_processes: int, process_index: int) -> tuple[list[int], int]:
    """This process's share of the items, padded so that every process gets the same number of items.

    Items are sorted by length and dealt round-robin, so every process gets a similar mix of lengths (and the
    processes, which wait for each other at every decoding step under ZeRO-3, finish at about the same time). A
    process with one item fewer than the others repeats its shortest item (or the shortest item overall when it has
    none); the caller drops the outputs of these repeats.

    Returns:
        `(positions, num_real)`: indices into `lengths`, `ceil(len(lengths) / num_processes)` of them, of which the
        first `num_real` are this process's own items and the rest are padding.
    """
    if not 0 <= process_index < num_processes:
        raise ValueError(f"`process_index` must be in [0, {num_processes}), got {process_index}.")
    if not lengths:
        return [], 0
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    own = order[process_index::num_processes]
    per_process = -(-len(lengths) // num_processes)
    filler = own[-1] if own else order[-1]
    return own + [filler] * (per_process - len(own)), len(own)
