"""K-source mixtures: train/test splits, YAML configs, summaries, and MORE training."""

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.data import (
    RATING_SCALES,
    MixtureConfig,
    SourceConfig,
    known_source_names,
    load_mixture,
    load_preference_source,
    mix_sources,
    resample_indices,
)
from trl_more.testing import tiny_reward_model, tiny_tokenizer


REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
WEBGPT = {"name": "webgpt", "path": str(FIXTURES / "webgpt_comparisons.jsonl")}  # 2 pairs after tie and bad row


def pairs_of(dataset, source=None):
    columns = dataset.to_dict()
    rows = zip(columns["prompt"], columns["chosen"], columns["rejected"], columns["source"])
    return [row[:3] for row in rows if source is None or row[3] == source]


@pytest.fixture(scope="module")
def hh_paths(shared_data):
    return {
        "hh-helpful": str(shared_data / "hh_rlhf" / "helpful-base.test.jsonl.gz"),
        "hh-harmless": str(shared_data / "hh_rlhf" / "harmless-base.test.jsonl.gz"),
    }


@pytest.fixture(scope="module")
def hh_sources(hh_paths):
    return [{"name": name, "path": path} for name, path in hh_paths.items()]


@pytest.fixture(scope="module")
def hh_mixture(hh_sources):
    return mix_sources(hh_sources, test_size=0.2, seed=0)


@pytest.fixture(scope="module")
def hh_pools(hh_paths):
    """The converted pairs of each HH file, as `(prompt, chosen, rejected)` tuples."""
    return {name: pairs_of(load_preference_source(name, path).dataset) for name, path in hh_paths.items()}


# --------------------------------------------------------------------------------------------------------------------
# resample_indices (docs/more.md)
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_rows", "target"), [(10, 4), (10, 10), (7, 26), (3, 100), (1, 5), (1000, 999)])
def test_resample_indices_sizes_and_coverage(num_rows, target):
    indices = resample_indices(num_rows, target, np.random.default_rng(0))
    assert len(indices) == target
    counts = np.bincount(indices, minlength=num_rows)
    if target <= num_rows:  # down-sampling: distinct rows
        assert counts.max() == 1
    else:  # up-sampling: every row floor(target / num_rows) times, target % num_rows distinct rows once more
        assert counts.min() == target // num_rows and counts.max() <= target // num_rows + 1
        assert (counts > target // num_rows).sum() == target % num_rows


def test_resample_indices_is_deterministic_for_a_seed():
    first = resample_indices(50, 23, np.random.default_rng(7))
    assert np.array_equal(first, resample_indices(50, 23, np.random.default_rng(7)))
    assert not np.array_equal(first, resample_indices(50, 23, np.random.default_rng(8)))


# --------------------------------------------------------------------------------------------------------------------
# Mixtures of the real HH files
# --------------------------------------------------------------------------------------------------------------------


def test_hh_mixture_splits_every_source_without_loss_or_overlap(hh_mixture, hh_pools):
    train, test = hh_mixture.train, hh_mixture.test
    assert train.column_names == ["prompt", "chosen", "rejected", "source"]
    assert Counter(train["source"]) == {"hh-helpful": 1882, "hh-harmless": 1850}  # 2352 - 470, 2312 - 462
    assert Counter(test["source"]) == {"hh-helpful": 470, "hh-harmless": 462}
    for name, pool in hh_pools.items():
        train_pairs, test_pairs = pairs_of(train, name), pairs_of(test, name)
        assert not set(train_pairs) & set(test_pairs)
        assert sorted(train_pairs + test_pairs) == sorted(pool)
    by_source = hh_mixture.test_by_source()
    assert list(by_source) == ["hh-helpful", "hh-harmless"] and len(by_source["hh-harmless"]) == 462
    assert set(hh_mixture.as_dataset_dict()) == {"train", "test"}
    assert set(hh_mixture.reports) == {"hh-helpful", "hh-harmless"}
    assert hh_mixture.reports["hh-helpful"].num_invalid == 2


def test_other_seeds_split_differently_and_sources_do_not_disturb_each_other(hh_mixture, hh_sources):
    # The same seed gives the same mixture: see test_hh_cpu_recipe_declares_the_same_mixture.
    other_seed = mix_sources(hh_sources[1:], test_size=0.2, seed=1)
    assert set(pairs_of(other_seed.test)) != set(pairs_of(hh_mixture.test, "hh-harmless"))
    alone = mix_sources(hh_sources[1:], test_size=0.2, seed=0)
    assert pairs_of(alone.test) == pairs_of(hh_mixture.test, "hh-harmless")


def resampled_by_the_trainer(tmp_path, train_dataset, samples_per_source, seed=3):
    tokenizer = tiny_tokenizer("bpe")
    args = MORERewardConfig(
        str(tmp_path),
        samples_per_source=samples_per_source,
        per_device_train_batch_size=2,
        max_length=64,
        truncation_mode="keep_end",
        report_to="none",
        bf16=False,
        seed=seed,
    )
    trainer = MORERewardTrainer(
        tiny_reward_model("qwen2", tokenizer), args, train_dataset=train_dataset, processing_class=tokenizer
    )
    prepared = trainer.train_dataset
    ids = list(zip(prepared["chosen_ids"], prepared["rejected_ids"]))
    return Counter(prepared["source_index"]), ids, prepared["source_index"]


def test_the_trainer_resamples_after_tokenization_cutting_large_sources_and_repeating_small_ones(
    hh_sources, tmp_path, caplog
):
    mixture = mix_sources([hh_sources[0], WEBGPT], test_size=0, seed=3)
    with caplog.at_level("WARNING"):
        counts, pairs, source_index = resampled_by_the_trainer(tmp_path, mixture.train, 1001)
    assert counts == {0: 1001, 1: 1001} and "webgpt: 500x" in caplog.text  # 2 pairs repeated 500 times: said
    helpful = [pair for pair, source in zip(pairs, source_index) if source == 0]
    assert len(set(map(str, helpful))) == 1001  # down-sampling draws distinct pairs
    webgpt = Counter(str(pair) for pair, source in zip(pairs, source_index) if source == 1)  # 2 pairs -> 1001
    assert len(webgpt) == 2 and sorted(webgpt.values()) == [500, 501]
    assert resampled_by_the_trainer(tmp_path, mixture.train, 1001)[1] == pairs  # deterministic for a seed


def test_resampling_belongs_to_the_trainer_not_the_mixture(tmp_path):
    config = tmp_path / "mixture.yaml"
    config.write_text("sources: [webgpt]\nsamples_per_source: 10\n")
    with pytest.raises(ValueError, match="resampling the sources is the trainer's option.*MORERewardConfig"):
        MixtureConfig.from_yaml(config)


def test_summary_counts_and_mean_lengths(hh_mixture, hh_pools):
    rows = {row.source: row for row in hh_mixture.summary.sources}
    helpful = rows["hh-helpful"]
    prompts, chosen, _ = zip(*hh_pools["hh-helpful"])
    assert (helpful.rows_read, helpful.invalid, helpful.examples, helpful.train, helpful.test) == (
        2354,
        2,
        2352,
        1882,
        470,
    )
    assert helpful.mean_prompt_chars == pytest.approx(np.mean([len(text) for text in prompts]))
    assert helpful.mean_chosen_chars == pytest.approx(np.mean([len(text) for text in chosen]))
    assert helpful.mean_response_chars == pytest.approx((helpful.mean_chosen_chars + helpful.mean_rejected_chars) / 2)
    table = str(hh_mixture).splitlines()
    assert table[0].split() == [
        "source",
        "read",
        "invalid",
        "skipped",
        "examples",
        "train",
        "test",
        "prompt",
        "chars",
        "chosen",
        "chars",
        "rejected",
        "chars",
    ]
    assert table[1].split()[:7] == ["hh-helpful", "2354", "2", "0", "2352", "1882", "470"]
    assert table[2].split()[:7] == ["hh-harmless", "2312", "0", "0", "2312", "1850", "462"]


def test_held_out_files_and_counts(shared_data):
    folder = shared_data / "ultrafeedback"
    source = {
        "name": "ultrafeedback",
        "path": str(folder / "train_clean.jsonl"),
        "test_path": str(folder / "eval_clean.jsonl"),
    }
    mixture = mix_sources([source, {**WEBGPT, "test_size": 1}])
    eval_pairs = load_preference_source("ultrafeedback", folder / "eval_clean.jsonl").dataset
    assert len(eval_pairs) > 190
    assert pairs_of(mixture.test, "ultrafeedback") == pairs_of(eval_pairs)  # the whole held-out file, in order
    assert len(pairs_of(mixture.train, "ultrafeedback")) == 994  # nothing carved out of the train file
    assert Counter(mixture.test["source"])["webgpt"] == 1 and Counter(mixture.train["source"])["webgpt"] == 1
    assert set(mixture.reports) == {"ultrafeedback", "ultrafeedback (test)", "webgpt"}
    capped = mix_sources([{**source, "test_size": 50}])
    assert len(capped.test) == 50 and set(pairs_of(capped.test)) <= set(pairs_of(eval_pairs))


def test_max_examples_keeps_a_seeded_random_subset_before_the_split(shared_data):
    source = {"name": "ultrafeedback", "path": str(shared_data / "ultrafeedback" / "eval_clean.jsonl")}
    whole = mix_sources([source], test_size=0)
    capped = mix_sources([{**source, "max_examples": 40}], test_size=0.25)
    kept = set(pairs_of(capped.train)) | set(pairs_of(capped.test))
    assert (len(capped.train), len(capped.test)) == (30, 10) and len(kept) == 40
    assert kept <= set(pairs_of(whole.train))
    assert kept != set(pairs_of(whole.train)[:40])  # a random subset, not the first rows
    assert pairs_of(mix_sources([{**source, "max_examples": 40}], test_size=0.25).train) == pairs_of(capped.train)
    assert capped.summary.sources[0].examples == 40
    assert len(mix_sources([{**source, "max_examples": 10_000}], test_size=0).train) == len(whole.train)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="`max_examples` must be a positive count"):
            SourceConfig("ultrafeedback", max_examples=bad)


def test_rating_sets_mix_with_the_union_of_their_objectives(shared_data):
    mixture = mix_sources(
        [
            {"name": "helpsteer", "path": str(FIXTURES / "helpsteer.jsonl")},
            {"name": "topical-chat", "path": str(shared_data / "topical_chat" / "topical_chat.json")},
        ],
        test_size=0.5,
    )
    assert mixture.train.column_names == [
        "prompt",
        "response",
        *RATING_SCALES["helpsteer"],
        *RATING_SCALES["topical-chat"],
        "source",
    ]
    rows = mixture.train.to_list() + mixture.test.to_list()
    assert len(rows) == 2 + 360
    for row in rows:
        labelled = {
            name
            for name, value in row.items()
            if name.startswith(("helpsteer-", "topical-chat-")) and not math.isnan(value)
        }
        prefix = "helpsteer-" if row["source"] == "helpsteer" else "topical-chat-"
        assert labelled and all(name.startswith(prefix) for name in labelled)
    assert "response chars" in str(mixture.summary)


# --------------------------------------------------------------------------------------------------------------------
# Bad configurations
# --------------------------------------------------------------------------------------------------------------------


def test_bad_mixtures_are_clear_errors(hh_sources, shared_data):
    with pytest.raises(ValueError, match="Several sources are labelled \\['hh-helpful'\\]"):
        mix_sources([hh_sources[0], hh_sources[0]])
    with pytest.raises(ValueError, match="leaving none to train on"):
        mix_sources([WEBGPT], test_size=2)
    with pytest.raises(ValueError, match="must be a fraction in \\[0, 1\\) or a non-negative count, got 1.5"):
        mix_sources([WEBGPT], test_size=1.5)
    with pytest.raises(ValueError, match="give `test_path` or `test_split`, not both"):
        SourceConfig("webgpt", test_path="a.jsonl", test_split="test")
    with pytest.raises(ValueError, match="mixes preference sources .* with rating sets"):
        mix_sources([WEBGPT, {"name": "helpsteer", "path": str(FIXTURES / "helpsteer.jsonl")}], test_size=0)
    with pytest.raises(ValueError, match="No row could be converted; the rows have the columns \\['answer_0'"):
        mix_sources([{"name": "summarize", "path": str(FIXTURES / "webgpt_comparisons.jsonl")}])


# --------------------------------------------------------------------------------------------------------------------
# YAML configs (recipes/mixtures)
# --------------------------------------------------------------------------------------------------------------------


def test_hh_cpu_recipe_declares_the_same_mixture(hh_mixture, shared_data, monkeypatch):
    if shared_data != (REPO / ".." / "shared" / "data").resolve():
        pytest.skip("recipes/mixtures/hh_cpu.yaml points at ../shared/data, which is not the data folder here")
    monkeypatch.chdir(REPO)
    from_yaml = load_mixture("recipes/mixtures/hh_cpu.yaml")
    assert pairs_of(from_yaml.train) == pairs_of(hh_mixture.train)
    assert pairs_of(from_yaml.test) == pairs_of(hh_mixture.test)


def test_paper_recipe_declares_the_five_hub_sources():
    config = MixtureConfig.from_yaml(REPO / "recipes" / "mixtures" / "paper_five_sources.yaml")
    assert [source.label for source in config.sources] == [
        "hh-helpful",
        "hh-harmless",
        "oasst1",
        "webgpt",
        "summarize",
    ]
    assert all(source.name in known_source_names() and source.path is None for source in config.sources)
    held_out = {source.label: (source.test_split, source.test_size) for source in config.sources}
    assert held_out == {
        "hh-helpful": ("test", None),
        "hh-harmless": ("test", None),
        "oasst1": ("validation", None),
        "webgpt": (None, 901),
        "summarize": ("validation", 2000),
    }


def test_unknown_yaml_keys_are_named(tmp_path):
    top = tmp_path / "top.yaml"
    top.write_text("sources: [webgpt]\nsample_per_source: 10\n")
    with pytest.raises(ValueError, match=f"Unknown key 'sample_per_source' in {top}; the known keys are: sources, "):
        MixtureConfig.from_yaml(top)
    nested = tmp_path / "nested.yaml"
    nested.write_text("sources:\n  - name: webgpt\n    tie: both\n")
    with pytest.raises(ValueError, match=f"Unknown key 'tie' in {nested}, sources\\[0\\]; the known keys are: name, "):
        MixtureConfig.from_yaml(nested)
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("sources:\n  - path: a.jsonl\n")
    with pytest.raises(ValueError, match="sources\\[0\\] has no `name`"):
        MixtureConfig.from_yaml(nameless)
    options = tmp_path / "options.yaml"
    options.write_text(
        f"sources:\n  - name: webgpt\n    path: {WEBGPT['path']}\n    options: {{ties: both}}\ntest_size: 0\n"
    )
    assert len(load_mixture(options).train) == 4  # the tie kept both ways


# --------------------------------------------------------------------------------------------------------------------
# The mixture feeds the MORE trainer
# --------------------------------------------------------------------------------------------------------------------


def test_mixture_trains_a_more_reward_model(hh_sources, tmp_path):
    mixture = mix_sources([*hh_sources, {**WEBGPT, "test_size": 1}], test_size=4, seed=0)
    tokenizer = tiny_tokenizer("bpe")
    args = MORERewardConfig(
        output_dir=str(tmp_path),
        samples_per_source=8,
        per_device_train_batch_size=6,
        max_steps=2,
        max_length=64,
        truncation_mode="keep_end",
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        bf16=False,
        save_strategy="no",
    )
    trainer = MORERewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=mixture.train,
        eval_dataset=mixture.test_by_source(),
        processing_class=tokenizer,
    )
    assert trainer.sources == ["hh-helpful", "hh-harmless", "webgpt"]  # in the mixture's order
    result = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(result.training_loss)
    logged = trainer.state.log_history[0]
    assert {"lambda/hh-helpful", "lambda/hh-harmless", "lambda/webgpt"} <= set(logged)
    assert sum(logged[f"lambda/{name}"] for name in trainer.sources) == pytest.approx(1.0)
    metrics = trainer.evaluate()  # one evaluation per source of the held-out split
    assert {"eval_hh-helpful_accuracy", "eval_hh-harmless_accuracy", "eval_webgpt_accuracy"} <= set(metrics)
