"""Pushing a MORE reward model to the Hub: what would be uploaded, the model card, and failed uploads.

Nothing reaches the network: `HfApi.create_repo` and `HfApi.upload_folder` (what `Trainer.init_hf_repo` and
`Trainer.push_to_hub` call) are replaced by stand-ins that record the files `upload_folder` would send, selected with
huggingface_hub's own filter and the ignore patterns the trainer passes.
"""

import io
import re
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from huggingface_hub import HfApi
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects
from PIL import Image
from safetensors.torch import load
from transformers import AutoModelForSequenceClassification

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.cli import main as cli_main
from trl_more.hub import HubUploadError
from trl_more.metrics import PreferenceMetrics, set_reward_temperature
from trl_more.testing import (
    save_tiny_reward_model,
    tiny_reward_model,
    tiny_tokenizer,
    toy_preference_sources,
    write_toy_mixture,
)


SOURCES = ("polite", "concise", "factual")
TINY = {
    "per_device_train_batch_size": 6,
    "per_device_eval_batch_size": 8,
    "max_steps": 3,
    "learning_rate": 1e-3,
    "logging_steps": 1,
    "bf16": False,
    "activation_checkpointing": False,
    "report_to": "none",
    "save_strategy": "no",
}


@contextmanager
def mocked_hub(failure: Exception | None = None):
    """Record every `upload_folder` call as {"repo_id", "files": {path_in_repo: bytes}}; or raise `failure`."""
    uploads = []

    def create_repo(self, repo_id, **kwargs):
        return mock.Mock(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=(), **kwargs):
        if failure is not None:
            raise failure
        folder = Path(folder_path)
        paths = [path.relative_to(folder).as_posix() for path in sorted(folder.rglob("*")) if path.is_file()]
        selected = filter_repo_objects(paths, ignore_patterns=[*ignore_patterns, *DEFAULT_IGNORE_PATTERNS])
        uploads.append({"repo_id": repo_id, "files": {path: (folder / path).read_bytes() for path in selected}})
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, side_effect=create_repo),
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
    ):
        yield uploads


def train(output_dir: Path, lambda_method: str = "min_norm", **overrides) -> MORERewardTrainer:
    """A tiny MORE reward model trained on the three toy sources (24 pairs each), evaluated per source."""
    tokenizer = tiny_tokenizer()
    args = MORERewardConfig(str(output_dir), lambda_method=lambda_method, eval_strategy="steps", eval_steps=3, **TINY)
    trainer = MORERewardTrainer(
        tiny_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=dict(toy_preference_sources(24)),
        eval_dataset=dict(toy_preference_sources(8, seed=1)),
        processing_class=tokenizer,
        **PreferenceMetrics().trainer_kwargs(),
        **overrides,
    )
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A trained tiny model with a fitted temperature, pushed (mocked) to `user/tiny-more`."""
    trainer = train(tmp_path_factory.mktemp("more") / "tiny-more")
    set_reward_temperature(trainer.model, 2.5)
    with mocked_hub() as uploads:
        trainer.args.hub_model_id = "user/tiny-more"
        trainer.push_to_hub()
    assert len(uploads) == 1
    return trainer, uploads[0]


def test_the_upload_holds_weights_config_tokenizer_card_and_lambda_plot(pushed):
    trainer, upload = pushed
    assert upload["repo_id"] == "user/tiny-more"
    files = upload["files"]
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"} <= set(files)
    assert Image.open(io.BytesIO(files["lambda.png"])).size == (700, 400)
    weights = load(files["model.safetensors"])
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(weights[name], tensor), name


def test_the_card_shows_sources_method_metrics_plot_usage_versions_and_citations(pushed):
    trainer, upload = pushed
    card = upload["files"]["README.md"].decode()
    header = yaml.safe_load(card.split("---")[1])
    assert {"trl", "reward-trainer", "trl-more"} <= set(header["tags"])
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "text-classification"
    assert "base_model" not in header  # trained from a model that is not on the Hub
    assert card.startswith("---\n") and "# Model Card for tiny-more" in card
    assert "## Framework versions" in card and "- trl: " in card and "- transformers: " in card
    assert "github.com/trl-more" not in card  # no address that does not exist: the package and its version
    assert f"with trl-more {version('trl-more')} (the `trl-more` Python package, a TRL plugin)" in card
    assert "Cite MORE as:" in card and "zeng2024diversified" in card and "Cite TRL as:" in card
    assert "None" not in card and "{%" not in card and "\n\n\n" not in card  # nothing left unfilled or empty

    assert all(f"| {name} | 24 |" in card for name in SOURCES) and "| **total** | 72 |" in card
    for name in SOURCES:  # the card shows the last logged lambda of every source
        last = [entry[f"lambda/{name}"] for entry in trainer.state.log_history if f"lambda/{name}" in entry][-1]
        assert f"| {name} | 24 | {last:.4f} |" in card
    assert "**MORE**" in card and "2 pairs of each of the 3 sources" in card and "momentum 0.99" in card
    assert "| learning rate | 0.001 (linear) |" in card and "| training | 3 steps, 3 optimizer steps done |" in card

    evaluation = {key: value for entry in trainer.state.log_history for key, value in entry.items()}
    for name in SOURCES:  # per-source accuracy and ECE from the evaluation the trainer ran
        accuracy = 100 * evaluation[f"eval_{name}_preference_accuracy"]
        assert f"| {name} | 8 | {accuracy:.2f} | {evaluation[f'eval_{name}_ece']:.4f} |" in card

    assert "![lambda per source over training](lambda.png)" in card
    assert 'AutoModelForSequenceClassification.from_pretrained("user/tiny-more")' in card
    assert "T = 2.5" in card and "/ model.config.reward_temperature" in card


def test_the_pushed_files_load_as_the_trained_model(pushed, tmp_path):
    trainer, upload = pushed
    for path, content in upload["files"].items():
        (tmp_path / path).write_bytes(content)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    inputs = trainer.processing_class(["Human: hi Assistant: Thanks for asking!"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, trainer.model.eval()(**inputs).logits)
    assert loaded.config.reward_temperature == 2.5


def test_a_multitask_card_names_the_method_and_has_no_lambda_plot(tmp_path):
    trainer = train(tmp_path / "tiny-multitask", lambda_method="uniform")
    trainer.create_model_card()
    card = (tmp_path / "tiny-multitask" / "README.md").read_text()
    assert "**MultiTask**" in card and "weight 1/3" in card and "**MORE**" not in card
    assert "keeps every source's weight at 1/K" in card and "lambda.png" not in card
    assert re.search(r"\| polite \| 24 \| 0\.3333 \|", card)
    assert "No temperature was fitted" in card


def test_a_failed_upload_keeps_the_local_save_and_says_how_to_retry(tmp_path):
    output_dir = tmp_path / "tiny-more"
    trainer = train(output_dir)
    failure = ConnectionError("Connection reset by peer")
    with mocked_hub(failure), pytest.raises(HubUploadError) as raised:
        trainer.args.hub_model_id = "user/tiny-more"
        trainer.push_to_hub()
    message = str(raised.value)
    assert raised.value.__cause__ is failure
    assert "'user/tiny-more' failed: ConnectionError: Connection reset by peer" in message
    assert f"saved locally and unchanged in {output_dir}" in message
    assert f"hf upload user/tiny-more {output_dir} ." in message and "trainer.push_to_hub()" in message
    saved = AutoModelForSequenceClassification.from_pretrained(output_dir)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(saved.state_dict()[name], tensor), name
    assert "## Evaluation" in (output_dir / "README.md").read_text() and (output_dir / "lambda.png").is_file()
    assert (output_dir / "tokenizer.json").is_file()


def cli_arguments(tmp_path: Path) -> list[str]:
    config = {
        "model_name_or_path": str(save_tiny_reward_model(tmp_path / "base")),
        "mixture": str(write_toy_mixture(tmp_path / "data", num_pairs=24, test_size=6)),
        "output_dir": str(tmp_path / "run"),
        "max_length": 64,
        "truncation_mode": "keep_end",
        "eval_strategy": "no",
        **{key: value for key, value in TINY.items() if key != "max_steps"},
        "max_steps": 2,
    }
    (tmp_path / "reward.yaml").write_text(yaml.safe_dump(config))
    return ["reward", "--config", str(tmp_path / "reward.yaml"), "--push_to_hub", "--hub_model_id", "user/cli-more"]


def test_trl_more_reward_pushes_once_after_the_evaluation(tmp_path):
    with mocked_hub() as uploads:
        cli_main(cli_arguments(tmp_path))
    assert len(uploads) == 1  # not once by save_model and again by push_to_hub
    files = uploads[0]["files"]
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "lambda.png"} <= set(files)
    assert {"evaluation/metrics.json", "evaluation/reliability.png"} <= set(files)
    card = files["README.md"].decode()
    written = (tmp_path / "run" / "evaluation" / "metrics.md").read_text()
    assert written.strip() in card  # the evaluation table of the run, as written next to the model
    assert 'from_pretrained("user/cli-more")' in card


def test_trl_more_reward_reports_a_failed_upload_and_keeps_its_output(tmp_path):
    with mocked_hub(ConnectionError("Read timed out")), pytest.raises(SystemExit) as raised:
        cli_main(cli_arguments(tmp_path))
    message = str(raised.value.code)
    run = tmp_path / "run"
    assert message.startswith("trl-more reward: Uploading") and "Read timed out" in message
    assert str(run) in message and "hf upload user/cli-more" in message
    assert (run / "model.safetensors").is_file() and (run / "evaluation" / "metrics.json").is_file()
    assert "## Evaluation" in (run / "README.md").read_text()
