"""`evaluate_reward_model` (formats, ordering, truncation, temperature, result conversions) and `trl-more evaluate`."""

import copy
import json

import numpy as np
import pytest
import torch
from datasets import Dataset

from trl_more.cli import main as cli_main
from trl_more.metrics import (
    RewardEvaluation,
    evaluate_reward_model,
    expected_calibration_error,
    preference_accuracy,
    set_reward_temperature,
)
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_reward_model("qwen2", tokenizer, seed=3)


def score(model, ids):
    """The reward of one sequence scored alone (no padding)."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits.item()


def reward(model, tokenizer, text):
    """The reward of a plain-text sequence as TRL builds it: the text plus the EOS token."""
    return score(model, tokenizer(text + tokenizer.eos_token)["input_ids"])


def chat_reward(model, tokenizer, messages):
    """The reward of a conversation as TRL builds it: the chat template, no EOS added."""
    return score(model, tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def test_margins_match_scoring_every_sequence_alone_in_the_original_order(model, tokenizer):
    pairs = toy_preference_sources(7, seed=2)["concise"]  # responses of different lengths, so batches get padded
    result = evaluate_reward_model(model, tokenizer, {"concise": pairs}, batch_size=3, show_progress=False)
    expected = [
        reward(model, tokenizer, row["prompt"] + row["chosen"])
        - reward(model, tokenizer, row["prompt"] + row["rejected"])
        for row in pairs
    ]
    np.testing.assert_allclose(result.margins["concise"], expected, atol=1e-5)
    row = result.metrics["concise"]
    assert row["num_pairs"] == 7
    assert row["ece"] == pytest.approx(expected_calibration_error(expected), abs=1e-5)
    assert row["preference_accuracy"] == preference_accuracy(expected)


def test_implicit_prompt_and_conversational_formats_give_the_same_margins(model, tokenizer):
    explicit = toy_preference_sources(5)["polite"]
    implicit = Dataset.from_dict(
        {
            "chosen": [p + c for p, c in zip(explicit["prompt"], explicit["chosen"])],
            "rejected": [p + r for p, r in zip(explicit["prompt"], explicit["rejected"])],
        }
    )
    conversational = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": p}] for p in explicit["prompt"]],
            "chosen": [[{"role": "assistant", "content": c}] for c in explicit["chosen"]],
            "rejected": [[{"role": "assistant", "content": r}] for r in explicit["rejected"]],
        }
    )
    result = evaluate_reward_model(
        model, tokenizer, {"explicit": explicit, "implicit": implicit, "chat": conversational}, show_progress=False
    )
    np.testing.assert_allclose(result.margins["implicit"], result.margins["explicit"], atol=1e-5)
    expected_chat = [
        chat_reward(model, tokenizer, row["prompt"] + row["chosen"])
        - chat_reward(model, tokenizer, row["prompt"] + row["rejected"])
        for row in conversational
    ]
    np.testing.assert_allclose(result.margins["chat"], expected_chat, atol=1e-5)


def test_truncation_keeps_the_end_of_long_sequences(model, tokenizer):
    pairs = toy_preference_sources(4)["factual"]
    full = evaluate_reward_model(model, tokenizer, pairs, show_progress=False)
    cut = evaluate_reward_model(model, tokenizer, pairs, max_length=6, show_progress=False)
    assert cut.metrics["eval"]["num_pairs"] == full.metrics["eval"]["num_pairs"] == 4  # nothing dropped
    assert not np.allclose(cut.margins["eval"], full.margins["eval"])
    with pytest.raises(ValueError, match="truncation_mode"):
        evaluate_reward_model(model, tokenizer, pairs, truncation_mode="middle")


def test_a_stored_temperature_divides_the_margins(tokenizer):
    model = tiny_reward_model("qwen2", tokenizer, seed=3)
    pairs = {"polite": toy_preference_sources(6)["polite"]}
    plain = evaluate_reward_model(model, tokenizer, pairs, show_progress=False)
    set_reward_temperature(model, 4.0)
    scaled = evaluate_reward_model(model, tokenizer, pairs, show_progress=False)
    np.testing.assert_allclose(scaled.margins["polite"], plain.margins["polite"] / 4.0, rtol=1e-6)
    assert scaled.temperature == 4.0
    assert scaled.metrics["polite"]["preference_accuracy"] == plain.metrics["polite"]["preference_accuracy"]
    explicit = evaluate_reward_model(model, tokenizer, pairs, temperature=1.0, show_progress=False)
    np.testing.assert_allclose(explicit.margins["polite"], plain.margins["polite"])


def test_the_model_goes_back_to_training_mode(model, tokenizer):
    model.train()
    evaluate_reward_model(model, tokenizer, toy_preference_sources(2)["polite"], show_progress=False)
    assert model.training
    model.eval()


def test_result_to_dict_json_markdown_and_back(tmp_path):
    result = RewardEvaluation.from_margins(
        {"helpful": [2.0, -1.0, 6.0], "harmless": [0.5, 0.25]}, n_bins=10, outlier_threshold=5.0
    )
    data = result.to_dict()
    assert data["sources"]["helpful"]["ece"] == pytest.approx(expected_calibration_error([2.0, -1.0, 6.0]))
    assert data["sources"]["harmless"]["positive_outlier_mean"] is None  # NaN is not JSON
    assert data["average"]["preference_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert data["margins"]["harmless"] == [0.5, 0.25]
    text = result.to_json(tmp_path / "metrics.json")
    assert json.loads(text) == json.loads((tmp_path / "metrics.json").read_text()) == data
    again = RewardEvaluation.from_json(tmp_path / "metrics.json")
    assert again.metrics["helpful"] == result.metrics["helpful"]

    table = result.to_markdown().splitlines()
    assert table[0].startswith("| source | pairs | accuracy (%) | ECE |")
    assert table[2].startswith("| helpful | 3 | 66.67 | ")
    assert table[2].endswith("| 1 (6.00) | 0 |")
    assert table[4].startswith("| average |  | 83.33 |")

    without = tmp_path / "short.json"
    result.to_json(without, include_margins=False)
    with pytest.raises(ValueError, match="margins"):
        RewardEvaluation.from_json(without)


def write_jsonl(path, dataset):
    path.write_text("".join(json.dumps(row) + "\n" for row in dataset))
    return path


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_cli_evaluate_end_to_end_on_a_saved_model(tmp_path, model, tokenizer):
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    history = [{"lambda/polite": 0.5, "lambda/concise": 0.5, "step": 1}, {"lambda/polite": 0.7, "lambda/concise": 0.3}]
    (model_dir / "trainer_state.json").write_text(json.dumps({"log_history": history}))  # a MORE run's log
    toy = toy_preference_sources(9, seed=4)
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", toy[name]) for name in toy}
    # The random model prefers the polite responses; a quarter of the held-out pairs swapped makes it wrong there.
    polite = toy_preference_sources(40, seed=5)["polite"]
    swapped = polite.select(range(10)).rename_columns({"chosen": "rejected", "rejected": "chosen"})
    held_out = write_jsonl(tmp_path / "held_out.jsonl", list(polite.select(range(10, 40))) + list(swapped))
    out = tmp_path / "evaluation"

    cli_main(
        ["evaluate", "--model", str(model_dir), "--output_dir", str(out), "--batch_size", "4"]
        + ["--sources"]
        + [f"{name}={path}" for name, path in files.items()]
        + ["--calibration_sources", f"held_out={held_out}", "--save_calibrated_model"]
    )

    written = json.loads((out / "metrics.json").read_text())
    expected = evaluate_reward_model(model, tokenizer, dict(toy), show_progress=False)
    for name in toy:
        assert written["sources"][name]["num_pairs"] == 9
        assert written["sources"][name]["ece"] == pytest.approx(expected.metrics[name]["ece"], abs=1e-6)
        np.testing.assert_allclose(written["margins"][name], expected.margins[name], atol=1e-6)
    assert (out / "metrics.md").read_text().startswith("| source |")
    assert png_size(out / "reliability.png") == (1050, 350)
    assert png_size(out / "reward_differences.png") == (600, 450)
    assert png_size(out / "lambda.png") == (700, 400)

    fit = json.loads((out / "temperature.json").read_text())
    assert fit["accuracy"] == 0.75 and fit["num_pairs"] == 40
    assert fit["ece_after"] < fit["ece_before"]
    calibrated = json.loads((out / "metrics_calibrated.json").read_text())
    assert calibrated["temperature"] == pytest.approx(fit["temperature"])
    for name in toy:
        np.testing.assert_allclose(
            calibrated["margins"][name], np.array(written["margins"][name]) / fit["temperature"], rtol=1e-9
        )
        assert calibrated["sources"][name]["preference_accuracy"] == written["sources"][name]["preference_accuracy"]
    saved = json.loads((out / "calibrated_model" / "config.json").read_text())
    assert saved["reward_temperature"] == pytest.approx(fit["temperature"])
    # The reward statistics: mean and population std of the raw rewards of the 80 held-out responses.
    held = [json.loads(line) for line in held_out.read_text().splitlines()]
    rewards = []
    with torch.no_grad():
        for row in held:
            for text in (row["chosen"], row["rejected"]):
                ids = tokenizer(row["prompt"] + text + tokenizer.eos_token)["input_ids"]
                rewards.append(model(input_ids=torch.tensor([ids])).logits[0, 0].item())
    statistics = json.loads((out / "reward_statistics.json").read_text())
    assert statistics["mean"] == pytest.approx(np.mean(rewards), abs=1e-5)
    assert statistics["std"] == pytest.approx(np.std(rewards), abs=1e-5)
    assert (saved["reward_mean"], saved["reward_std"]) == (statistics["mean"], statistics["std"])


def test_cli_reads_known_sources_through_the_data_loaders(tmp_path, model, tokenizer, shared_data):
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "evaluation"
    helpful = shared_data / "hh_rlhf" / "helpful-base.test.jsonl.gz"
    cli_main(
        ["evaluate", "--model", str(model_dir), "--output_dir", str(out), "--plots", "false"]
        + ["--sources", f"hh-helpful={helpful}", "--max_pairs_per_source", "6", "--max_length", "64"]
    )
    written = json.loads((out / "metrics.json").read_text())
    assert written["sources"]["hh-helpful"]["num_pairs"] == 6
    assert not (out / "reliability.png").exists()


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["mine"], "not a known source"),
        (["a=x.jsonl", "a=y.jsonl"], "twice"),
        (["=x.jsonl"], "NAME=PATH"),
    ],
)
def test_cli_rejects_bad_source_specifications(tmp_path, sources, message):
    from trl_more.cli.evaluate import load_evaluation_sources

    with pytest.raises(ValueError, match=message):
        load_evaluation_sources(sources, split="test")


def test_cli_rejects_files_that_are_not_preference_pairs(tmp_path):
    from trl_more.cli.evaluate import load_evaluation_sources

    path = tmp_path / "ratings.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "response": "hello", "score": 3}) + "\n")
    with pytest.raises(ValueError, match="chosen"):
        load_evaluation_sources([f"ratings={path}"], split="test")


def test_plain_text_pairs_need_an_eos_token(model):
    tokenizer = tiny_tokenizer()
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="EOS token"):
        evaluate_reward_model(model, tokenizer, toy_preference_sources(2)["polite"], show_progress=False)


def test_cli_evaluate_reports_how_an_ensembles_spread_predicts_its_errors(tmp_path, model, tokenizer):
    from trl_more.metrics import uncertainty_metrics

    folders = []
    for index, (member, temperature) in enumerate(
        ((model, 2.0), (tiny_reward_model("qwen2", tokenizer, seed=8), 0.5))
    ):
        member = copy.deepcopy(member)
        set_reward_temperature(member, temperature)  # the members' common scale: rewards / T
        member.save_pretrained(tmp_path / f"member-{index}")
        tokenizer.save_pretrained(tmp_path / f"member-{index}")
        folders.append(tmp_path / f"member-{index}")
    toy = toy_preference_sources(12, seed=4)
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", toy[name]) for name in ("polite", "concise")}
    out = tmp_path / "evaluation"
    cli_main(
        [
            "evaluate",
            "--model",
            str(folders[0]),
            "--ensemble_models",
            str(folders[1]),
            "--output_dir",
            str(out),
            "--plots",
            "false",
            "--sources",
            *(f"{name}={path}" for name, path in files.items()),
        ]
    )
    report = json.loads((out / "uncertainty.json").read_text())
    assert list(report) == ["polite", "concise", "all"]
    margins = {
        name: np.stack(
            [
                evaluate_reward_model(m, tokenizer, toy[name], show_progress=False, temperature=t).margins["eval"]
                for m, t in ((model, 2.0), (tiny_reward_model("qwen2", tokenizer, seed=8), 0.5))
            ],
            axis=1,
        )
        for name in files
    }
    for name in files:
        expected = uncertainty_metrics(margins[name])
        assert report[name]["auroc"] == pytest.approx(expected["auroc"], nan_ok=True)
        assert report[name]["accuracy"] == pytest.approx(expected["accuracy"])
        for key in ("pairs", "accuracy", "spread_max"):
            assert [group[key] for group in report[name]["by_quantile"]] == pytest.approx(
                [group[key] for group in expected["by_quantile"]], abs=1e-6
            )
    pooled = uncertainty_metrics(np.concatenate(list(margins.values())))
    assert report["all"]["spread_mean"] == pytest.approx(pooled["spread_mean"], abs=1e-6)
    assert "AUROC of spread for errors" in (out / "uncertainty.md").read_text()
