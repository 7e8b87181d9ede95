"""Source-balanced batches: composition, determinism, epochs, length, and multi-process sharding."""

from collections import Counter

import pytest
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler

from trl_more.more.sampler import SourceGroupedSampler


def batches(sampler, batch_size):
    indices = list(sampler)
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]


SOURCE_IDS = [0] * 10 + [1] * 4 + [2] * 7  # unequal natural sizes


def test_every_batch_holds_the_same_number_of_pairs_per_source():
    sampler = SourceGroupedSampler(SOURCE_IDS, batch_size=6, seed=0)
    for batch in batches(sampler, 6):
        assert Counter(SOURCE_IDS[index] for index in batch) == {0: 2, 1: 2, 2: 2}


def test_epoch_covers_the_largest_source_once_and_cycles_the_others():
    sampler = SourceGroupedSampler(SOURCE_IDS, batch_size=6, seed=0)
    assert len(sampler) == 5 * 6  # ceil(10 / 2) batches of 6
    counts = Counter(sampler)
    assert all(counts[index] == 1 for index in range(10))  # the largest source: every row exactly once
    for rows in (range(10, 14), range(14, 21)):  # smaller sources: every row before any repeats
        used = [counts[index] for index in rows]
        assert min(used) >= 1 and max(used) - min(used) <= 1


def test_equal_sizes_give_one_exact_pass():
    source_ids = [0] * 8 + [1] * 8
    assert sorted(SourceGroupedSampler(source_ids, batch_size=4, seed=3)) == list(range(16))


def test_deterministic_for_a_seed_and_different_across_epochs():
    first, second = SourceGroupedSampler(SOURCE_IDS, 6, seed=1), SourceGroupedSampler(SOURCE_IDS, 6, seed=1)
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)
    assert list(SourceGroupedSampler(SOURCE_IDS, 6, seed=2)) != list(first)


@pytest.mark.parametrize("num_processes", [2, 3])
def test_balanced_on_every_rank_after_accelerate_sharding(num_processes):
    sampler = SourceGroupedSampler(SOURCE_IDS, batch_size=6, seed=0)
    seen = []
    for rank in range(num_processes):
        shard = BatchSamplerShard(
            BatchSampler(sampler, 6, drop_last=False), num_processes=num_processes, process_index=rank
        )
        for batch in shard:
            assert Counter(SOURCE_IDS[index] for index in batch) == {0: 2, 1: 2, 2: 2}
            seen.extend(batch)
    assert set(seen) == set(range(len(SOURCE_IDS)))


@pytest.mark.parametrize("batch_size", [4, 5, 0])
def test_batch_size_not_a_multiple_of_the_sources_is_a_clear_error(batch_size):
    with pytest.raises(ValueError, match=r"not a multiple of the number of sources \(3\).*Use 3, 6, 9, 12"):
        SourceGroupedSampler(SOURCE_IDS, batch_size=batch_size)


def test_empty_source_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Sources \[1\] have no rows"):
        SourceGroupedSampler([0, 0, 2, 2], batch_size=3, num_sources=3)
