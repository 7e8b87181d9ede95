"""No code shipped inside a model folder runs without `trust_remote_code`: every subcommand refuses such a folder.

The folder is a real tiny reward model whose `tokenizer_config.json` maps `AutoTokenizer` to a script in the folder
that leaves a marker file when it runs. Without the opt-in every entry point must stop with an error that names the
flag, and the script must not have run; with the opt-in the script does run (so the folder would be effective).
"""

import json
from pathlib import Path

import pytest

from trl_more.cli import main as cli_main
from trl_more.pretrained import check_model_reference, load_tokenizer
from trl_more.testing import save_tiny_reward_model, write_toy_mixture


def folder_with_custom_tokenizer_code(folder: Path, marker: Path) -> Path:
    save_tiny_reward_model(folder, "qwen2")
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {
        "AutoTokenizer": ["tokenization_custom.CustomTokenizer", "tokenization_custom.CustomTokenizer"]
    }
    config["tokenizer_class"] = "CustomTokenizer"
    config_path.write_text(json.dumps(config))
    (folder / "tokenization_custom.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import PreTrainedTokenizerFast\n\n\nclass CustomTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    return folder


@pytest.fixture
def custom_code(tmp_path):
    marker = tmp_path / "CODE_RAN"
    return folder_with_custom_tokenizer_code(tmp_path / "model", marker), marker


def test_load_tokenizer_refuses_custom_code_without_the_opt_in_and_runs_it_with_it(custom_code):
    folder, marker = custom_code
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_tokenizer(folder)
    assert not marker.exists()
    load_tokenizer(folder, trust_remote_code=True)
    assert marker.read_text() == "ran"  # the folder really carries code that runs


def run_cli(*arguments):
    cli_main([str(argument) for argument in arguments])


COMMON = ["--report_to", "none", "--bf16", "false"]


@pytest.mark.parametrize("subcommand", ["armo", "evaluate", "reward", "rjs_policy", "rjs_reward_model"])
def test_every_subcommand_refuses_a_folder_with_custom_code(tmp_path, custom_code, subcommand):
    folder, marker = custom_code
    output = tmp_path / "out"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Hi", "chosen": " Hello!", "rejected": " Go away."}) + "\n")
    plain_model = save_tiny_reward_model(tmp_path / "plain", "qwen2")
    commands = {
        "armo": ["armo", "--stage", "regression", "--model_name_or_path", folder, "--output_dir", output, *COMMON],
        "evaluate": ["evaluate", "--model", folder, "--sources", f"mine={pairs}", "--output_dir", output],
        "reward": [
            "reward",
            "--mixture",
            write_toy_mixture(tmp_path / "toy", num_pairs=8),
            "--model_name_or_path",
            folder,
            "--output_dir",
            output,
            *COMMON,
        ],
        "rjs_policy": [
            "rjs",
            "--model_name_or_path",
            folder,
            "--reward_model_path",
            plain_model,
            "--prompt_sources",
            f"ultrafeedback={pairs}",
            "--output_dir",
            output,
            *COMMON,
        ],
        "rjs_reward_model": [
            "rjs",
            "--model_name_or_path",
            plain_model,
            "--reward_model_path",
            folder,
            "--prompt_sources",
            f"ultrafeedback={pairs}",
            "--prompts_per_iteration",
            "1",
            "--output_dir",
            output,
            *COMMON,
        ],
    }
    with pytest.raises(ValueError, match="trust_remote_code"):
        run_cli(*commands[subcommand])
    assert not marker.exists()


def test_a_local_path_that_does_not_exist_is_named_as_such(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model folder"):
        check_model_reference(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="No model folder"):
        run_cli("evaluate", "--model", tmp_path / "missing", "--sources", "hh-helpful", "--output_dir", tmp_path)
    check_model_reference("org/name")  # a Hub id is left to the Hub
    check_model_reference(tmp_path)
