"""MORERewardTrainer: parity with trl.RewardTrainer, lambda, data handling, errors, and exact resumption."""

import os

import pytest
import torch
from datasets import ClassLabel, Dataset, concatenate_datasets
from trl import RewardConfig, RewardTrainer

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.constants import SOURCE_INDEX_COLUMN
from trl_more.more.sampler import SourceGroupedSampler
from trl_more.pair_encoding import pair_row_lengths
from trl_more.testing import StopAfterCheckpoint, tiny_reward_model, tiny_tokenizer, toy_preference_sources


SOURCES = ("polite", "concise", "factual")


# Training settings shared by the MORE runs and the plain TRL runs they are compared with.
COMMON = dict(
    per_device_train_batch_size=6,
    max_steps=4,
    learning_rate=1e-3,
    logging_steps=1,
    report_to="none",
    bf16=False,
    save_strategy="no",
    gradient_checkpointing=False,
    seed=0,
)


def config(tmp_path, **overrides):
    return MORERewardConfig(output_dir=str(tmp_path), **{**COMMON, **overrides})


def trainer_for(tmp_path, train_dataset=None, architecture="qwen2", **overrides):
    tokenizer = tiny_tokenizer("wordpiece" if architecture == "bert" else "bpe")
    return MORERewardTrainer(
        model=tiny_reward_model(architecture, tokenizer),
        args=config(tmp_path, **overrides),
        train_dataset=train_dataset if train_dataset is not None else toy_preference_sources(12),
        processing_class=tokenizer,
    )


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_uniform_weighting_matches_trl_reward_trainer_on_the_same_batches(tmp_path):
    more = trainer_for(tmp_path / "more", lambda_method="uniform")
    order = list(more._get_train_sampler())
    tokenizer = more.processing_class
    plain_dataset = concatenate_datasets(list(toy_preference_sources(12).values())).select(order)
    plain = RewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer),
        args=RewardConfig(str(tmp_path / "plain"), **COMMON, train_sampling_strategy="sequential"),
        train_dataset=plain_dataset,
        processing_class=tokenizer,
    )
    more.train()
    plain.train()
    assert logged(more, "loss") == pytest.approx(logged(plain, "loss"), abs=1e-6)
    for (name, p_more), (_, p_plain) in zip(more.model.named_parameters(), plain.model.named_parameters()):
        torch.testing.assert_close(p_more, p_plain, atol=1e-6, rtol=0, msg=name)
    assert logged(more, "lambda/polite") == pytest.approx([1 / 3] * 4)


@pytest.mark.parametrize("normalization", ["l2", "none", "loss", "loss+"])
def test_more_weights_are_a_distribution_that_depends_on_the_normalization(tmp_path, normalization):
    trainer = trainer_for(tmp_path, gradient_normalization=normalization, max_steps=3)
    trainer.train()
    weights = torch.tensor([logged(trainer, f"lambda/{name}") for name in SOURCES])  # (K, steps)
    torch.testing.assert_close(weights.sum(0), torch.ones(3), atol=1e-6, rtol=0)
    assert torch.all(weights >= 0)
    assert not torch.allclose(weights, torch.full_like(weights, 1 / 3), atol=1e-3)
    for name in SOURCES:
        assert len(logged(trainer, f"loss/{name}")) == 3 and len(logged(trainer, f"accuracy/{name}")) == 3


def test_two_sources_with_l2_normalization_give_equal_weights(tmp_path):
    trainer = trainer_for(
        tmp_path, toy_preference_sources(12, sources=("polite", "factual")), per_device_train_batch_size=4
    )
    trainer.train()
    assert logged(trainer, "lambda/polite") == pytest.approx([0.5] * 4, abs=1e-9)


def test_source_column_of_names_ints_or_class_labels(tmp_path):
    mixed = concatenate_datasets(
        [dataset.add_column("source", [name] * len(dataset)) for name, dataset in toy_preference_sources(6).items()]
    )
    as_ints = mixed.map(lambda row: {"source": SOURCES.index(row["source"])})
    as_labels = as_ints.cast_column("source", ClassLabel(names=list(SOURCES)))
    reversed_rows = as_labels.select(range(len(as_labels) - 1, -1, -1))
    cases = [
        (mixed, list(SOURCES)),
        (as_ints, ["0", "1", "2"]),
        (as_labels, list(SOURCES)),
        (reversed_rows, list(reversed(SOURCES))),  # one rule for every type: the order of first appearance
    ]
    for dataset, names in cases:
        trainer = trainer_for(tmp_path, dataset, max_steps=1)
        assert trainer.sources == names
        trainer.train()
        assert f"lambda/{names[0]}" in trainer.state.log_history[0]


def test_single_source_behaves_exactly_like_reward_trainer(tmp_path):
    dataset = toy_preference_sources(12)["polite"]
    more = trainer_for(tmp_path / "more", dataset.add_column("source", ["polite"] * len(dataset)), max_steps=3)
    tokenizer = more.processing_class
    plain = RewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer),
        args=RewardConfig(str(tmp_path / "plain"), **{**COMMON, "max_steps": 3}),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    more.train()
    plain.train()
    assert more.num_sources == 1 and not any(key.startswith("lambda/") for key in more.state.log_history[0])
    assert logged(more, "loss") == logged(plain, "loss")


def test_resampling_gives_every_source_the_same_size(tmp_path):
    sources = toy_preference_sources(12)
    sources["polite"] = sources["polite"].select(range(5))
    trainer = trainer_for(tmp_path, sources, samples_per_source=8, max_steps=1)
    counts = torch.bincount(torch.tensor(trainer.train_dataset["source_index"]))
    assert counts.tolist() == [8, 8, 8]


def test_long_pairs_are_reported_per_source_or_truncated(tmp_path, caplog):
    trainer = trainer_for(tmp_path, max_length=14, max_steps=1, truncation_mode="keep_end")
    assert len(trainer.train_dataset) == 36
    assert max(len(ids) for ids in trainer.train_dataset["rejected_ids"]) == 14

    with caplog.at_level("WARNING"):
        trainer = trainer_for(tmp_path, max_length=55, max_steps=1)
    lengths = [
        max(len(c), len(r)) for c, r in zip(trainer.train_dataset["chosen_ids"], trainer.train_dataset["rejected_ids"])
    ]
    assert max(lengths) <= 55 and len(trainer.train_dataset) == 36 - 8
    assert "were dropped" in caplog.text and "concise: 8 of 12" in caplog.text


def test_a_source_emptied_by_max_length_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"leaves no pairs for source\(s\) \['concise'\]"):
        trainer_for(tmp_path, max_length=50)


def test_bad_input_gives_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="has no `source` column"):
        trainer_for(tmp_path, toy_preference_sources(6)["polite"], samples_per_source=4)
    empty = toy_preference_sources(6)
    empty["concise"] = empty["concise"].select([])
    with pytest.raises(ValueError, match="Source 'concise' has no rows"):
        trainer_for(tmp_path, empty)
    with pytest.raises(ValueError, match="Unknown `gradient_normalization` 'l1'"):
        config(tmp_path, gradient_normalization="l1")
    with pytest.raises(ValueError, match=r"not a multiple of the number of sources \(3\)"):
        trainer_for(tmp_path, per_device_train_batch_size=4)
    mixed = concatenate_datasets([d.add_column("source", [n] * len(d)) for n, d in toy_preference_sources(6).items()])
    with pytest.raises(ValueError, match="`IterableDataset` with a `source` column"):
        trainer_for(tmp_path, mixed.to_iterable_dataset())


def test_eval_sets_keyed_by_source_get_distinct_metric_names(tmp_path):
    sources = toy_preference_sources(6)
    trainer = trainer_for(tmp_path, sources, max_steps=1)
    trainer.train()
    metrics = trainer.evaluate({"polite": sources["polite"], "factual": sources["factual"]})
    assert {"eval_polite_loss", "eval_factual_loss"} <= set(metrics)
    logged_keys = set().union(*(entry.keys() for entry in trainer.state.log_history))
    assert {"eval_polite_accuracy", "eval_factual_accuracy"} <= logged_keys
    assert "eval_accuracy" not in logged_keys


# One epoch is 6 steps (8 with 16 pairs per source); the last cases resume mid-epoch and cross into the next one (the
# sampler's `set_epoch`), the length-grouped one with mega-batches of 2 micro-batches.
@pytest.mark.parametrize(
    "architecture, max_steps, stop_at, strategy, pairs",
    [
        ("qwen2", 6, 3, "random", 12),
        ("bert", 6, 3, "random", 12),
        ("qwen2", 10, 4, "random", 12),
        ("qwen2", 10, 4, "group_by_length", 16),
    ],
    ids=str,
)
def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path, architecture, max_steps, stop_at, strategy, pairs):
    options = dict(
        max_steps=max_steps, save_strategy="steps", save_steps=stop_at, lambda_momentum=0.5, architecture=architecture
    )
    options.update(train_dataset=toy_preference_sources(pairs), train_sampling_strategy=strategy)
    full = trainer_for(tmp_path / "full", **options)
    full.train()

    interrupted = trainer_for(tmp_path / "resumed", **options)
    interrupted.add_callback(StopAfterCheckpoint(stop_at))
    interrupted.train()
    assert interrupted.state.global_step == stop_at
    checkpoint = tmp_path / "resumed" / f"checkpoint-{stop_at}"
    assert (checkpoint / "trl_more_state_rank0.pt").is_file()

    resumed = trainer_for(tmp_path / "resumed", **options)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    after = max_steps - stop_at
    for name in SOURCES:
        assert logged(resumed, f"lambda/{name}")[-after:] == pytest.approx(
            logged(full, f"lambda/{name}")[-after:], abs=1e-6
        )
    for (name, p_full), (_, p_resumed) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(p_resumed, p_full, atol=1e-6, rtol=0, msg=name)
    full_averages = full.min_norm_lambda.moving_gradients
    torch.testing.assert_close(resumed.min_norm_lambda.moving_gradients, full_averages, atol=1e-6, rtol=0)

    # The moving averages are part of the checkpoint: one without them is incomplete and refused, since resuming
    # from it would restart them from zero and leave the uninterrupted trajectory.
    os.remove(checkpoint / "trl_more_state_rank0.pt")
    restarted = trainer_for(tmp_path / "resumed", **options)
    with pytest.raises(ValueError, match="incomplete checkpoint .*missing trl_more_state_rank0.pt"):
        restarted.train(resume_from_checkpoint=str(checkpoint))


def test_plain_reward_config_gets_more_defaults(tmp_path):
    tokenizer = tiny_tokenizer()
    args = RewardConfig(str(tmp_path), per_device_train_batch_size=6, max_steps=1, report_to="none", bf16=False)
    trainer = MORERewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=toy_preference_sources(6),
        processing_class=tokenizer,
    )
    assert isinstance(trainer.args, MORERewardConfig) and trainer.args.lambda_method == "min_norm"
    assert trainer.args.per_device_train_batch_size == 6
    trainer.train()


def test_dict_and_column_inputs_train_on_the_same_pairs(tmp_path):
    sources = toy_preference_sources(6)
    as_dict = trainer_for(tmp_path, sources, max_steps=1)
    column = concatenate_datasets([d.add_column("source", [n] * len(d)) for n, d in sources.items()])
    as_column = trainer_for(tmp_path, column, max_steps=1)
    assert as_dict.sources == list(SOURCES)
    assert sorted(as_dict.train_dataset["chosen_ids"]) == sorted(as_column.train_dataset["chosen_ids"])
    assert isinstance(as_dict.train_dataset, Dataset)


@pytest.mark.parametrize("architecture", ["llama", "bert"])
def test_gradient_checkpointing_gives_the_same_run(tmp_path, architecture):
    plain = trainer_for(tmp_path / "plain", architecture=architecture, max_steps=3)
    checkpointed = trainer_for(tmp_path / "gc", architecture=architecture, max_steps=3, gradient_checkpointing=True)
    plain.train()
    checkpointed.train()
    assert checkpointed.model.is_gradient_checkpointing
    for name in SOURCES:
        assert logged(checkpointed, f"lambda/{name}") == pytest.approx(logged(plain, f"lambda/{name}"), abs=1e-6)


def test_a_launch_with_another_global_batch_than_expected_is_refused_before_the_model_is_loaded(tmp_path):
    args = MORERewardConfig(
        str(tmp_path), per_device_train_batch_size=6, expected_global_batch_size=12, report_to="none", bf16=False
    )
    with pytest.raises(ValueError, match=r"6 per device x 1 process\(es\) x 1 accumulation step\(s\) = 6.*=12`"):
        MORERewardTrainer(model="no/such-model-is-loaded", args=args, train_dataset=toy_preference_sources(6))


@pytest.mark.parametrize("pair_encoding", ["separate", "shared_prompt"])
def test_evaluation_stores_the_reward_statistics_openrlhf_reads(tmp_path, pair_encoding):
    """As OpenRLHF's reward trainer does after every evaluation, the mean and std of the evaluated rewards are stored in
    the config (`mean` / `std`, which OpenRLHF's `normalize_reward` reads, and trl-more's `reward_mean` /
    `reward_std`) and saved with the model."""
    import json

    import numpy as np

    from trl_more.metrics import evaluate_reward_model

    eval_sets = toy_preference_sources(4, seed=5)
    trainer = trainer_for(tmp_path, max_steps=1, pair_encoding=pair_encoding)
    trainer.evaluate(eval_sets)
    config = trainer.model.config
    assert (config.mean, config.std) == (config.reward_mean, config.reward_std)
    scored = evaluate_reward_model(trainer.model, trainer.processing_class, eval_sets, batch_size=4)
    rewards = np.concatenate(list(scored.rewards.values()))
    assert (config.mean, config.std) == pytest.approx((rewards.mean(), rewards.std()), abs=1e-5)
    trainer.save_model(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert (saved["mean"], saved["std"]) == (config.mean, config.std)


def epoch_of_batches(trainer):
    """The training batches of one epoch, as the collator builds them."""
    return list(trainer.get_train_dataloader())


@pytest.mark.parametrize("pair_encoding", ["shared_prompt", "separate"])
def test_group_by_length_gives_balanced_batches_with_less_padding(tmp_path, pair_encoding):
    options = dict(train_dataset=toy_preference_sources(48), max_steps=2, pair_encoding=pair_encoding)
    grouped = trainer_for(tmp_path / "grouped", train_sampling_strategy="group_by_length", **options)
    shuffled = trainer_for(tmp_path / "random", **options)
    sampler, dataset = grouped._get_train_sampler(), grouped.train_dataset
    expected = pair_row_lengths(dataset["chosen_ids"], dataset["rejected_ids"], pair_encoding == "shared_prompt")
    assert isinstance(sampler, SourceGroupedSampler) and sampler.lengths.tolist() == expected
    assert sampler.mega_batch_mult == 6  # 24 micro-batches per epoch: transformers' rule, min(50, 24 // 4)

    grouped_batches, random_batches = epoch_of_batches(grouped), epoch_of_batches(shuffled)
    assert len(grouped_batches) == len(random_batches) == 24
    for batch in grouped_batches:
        assert batch[SOURCE_INDEX_COLUMN].bincount().tolist() == [2, 2, 2]
    padded = [sum(batch["input_ids"].numel() for batch in epoch) for epoch in (grouped_batches, random_batches)]
    assert padded[0] < padded[1]
    grouped.train()
    assert len(logged(grouped, f"lambda/{SOURCES[0]}")) == 2


def test_group_by_length_with_one_source_and_an_evaluation_set(tmp_path):
    pairs = toy_preference_sources(40)["polite"]
    tokenizer = tiny_tokenizer()
    trainer = MORERewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer),
        args=config(tmp_path, max_steps=2, train_sampling_strategy="group_by_length", pair_encoding="shared_prompt"),
        train_dataset=pairs,
        eval_dataset=pairs.select(range(8)),
        processing_class=tokenizer,
    )
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, SourceGroupedSampler) and sampler.num_sources == 1
    assert sorted(sampler) == list(range(40))  # one pass; the last of 7 batches holds the remaining 4 pairs
    assert [len(batch["input_ids"]) for batch in epoch_of_batches(trainer)] == [6] * 6 + [4]
    trainer.train()
    assert "eval_accuracy" in trainer.evaluate()
