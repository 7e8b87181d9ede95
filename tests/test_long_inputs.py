"""Scoring never crashes on inputs longer than the model reads (issue 34, item 2).

Every scorer takes its default token limit from the model (`trl_more.input_settings`): the `max_length` its trainer
recorded in its config, else its position limit. Checked on the pretrained MiniLM encoder (512 positions) with real HH
transcripts of up to 959 tokens, the README's case: no crash, the truncated pairs counted as a hand count says, and
the margins those of an explicit `max_length=512`.
"""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.cli import main as cli_main
from trl_more.cli.serve import build_app
from trl_more.constants import TRAINING_MAX_LENGTH_ATTRIBUTE, TRAINING_TRUNCATION_MODE_ATTRIBUTE
from trl_more.data import load_preference_source
from trl_more.input_settings import InputSettings, input_settings, position_limit, scoring_max_length
from trl_more.metrics import Truncation, evaluate_reward_model
from trl_more.metrics.rewardbench import load_rewardbench, score_rewardbench
from trl_more.noisy_preferences import estimate_preference_strength
from trl_more.pretrained import minilm_path
from trl_more.rewards import RewardModelScorer
from trl_more.serve import ServeConfig
from trl_more.serve.served_model import ServedModel
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


FIXTURES = Path(__file__).parent / "fixtures"
MINILM_POSITIONS = 512
# Rows of HH helpful-base's test split: three longer than MiniLM's 512 positions (up to 959 tokens with the EOS token),
# three shorter.
LONG_ROWS, SHORT_ROWS = (2125, 338, 14), (0, 1, 2)


def sequence_length(tokenizer, text: str) -> int:
    """Tokens of a plain-text sequence as TRL's reward trainer builds it: the text with the EOS token appended."""
    return len(tokenizer(text + tokenizer.eos_token)["input_ids"])


def pair_lengths(tokenizer, rows) -> list[int]:
    """The longer of the chosen and rejected sequences of every pair (prompt included when explicit)."""
    prompts = rows["prompt"] if "prompt" in rows.column_names else [""] * len(rows)
    return [
        max(sequence_length(tokenizer, prompt + chosen), sequence_length(tokenizer, prompt + rejected))
        for prompt, chosen, rejected in zip(prompts, rows["chosen"], rows["rejected"])
    ]


@pytest.fixture(scope="module")
def hh_rows(shared_data) -> list[dict]:
    with gzip.open(shared_data / "hh_rlhf" / "helpful-base.test.jsonl.gz", "rt") as file:
        return [json.loads(line) for line in file]


@pytest.fixture(scope="module")
def hh_pairs(hh_rows) -> Dataset:
    """Six HH pairs in TRL's implicit-prompt format, three of them longer than 512 tokens."""
    return Dataset.from_list([hh_rows[index] for index in LONG_ROWS + SHORT_ROWS])


@pytest.fixture(scope="module")
def minilm():
    """The MiniLM encoder with a random reward head, and its tokenizer with `[SEP]` as EOS (as `trl-more reward`
    sets it for BERT-style encoders)."""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.eos_token = tokenizer.sep_token
    return model, tokenizer


@pytest.fixture(scope="module")
def minilm_folder(minilm, tmp_path_factory):
    model, tokenizer = minilm
    folder = tmp_path_factory.mktemp("minilm-reward-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_evaluate_truncates_to_the_position_limit_and_counts_the_truncated_pairs(minilm, hh_pairs):
    model, tokenizer = minilm
    lengths = pair_lengths(tokenizer, hh_pairs)
    assert max(lengths) > 900 and sum(length > MINILM_POSITIONS for length in lengths) == len(LONG_ROWS)
    assert position_limit(model) == scoring_max_length(model) == MINILM_POSITIONS

    result = evaluate_reward_model(model, tokenizer, {"hh": hh_pairs}, batch_size=4, show_progress=False)
    explicit = evaluate_reward_model(
        model, tokenizer, {"hh": hh_pairs}, batch_size=4, max_length=512, show_progress=False
    )

    assert result.truncation == Truncation(512, "keep_end", {"hh": len(LONG_ROWS)})
    np.testing.assert_allclose(result.margins["hh"], explicit.margins["hh"], atol=1e-6)
    # keep_end: the reward of the longest chosen sequence is that of its last 512 tokens.
    ids = tokenizer(hh_pairs[0]["chosen"] + tokenizer.eos_token)["input_ids"]
    with torch.no_grad():
        last_tokens = model(input_ids=torch.tensor([ids[-512:]])).logits.item()
    assert result.rewards["hh"][0] == pytest.approx(last_tokens, abs=1e-5)

    data = result.to_dict()
    assert (data["max_length"], data["truncation_mode"]) == (512, "keep_end")
    assert data["sources"]["hh"]["num_truncated"] == len(LONG_ROWS)
    table = result.to_markdown()
    assert table.startswith("| source | pairs | truncated | accuracy (%) |")
    assert "| hh | 6 | 3 | " in table and "longer than max_length=512 tokens" in table


def test_the_rejection_sampling_scorer_reads_the_model_limit(minilm, hh_rows):
    model, tokenizer = minilm
    transcript = hh_rows[LONG_ROWS[0]]["chosen"]
    cut = transcript.rindex("\n\nAssistant:") + len("\n\nAssistant:")
    prompts, responses = [transcript[:cut], "\n\nHuman: hi\n\nAssistant:"], [transcript[cut:], " Hello!"]
    scorer = RewardModelScorer([model], [tokenizer], batch_size=2)
    assert scorer.max_lengths == [512]
    rewards = scorer.score(prompts, responses).combined
    explicit = RewardModelScorer([model], [tokenizer], batch_size=2, max_length=512).score(prompts, responses)
    torch.testing.assert_close(rewards, explicit.combined)


def test_rewardbench_scores_at_the_model_limit_and_counts_the_truncated_sequences():
    tokenizer = tiny_tokenizer("wordpiece")
    model = tiny_reward_model("bert", tokenizer, max_position_embeddings=48)
    data = load_rewardbench(FIXTURES / "rewardbench_v1.jsonl", version=1)
    result = score_rewardbench(model, tokenizer, data, version=1)
    explicit = score_rewardbench(model, tokenizer, data, version=1, max_length=48)
    # The HH transcript of every (prompt, response), as the "hh" template renders it for a tokenizer without a chat
    # template.
    lengths = [
        sequence_length(tokenizer, f"\n\nHuman: {row['prompt'].strip()}\n\nAssistant: {response.strip()}")
        for row in data
        for response in (row["chosen"], row["rejected"])
    ]
    assert result.max_length == 48 and result.num_truncated == sum(length > 48 for length in lengths) > 0
    np.testing.assert_allclose(result.chosen_rewards, explicit.chosen_rewards)
    np.testing.assert_allclose(result.rejected_rewards, explicit.rejected_rewards)


def test_serve_refuses_items_longer_than_the_model_reads_with_a_422(minilm_folder, hh_rows):
    config = ServeConfig(model=[f"minilm={minilm_folder}"], no_auth=True)
    transcript = hh_rows[LONG_ROWS[0]]["chosen"]
    cut = transcript.rindex("\n\nAssistant:") + len("\n\nAssistant:")
    with TestClient(build_app(config)) as client:
        assert client.get("/v1/models").json()["models"]["minilm"]["max_length"] == 512
        long_item = {"prompt": transcript[:cut], "response": transcript[cut:]}
        answer = client.post("/v1/rewards", json={"items": [long_item]})
        assert answer.status_code == 422
        assert "max_length=512" in answer.json()["error"] and "it is not cut" in answer.json()["error"]
        short_item = {"prompt": "\n\nHuman: hi\n\nAssistant:", "response": " Hello!"}
        assert client.post("/v1/rewards", json={"items": [short_item]}).status_code == 200


# The audit scores every sequence four times, one at a time among them: 4 pairs for it, the first 40 otherwise.
@pytest.mark.parametrize(("rows", "flags"), [(slice(0, 40), []), (slice(11, 15), ["--audit"])])
def test_the_readme_evaluate_commands_work_as_typed(minilm_folder, hh_rows, tmp_path, rows, flags):
    # The README's `trl-more evaluate` commands (with and without `--audit`) on a small copy of its HH file (2,354
    # pairs in all), to stay fast; row 14 is longer than MiniLM's 512 positions.
    copy = tmp_path / "helpful-base.test.jsonl.gz"
    with gzip.open(copy, "wt") as file:
        file.writelines(json.dumps(row) + "\n" for row in hh_rows[rows])
    out = tmp_path / "evaluation"
    cli_main(
        [
            "evaluate",
            "--model",
            str(minilm_folder),
            "--output_dir",
            str(out),
            *flags,
            "--sources",
            f"hh-helpful={copy}",
        ]
    )

    pairs = load_preference_source("hh-helpful", path=copy).dataset
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder)
    truncated = sum(length > 512 for length in pair_lengths(tokenizer, pairs))
    assert truncated == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["max_length"], metrics["truncation_mode"]) == (512, "keep_end")
    assert metrics["sources"]["hh-helpful"]["num_truncated"] == truncated
    assert f"| hh-helpful | {len(pairs)} | {truncated} | " in (out / "metrics.md").read_text()
    if flags:
        audit = json.loads((out / "audit.json").read_text())
        assert audit["max_length"] == 512 and audit["checks"]["hh-helpful"]["num_truncated"] == truncated
        assert f"| {truncated} ({100 * truncated / len(pairs):.2f}) |" in (out / "audit.md").read_text()


def test_a_model_without_a_position_limit_gets_an_error_naming_max_length(hh_pairs):
    tokenizer = tiny_tokenizer("wordpiece")
    model = tiny_reward_model("bert", tokenizer, max_position_embeddings=64)
    long_pair = hh_pairs.select([0])
    with pytest.raises(ValueError, match=r"reads at most 64 tokens .* `--max_length 64` or less") as error:
        evaluate_reward_model(model, tokenizer, long_pair, max_length=200, show_progress=False)
    assert isinstance(error.value.__cause__, RuntimeError)  # the original error, chained
    # A config that declares no limit, as some remote-code models have (transformers' own configs refuse None).
    object.__setattr__(model.config, "max_position_embeddings", None)
    assert scoring_max_length(model) is None
    with pytest.raises(ValueError, match=r"declares no position limit .* so nothing was truncated.*`--max_length N`"):
        evaluate_reward_model(model, tokenizer, long_pair, show_progress=False)


def test_input_settings_take_the_trained_max_length_at_most_the_position_limit():
    assert InputSettings(128, "keep_end", 512).max_length == 128
    assert InputSettings(1024, None, 512).max_length == 512
    assert InputSettings(None, None, 512).max_length == 512
    assert InputSettings(None, None, None).max_length is None
    assert (
        InputSettings(128, "keep_end", 512).describe_max_length()
        == "max_length=128, the one the model was trained with"
    )
    # RoBERTa numbers a sequence's positions from padding_idx + 1 on: it reads the limit, not one token more.
    roberta = tiny_reward_model("roberta", tiny_tokenizer("wordpiece"), max_position_embeddings=66)
    limit = position_limit(roberta)
    assert limit == 66 - (roberta.config.pad_token_id + 1)
    with torch.no_grad():
        roberta(input_ids=torch.full((1, limit), 5))
        with pytest.raises(RuntimeError, match="out of bounds"):
            roberta(input_ids=torch.full((1, limit + 1), 5))


def test_the_trained_max_length_is_saved_with_the_model_and_read_by_every_scorer(tmp_path):
    tokenizer = tiny_tokenizer("wordpiece")
    trainer = MORERewardTrainer(
        tiny_reward_model("bert", tokenizer, max_position_embeddings=64),
        MORERewardConfig(
            str(tmp_path / "run"),
            max_length=24,
            truncation_mode="keep_end",
            max_steps=1,
            per_device_train_batch_size=4,
            report_to="none",
            save_strategy="no",
            bf16=False,
        ),
        train_dataset=toy_preference_sources(4)["polite"],
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "model"))
    tokenizer.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved[TRAINING_MAX_LENGTH_ATTRIBUTE] == 24 and saved[TRAINING_TRUNCATION_MODE_ATTRIBUTE] == "keep_end"

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert input_settings(model) == InputSettings(24, "keep_end", 64, "hh", "[SEP]", "[PAD]", "right", "first_token")
    assert scoring_max_length(model) == 24 and scoring_max_length(model, 40) == 40  # an explicit limit wins
    pairs = toy_preference_sources(4, seed=1)["polite"]
    assert evaluate_reward_model(model, tokenizer, pairs, show_progress=False).truncation.max_length == 24
    assert RewardModelScorer([model], [tokenizer]).max_lengths == [24]
    served = ServedModel.load("tiny", str(tmp_path / "model"), "float32", "cpu", None, 8, False)
    assert served.max_length == 24


def test_strength_members_score_with_the_max_length_they_were_trained_with(tmp_path, hh_pairs):
    tokenizer = tiny_tokenizer("wordpiece")
    members = []

    def member():
        members.append(tiny_reward_model("bert", tokenizer, max_position_embeddings=64, seed=len(members)))
        return members[-1]

    args = MORERewardConfig(
        str(tmp_path),
        max_length=48,
        truncation_mode="keep_end",
        max_steps=1,
        per_device_train_batch_size=3,
        report_to="none",
        bf16=False,
        disable_tqdm=True,
    )
    strength = estimate_preference_strength(
        member, hh_pairs, args, num_models=2, mode="seeds", processing_class=tokenizer, show_progress=False
    )
    differences = np.array(strength.dataset["strength_differences"])
    for index, model in enumerate(members):
        assert input_settings(model).trained_max_length == 48
        explicit = evaluate_reward_model(model, tokenizer, hh_pairs, max_length=48, show_progress=False)
        assert explicit.truncation.num_truncated["eval"] == len(hh_pairs)  # every HH pair is longer than 48 tokens
        np.testing.assert_allclose(differences[:, index], explicit.margins["eval"], atol=1e-6)
