"""MORE under two processes on CPU: DDP over gloo and DeepSpeed ZeRO-3 with the reward head really partitioned.

Each test launches `tests/scripts/more_distributed.py` with `accelerate launch` and compares what every rank solved
for with a single-process run on the same global batches (per-device batch 3 on 2 ranks = batch 6 on 1 process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from trl_more.testing import TWO_CPU_PROCESSES, accelerate_launch


pytestmark = pytest.mark.distributed

SCRIPT = Path(__file__).parent / "scripts" / "more_distributed.py"
ZERO3_CONFIG = Path(__file__).parents[1] / "recipes" / "accelerate_configs" / "zero3_cpu_test.json"
LAUNCH = accelerate_launch(*TWO_CPU_PROCESSES)


ZERO3_LAUNCH = [*LAUNCH, "--use_deepspeed", "--deepspeed_config_file", str(ZERO3_CONFIG), str(SCRIPT)]


def run(command, output_dir, processes=2):
    """`command` (the script, or an `accelerate launch` of it) offline with one thread a process: every rank's
    record."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return [json.loads((output_dir / f"lambda_rank{rank}.json").read_text()) for rank in range(processes)]


def run_single_process(output_dir, *options):
    """The script in one process (the reference run): its record."""
    return run([sys.executable, str(SCRIPT), "--output_dir", str(output_dir), *options], output_dir, processes=1)[0]


def run_zero3(output_dir, *options):
    """The script on two processes under DeepSpeed ZeRO-3, asserting at every step that the reward head is
    partitioned: every rank's record."""
    return run([*ZERO3_LAUNCH, "--output_dir", str(output_dir), "--check_zero3", *options], output_dir)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("single")
    return run_single_process(output_dir, "--per_device_train_batch_size", "6"), output_dir


def load_scores(model_dir):
    from trl_more.testing import tiny_tokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    batch = tiny_tokenizer()(
        ["Human: hi Assistant: hello", "Human: a joke? Assistant: no"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**batch).logits


def assert_same_run(ranks, single_process, output_dir):
    record, single_dir = single_process
    assert [rank["world_size"] for rank in ranks] == [2, 2] and record["world_size"] == 1
    assert ranks[0]["lambda"] == ranks[1]["lambda"]  # identical on every rank, bit for bit
    assert len(record["lambda"]) == 3
    torch.testing.assert_close(torch.tensor(ranks[0]["lambda"]), torch.tensor(record["lambda"]), atol=1e-5, rtol=0)
    assert not torch.allclose(torch.tensor(record["lambda"]), torch.tensor(1 / 3))  # MORE really reweighted
    torch.testing.assert_close(load_scores(output_dir / "final"), load_scores(single_dir / "final"), atol=1e-5, rtol=0)


def test_ddp_lambda_is_identical_on_both_ranks_and_equals_single_process(tmp_path, single_process):
    ranks = run([*LAUNCH, "--multi_gpu", str(SCRIPT), "--output_dir", str(tmp_path)], tmp_path)
    assert_same_run(ranks, single_process, tmp_path)


def test_zero3_with_partitioned_head_equals_single_process_and_saves(tmp_path, single_process):
    ranks = run_zero3(tmp_path)
    assert [rank["partition_checks"] for rank in ranks] == [3, 3]  # the head weight had shape (0,) at every step
    assert_same_run(ranks, single_process, tmp_path)


@pytest.mark.parametrize(("loss", "representation"), [("swav", "pair"), ("simcse", "difference")])
def test_zero3_with_a_contrastive_loss_keeps_every_rank_identical(tmp_path, loss, representation):
    ranks = run_zero3(tmp_path, "--contrastive_loss", loss, "--contrastive_representation", representation)
    assert [rank["partition_checks"] for rank in ranks] == [3, 3]
    assert ranks[0]["lambda"] == ranks[1]["lambda"]
    losses = ranks[0]["contrastive_losses"]
    assert len(losses) == 3 and losses == ranks[1]["contrastive_losses"] and all(value > 0 for value in losses)
    if loss == "swav":
        assert ranks[0]["prototypes"] == ranks[1]["prototypes"]  # stepped on the averaged gradient on every rank
        initial = torch.nn.functional.normalize(
            torch.randn(4, 32, generator=torch.Generator().manual_seed(0)) / 32**0.5, dim=-1
        )
        assert not torch.allclose(torch.tensor(ranks[0]["prototypes"]), initial)  # they trained
    else:
        assert "prototypes" not in ranks[0]
    assert load_scores(tmp_path / "final").shape == (2, 1)  # the saved model loads (without SwAV's prototypes)


def test_ddp_in_the_paper_recipes_shape_equals_one_process_on_the_global_batch(tmp_path):
    """The recipes' layout, 2 pairs of every source per rank with lambda solved on the all-reduced gradients: 2 ranks
    x 6 pairs (3 sources) solve the same lambda as 1 process x 12 pairs of the same data, step by step."""
    single_dir = tmp_path / "single"
    single = (run_single_process(single_dir, "--per_device_train_batch_size", "12"), single_dir)
    ranks = run(
        [*LAUNCH, "--multi_gpu", str(SCRIPT), "--output_dir", str(tmp_path), "--per_device_train_batch_size", "6"],
        tmp_path,
    )
    assert_same_run(ranks, single, tmp_path)


def test_zero3_with_shared_prompt_encoding_equals_single_process_separate_encoding(tmp_path, single_process):
    ranks = run_zero3(tmp_path, "--pair_encoding", "shared_prompt")
    assert [rank["partition_checks"] for rank in ranks] == [3, 3]
    assert_same_run(ranks, single_process, tmp_path)


def test_zero3_with_text_regularization_gathers_the_tied_head_and_equals_single_process(tmp_path):
    """GRM under ZeRO-3 with the model loaded inside the trainer, so that its token embeddings (the tied
    language-model head) are partitioned from the start and must be gathered to copy the head: the same text losses,
    language-model head and reward model as one process on the global batch."""
    from trl_more.testing import tiny_reward_model, tiny_tokenizer

    base = tmp_path / "base"
    tokenizer = tiny_tokenizer()
    tiny_reward_model("qwen2", tokenizer, seed=3, tie_word_embeddings=True).save_pretrained(base)
    tokenizer.save_pretrained(base)
    options = ["--model_path", str(base), "--text_regularization_coefficient", "0.1"]
    single_dir = tmp_path / "single"
    single = run_single_process(single_dir, "--per_device_train_batch_size", "6", *options)
    zero3_dir = tmp_path / "zero3"
    ranks = run_zero3(zero3_dir, *options)
    assert [rank["embeddings_partitioned_at_init"] for rank in ranks] == [True, True]
    assert not single["embeddings_partitioned_at_init"]
    assert len(single["text_losses"]) == 3 and ranks[0]["text_losses"] == ranks[1]["text_losses"]
    torch.testing.assert_close(
        torch.tensor(ranks[0]["text_losses"]), torch.tensor(single["text_losses"]), atol=1e-5, rtol=0
    )
    assert ranks[0]["text_head"] == ranks[1]["text_head"]  # stepped on the averaged gradient on every rank
    torch.testing.assert_close(
        torch.tensor(ranks[0]["text_head"]), torch.tensor(single["text_head"]), atol=1e-5, rtol=0
    )
    initial = AutoModelForSequenceClassification.from_pretrained(base).get_input_embeddings().weight
    assert not torch.allclose(torch.tensor(single["text_head"]), initial)  # it trained
    torch.testing.assert_close(load_scores(zero3_dir / "final"), load_scores(single_dir / "final"), atol=1e-5, rtol=0)
