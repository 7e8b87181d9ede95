"""MetaRM under two processes on CPU: DDP over gloo and DeepSpeed ZeRO-3 with every parameter really partitioned.

Both must train exactly as one process on the same global batches (per-device batch 3 and 2 meta prompts on 2 ranks
= batch 6 and 4 meta prompts on one process): the meta step moves every replica by the process-averaged grad J,
edits ZeRO-3's partitions where they live, and restores them before DeepSpeed's optimizer step.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from test_more_distributed import LAUNCH, SCRIPT, ZERO3_CONFIG, load_scores


pytestmark = pytest.mark.distributed
META = ["--meta_learning_rate", "2.0"]


def records(output_dir):
    return [json.loads((output_dir / f"lambda_rank{rank}.json").read_text()) for rank in range(2)]


def launch(command):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("metarm-single")
    launch(
        [
            sys.executable,
            str(SCRIPT),
            "--output_dir",
            str(output_dir),
            "--per_device_train_batch_size",
            "6",
            "--per_device_meta_batch_size",
            "4",
            *META,
        ]
    )
    return json.loads((output_dir / "lambda_rank0.json").read_text()), output_dir


def assert_same_run(output_dir, single_process):
    record, single_dir = single_process
    ranks = records(output_dir)
    assert len(record["meta_differences"]) == 3
    assert ranks[0]["meta_differences"] == ranks[1]["meta_differences"]  # reduced: the same on every rank
    torch.testing.assert_close(
        torch.tensor(ranks[0]["meta_differences"]), torch.tensor(record["meta_differences"]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(load_scores(output_dir / "final"), load_scores(single_dir / "final"), atol=1e-5, rtol=0)


def test_metarm_under_ddp_equals_single_process(tmp_path, single_process):
    launch([*LAUNCH, "--multi_gpu", str(SCRIPT), "--output_dir", str(tmp_path), *META])
    assert_same_run(tmp_path, single_process)


def test_metarm_under_zero3_with_partitioned_parameters_equals_single_process(tmp_path, single_process):
    launch(
        [
            *LAUNCH,
            "--use_deepspeed",
            "--deepspeed_config_file",
            str(ZERO3_CONFIG),
            str(SCRIPT),
            "--output_dir",
            str(tmp_path),
            "--check_zero3",
            *META,
        ]
    )
    assert [rank["partition_checks"] for rank in records(tmp_path)] == [3, 3]
    assert_same_run(tmp_path, single_process)
