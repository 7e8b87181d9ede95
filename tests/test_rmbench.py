"""RM-Bench scoring: the style matrix and its averages by hand, style baselines, schema errors, a tiny model, the
callback and the model card, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.metrics.rmbench import (
    RMBenchCallback,
    check_rmbench_schema,
    has_markdown,
    load_rmbench,
    score_rmbench,
    score_rmbench_rewards,
    style_baselines,
    style_matrix,
)
from trl_more.plots import plot_rmbench
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


FIXTURE = Path(__file__).parent / "fixtures" / "rmbench.json"  # the published schema (total_dataset.json)


def rows():
    return json.loads(FIXTURE.read_text())


# ---------------------------------------------------------------------------------------------------------------------
# Scores from rewards, by hand
# ---------------------------------------------------------------------------------------------------------------------

# Rewards of the (concise, detailed plain, detailed markdown) responses, per row.
CHAT_A = ([1.0, 2.0, 3.0], [0.0, 2.5, 2.0])
CHAT_B = ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])  # every comparison a tie: all lost
# Row A, cell (i, j) = 1[chosen_i > rejected_j]: concise 1 > (0, 2.5, 2) -> 1 0 0; detailed 2 -> 1 0 0 (2 = 2 ties);
# markdown 3 -> 1 1 1. Row B: all 0. The chat matrix is their mean.
CHAT_MATRIX = [[0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.5, 0.5, 0.5]]
CHAT = {"hard": 0.0, "normal": 1 / 3, "easy": 0.5, "average": (0 + 1 / 3 + 0.5) / 3}  # 5/18
CODE = ([1.0, 1.0, 1.0], [0.0, 2.0, 0.0])  # columns 1 0 1 in every row: hard = normal = easy = 2/3
REFUSE = ([5.0, 5.0, 5.0], [1.0, 1.0, 1.0])  # every cell won
RESPOND = ([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])  # every cell lost


def test_style_matrix_by_hand():
    result = style_matrix([CHAT_A[0], CHAT_B[0]], [CHAT_A[1], CHAT_B[1]])
    assert result["count"] == 2
    assert result["matrix"] == CHAT_MATRIX
    assert {key: result[key] for key in CHAT} == pytest.approx(CHAT)


def test_domains_hard_normal_easy_and_overall_by_hand():
    domains = ["chat", "chat", "code", "safety-refuse", "safety-refuse", "safety-response"]
    chosen, rejected = zip(CHAT_A, CHAT_B, CODE, REFUSE, REFUSE, RESPOND)
    result = score_rmbench_rewards(domains, np.array(chosen), torch.tensor(rejected))  # arrays, lists or tensors
    assert list(result.domains) == ["chat", "code", "safety"]  # the reference's order; math has no rows
    assert result.missing_domains == ["math"]
    # Safety pools its two files' rows (as the reference's startswith split does): 2 of 3 rows win every cell, so
    # 2/3 everywhere, not the mean of the files (1/2).
    assert result.domains["safety"]["count"] == 3
    assert np.allclose(result.domains["safety"]["matrix"], 2 / 3)
    assert result.domains["code"]["matrix"] == [[1.0, 0.0, 1.0]] * 3
    assert {key: result.domains["chat"][key] for key in CHAT} == pytest.approx(CHAT)
    # hard, normal, easy: means over the three domains with rows; overall: the mean of their averages.
    assert result.hard == pytest.approx((0 + 2 / 3 + 2 / 3) / 3)  # 4/9
    assert result.normal == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)  # 5/9
    assert result.easy == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)  # 11/18
    assert result.overall == pytest.approx((5 / 18 + 2 / 3 + 2 / 3) / 3) == pytest.approx(29 / 54)
    assert result.overall == pytest.approx((result.hard + result.normal + result.easy) / 3)
    # A missing domain is not averaged as 0: that would give (5/18 + 0 + 2/3 + 2/3) / 4 instead.
    assert result.overall != pytest.approx((5 / 18 + 2 / 3 + 2 / 3) / 4)
    assert result.log_metrics() == pytest.approx(
        {
            "rmbench/chat": 5 / 18,
            "rmbench/code": 2 / 3,
            "rmbench/safety": 2 / 3,
            "rmbench/hard": 4 / 9,
            "rmbench/normal": 5 / 9,
            "rmbench/easy": 11 / 18,
            "rmbench/overall": 29 / 54,
        }
    )
    assert "No rows for math" in result.to_markdown()


def reference_loop(domains, chosen, rejected):
    """The reference's rules written as loops, row by row: the oracle for random rewards."""
    scores = {}
    for domain in ("chat", "math", "code", "safety"):
        members = [index for index, value in enumerate(domains) if value.startswith(domain)]
        if not members:
            continue
        matrix = np.zeros((3, 3))
        for index in members:
            for i in range(3):
                for j in range(3):
                    matrix[i][j] += chosen[index][i] > rejected[index][j]
        matrix /= len(members)
        hard = (matrix[0][1] + matrix[0][2] + matrix[1][2]) / 3
        normal = (matrix[0][0] + matrix[1][1] + matrix[2][2]) / 3
        easy = (matrix[1][0] + matrix[2][0] + matrix[2][1]) / 3
        scores[domain] = (hard, normal, easy)
    averages = [sum(levels) / 3 for levels in scores.values()]
    return scores, sum(averages) / len(averages)


def test_scores_equal_a_row_by_row_loop_on_random_rewards():
    rng = np.random.default_rng(0)
    domains = list(rng.choice(["chat", "math", "code", "safety-refuse", "safety-response"], size=60))
    chosen = rng.integers(0, 4, size=(60, 3)).astype(float)  # few values: many ties
    rejected = rng.integers(0, 4, size=(60, 3)).astype(float)
    result = score_rmbench_rewards(domains, chosen, rejected)
    scores, overall = reference_loop(domains, chosen, rejected)
    for domain, (hard, normal, easy) in scores.items():
        assert [result.domains[domain][key] for key in ("hard", "normal", "easy")] == pytest.approx(
            [hard, normal, easy]
        )
    assert result.overall == pytest.approx(overall)


def test_style_baselines_on_the_fixture():
    baselines = style_baselines(load_rmbench(FIXTURE))
    longer, markdown = baselines["longer wins"], baselines["markdown wins"]
    # Lengths (characters) of the chosen / rejected styles: chat (9, 90, 94) / (7, 81, 85) and (23, 82, 95) /
    # (22, 81, 94); math (3, 44, 59) / (3, 44, 59); code (27, 69, 84) / (27, 81, 96); safety (47, 138, 143) /
    # (42, 126, 121) and (46, 127, 134) / (26, 86, 90).
    assert longer.domains["chat"]["matrix"] == [[1.0, 0.0, 0.0], [1.0, 1.0, 0.5], [1.0, 1.0, 1.0]]
    assert longer.domains["math"]["matrix"] == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]  # equal: ties
    assert longer.domains["safety"]["matrix"] == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert longer.summary() == pytest.approx(
        {
            "chat": (1 / 6 + 1 + 1) / 3,
            "math": 1 / 3,
            "code": 1 / 3,
            "safety": (1 / 3 + 1 + 1) / 3,
            "hard": (1 / 6 + 0 + 0 + 1 / 3) / 4,
            "normal": 0.5,
            "easy": 1.0,
            "overall": 13 / 24,
        }
    )
    # Only the markdown styles have markdown: the chosen markdown response wins against the two plain rejected ones.
    for row in markdown.domains.values():
        assert row["matrix"] == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    assert (markdown.hard, markdown.normal, markdown.easy) == pytest.approx((0, 0, 2 / 3))


def test_has_markdown_reads_style_not_lists():
    assert has_markdown("## Steps\nDo it.") and has_markdown("It is **56**.") and has_markdown("Run `ls`.")
    assert has_markdown("| a | b |\n|---|---|")
    assert not has_markdown("Ingredients:\n- flour\n- water\n1. Mix them.")  # plain-text lists
    assert not has_markdown("def __init__(self): return 2*x*y")


# ---------------------------------------------------------------------------------------------------------------------
# Loading and schema
# ---------------------------------------------------------------------------------------------------------------------


def test_load_the_fixture_the_per_domain_files_and_the_hub(tmp_path, monkeypatch):
    data = load_rmbench(FIXTURE)
    assert len(data) == 6 and {"id", "prompt", "chosen", "rejected", "domain"} <= set(data.column_names)
    # The repository's per-domain files have no `domain` column: their file name gives it.
    safety = [{k: v for k, v in row.items() if k != "domain"} for row in rows() if row["domain"].startswith("safety")]
    (tmp_path / "safety-response_filtered.json").write_text(json.dumps(safety[1:]))
    assert load_rmbench(tmp_path / "safety-response_filtered.json")["domain"] == ["safety-response"]
    (tmp_path / "mine.json").write_text(json.dumps(safety))
    with pytest.raises(ValueError, match="no `domain` column and its name starts with none of"):
        load_rmbench(tmp_path / "mine.json")

    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert len(load_rmbench("THU-KEG/RM-Bench")) == 6 and len(load_rmbench()) == 6
    assert calls == [("THU-KEG/RM-Bench", "train")] * 2


def test_schema_errors_name_the_problem_and_the_fix(tmp_path):
    good = rows()
    with pytest.raises(ValueError, match=r"`chosen` holds 2 response\(s\), but an RM-Bench row has exactly 3"):
        check_rmbench_schema([*good[:2], {**good[2], "chosen": good[2]["chosen"][:2]}])
    with pytest.raises(ValueError, match=r"row 0 \(id 101\): `rejected` holds 4 response"):
        check_rmbench_schema([{**good[0], "rejected": [*good[0]["rejected"], "More."]}])
    with pytest.raises(ValueError, match="Unknown RM-Bench domain 'poetry'"):
        check_rmbench_schema([{**good[0], "domain": "poetry"}])
    with pytest.raises(ValueError, match=r"column\(s\) \['domain'\] missing.*THU-KEG/RM-Bench. \(split `train`\)"):
        check_rmbench_schema([{k: v for k, v in good[0].items() if k != "domain"}])
    with pytest.raises(ValueError, match="`prompt` must be a text"):
        check_rmbench_schema([{**good[0], "prompt": [{"role": "user", "content": "Hi"}]}])
    with pytest.raises(ValueError, match="has no rows"):
        check_rmbench_schema([])
    with pytest.raises(ValueError, match=r"shape \(2, 3\); got shape \(2, 2\)"):
        score_rmbench_rewards(["chat", "chat"], [[1, 2, 3], [1, 2, 3]], [[1, 2], [1, 2]])
    with pytest.raises(FileNotFoundError, match="not a Hub data set id"):
        load_rmbench(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------------------------
# A tiny model, the callback, the model card and the CLI
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_reward_model("qwen2", tokenizer), tokenizer


def test_score_rmbench_with_a_tiny_model(tiny, tmp_path):
    model, tokenizer = tiny
    data = load_rmbench(FIXTURE)
    result = score_rmbench(model, tokenizer, data, batch_size=8)
    assert result.template == "chat" and result.num_sequences == 36 and result.num_truncated == 0
    chosen, rejected = result.chosen_rewards, result.rejected_rewards
    assert chosen.shape == rejected.shape == (6, 3)
    expected = score_rmbench_rewards(data["domain"], chosen, rejected)
    assert result.summary() == expected.summary() and set(result.baselines) == {"longer wins", "markdown wins"}
    # The detailed markdown chosen response of the first row, scored alone in the chat template.
    messages = [{"role": "user", "content": data[0]["prompt"]}, {"role": "assistant", "content": data[0]["chosen"][2]}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert chosen[0, 2] == pytest.approx(alone, abs=1e-5)

    saved = json.loads(result.to_json(tmp_path / "rmbench.json"))
    assert (
        saved["overall"] == result.overall and saved["domains"]["chat"]["matrix"] == result.domains["chat"]["matrix"]
    )
    assert saved["baselines"]["markdown wins"]["easy"] == pytest.approx(2 / 3) and saved["num_sequences"] == 36
    table = result.to_markdown()
    assert (
        "| **overall** | 6 |" in table and "| safety | detailed markdown |" in table and "longer wins: hard" in table
    )
    png = plot_rmbench(result, tmp_path / "plots" / "rmbench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_callback_logs_rmbench_and_the_model_card_shows_it(tmp_path):
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
    callback = RMBenchCallback(trainer, FIXTURE)
    trainer.add_callback(callback)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "rmbench/overall" in entry]
    assert [entry["step"] for entry in logged] == [1, 2]  # once per step, although two eval sets are evaluated
    assert {"rmbench/chat", "rmbench/math", "rmbench/code", "rmbench/safety", "rmbench/hard"} <= set(logged[-1])
    assert logged[-1]["rmbench/overall"] == callback.last_result.overall and callback.scored_step == 2
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert "## Benchmarks" in card and "### RM-Bench (step 2)" in card
    assert callback.last_result.to_markdown().splitlines()[2] in card  # the chat row of the table


def test_trl_more_evaluate_scores_rmbench_and_writes_table_json_and_heat_map(tmp_path):
    from trl_more.cli import main as cli_main
    from trl_more.testing import save_tiny_reward_model

    model_dir = save_tiny_reward_model(tmp_path / "model")
    out = tmp_path / "evaluation"
    cli_main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--rmbench",
            str(FIXTURE),
            "--rmbench_template",
            "hh",
            "--output_dir",
            str(out),
        ]
    )
    written = json.loads((out / "rmbench.json").read_text())
    assert set(written["domains"]) == {"chat", "math", "code", "safety"} and written["template"] == "hh"
    assert (out / "rmbench.md").read_text().startswith("| domain |") and (out / "rmbench.png").is_file()
    with pytest.raises(ValueError, match="Give preference sources to score"):
        cli_main(["evaluate", "--model", str(model_dir)])
