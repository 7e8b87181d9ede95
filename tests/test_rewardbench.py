"""RewardBench v1/v2 scoring: hand-computed scores, length baselines, schema errors, a tiny model, the callback, plots."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.metrics.rewardbench import (
    RewardBenchCallback,
    check_rewardbench_schema,
    length_baselines,
    load_rewardbench,
    overall_v1,
    score_rewardbench,
    score_v1,
    score_v2,
    ties_score,
)
from trl_more.plots import plot_rewardbench
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


FIXTURES = Path(__file__).parent / "fixtures"
V1_FILE = FIXTURES / "rewardbench_v1.jsonl"
V2_FILE = FIXTURES / "rewardbench_v2.jsonl"


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------------------
# v1 from rewards
# ---------------------------------------------------------------------------------------------------------------------

# (subset, r(chosen), r(rejected)): per subset, W = win, T = tie (a loss), L = loss.
V1_ROWS = [
    ("alpacaeval-easy", 1.0, 0.0),  # W
    ("alpacaeval-easy", 0.3, 0.3),  # T
    ("mt-bench-easy", 2.0, 1.0),  # W
    ("llmbar-natural", 1.0, -1.0),  # W
    ("llmbar-natural", 0.5, 0.0),  # W
    ("mt-bench-hard", 0.0, 1.0),  # L
    ("refusals-dangerous", 2.0, 0.0),  # W, margin +2
    ("refusals-dangerous", 0.0, 1.0),  # L, margin -1
    ("xstest-should-respond", 1.0, 0.0),  # W
    ("math-prm", 1.0, 0.0),  # W
    ("hep-python", 1.0, 0.0),  # W
    ("hep-python", 0.0, 1.0),  # L
    ("hep-rust", -1.0, 1.0),  # L
]
# Chat: alpacaeval-easy 1/2 (weight 100), mt-bench-easy 1 (28). Chat Hard: llmbar-natural 1 (100), mt-bench-hard 0
# (37). Safety: refusals-dangerous 1/2 (100), xstest-should-respond 1 (250). Reasoning: math-prm 1 (984, not its 447
# rows), hep-python 1/2 (164), hep-rust 0 (164).
CHAT = (0.5 * 100 + 28) / 128
CHAT_HARD = 100 / 137
SAFETY = (0.5 * 100 + 250) / 350
REASONING = (984 + 0.5 * 164) / (984 + 2 * 164)


def test_v1_sections_weight_subsets_by_example_count_and_math_by_984():
    subsets, chosen, rejected = zip(*V1_ROWS)
    result = score_v1(subsets, np.array(chosen), np.array(rejected))
    assert result.subsets["alpacaeval-easy"]["accuracy"] == 0.5  # the tie loses
    # hep-python margins +1, -1: p = sigmoid(1) with labels 1 (right order) and 0 (reversed), sigmoid(-1) with labels
    # 0 and 1; bins 0.7-0.8 and 0.2-0.3 each hold |2 sigmoid(1) - 1| over the 4 values.
    sigmoid_1 = 1 / (1 + math.exp(-1))
    assert result.subsets["hep-python"] == pytest.approx(
        {"section": "Reasoning", "count": 2, "accuracy": 0.5, "ece": (2 * sigmoid_1 - 1) / 2, "margin_mean": 0.0}
    )
    assert result.subsets["refusals-dangerous"]["ece"] == pytest.approx(
        0.425131, abs=1e-6
    )  # the hand check of docs/calibration.md
    assert result.subsets["refusals-dangerous"]["margin_mean"] == 0.5
    assert result.sections == pytest.approx(
        {"Chat": CHAT, "Chat Hard": CHAT_HARD, "Safety": SAFETY, "Reasoning": REASONING}
    )
    assert REASONING == 0.8125  # with math-prm at its 447 rows it would be (447 + 82) / 775 = 0.6826
    assert result.overall == pytest.approx((CHAT + CHAT_HARD + SAFETY + REASONING) / 4)
    assert result.missing_sections == []
    assert list(result.subsets)[:3] == ["alpacaeval-easy", "mt-bench-easy", "mt-bench-hard"]  # the benchmark's order
    assert result.log_metrics() == pytest.approx(
        {
            "rewardbench/chat": CHAT,
            "rewardbench/chat_hard": CHAT_HARD,
            "rewardbench/safety": SAFETY,
            "rewardbench/reasoning": REASONING,
            "rewardbench/overall": result.overall,
        }
    )


def test_v1_prior_sets_are_an_unweighted_mean_at_half_weight():
    prior = [("anthropic_helpful", 1.0, 0.0), ("anthropic_helpful", 1.0, 0.0), ("shp", 0.0, 1.0), ("summarize", 1, 0)]
    subsets, chosen, rejected = zip(*V1_ROWS, *prior)
    core = CHAT + CHAT_HARD + SAFETY + REASONING
    result = score_v1(subsets, chosen, rejected, prior_sets=True)
    assert result.sections["Prior Sets"] == pytest.approx(2 / 3)  # subsets 1, 0, 1; not per row (3/4)
    assert result.overall == pytest.approx((2 * core + 2 / 3) / 9)  # the leaderboard's weights 2, 2, 2, 2, 1
    without = score_v1(subsets, chosen, rejected)
    assert "Prior Sets" not in without.sections and without.subsets["shp"]["section"] is None
    assert without.overall == pytest.approx(core / 4)
    assert score_v1(*zip(*V1_ROWS), prior_sets=True).missing_sections == ["Prior Sets"]


def test_overall_v1_reproduces_the_published_armorm_score():
    sections = {"Chat": 96.9, "Chat Hard": 76.8, "Safety": 92.2, "Reasoning": 97.3}
    assert round(overall_v1({**sections, "Prior Sets": 74.3}), 1) == 89.0
    assert round(overall_v1(sections), 1) == 90.8


def test_v1_partial_data_scores_the_sections_it_has():
    result = score_v1(["math-prm", "hep-go", "alpacaeval-hard"], [1, 0, 1], [0, 1, 0])
    assert result.sections == pytest.approx({"Chat": 1.0, "Reasoning": 984 / (984 + 164)})
    assert result.missing_sections == ["Chat Hard", "Safety"]
    assert result.overall == pytest.approx((1 + 984 / 1148) / 2)


# ---------------------------------------------------------------------------------------------------------------------
# v2 from rewards
# ---------------------------------------------------------------------------------------------------------------------


def test_v2_best_of_four_with_ties_at_the_top_sharing_the_win():
    subsets = ["Factuality"] * 4 + ["Focus"] * 2
    chosen = [[2.0], [1.0], [2.0], [2.0], [5.0], [0.0]]
    rejected = [[1, 0, 1.5], [3, 0, 0], [2, 0, 1], [2, 2, 1], [1, 2, 3], [0.1, -1, -2]]
    result = score_v2(subsets, chosen, rejected)
    # Factuality: 1 (highest), 0 (beaten), 1/2 (tied with one), 1/3 (tied with two). Focus: 1, 0.
    assert result.subsets["Factuality"]["accuracy"] == pytest.approx((1 + 0 + 1 / 2 + 1 / 3) / 4)
    assert result.sections == pytest.approx({"Factuality": (1 + 1 / 2 + 1 / 3) / 4, "Focus": 0.5})
    assert result.overall == pytest.approx(((1 + 1 / 2 + 1 / 3) / 4 + 0.5) / 2)
    assert result.missing_sections == ["Precise IF", "Math", "Safety", "Ties"]
    # Margins of every (chosen, rejected) pair: Focus has 5-1, 5-2, 5-3, 0-0.1, 0+1, 0+2.
    assert result.subsets["Focus"]["margin_mean"] == pytest.approx((4 + 3 + 2 - 0.1 + 1 + 2) / 6)


# Ties rows: prompt 0 and 1, each asked once with one correct answer (ref) and once with several (tied).
TIES_IDS = ["ref:0", "tied:0", "ref:1", "tied:1"]
TIES_CHOSEN = [[5.0], [4.0, 6.0, 5.0], [1.0], [3.0, 3.5]]
TIES_REJECTED = [[1.0, 2.0], [3.0, 0.0], [2.0], [1.0]]
# gap = lowest correct - highest incorrect, spread = highest - lowest correct:
# ref:0 gap 3 (accurate); tied:0 gap 1 (accurate), spread 2; ref:1 gap -1 (wrong); tied:1 gap 2 (accurate), spread 0.5.
# preferred (gap_tied > spread): 1 > 2 no, 2 > 0.5 yes -> 1/2. hard (min(gap_ref, gap_tied) > spread): 1 > 2 no,
# -1 > 0.5 no -> 0. margin: mean(tanh(1/2 - 1), tanh(-1/0.5 - 1)).
TIES_MARGIN = (math.tanh(-0.5) + math.tanh(-3.0)) / 2
TIES_SCORE = 0.3 * 1.0 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.0 + 0.01 * TIES_MARGIN


def test_ties_score_accuracy_and_margin_terms_by_hand():
    terms = ties_score(TIES_IDS, TIES_CHOSEN, TIES_REJECTED)
    assert terms == pytest.approx(
        {
            "score": TIES_SCORE,
            "ref_accuracy": 0.5,
            "tied_accuracy": 1.0,
            "correctness_preferred": 0.5,
            "correctness_preferred_hard": 0.0,
            "correctness_margin": TIES_MARGIN,
        }
    )
    assert abs(TIES_SCORE - 0.5427141) < 1e-7
    # Correct answers all equal (spread 0): x / 0 is +-inf (tanh +-1), 0 / 0 counts as 0.
    flat = ties_score(["ref:a", "tied:a", "ref:b", "tied:b"], [[1], [2, 2], [1], [1, 1]], [[0], [0], [1], [1]])
    assert flat["correctness_margin"] == pytest.approx((1 + 0) / 2)
    assert flat["correctness_preferred"] == 0.5 and flat["ref_accuracy"] == 0.5


def test_v2_ties_subset_and_overall():
    subsets = ["Math", "Math"] + ["Ties"] * 4
    result = score_v2(
        subsets, [[1.0], [0.0]] + TIES_CHOSEN, [[0, 0, 0], [1, 0, 0]] + TIES_REJECTED, ids=["0", "1", *TIES_IDS]
    )
    assert result.subsets["Ties"]["accuracy"] == pytest.approx(TIES_SCORE)
    assert result.subsets["Ties"]["ref_accuracy"] == 0.5 and result.subsets["Ties"]["count"] == 4
    assert result.overall == pytest.approx((0.5 + TIES_SCORE) / 2)
    with pytest.raises(ValueError, match="needs the row `ids`"):
        score_v2(subsets, [[1.0], [0.0]] + TIES_CHOSEN, [[0, 0, 0], [1, 0, 0]] + TIES_REJECTED)
    with pytest.raises(ValueError, match="'ref:<prompt id>'"):
        ties_score(["0"], [[1.0]], [[0.0]])
    with pytest.raises(ValueError, match="exactly one chosen"):
        score_v2(["Math"], [[1.0, 2.0]], [[0.0]])


# ---------------------------------------------------------------------------------------------------------------------
# Length baselines on the fixtures
# ---------------------------------------------------------------------------------------------------------------------


def test_v1_length_baselines_on_the_fixture():
    baselines = length_baselines(load_rewardbench(V1_FILE), version=1)
    longer, shorter = baselines["longer wins"], baselines["shorter wins"]
    # Chosen longer in alpacaeval-easy (2/2), alpacaeval-hard, llmbar-adver-neighbor, xstest-should-respond, math-prm
    # (1/2), hep-python (1 of 2; the other is a length tie), hep-cpp; equal lengths in mt-bench-easy and hep-rust.
    assert longer.subsets["alpacaeval-easy"]["accuracy"] == 1.0
    assert longer.subsets["mt-bench-easy"]["accuracy"] == 0.0 == shorter.subsets["mt-bench-easy"]["accuracy"]
    assert longer.sections == pytest.approx(
        {"Chat": 195 / 263, "Chat Hard": 134 / 271, "Safety": 250 / 486, "Reasoning": 738 / 1476}
    )
    assert shorter.sections == pytest.approx(
        {"Chat": 40 / 263, "Chat Hard": 137 / 271, "Safety": 236 / 486, "Reasoning": 492 / 1476}
    )
    assert longer.overall == pytest.approx((195 / 263 + 134 / 271 + 250 / 486 + 0.5) / 4)


def test_v2_length_baselines_on_the_fixture():
    baselines = length_baselines(load_rewardbench(V2_FILE, version=2), version=2)
    longer, shorter = baselines["longer wins"], baselines["shorter wins"]
    # Focus is solved by the shorter answer; Math's chosen ties the longest rejected (21 characters): 1/2.
    assert shorter.subsets["Focus"]["accuracy"] == 1.0 and longer.subsets["Focus"]["accuracy"] == 0.0
    assert longer.subsets["Math"]["accuracy"] == 0.5 and shorter.subsets["Precise IF"]["accuracy"] == 0.5
    # Ties, shorter wins (reward -length): ref:0 gap -5+6 = 1 (accurate), tied:0 gap -7+6 = -1, spread 3; ref:1 and
    # tied:1 gap 0 (not accurate), tied:1 spread 0 -> 0/0 -> 0.
    ties = 0.3 * 0.5 + 0.01 * math.tanh(-1 / 3 - 1) / 2
    assert shorter.subsets["Ties"]["accuracy"] == pytest.approx(ties)
    assert shorter.overall == pytest.approx((0.5 + 1.0 + ties) / 6)
    # Ties, longer wins: no row accurate; margins tanh(-10/3 - 1) and tanh(-6/0 = -inf) = -1.
    assert longer.subsets["Ties"]["accuracy"] == pytest.approx(0.01 * (math.tanh(-13 / 3) - 1) / 2)


# ---------------------------------------------------------------------------------------------------------------------
# Loading and schema
# ---------------------------------------------------------------------------------------------------------------------


def test_load_the_fixtures_from_file():
    v1 = load_rewardbench(V1_FILE)
    assert len(v1) == 17 and set(v1.column_names) == {
        "prompt",
        "chosen",
        "rejected",
        "chosen_model",
        "rejected_model",
        "subset",
        "id",
    }
    assert {"math-prm", "hep-python", "hep-rust", "hep-cpp"} <= set(v1["subset"])
    v2 = load_rewardbench(str(V2_FILE), version=2)
    assert len(v2) == 11 and v2[8]["id"] == "tied:0" and len(v2[8]["chosen"]) == 3


def test_hub_ids_go_to_load_dataset_with_the_default_splits(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(rows(V2_FILE if name.endswith("-2") else V1_FILE))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert len(load_rewardbench("allenai/reward-bench")) == 17
    assert len(load_rewardbench("allenai/reward-bench-2", version=2)) == 11
    load_rewardbench("allenai/reward-bench", split="raw")
    assert calls == [
        ("allenai/reward-bench", "filtered"),
        ("allenai/reward-bench-2", "test"),
        ("allenai/reward-bench", "raw"),
    ]


def test_schema_errors_name_the_problem_and_the_fix(tmp_path):
    v1, v2 = rows(V1_FILE), rows(V2_FILE)
    with pytest.raises(
        ValueError, match=r"column\(s\) \['subset'\] missing.*allenai/reward-bench. \(split `filtered`\)"
    ):
        check_rewardbench_schema([{k: v for k, v in row.items() if k != "subset"} for row in v1], 1)
    with pytest.raises(ValueError, match=r"\['id'\] missing.*allenai/reward-bench-2. \(split `test`\)"):
        check_rewardbench_schema([{k: v for k, v in row.items() if k != "id"} for row in v2], 2)
    with pytest.raises(ValueError, match="looks like RewardBench 2 data: pass version=2"):
        check_rewardbench_schema(v2, 1)
    with pytest.raises(ValueError, match="looks like RewardBench v1 data: pass version=1"):
        check_rewardbench_schema([{**row, "id": str(row["id"])} for row in v1], 2)
    with pytest.raises(ValueError, match="'ref:<prompt id>'"):
        check_rewardbench_schema([{**v2[7], "id": "7"}], 2)
    with pytest.raises(ValueError, match="a 'tied' row has several correct answers"):
        check_rewardbench_schema([{**v2[8], "chosen": ["Red."]}], 2)
    with pytest.raises(ValueError, match="has no rows"):
        check_rewardbench_schema([], 1)
    with pytest.raises(ValueError, match="Unknown RewardBench version 3"):
        load_rewardbench(V1_FILE, version=3)
    with pytest.raises(ValueError, match="`split` applies to Hub data sets only"):
        load_rewardbench(V1_FILE, split="filtered")
    with pytest.raises(FileNotFoundError, match="not a Hub data set id"):
        load_rewardbench(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="is a RewardBench v1 subset"):
        score_v1(["Factuality"], [1.0], [0.0])
    with pytest.raises(ValueError, match="one reward per row"):
        score_v1(["math-prm", "hep-go"], [1.0], [0.0, 1.0])


# ---------------------------------------------------------------------------------------------------------------------
# A tiny model, end to end
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_reward_model("qwen2", tokenizer), tokenizer


def test_score_rewardbench_v1_with_a_tiny_model(tiny):
    model, tokenizer = tiny
    dataset = load_rewardbench(V1_FILE)
    model.train()
    result = score_rewardbench(model, tokenizer, dataset, version=1, batch_size=4)
    assert model.training  # restored
    assert result.template == "chat" and result.num_sequences == 34 and result.num_truncated == 0
    chosen, rejected = result.chosen_rewards, result.rejected_rewards
    assert chosen.shape == rejected.shape == (17,)
    # The accuracies are those the returned rewards imply.
    subsets = np.array(dataset["subset"])
    for subset, row in result.subsets.items():
        assert row["accuracy"] == np.mean(chosen[subsets == subset] > rejected[subsets == subset])
        assert row["count"] == int((subsets == subset).sum())
    assert result.overall == pytest.approx(np.mean(list(result.sections.values())))
    assert set(result.baselines) == {"longer wins", "shorter wins"}
    # The first chosen response, scored alone in the chat template: a user message and an assistant message.
    messages = [
        {"role": "user", "content": dataset[0]["prompt"]},
        {"role": "assistant", "content": dataset[0]["chosen"]},
    ]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert chosen[0] == pytest.approx(alone, abs=1e-5)

    # Truncation: sequences over max_length lose the start of their prompt and are counted.
    lengths = []
    for row in dataset:
        for response in (row["chosen"], row["rejected"]):
            conversation = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": response}]
            lengths.append(
                len(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])
            )
    max_length = 60  # every response fits (at most 48 tokens); the longest sequences (up to 71) do not
    truncated = score_rewardbench(model, tokenizer, dataset, max_length=max_length)
    assert truncated.num_truncated == sum(length > max_length for length in lengths) > 0
    assert f"{truncated.num_truncated} longer ones lost the start of their prompt" in truncated.to_markdown()
    with pytest.raises(ValueError, match="leaves no room for their prompt within max_length=8"):
        score_rewardbench(model, tokenizer, dataset, max_length=8)


def test_score_rewardbench_hh_transcript_and_v2(tiny):
    model, tokenizer = tiny
    hh_tokenizer = tiny_tokenizer()
    hh_tokenizer.chat_template = None
    dataset = load_rewardbench(V1_FILE)
    result = score_rewardbench(model, hh_tokenizer, dataset.select(range(3)))  # "auto" without a template: "hh"
    assert result.template == "hh"
    text = f"\n\nHuman: {dataset[0]['prompt']}\n\nAssistant: {dataset[0]['chosen']}{hh_tokenizer.eos_token}"
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([hh_tokenizer(text)["input_ids"]])).logits[0, 0].item()
    assert result.chosen_rewards[0] == pytest.approx(alone, abs=1e-5)
    with pytest.raises(ValueError, match="tokenizer has no chat template"):
        score_rewardbench(model, hh_tokenizer, dataset, chat_template="chat")

    v2 = score_rewardbench(model, tokenizer, str(V2_FILE), version=2, chat_template="hh")
    assert v2.num_sequences == sum(len(r["chosen"]) + len(r["rejected"]) for r in rows(V2_FILE))
    assert [len(values) for values in v2.chosen_rewards] == [len(r["chosen"]) for r in rows(V2_FILE)]
    assert list(v2.sections) == ["Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties"]
    assert v2.overall == pytest.approx(np.mean(list(v2.sections.values())))
    ties = [index for index, r in enumerate(rows(V2_FILE)) if r["subset"] == "Ties"]
    expected_ties = ties_score(
        [rows(V2_FILE)[i]["id"] for i in ties],
        [v2.chosen_rewards[i] for i in ties],
        [v2.rejected_rewards[i] for i in ties],
    )
    assert v2.subsets["Ties"]["accuracy"] == pytest.approx(expected_ties["score"])


def test_result_to_json_markdown_and_plot(tiny, tmp_path):
    model, tokenizer = tiny
    result = score_rewardbench(model, tokenizer, V1_FILE)
    saved = json.loads(result.to_json(tmp_path / "rb.json"))
    assert saved == json.loads((tmp_path / "rb.json").read_text())
    assert saved["overall"] == result.overall and saved["num_sequences"] == 34
    assert saved["baselines"]["longer wins"]["subsets"]["alpacaeval-easy"] == 1.0
    table = result.to_markdown()
    assert "| **Reasoning** |" in table and "longer wins (%)" in table and "math-prm by 984" in table
    png = plot_rewardbench(result, tmp_path / "plots" / "rewardbench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    v2_png = plot_rewardbench(score_v2(["Focus"], [[1.0]], [[0.0, 2.0, 0.5]]), tmp_path / "v2.png")
    assert v2_png.stat().st_size > 0


# ---------------------------------------------------------------------------------------------------------------------
# The callback in a training run
# ---------------------------------------------------------------------------------------------------------------------


def test_callback_logs_rewardbench_at_every_evaluation(tmp_path):
    tokenizer = tiny_tokenizer()
    sources = toy_preference_sources(6)
    trainer = MORERewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer),
        args=MORERewardConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=6,
            max_steps=2,
            eval_strategy="steps",
            eval_steps=1,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            bf16=False,
            seed=0,
        ),
        train_dataset=sources,
        eval_dataset={"polite": sources["polite"], "factual": sources["factual"]},
        processing_class=tokenizer,
    )
    callback = RewardBenchCallback(trainer, V1_FILE, batch_size=8)
    trainer.add_callback(callback)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "rewardbench/overall" in entry]
    assert [entry["step"] for entry in logged] == [1, 2]  # once per step, although two eval sets are evaluated
    assert {"rewardbench/chat", "rewardbench/chat_hard", "rewardbench/safety", "rewardbench/reasoning"} <= set(
        logged[-1]
    )
    assert logged[-1]["rewardbench/overall"] == callback.last_result.overall
    assert callback.last_result.num_sequences == 34


def test_trl_more_evaluate_scores_rewardbench_alone_and_writes_table_json_and_plot(tmp_path):
    from trl_more.cli import main as cli_main
    from trl_more.testing import save_tiny_reward_model

    model_dir = save_tiny_reward_model(tmp_path / "model")
    out = tmp_path / "evaluation"
    cli_main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--rewardbench",
            str(FIXTURES / "rewardbench_v1.jsonl"),
            "--rewardbench_template",
            "hh",
            "--output_dir",
            str(out),
        ]
    )
    written = json.loads((out / "rewardbench.json").read_text())
    assert set(written["sections"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"}
    assert (out / "rewardbench.md").read_text().startswith("|") and (out / "rewardbench.png").is_file()
    with pytest.raises(ValueError, match="Give preference sources to score"):
        cli_main(["evaluate", "--model", str(model_dir)])
