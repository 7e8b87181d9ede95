"""`examples/dropin_reward.py`: a plain TRL reward script that runs on MORE by changing only its import line."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from trl_more.testing import tiny_reward_model, tiny_tokenizer


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dropin_reward.py"
MORE_IMPORT = "from trl_more import MORERewardConfig as RewardConfig, MORERewardTrainer as RewardTrainer"
TRL_IMPORT = "from trl import RewardConfig, RewardTrainer"
TINY_RUN = ["--tiny", "--max_steps", "3", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "3"]


def plain_trl_variant() -> str:
    """The example's text as it is written for `trl.RewardTrainer`: the MORE import line replaced by TRL's."""
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    return "".join(TRL_IMPORT + "\n" if line.rstrip("\n") == MORE_IMPORT else line for line in lines)


def names_used(source: str) -> set[str]:
    """Every identifier the code imports or refers to (docstrings and comments excluded)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.update({node.name, node.asname} - {None})
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    return names


def test_the_example_differs_from_the_plain_trl_script_only_in_the_import_line():
    more_lines, trl_lines = EXAMPLE.read_text().splitlines(), plain_trl_variant().splitlines()
    assert len(more_lines) == len(trl_lines)
    changed = [(more, trl) for more, trl in zip(more_lines, trl_lines) if more != trl]
    assert changed == [(MORE_IMPORT, TRL_IMPORT)]
    # Outside that line the code uses neither MORE class, so it is TRL code (run below with TRL's trainer).
    assert {"MORERewardTrainer", "MORERewardConfig"} <= names_used(EXAMPLE.read_text())
    assert not {"MORERewardTrainer", "MORERewardConfig"} & names_used(plain_trl_variant())


def run_script(script: Path, output_dir: Path) -> dict:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, str(script), *TINY_RUN, "--output_dir", str(output_dir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Model saved to {output_dir}." in result.stdout
    return json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())


@pytest.mark.parametrize("variant", ["more", "plain_trl"])
def test_the_example_trains_and_saves_with_either_trainer(tmp_path, variant):
    if variant == "more":
        script = EXAMPLE
    else:
        script = tmp_path / "reward_trl.py"
        script.write_text(plain_trl_variant())
    output_dir = tmp_path / "out"
    state = run_script(script, output_dir)

    assert state["global_step"] == 3
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(train_logs) == 3
    # The toy data has three sources: MORE weights them (lambda on the simplex); TRL's trainer ignores the column.
    lambda_keys = sorted(key for key in train_logs[0] if key.startswith("lambda/"))
    if variant == "more":
        assert lambda_keys == ["lambda/concise", "lambda/factual", "lambda/polite"]
        for entry in train_logs:
            assert sum(entry[key] for key in lambda_keys) == pytest.approx(1.0, abs=1e-5)
    else:
        assert lambda_keys == []
    evaluations = [entry for entry in state["log_history"] if any(key.endswith("_loss") for key in entry)]
    assert {key for entry in evaluations for key in entry if key.endswith("_loss")} == {
        "eval_concise_loss",
        "eval_factual_loss",
        "eval_polite_loss",
    }

    # The saved reward model loads as a one-output sequence classifier, and training moved its weights away from
    # the (seeded) tiny model the script started from.
    trained = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert trained.config.num_labels == 1
    initial = tiny_reward_model("qwen2", tiny_tokenizer())
    initial_parameters = dict(initial.named_parameters())
    assert all(not torch.equal(parameter, initial_parameters[name]) for name, parameter in trained.named_parameters())
