"""Rejection sampling with two processes on CPU: DDP over gloo, and DeepSpeed ZeRO-3 with every parameter partitioned.

Each test launches `tests/scripts/rjs_distributed.py` (2 iterations of 5 prompts, a number not divisible by the 2
processes, 3 samples each) and checks the iteration files and every rank's report.
"""

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from safetensors import safe_open

from trl_more.testing import TWO_CPU_PROCESSES, accelerate_launch


pytestmark = pytest.mark.distributed

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "rjs_distributed.py"
LAUNCH = accelerate_launch()
NUM_PROMPTS, NUM_SAMPLES = 5, 3


def launch(arguments, output_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([*LAUNCH, *arguments], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return [json.loads((output_dir / f"report-rank{rank}.json").read_text()) for rank in range(2)]


def check_every_prompt_once(reports, output_dir):
    assert [report["world_size"] for report in reports] == [2, 2]
    # Both processes called generate equally often with equally many prompts (3 = 5 prompts / 2, rounded up).
    calls = [[call[0] for call in report["generate_calls"]] for report in reports]
    assert calls[0] == calls[1] == [2 * NUM_SAMPLES, 1 * NUM_SAMPLES] * 2
    for iteration, first_prompt in ((0, 0), (1, NUM_PROMPTS)):
        samples = [json.loads(line) for line in (output_dir / f"iteration-{iteration:02d}" / "samples.jsonl").open()]
        pairs = Counter((sample["prompt_index"], sample["sample_index"]) for sample in samples)
        expected = {
            (index, sample) for index in range(first_prompt, first_prompt + NUM_PROMPTS) for sample in range(3)
        }
        assert set(pairs) == expected and set(pairs.values()) == {1}  # every prompt generated exactly once
        owners = {sample["prompt_index"]: set() for sample in samples}
        for sample in samples:
            owners[sample["prompt_index"]].add(sample["process_index"])
        assert all(len(ranks) == 1 for ranks in owners.values())
        assert Counter(next(iter(ranks)) for ranks in owners.values()) == {0: 3, 1: 2}
        selected = Counter(sample["prompt_index"] for sample in samples if sample["selected"])
        assert selected == dict.fromkeys(range(first_prompt, first_prompt + NUM_PROMPTS), 1)

        # The same training set on both ranks; each selected response trained on by exactly one rank.
        key = str(iteration)
        held = [report["iteration_examples"][key] for report in reports]
        assert held[0] == held[1] and len(held[0]) == NUM_PROMPTS
        trained = [tuple(example) for report in reports for example in report["trained_examples"][key]]
        assert Counter(trained) == Counter(tuple(example) for example in held[0])
        assert all(report["trained_examples"][key] for report in reports)  # both ranks trained on part of it

    before, after = reports[0]["parameters_before"], reports[0]["parameters_after"]
    assert all(after[name] != before[name] for name in before)  # the policy was trained
    assert reports[1]["parameters_after"] == after  # and is the same on both ranks


def test_two_processes_ddp_use_every_prompt_exactly_once(tmp_path):
    reports = launch(
        [
            "--multi_gpu",
            *TWO_CPU_PROCESSES,
            str(SCRIPT),
            str(tmp_path),
            "--use_cpu",
        ],
        tmp_path,
    )
    assert [report["zero_stage"] for report in reports] == [0, 0]
    check_every_prompt_once(reports, tmp_path)


def test_zero3_partitions_gathers_once_per_round_and_saves_full_weights(tmp_path):
    config = REPO / "recipes" / "accelerate_configs" / "deepspeed_zero3_cpu_test.yaml"
    reports = launch(["--config_file", str(config), str(SCRIPT), str(tmp_path)], tmp_path)
    assert [report["zero_stage"] for report in reports] == [3, 3]
    for report in reports:
        # Partitioned outside any gather: the policy and the reward model (prepared for inference under ZeRO-3).
        assert report["partitioned_shapes"] == {
            "policy.lm_head.weight": [0],
            "reward.layers.0.mlp.up_proj.weight": [0],
        }
        # ... and whole inside every generate call, gathered once per generation round (2 rounds, 4 generate calls),
        # not layer by layer at every token.
        assert {tuple(call[2:]) for call in report["generate_calls"]} == {(512, 32)}
        assert report["whole_model_gathers"] == 2
    check_every_prompt_once(reports, tmp_path)
    with safe_open(str(tmp_path / "final" / "model.safetensors"), "pt") as weights:
        assert list(weights.get_slice("lm_head.weight").get_shape()) == [512, 32]


def check_reward_model_updates(reports, output_dir):
    """MetaRM updated the reward model in both iterations, identically on both ranks, and saved it each time."""
    before, after = reports[0]["reward_parameters_before"], reports[0]["reward_parameters_after"]
    assert reports[1]["reward_parameters_after"] == after  # the same reward model on both ranks
    assert sum(after[name] != before[name] for name in before) > len(before) // 2
    for iteration in (0, 1):
        folder = output_dir / f"iteration-{iteration:02d}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["metarm/difference_after"] > metrics["metarm/difference"]
        with safe_open(str(folder / "reward_model" / "model.safetensors"), "pt") as weights:
            assert list(weights.get_slice("model.layers.0.mlp.up_proj.weight").get_shape()) == [64, 32]


def test_metarm_updates_under_ddp_keep_the_reward_model_identical_on_both_ranks(tmp_path):
    reports = launch(
        [
            "--multi_gpu",
            *TWO_CPU_PROCESSES,
            str(SCRIPT),
            str(tmp_path),
            "--use_cpu",
            "--metarm",
        ],
        tmp_path,
    )
    check_every_prompt_once(reports, tmp_path)
    check_reward_model_updates(reports, tmp_path)


def test_metarm_updates_under_zero3_train_the_partitioned_reward_model_on_one_engine(tmp_path):
    config = REPO / "recipes" / "accelerate_configs" / "deepspeed_zero3_cpu_test.yaml"
    reports = launch(["--config_file", str(config), str(SCRIPT), str(tmp_path), "--metarm"], tmp_path)
    for report in reports:
        assert report["partitioned_shapes"]["reward.layers.0.mlp.up_proj.weight"] == [0]
    check_every_prompt_once(reports, tmp_path)
    check_reward_model_updates(reports, tmp_path)
