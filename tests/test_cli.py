"""`trl-more <subcommand>` end to end on CPU with tiny models and tiny YAML configs, through the dispatcher.

`trl-more evaluate` with flags, `armo` through its own parser and `rjs` through its recipe are tested in
test_evaluate.py, test_multi_objective_cli.py and test_rejection_sampling.py; here every subcommand is run the way a
user runs it: `trl-more <subcommand> --config file.yaml [flags]` (in-process through `trl_more.cli.main`, and once
as `accelerate launch -m trl_more.cli`).
"""

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_more.cli import main as cli_main
from trl_more.cli import parse_subcommand_arguments
from trl_more.cli import rjs as rjs_cli
from trl_more.data import load_mixture
from trl_more.metrics import evaluate_reward_model
from trl_more.rejection_sampling import IterationStore
from trl_more.testing import (
    TWO_CPU_PROCESSES,
    accelerate_launch,
    save_tiny_reward_model,
    tiny_causal_lm,
    tiny_reward_model,
    tiny_tokenizer,
    toy_preference_sources,
    write_toy_mixture,
)


REPO = Path(__file__).resolve().parents[1]
SOURCES = ("polite", "concise", "factual")
TINY_TRAINING = {
    "per_device_train_batch_size": 6,  # 2 pairs of each of the 3 toy sources
    "per_device_eval_batch_size": 8,
    "max_steps": 4,
    "learning_rate": 1.0e-3,
    "max_length": 64,
    "truncation_mode": "keep_end",
    "logging_steps": 1,
    "eval_strategy": "no",
    "save_strategy": "no",
    "activation_checkpointing": False,
    "report_to": "none",
    "seed": 0,
}


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def reward_config(tmp_path: Path, **overrides) -> Path:
    """A tiny `trl-more reward` YAML: a tiny Qwen2 model and the three toy sources (18 training pairs each)."""
    values = {
        "model_name_or_path": str(save_tiny_reward_model(tmp_path / "base")),
        "mixture": str(write_toy_mixture(tmp_path / "data", num_pairs=24, test_size=6)),
        "output_dir": str(tmp_path / "run"),
        **TINY_TRAINING,
        **overrides,
    }
    return write_yaml(tmp_path / "reward.yaml", values)


ARMO_OBJECTIVES = ["topical-chat-engagingness", "topical-chat-overall"]


def armo_regression_config(tmp_path: Path, shared_data: Path, **overrides) -> Path:
    """A tiny `trl-more armo` stage-1 YAML: a tiny Qwen2 backbone and two Topical-Chat objectives."""
    tokenizer = tiny_tokenizer()
    backbone = tmp_path / "backbone"
    tiny_reward_model("qwen2", tokenizer).base_model.save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    values = {
        "stage": "regression",
        "model_name_or_path": str(backbone),
        "rating_path": str(shared_data / "topical_chat" / "topical_chat.json"),
        "objectives": ARMO_OBJECTIVES,
        "max_length": 256,
        "truncation_mode": "keep_end",
        "output_dir": str(tmp_path / "stage1"),
        "bf16": False,
        "report_to": "none",
        **overrides,
    }
    return write_yaml(tmp_path / "armo.yaml", values)


def launch_cli(
    launch_options: list[str], subcommand: str, arguments: list[str], cwd: Path, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`accelerate launch <launch_options> -m trl_more.cli <subcommand> <arguments>`, offline, one thread a process."""
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = accelerate_launch(*launch_options, "-m", "trl_more.cli", subcommand, *arguments)
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd, timeout=timeout)


def card_lambdas(card: str) -> dict[str, float]:
    """The `lambda (last logged)` column of the model card's training-data table."""
    return {
        name: float(value) for name, value in re.findall(r"^\| (\w+) \| [\d,]+ \| ([\d.]+) \|$", card, re.MULTILINE)
    }


def test_reward_trains_evaluates_and_writes_the_model_card_from_a_yaml_config(tmp_path):
    cli_main(["reward", "--config", str(reward_config(tmp_path))])

    run = tmp_path / "run"
    model = AutoModelForSequenceClassification.from_pretrained(run).eval()
    tokenizer = AutoTokenizer.from_pretrained(run)
    assert model.config.num_labels == 1
    base = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base")
    assert not torch.equal(model.score.weight, base.score.weight)  # it trained

    # The written evaluation is the saved model's: scoring the held-out pairs again gives the same margins.
    written = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert list(written["sources"]) == list(SOURCES)
    assert all(written["sources"][name]["num_pairs"] == 6 for name in SOURCES)
    held_out = load_mixture(tmp_path / "data" / "mixture.yaml").test_by_source()
    rescored = evaluate_reward_model(model, tokenizer, held_out, max_length=64, show_progress=False)
    for name in SOURCES:
        np.testing.assert_allclose(written["margins"][name], rescored.margins[name], atol=1e-5)
    for plot in ("reliability.png", "reward_differences.png", "lambda.png"):
        assert (run / "evaluation" / plot).read_bytes()[:4] == b"\x89PNG"

    card = (run / "README.md").read_text()
    assert "**MORE**" in card and "2 pairs of each of the 3 sources" in card
    assert all(f"| {name} | 18 |" in card for name in SOURCES)  # 24 pairs per file, 6 held out
    lambdas = card_lambdas(card)
    assert set(lambdas) == set(SOURCES) and sum(lambdas.values()) == pytest.approx(1.0, abs=2e-4)
    for name in SOURCES:  # the table of the card is the evaluation written next to it
        accuracy = 100 * written["sources"][name]["preference_accuracy"]
        truncated = written["sources"][name]["num_truncated"]
        assert f"| {name} | 6 | {truncated} | {accuracy:.2f} | {written['sources'][name]['ece']:.4f} |" in card
    assert "![lambda per source over training](lambda.png)" in card and (run / "lambda.png").is_file()


def test_reward_flags_override_the_yaml_under_accelerate_launch(tmp_path):
    """`accelerate launch -m trl_more.cli reward --config ... --lambda_method uniform`: the flag wins over the YAML."""
    config = reward_config(tmp_path, lambda_method="min_norm", max_steps=2)
    result = launch_cli(
        ["--config_file", str(REPO / "recipes" / "accelerate_configs" / "cpu.yaml")],
        "reward",
        ["--config", str(config), "--lambda_method", "uniform", "--evaluate", "false"],
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    card = (tmp_path / "run" / "README.md").read_text()
    assert "**MultiTask**" in card and "weight 1/3" in card
    assert card_lambdas(card) == {name: pytest.approx(1 / 3, abs=1e-4) for name in SOURCES}
    assert not (tmp_path / "run" / "evaluation").exists()  # --evaluate false
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.distributed
def test_reward_under_zero3_evaluates_the_gathered_model(tmp_path):
    """Two CPU processes under DeepSpeed ZeRO-3 (tiny parameters really partitioned): after training, the main process
    scores the full saved copy instead of its empty shards, and writes the same numbers a fresh scoring gives."""
    config = reward_config(tmp_path, max_steps=2, ddp_backend="gloo", evaluate=True)
    launch = [*TWO_CPU_PROCESSES, "--use_deepspeed", "--deepspeed_config_file"]
    launch += [str(REPO / "recipes" / "accelerate_configs" / "zero3_cpu_test.json")]
    result = launch_cli(launch, "reward", ["--config", str(config)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    written = json.loads((run / "evaluation" / "metrics.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(run)
    tests = load_mixture(tmp_path / "data" / "mixture.yaml").test_by_source()
    expected = evaluate_reward_model(
        model, AutoTokenizer.from_pretrained(run), tests, max_length=64, show_progress=False
    )
    for name in SOURCES:
        np.testing.assert_allclose(written["margins"][name], expected.margins[name], atol=1e-5)
    assert (run / "trainer_state.json").is_file()


def test_evaluate_reads_its_yaml_config(tmp_path):
    model_dir = save_tiny_reward_model(tmp_path / "model")
    pairs = toy_preference_sources(10, seed=3)["polite"]
    pairs.to_json(tmp_path / "polite.jsonl")
    config = write_yaml(
        tmp_path / "evaluate.yaml",
        {"model": str(model_dir), "sources": [f"polite={tmp_path / 'polite.jsonl'}"], "batch_size": 4, "plots": False},
    )
    cli_main(["evaluate", "--config", str(config), "--output_dir", str(tmp_path / "out")])
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    expected = evaluate_reward_model(model, AutoTokenizer.from_pretrained(model_dir), {"polite": pairs})
    np.testing.assert_allclose(written["margins"]["polite"], expected.margins["polite"], atol=1e-6)
    assert not (tmp_path / "out" / "reliability.png").exists()  # plots: false


def test_evaluate_refuses_several_processes_before_writing_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what `accelerate launch --num_processes 2` sets
    with pytest.raises(ValueError, match="scores in one process, but it was launched in 2"):
        cli_main(["evaluate", "--model", "m", "--sources", "hh-helpful", "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_armo_reads_its_yaml_config(tmp_path, shared_data):
    config = armo_regression_config(
        tmp_path, shared_data, gate_hidden_sizes=[8], model_init_kwargs={"dtype": "bfloat16"}
    )
    cli_main(["armo", "--config", str(config)])
    saved = json.loads((tmp_path / "stage1" / "config.json").read_text())
    assert saved["objectives"] == ARMO_OBJECTIVES
    assert saved["gate_hidden_sizes"] == [8]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "stage1", trust_remote_code=True)
    assert model.regression_layer.weight.dtype == torch.bfloat16  # the backbone loaded with model_init_kwargs


@pytest.mark.distributed
def test_armo_under_two_processes_saves_once_and_exits_cleanly(tmp_path, shared_data):
    """`accelerate launch --multi_gpu` (2 CPU processes over gloo): the main process writes the model while the other
    waits, and both leave the process group, so the launch succeeds and the saved model loads."""
    config = armo_regression_config(tmp_path, shared_data, use_cpu=True, ddp_backend="gloo")
    result = launch_cli(["--multi_gpu", *TWO_CPU_PROCESSES], "armo", ["--config", str(config)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Model, tokenizer and model card saved to") == 1
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "stage1", trust_remote_code=True)
    assert model.config.objectives == ARMO_OBJECTIVES


@pytest.mark.parametrize(
    "quantization",
    [{}, {"load_in_4bit": True, "use_peft": True, "lora_target_modules": "all-linear"}],
    ids=["full", "qlora"],
)
def test_rjs_reads_its_yaml_config(tmp_path, quantization):
    tokenizer = tiny_tokenizer()
    # bitsandbytes' CPU kernel for 4-bit inference (generation runs without grad) packs inputs in blocks of 64.
    width = {"hidden_size": 64, "intermediate_size": 128} if quantization else {}
    tiny_causal_lm("qwen2", tokenizer, **width).save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    toy_preference_sources(8)["factual"].to_json(tmp_path / "prompts.jsonl")
    config = write_yaml(
        tmp_path / "rjs.yaml",
        {
            "model_name_or_path": str(tmp_path / "policy"),
            "reward_model_path": [str(save_tiny_reward_model(tmp_path / "reward"))],
            "prompt_sources": [f"questions={tmp_path / 'prompts.jsonl'}"],
            "prompt_template": "hh",
            "num_iterations": 1,
            "prompts_per_iteration": 4,
            "num_samples_per_prompt": 2,
            "max_new_tokens": 6,
            "per_device_train_batch_size": 2,
            "learning_rate": 1.0e-4,
            "bf16": False,
            "dtype": "float32",
            "activation_checkpointing": False,
            "save_strategy": "no",
            "report_to": "none",
            "output_dir": str(tmp_path / "rjs"),
            **quantization,
        },
    )
    trainer = rjs_cli.main(*parse_subcommand_arguments("rjs", ["--config", str(config)]))
    samples = IterationStore(tmp_path / "rjs").read(0)
    assert len(samples) == 4 * 2
    assert all(sample["prompt"].startswith("\n\nHuman: ") for sample in samples)  # prompt_template: hh
    if quantization:  # the 4-bit flags reach the policy: 4-bit base layers under trainable LoRA adapters
        assert trainer.model.is_loaded_in_4bit and (tmp_path / "rjs" / "adapter_model.safetensors").is_file()
    else:
        assert (tmp_path / "rjs" / "model.safetensors").is_file()


def test_the_dispatcher_lists_subcommands_and_rejects_unknown_ones(capsys):
    cli_main(["--help"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("reward", "evaluate", "rjs", "armo"))
    with pytest.raises(SystemExit, match="unknown subcommand 'rewrd'"):
        cli_main(["rewrd"])
