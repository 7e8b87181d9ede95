"""Sanity audits: each check measures what it claims (known answers by construction) and names its failure."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch import nn

from trl_more.cli import main as cli_main
from trl_more.metrics.audits import audit_reward_model
from trl_more.testing import save_tiny_reward_model, tiny_reward_model, tiny_tokenizer, toy_preference_sources


@pytest.fixture(scope="module")
def pairs():
    return {name: dataset.select(range(8)) for name, dataset in toy_preference_sources(8).items()}


def test_a_sound_decoder_passes_the_invariance_and_swap_audits(pairs):
    tokenizer = tiny_tokenizer()
    report = audit_reward_model(tiny_reward_model("qwen2", tokenizer, seed=1), tokenizer, pairs, batch_size=4)
    for source, row in report.checks.items():
        assert row["pairs"] == 8
        assert row["accuracy"] + row["swapped_accuracy"] + row["tie_share"] == pytest.approx(1.0)
        assert row["batch_size_change"] < 1e-4 and row["padding_side_change"] < 1e-4  # RoPE: positions are relative
        assert not any(f.startswith(("swap", "batch size", "padding side")) for f in report.failures[source])
        assert sum(cell["pairs"] for cell in row["length_bins"]) == 8


def test_absolute_positions_fail_the_padding_side_audit_with_its_cause(pairs):
    tokenizer = tiny_tokenizer("wordpiece")
    tokenizer.eos_token = "[SEP]"
    report = audit_reward_model(tiny_reward_model("bert", tokenizer, seed=1), tokenizer, pairs, batch_size=4)
    assert all(row["padding_side_change"] > 1e-3 for row in report.checks.values())
    assert all(any("left padding changes the rewards" in f for f in failures) for failures in report.failures.values())
    assert not report.passed and "FAILED: padding side" in report.to_markdown()


class BatchDependent(nn.Module):
    """A reward model that leaks the batch into every reward (adds the batch mean), as a broken pipeline would."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, **inputs):
        logits = self.model(**inputs).logits
        return type(self.model(**inputs))(logits=logits + logits.mean())


def test_a_reward_that_depends_on_its_batch_fails_the_batch_size_audit(pairs):
    tokenizer = tiny_tokenizer()
    model = BatchDependent(tiny_reward_model("qwen2", tokenizer, seed=2))
    report = audit_reward_model(model, tokenizer, pairs, batch_size=4)
    assert all(any(f.startswith("batch size") for f in failures) for failures in report.failures.values())


class LengthReward(nn.Module):
    """reward = number of real tokens: accuracy is the share of pairs whose chosen sequence is longer."""

    def __init__(self, config):
        super().__init__()
        self.config, self.anchor = config, nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=attention_mask.sum(-1, keepdim=True).float() + self.anchor)


def test_length_ties_identical_and_truncated_pairs_are_measured_by_hand():
    tokenizer = tiny_tokenizer()
    rows = {
        "prompt": ["Human: a? Assistant:"] * 4,
        "chosen": [" yes yes yes yes", " no", " same", " a very long answer " * 6],
        "rejected": [" yes", " no no no", " same", " short"],
    }
    model = LengthReward(tiny_reward_model("qwen2", tokenizer).config)
    report = audit_reward_model(model, tokenizer, {"hand": Dataset.from_dict(rows)}, batch_size=2, max_length=20)
    row = report.checks["hand"]
    lengths = [
        [
            len(tokenizer(rows["prompt"][i] + rows[column][i] + tokenizer.eos_token)["input_ids"])
            for column in ("chosen", "rejected")
        ]
        for i in range(4)
    ]
    kept = [[min(length, 20) for length in pair] for pair in lengths]
    assert row["accuracy"] == np.mean([c > r for c, r in kept])
    assert row["tie_share"] == np.mean([c == r for c, r in kept])
    assert row["identical_share"] == 0.25  # the " same" pair
    assert row["truncated_share"] == np.mean([max(pair) > 20 for pair in lengths])
    assert row["length_correlation"] == pytest.approx(1.0)  # the reward is the length
    assert any(f.startswith("length") for f in report.failures["hand"])
    assert any(f.startswith("ties") for f in report.failures["hand"])


def test_evaluate_audit_writes_the_report(tmp_path):
    model_dir = save_tiny_reward_model(tmp_path / "model")
    toy = toy_preference_sources(6, seed=3)["polite"]
    data = tmp_path / "polite.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in toy))
    out = tmp_path / "evaluation"
    cli_main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--sources",
            f"polite={data}",
            "--output_dir",
            str(out),
            "--audit",
            "--plots",
            "false",
        ]
    )
    report = json.loads((out / "audit.json").read_text())
    assert report["checks"]["polite"]["pairs"] == 6
    assert (out / "audit.md").read_text().startswith("| source | pairs |")
