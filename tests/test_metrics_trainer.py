"""`PreferenceMetrics` inside real Trainer evaluations gives the numbers of `evaluate_reward_model` on the same pairs."""

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest
from transformers.trainer_utils import EvalPrediction
from trl import RewardConfig, RewardTrainer

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.metrics import PreferenceMetrics, evaluate_reward_model, preference_metrics
from trl_more.testing import (
    TWO_CPU_PROCESSES,
    accelerate_launch,
    tiny_reward_model,
    tiny_tokenizer,
    toy_preference_sources,
)


# 10 pairs per source with eval batches of 3: the last batch of every source holds a single pair.
EVAL_PAIRS, EVAL_BATCH = 10, 3


def trainer_args(config_class, tmp_path, **overrides):
    return config_class(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=EVAL_BATCH,
        per_device_train_batch_size=3,
        max_steps=3,
        learning_rate=1e-3,
        report_to="none",
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        **overrides,
    )


def assert_same_metrics(trainer_metrics, evaluation, prefix="eval"):
    for source, row in evaluation.metrics.items():
        for key, expected in row.items():
            got = trainer_metrics[f"{prefix}_{source}_{key}"]
            if isinstance(expected, float) and np.isnan(expected):
                assert np.isnan(got), key
            else:
                assert got == pytest.approx(expected, abs=1e-5), f"{source} {key}"
        assert trainer_metrics[f"{prefix}_{source}_num_pairs"] == EVAL_PAIRS


@pytest.fixture
def eval_sources():
    return toy_preference_sources(EVAL_PAIRS, seed=1)


@pytest.mark.parametrize("overrides", [{}, {"batch_eval_metrics": True}, {"eval_do_concat_batches": False}])
def test_trl_reward_trainer_metrics_equal_evaluate_reward_model(tmp_path, eval_sources, overrides):
    tokenizer = tiny_tokenizer()
    metrics = PreferenceMetrics(n_bins=10, outlier_threshold=0.01)
    trainer = RewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer, seed=3),
        args=trainer_args(RewardConfig, tmp_path, **overrides),
        train_dataset=toy_preference_sources(6)["polite"],
        eval_dataset=dict(eval_sources),
        processing_class=tokenizer,
        **metrics.trainer_kwargs(),
    )
    results = trainer.evaluate()
    expected = evaluate_reward_model(
        trainer.model, tokenizer, eval_sources, batch_size=4, outlier_threshold=0.01, show_progress=False
    )
    assert_same_metrics(results, expected)
    # The table is not trivial: the random model separates the pairs of a source and gets some outliers.
    assert any(row["positive_outliers"] + row["negative_outliers"] > 0 for row in expected.metrics.values())


def test_more_trainer_metrics_equal_evaluate_reward_model_after_training(tmp_path, eval_sources):
    tokenizer = tiny_tokenizer("wordpiece")
    trainer = MORERewardTrainer(
        model=tiny_reward_model("bert", tokenizer),
        args=trainer_args(MORERewardConfig, tmp_path),
        train_dataset=toy_preference_sources(6),
        eval_dataset=dict(eval_sources),
        processing_class=tokenizer,
        compute_metrics=PreferenceMetrics(),  # MORE wires its logits preprocessing itself
    )
    trainer.train()
    results = trainer.evaluate()
    expected = evaluate_reward_model(trainer.model, tokenizer, eval_sources, batch_size=5, show_progress=False)
    assert_same_metrics(results, expected)
    # MORE's own per-source metrics sit next to these without overwriting them.
    assert {"eval_polite_accuracy", "eval_polite_preference_accuracy"} <= set(results)


def test_a_single_eval_dataset_gives_unprefixed_metrics(tmp_path, eval_sources):
    tokenizer = tiny_tokenizer()
    trainer = RewardTrainer(
        model=tiny_reward_model("llama", tokenizer),
        args=trainer_args(RewardConfig, tmp_path),
        train_dataset=eval_sources["polite"],
        eval_dataset=eval_sources["concise"],
        processing_class=tokenizer,
        **PreferenceMetrics().trainer_kwargs(),
    )
    results = trainer.evaluate()
    expected = evaluate_reward_model(trainer.model, tokenizer, eval_sources["concise"], show_progress=False)
    assert results["eval_ece"] == pytest.approx(expected.metrics["eval"]["ece"], abs=1e-5)
    assert results["eval_num_pairs"] == EVAL_PAIRS


def test_metrics_without_the_logits_preprocessing_fail_clearly():
    metrics = PreferenceMetrics()
    raw = EvalPrediction(predictions=np.zeros((8, 1)), label_ids=())
    with pytest.raises(ValueError, match="preprocess_logits"):
        metrics(raw)


def test_preprocess_logits_pairs_chosen_and_rejected_rows():
    import torch

    logits = torch.tensor([[1.0], [2.0], [3.0], [10.0], [20.0], [30.0]])  # chosen 1, 2, 3; rejected 10, 20, 30
    pairs = PreferenceMetrics.preprocess_logits(logits, ())
    assert pairs.tolist() == [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]
    row = PreferenceMetrics(outlier_threshold=100.0)(EvalPrediction(predictions=pairs.numpy(), label_ids=()))
    assert row == preference_metrics([-9.0, -18.0, -27.0], outlier_threshold=100.0)
    with pytest.raises(ValueError, match="num_labels=1"):
        PreferenceMetrics.preprocess_logits(torch.zeros(4, 2), ())


DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from trl import RewardConfig, RewardTrainer
    from trl_more.metrics import PreferenceMetrics
    from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources

    tokenizer = tiny_tokenizer()
    trainer = RewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer, seed=3),
        # CPU multi-process: torchrun via `--multi_gpu`, then accelerate's MULTI_CPU through `use_cpu` and gloo.
        args=RewardConfig(output_dir=sys.argv[1], per_device_eval_batch_size=3, report_to="none", bf16=False,
                          use_cpu=True, ddp_backend="gloo", disable_tqdm=True),
        train_dataset=toy_preference_sources(6)["polite"],
        eval_dataset=dict(toy_preference_sources(10, seed=1)),
        processing_class=tokenizer,
        **PreferenceMetrics().trainer_kwargs(),
    )
    results = trainer.evaluate()
    if trainer.accelerator.is_main_process:
        with open(sys.argv[2], "w") as file:
            json.dump({**results, "num_processes": trainer.accelerator.num_processes}, file)
    """
)


@pytest.mark.distributed
def test_two_processes_with_a_padded_last_batch_give_the_single_process_numbers(tmp_path, eval_sources):
    # 10 pairs, 2 processes x 3 pairs per step: the last step holds 4 real pairs and 2 duplicates that accelerate adds.
    script, output = tmp_path / "evaluate.py", tmp_path / "results.json"
    script.write_text(DISTRIBUTED_SCRIPT)
    command = accelerate_launch("--multi_gpu", *TWO_CPU_PROCESSES, str(script), str(tmp_path / "out"), str(output))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]

    results = json.loads(output.read_text())
    assert results["num_processes"] == 2
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model("qwen2", tokenizer, seed=3)
    expected = evaluate_reward_model(model, tokenizer, eval_sources, show_progress=False)
    assert_same_metrics(results, expected)
