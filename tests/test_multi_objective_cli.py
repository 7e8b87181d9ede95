import json

import torch
from safetensors.torch import load_file

from trl_more.cli import armo
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


def run(arguments):
    armo.main(*armo.make_parser("trl-more armo").parse_args_and_config(arguments))


COMMON = ["--report_to", "none", "--bf16", "false", "--max_length", "256"]


def test_both_stages_from_the_command_line(tmp_path, shared_data):
    tokenizer = tiny_tokenizer()
    tiny_reward_model("qwen2", tokenizer).base_model.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    toy_preference_sources(40)["polite"].to_json(tmp_path / "pairs.jsonl")  # short pairs for the tiny tokenizer
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    run(
        [
            "--stage",
            "regression",
            "--model_name_or_path",
            str(tmp_path / "backbone"),
            "--gate_hidden_sizes",
            "16",
            "--rating_path",
            str(shared_data / "topical_chat" / "topical_chat.json"),
            "--truncation_mode",
            "keep_end",
            "--output_dir",
            str(stage1),
            *COMMON,
        ]
    )
    config = json.loads((stage1 / "config.json").read_text())
    assert config["objectives"][0] == "topical-chat-understandability" and len(config["objectives"]) == 6
    assert set(config["evaluation_results"]["held-out R^2 (topical-chat)"]) == set(config["objectives"])
    assert "## Evaluation" in (stage1 / "README.md").read_text()
    run(
        [
            "--stage",
            "gate",
            "--model_name_or_path",
            str(stage1),
            "--cache_features",
            "--max_steps",
            "3",
            "--preference_path",
            str(tmp_path / "pairs.jsonl"),
            "--eval_fraction",
            "0.2",
            "--verbosity_objective",
            "topical-chat-engagingness",
            "--per_device_train_batch_size",
            "8",
            "--output_dir",
            str(stage2),
            *COMMON,
        ]
    )
    config = json.loads((stage2 / "config.json").read_text())
    engagingness = config["objectives"].index("topical-chat-engagingness")
    assert config["reward_transform"][engagingness][engagingness] == 0.0  # debiased against itself
    assert "preferences (eval)" in config["evaluation_results"]
    before, after = load_file(stage1 / "model.safetensors"), load_file(stage2 / "model.safetensors")
    assert torch.equal(before["regression_layer.weight"], after["regression_layer.weight"])
    assert torch.equal(before["backbone.layers.0.mlp.up_proj.weight"], after["backbone.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(before["gate.layers.0.weight"], after["gate.layers.0.weight"])

    # The debiasing reference set is an option (the paper: UltraFeedback): another set gives other penalties.
    toy_preference_sources(40)["concise"].to_json(tmp_path / "reference.jsonl")  # long rejected responses
    run(
        [
            "--stage",
            "gate",
            "--model_name_or_path",
            str(stage1),
            "--cache_features",
            "--max_steps",
            "1",
            "--preference_path",
            str(tmp_path / "pairs.jsonl"),
            "--eval_fraction",
            "0.2",
            "--verbosity_objective",
            "topical-chat-engagingness",
            "--debias_reference_source",
            "ultrafeedback",
            "--debias_reference_path",
            str(tmp_path / "reference.jsonl"),
            "--per_device_train_batch_size",
            "8",
            "--output_dir",
            str(tmp_path / "stage2-reference"),
            *COMMON,
        ]
    )
    transform = json.loads((tmp_path / "stage2-reference" / "config.json").read_text())["reward_transform"]
    assert transform[engagingness][engagingness] == 0.0
    assert transform != config["reward_transform"]
