"""benchmarks/gpu_check.py, the one script run when a GPU is lent, works end to end: its CPU smoke mode runs every
part on tiny layouts and writes every result file (the GPU itself is untested here)."""

import json
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_part_on_cpu_and_writes_its_results(tmp_path):
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_check.py"),
        "--output_dir",
        str(tmp_path),
        "--device",
        "cpu",
        "--tiny",
        "--batch",
        "4",
        "--steps",
        "2",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    encoding = json.loads((tmp_path / "pair_encoding.json").read_text())
    assert encoding["shared_prompt"]["max_reward_difference"] < 1e-5  # the same rewards as separate encoding
    assert encoding["packed"]["max_reward_difference"] < 1e-5
    assert encoding["packed"]["padded_tokens_per_step"] <= encoding["shared_prompt"]["padded_tokens_per_step"]
    assert encoding["grouped"]["speed_up"] > 0 and "max_reward_difference" not in encoding["grouped"]
    assert (
        encoding["separate"]["pair_tokens_per_second"] > 0 and encoding["shared_prompt"]["pair_tokens_per_second"] > 0
    )
    # FlexAttention has no CPU backward: the failure is recorded and the other parts still run.
    for flex in ("shared_prompt_flex", "packed_flex"):
        assert "error" in encoding[flex] or encoding[flex]["max_reward_difference"] < 1e-2
    overhead = json.loads((tmp_path / "more_overhead.json").read_text())
    assert set(overhead["seconds_per_step"]) == {"RewardTrainer", "MORERewardTrainer"}
    generation = json.loads((tmp_path / "generation.json").read_text())
    assert set(generation["generated_tokens_per_second"]) == {"batched, length-sorted", "one response per call"}
    assert json.loads((tmp_path / "environment.json").read_text())["device"] == "cpu"
