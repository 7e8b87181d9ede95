"""MetaRM under two processes on CPU: DDP over gloo and DeepSpeed ZeRO-3 with every parameter really partitioned.

Both must train exactly as one process on the same global batches (per-device batch 3 and 2 meta prompts on 2 ranks
= batch 6 and 4 meta prompts on one process): the meta step moves every replica by the process-averaged grad J,
edits ZeRO-3's partitions where they live, and restores them before DeepSpeed's optimizer step.
"""

import pytest
import torch
from test_more_distributed import LAUNCH, SCRIPT, load_scores, run, run_single_process, run_zero3


pytestmark = pytest.mark.distributed
META = ["--meta_learning_rate", "2.0"]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("metarm-single")
    options = ["--per_device_train_batch_size", "6", "--per_device_meta_batch_size", "4", *META]
    return run_single_process(output_dir, *options), output_dir


def assert_same_run(ranks, output_dir, single_process):
    record, single_dir = single_process
    assert len(record["meta_differences"]) == 3
    assert ranks[0]["meta_differences"] == ranks[1]["meta_differences"]  # reduced: the same on every rank
    torch.testing.assert_close(
        torch.tensor(ranks[0]["meta_differences"]), torch.tensor(record["meta_differences"]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(load_scores(output_dir / "final"), load_scores(single_dir / "final"), atol=1e-5, rtol=0)


def test_metarm_under_ddp_equals_single_process(tmp_path, single_process):
    ranks = run([*LAUNCH, "--multi_gpu", str(SCRIPT), "--output_dir", str(tmp_path), *META], tmp_path)
    assert_same_run(ranks, tmp_path, single_process)


def test_metarm_under_zero3_with_partitioned_parameters_equals_single_process(tmp_path, single_process):
    ranks = run_zero3(tmp_path, *META)
    assert [rank["partition_checks"] for rank in ranks] == [3, 3]
    assert_same_run(ranks, tmp_path, single_process)
