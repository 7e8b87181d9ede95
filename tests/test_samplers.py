"""Source-balanced batches: composition, determinism, epochs, length, and multi-process sharding."""

from collections import Counter

import pytest
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler

from trl_more.more.sampler import SourceGroupedSampler
from trl_more.pair_encoding import pair_row_lengths


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


# Length grouping (train_sampling_strategy="group_by_length"): the same invariants, plus less padding.

LENGTHS = [(index * 37) % 101 + 1 for index in range(len(SOURCE_IDS))]  # lengths 1..101 in no particular order


def grouped(seed=0, **options):
    return SourceGroupedSampler(SOURCE_IDS, batch_size=6, seed=seed, lengths=LENGTHS, **options)


def padded_tokens(indices, lengths, batch_size):
    return sum(len(batch) * max(lengths[index] for index in batch) for batch in batches(indices, batch_size))


@pytest.mark.parametrize("mega_batch_mult", [None, 1, 2, 5])
def test_grouped_batches_stay_balanced_and_use_every_pair_as_often_as_random_ones(mega_batch_mult):
    for seed in range(3):
        sampler = grouped(seed, mega_batch_mult=mega_batch_mult)
        assert len(list(sampler)) == len(sampler) == 5 * 6
        for batch in batches(sampler, 6):
            assert Counter(SOURCE_IDS[index] for index in batch) == {0: 2, 1: 2, 2: 2}
        assert Counter(sampler) == Counter(SourceGroupedSampler(SOURCE_IDS, batch_size=6, seed=seed))


def test_grouped_order_is_deterministic_in_seed_and_epoch():
    first, second = grouped(seed=1, mega_batch_mult=5), grouped(seed=1, mega_batch_mult=5)
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)
    assert list(grouped(seed=2, mega_batch_mult=5)) != list(first)
    # A resumed run builds the sampler afresh, sets the epoch and skips the batches it has seen: the rest of the
    # uninterrupted order follows, since the order depends on nothing else.
    first.set_epoch(3)
    resumed = grouped(seed=1, mega_batch_mult=5)
    resumed.set_epoch(3)
    assert batches(resumed, 6)[2:] == batches(first, 6)[2:]


def test_grouping_reaches_the_unpadded_bound_on_a_length_skewed_set():
    # Two sources of 8 pairs each, half of them 100 tokens long and half 10. Batches of 4 (2 per source): grouped over
    # the whole epoch, 2 batches hold only long pairs and 2 only short ones, so nothing is padded:
    # 2 * 4 * 100 + 2 * 4 * 10 = 880 tokens, the unpadded bound. A random batch holding one long pair pads to 400.
    source_ids = [0] * 8 + [1] * 8
    lengths = [100, 10] * 8
    for seed in range(5):
        sampler = SourceGroupedSampler(source_ids, batch_size=4, seed=seed, lengths=lengths, mega_batch_mult=4)
        assert padded_tokens(list(sampler), lengths, 4) == sum(lengths) == 880
        assert max(lengths[index] for index in batches(sampler, 4)[0]) == 100  # the longest batch first
    random_padding = [padded_tokens(list(SourceGroupedSampler(source_ids, 4, seed)), lengths, 4) for seed in range(5)]
    assert min(random_padding) > 880 and sum(random_padding) / 5 > 1400


def test_smaller_mega_batches_still_pad_less_than_random_batches():
    sources = [0] * 60 + [1] * 40 + [2] * 50
    lengths = [1000 if index % 5 == 0 else 10 for index in range(len(sources))]  # one long pair in five
    grouped_tokens = random_tokens = 0
    for seed in range(5):
        sampler = SourceGroupedSampler(sources, 6, seed, lengths=lengths, mega_batch_mult=5)
        grouped_tokens += padded_tokens(list(sampler), lengths, 6)
        random_tokens += padded_tokens(list(SourceGroupedSampler(sources, 6, seed)), lengths, 6)
    assert grouped_tokens < 0.6 * random_tokens


@pytest.mark.parametrize("num_processes", [2, 3])
def test_grouped_batches_are_balanced_on_every_rank_and_ranks_run_similar_lengths(num_processes):
    source_ids = [0] * 24 + [1] * 24
    lengths = [100, 10] * 24  # 6 long and 6 short batches of 4
    sampler = SourceGroupedSampler(source_ids, 4, lengths=lengths, mega_batch_mult=12, num_processes=num_processes)
    shards = [
        list(
            BatchSamplerShard(
                BatchSampler(sampler, 4, drop_last=False), num_processes=num_processes, process_index=rank
            )
        )
        for rank in range(num_processes)
    ]
    for step in zip(*shards):  # the batches the ranks run side by side
        for batch in step:
            assert Counter(source_ids[index] for index in batch) == {0: 2, 1: 2}
        assert len({max(lengths[index] for index in batch) for batch in step}) == 1
    assert sorted(index for shard in shards for batch in shard for index in batch) == list(range(48))


@pytest.mark.parametrize("lengths", [None, LENGTHS[:14]])
def test_one_source_is_one_pass_with_the_remainder_last(lengths):
    sampler = SourceGroupedSampler([0] * 14, batch_size=4, seed=0, lengths=lengths, mega_batch_mult=2)
    indices = list(sampler)
    assert len(sampler) == 14 and sorted(indices) == list(range(14))
    assert [len(batch) for batch in batches(indices, 4)] == [4, 4, 4, 2]
    if lengths is not None:  # slices of mega-batches sorted longest first, the batch with the longest row first
        for batch in batches(indices, 4):
            assert [lengths[index] for index in batch] == sorted((lengths[index] for index in batch), reverse=True)
        assert max(lengths) in [lengths[index] for index in indices[:4]]


def test_lengths_of_another_size_are_a_clear_error():
    with pytest.raises(ValueError, match="`lengths` has 3 entries for 21 rows"):
        SourceGroupedSampler(SOURCE_IDS, batch_size=6, lengths=[1, 2, 3])


def test_pair_row_lengths_are_what_each_encoding_pads():
    chosen, rejected = [[1, 2, 3, 4, 5], [7, 8]], [[1, 2, 3, 9], [6, 8, 9]]
    assert pair_row_lengths(chosen, rejected, shared_prompt=True) == [3 + 2 + 1, 2 + 3]  # prompt once, then both
    assert pair_row_lengths(chosen, rejected, shared_prompt=False) == [5, 3]  # both rows pad to the longer one
