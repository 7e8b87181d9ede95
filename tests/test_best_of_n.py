"""Best-of-N against a gold reward: the curves on a hand example, exact expectations against every subset, the random
pick, bootstrap intervals, the over-optimisation point, ensembles, sampling, the callback and the CLI."""

import itertools
import json
import math

import numpy as np
import pytest

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.metrics.benchmark_scoring import score_sequences
from trl_more.metrics.best_of_n import (
    BestOfNCallback,
    best_of_n_curves,
    best_of_n_sizes,
    check_best_of_n_samples,
    expected_pick,
    kl_cost,
    sample_best_of_n,
    score_best_of_n,
)
from trl_more.plots import plot_best_of_n
from trl_more.rejection_sampling.generation import SamplingSettings
from trl_more.rewards import FunctionRewardModel, set_reward_statistics
from trl_more.synthetic import gold_reward, world_tokenizer
from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer, toy_preference_sources


# ---------------------------------------------------------------------------------------------------------------------
# The curves on a hand example (N up to 4)
# ---------------------------------------------------------------------------------------------------------------------

# Two prompts with 4 responses each. Prompt 0: the proxy ranks the responses 1 < 3 < 4 < 2 (by index 0, 2, 3, 1), and
# its favourite has gold 0. Prompt 1: the proxy ties responses 0-1 and 2-3.
PROXY = [[1.0, 4.0, 2.0, 3.0], [0.0, 0.0, 1.0, 1.0]]
GOLD = [[3.0, 0.0, 4.0, 1.0], [2.0, 4.0, 6.0, 8.0]]
# Proxy pick, prompt 0: N=1 any response, mean gold 2; N=2 the 6 pairs pick golds 0 (0,1), 4 (0,2), 1 (0,3), 0 (1,2),
# 0 (1,3), 1 (2,3): 6/6 = 1; N=4 response 1: 0. Prompt 1: N=1 5; N=2 the pairs pick 3 (0,1: a tie, gold 2 or 4),
# 6, 8, 6, 8, 7 (2,3: a tie, 6 or 8): 38/6; N=4 the tie of 2 and 3: 7.
PROXY_PICK = [(2 + 5) / 2, (1 + 38 / 6) / 2, (0 + 7) / 2]
# Gold pick: prompt 0 golds 0 < 1 < 3 < 4, N=2 picks 3 (0,1 -> max(3, 0)), 4, 3, 4, 1, 4: 19/6; N=4 4. Prompt 1:
# (4 + 6 + 8 + 6 + 8 + 8) / 6 = 40/6; N=4 8.
GOLD_PICK = [(2 + 5) / 2, (19 / 6 + 40 / 6) / 2, (4 + 8) / 2]
# Random pick: the mean gold of a prompt's responses, whatever N: 2 and 5.
RANDOM_PICK = [3.5, 3.5, 3.5]
# The proxy's own reward of its pick: prompt 0 2.5, 20/6 (picks 4, 2, 3, 4, 4, 3), 4; prompt 1 0.5, 5/6, 1.
PROXY_REWARD = [(2.5 + 0.5) / 2, (20 / 6 + 5 / 6) / 2, (4 + 1) / 2]


def test_curves_on_a_hand_example_with_four_samples():
    result = best_of_n_curves(PROXY, GOLD, bootstrap_samples=200)
    assert result.ns == [1, 2, 4] and (result.num_prompts, result.num_samples) == (2, 4)
    assert result.kl == pytest.approx([0.0, math.log(2) - 1 / 2, math.log(4) - 3 / 4])
    assert list(result.curves) == ["proxy pick", "gold pick", "random pick"]  # no ensemble: no lower-bound pick
    assert result.curves["proxy pick"]["mean"] == pytest.approx(PROXY_PICK)
    assert result.curves["gold pick"]["mean"] == pytest.approx(GOLD_PICK)
    assert result.curves["random pick"]["mean"] == pytest.approx(RANDOM_PICK)
    assert result.proxy_reward["mean"] == pytest.approx(PROXY_REWARD)
    # The proxy's pick gains at N = 2, then loses: over-optimised after N = 2. Per prompt, N=4 minus N=2: -1 and 4/6.
    assert result.overoptimisation["proxy pick"] == pytest.approx(
        {
            "peak_n": 2,
            "n": 2,
            "gold_at_peak": 11 / 3,
            "gold_at_largest": 3.5,
            "change": (-1 + 4 / 6) / 2,
            "change_lower": -1.0,  # the resamples hold prompt 0 twice, or once each, or prompt 1 twice
            "change_upper": 4 / 6,
        }
    )
    assert result.log_metrics() == pytest.approx(
        {
            "best_of_n/proxy_pick_n1": PROXY_PICK[0],
            "best_of_n/proxy_pick_n2": PROXY_PICK[1],
            "best_of_n/proxy_pick_n4": PROXY_PICK[2],
            "best_of_n/proxy_pick_peak_n": 2.0,
        }
    )


def subsets_oracle(keys, values, n):
    """The expectation written out: every N-subset of a prompt's responses, the pick's value (ties averaged)."""
    picks = []
    for row_keys, row_values in zip(keys, values):
        draws = []
        for subset in itertools.combinations(range(len(row_keys)), n):
            top = max(row_keys[i] for i in subset)
            draws.append(np.mean([row_values[i] for i in subset if row_keys[i] == top]))
        picks.append(np.mean(draws))
    return np.array(picks)


def test_exact_expectation_equals_every_subset_with_ties():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 3, size=(5, 7)).astype(float)  # few values: many ties
    values = rng.normal(size=(5, 7))
    for n in range(1, 8):
        assert expected_pick(keys, values, n) == pytest.approx(subsets_oracle(keys, values, n))


def test_random_pick_expectation_by_hand():
    # The mean gold of a uniformly random response among N is the mean gold of the prompt's K responses: every
    # response is in C(K-1, N-1) of the C(K, N) subsets and picked in 1/N of them, probability 1/K.
    gold = [[0.0, 1.0, 5.0], [2.0, 2.0, 8.0]]
    result = best_of_n_curves([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0]], gold, bootstrap_samples=0)
    assert result.ns == [1, 2, 3]  # 3 is not a power of 2: added at the end
    assert result.curves["random pick"]["mean"] == pytest.approx([(2 + 4) / 2] * 3)
    for n in (1, 2, 3):
        draws = [np.mean([gold[1][i] for i in subset]) for subset in itertools.combinations(range(3), n)]
        assert np.mean(draws) == pytest.approx(4.0)
    assert best_of_n_sizes(64) == [1, 2, 4, 8, 16, 32, 64] and best_of_n_sizes(6) == [1, 2, 4, 6]
    assert kl_cost(1) == 0.0 and kl_cost(64) == pytest.approx(math.log(64) - 63 / 64)


def test_bootstrap_intervals_contain_the_point_estimate():
    rng = np.random.default_rng(1)
    proxy, gold = rng.normal(size=(40, 16)), rng.normal(size=(40, 16))
    result = best_of_n_curves(proxy, gold + 0.5 * proxy, lower_bound_rewards=proxy - rng.random((40, 16)), seed=3)
    for curve in [*result.curves.values(), result.proxy_reward]:
        assert all(lo <= mean <= up for lo, mean, up in zip(curve["lower"], curve["mean"], curve["upper"]))
        assert all(up - lo > 0 for lo, up in zip(curve["lower"], curve["upper"]))
    for row in result.overoptimisation.values():
        assert row["change_lower"] <= row["change"] <= row["change_upper"]
    again = best_of_n_curves(proxy, gold + 0.5 * proxy, lower_bound_rewards=proxy - rng.random((40, 16)), seed=3)
    assert again.curves["proxy pick"] == result.curves["proxy pick"]  # the seed fixes the resamples
    none = best_of_n_curves(proxy, gold, bootstrap_samples=0)
    assert none.curves["gold pick"]["lower"] == none.curves["gold pick"]["mean"] == none.curves["gold pick"]["upper"]


def test_overoptimisation_point_on_a_constructed_example():
    # Eight responses the proxy ranks 1..8 and the gold agrees with, except the proxy's favourite, a reward hack
    # worth 3. Gold of the proxy's pick (rank r picked with probability C(r-1, N-1) / C(8, N)): N=1 (28 + 3) / 8 =
    # 3.875; N=2 (0*1 + 1*2 + 2*3 + 3*4 + 4*5 + 5*6 + 6*7 + 7*3) / 28 = 133/28 = 4.75; N=4 (1*4 + 4*5 + 10*6 + 20*7 +
    # 35*3) / 70 = 4.7; N=8 3. It stops gaining after N = 2.
    noise = np.random.default_rng(2).normal(0, 0.1, size=(30, 1))  # a prompt-level shift: differences stay exact
    proxy = np.tile(np.arange(1.0, 9.0), (30, 1))
    gold = np.tile([1.0, 2, 3, 4, 5, 6, 7, 3], (30, 1)) + noise
    hack_penalised = proxy - 5.0 * (proxy == 8)  # a lower bound that distrusts the hack: it ranks it 3rd
    result = best_of_n_curves(proxy, gold, lower_bound_rewards=hack_penalised)
    assert result.curves["proxy pick"]["mean"] == pytest.approx(np.array([3.875, 4.75, 4.7, 3.0]) + noise.mean())
    point = result.overoptimisation["proxy pick"]
    assert (point["peak_n"], point["n"]) == (2, 2)
    assert point["change"] == pytest.approx(-1.75) and point["change_upper"] < 0  # a decline, not noise
    assert "over-optimisation point N = 2" in result.to_markdown() and "a decline" in result.to_markdown()
    # The lower bound ranks the hack below 6 and 7: its gold curve rises to the end, so it has no point.
    lower = result.overoptimisation["lower-bound pick"]
    assert lower["n"] is None and lower["peak_n"] == 8
    assert "still gaining gold reward at N = 8" in result.to_markdown()
    # A proxy equal to the gold keeps gaining too; a flat curve stops gaining at once (its first N).
    assert best_of_n_curves(gold, gold).overoptimisation["proxy pick"]["n"] is None
    assert best_of_n_curves(proxy, np.ones_like(gold)).overoptimisation["proxy pick"]["n"] == 1


def test_curve_inputs_are_checked():
    with pytest.raises(ValueError, match=r"has shape \(2, 3\); the proxy rewards have shape \(2, 4\)"):
        best_of_n_curves(PROXY, [[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match="between 1 and the 4 samples"):
        best_of_n_curves(PROXY, GOLD, ns=[1, 8])
    with pytest.raises(ValueError, match="NaN or infinite"):
        best_of_n_curves(PROXY, [[1, 2, 3, float("nan")], [1, 2, 3, 4]])


# ---------------------------------------------------------------------------------------------------------------------
# Samples and models
# ---------------------------------------------------------------------------------------------------------------------

# World prompts and responses (every word one token of `world_tokenizer`): the gold is the world's `gold_reward`.
SAMPLES = [
    {
        "prompt": "question about bread:",
        "responses": [" bread tip", " bread tip tip because", " cats poison", " bread step because tip"],
    },
    {"prompt": "brief about cats:", "responses": [" cats", " cats tip well well", " bread", " cats tip because"]},
]


def lookup_model(tokenizer, rewards: dict[str, float]) -> FunctionRewardModel:
    """A reward model with hand-set rewards per response text."""
    return FunctionRewardModel(lambda prompt, response: rewards[response.strip()], tokenizer, "lookup")


def test_ensemble_proxy_and_its_lower_bound_pick():
    tokenizer = world_tokenizer()
    responses = [text.strip() for row in SAMPLES for text in row["responses"]]
    first = lookup_model(tokenizer, dict(zip(responses, [1.0, 5.0, 0.0, 2.0, 1.0, 4.0, 0.0, 1.0])))
    second = lookup_model(tokenizer, dict(zip(responses, [1.0, 1.0, 0.0, 2.0, 1.0, 0.0, 0.0, 2.0])))
    result = score_best_of_n(
        [first, second],
        [tokenizer, tokenizer],
        SAMPLES,
        gold=gold_reward,
        calibration="none",
        std_coef=1.0,
        chat_template="plain",
        bootstrap_samples=0,
    )
    # Mean and population std of the two models: prompt 0 (1, 0), (3, 2), (0, 0), (2, 0); prompt 1 (1, 0), (2, 2),
    # (0, 0), (1.5, 0.5). The mean picks where the models disagree: " bread tip tip because" (gold 4: the repeated
    # word earns nothing) and " cats tip well well" (gold 1). mean - std picks " bread step because tip" (gold 5) and,
    # in prompt 1, ties " cats" (1.5) with " cats tip because" (2.5): a tie is broken at random, 2 on average.
    assert result.proxy_rewards.tolist() == [[1, 3, 0, 2], [1, 2, 0, 1.5]]
    assert result.lower_bound_rewards.tolist() == [[1, 1, 0, 2], [1, 0, 0, 1]]
    assert result.gold_rewards.tolist() == [[3, 4, -1, 5], [1.5, 1, -0.5, 2.5]]
    assert result.curves["proxy pick"]["mean"][-1] == pytest.approx((4 + 1) / 2)
    assert result.curves["lower-bound pick"]["mean"][-1] == pytest.approx((5 + 2) / 2)
    assert result.std_coef == 1.0 and result.num_proxy_models == 2 and "lower-bound pick" in result.overoptimisation
    # Rewards of several models are put on one scale first: models without a stored scale are refused.
    with pytest.raises(ValueError, match="store no reward scale"):
        score_best_of_n([first, second], [tokenizer, tokenizer], SAMPLES, gold=gold_reward)
    for model, (mean, std) in ((first, (1.0, 1.0)), (second, (0.0, 2.0))):
        set_reward_statistics(model, mean, std)
    scaled = score_best_of_n([first, second], [tokenizer, tokenizer], SAMPLES, gold=gold_reward, chat_template="plain")
    assert scaled.proxy_rewards[0].tolist() == pytest.approx([(0 + 0.5) / 2, (4 + 0.5) / 2, (-1 + 0) / 2, (1 + 1) / 2])


def test_score_best_of_n_with_a_tiny_model_and_a_gold_function(tmp_path):
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model("qwen2", tokenizer)
    result = score_best_of_n(model, tokenizer, SAMPLES, gold=gold_reward, seed=1)
    prompts = [row["prompt"] for row in SAMPLES for _ in row["responses"]]
    responses = [text for row in SAMPLES for text in row["responses"]]
    alone = score_sequences(model, tokenizer, prompts, responses).rewards  # the benchmarks' path, chat template
    assert result.proxy_rewards.ravel() == pytest.approx(alone)
    assert result.gold_rewards.tolist() == [
        [gold_reward(row["prompt"], text) for text in row["responses"]] for row in SAMPLES
    ]
    expected = best_of_n_curves(result.proxy_rewards, result.gold_rewards, seed=1)
    assert result.curves == expected.curves and result.num_truncated == {"proxy": 0, "gold": 0}
    saved = json.loads(result.to_json(tmp_path / "best_of_n.json"))
    assert saved["ns"] == [1, 2, 4] and saved["overoptimisation"]["proxy pick"]["peak_n"] in (1, 2, 4)
    assert result.to_markdown().startswith("| N | KL | gold reward: proxy pick |")
    assert plot_best_of_n(result, tmp_path / "best_of_n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The samples' own gold rewards serve as the gold.
    with_gold = [{**row, "gold_rewards": rewards} for row, rewards in zip(SAMPLES, result.gold_rewards.tolist())]
    assert score_best_of_n(model, tokenizer, with_gold, seed=1).curves == result.curves


def test_sample_errors_name_the_problem_and_the_fix():
    model, tokenizer = tiny_reward_model("qwen2", tiny_tokenizer()), tiny_tokenizer()
    uneven = [SAMPLES[0], {**SAMPLES[1], "responses": SAMPLES[1]["responses"][:3]}]
    with pytest.raises(ValueError, match=r"as many responses.*row 0 has 4, but rows \[1\] have \[3\]"):
        check_best_of_n_samples(uneven)
    with pytest.raises(ValueError, match=r"column\(s\) \['responses'\] missing.*give prompts only and the policy"):
        check_best_of_n_samples([{"prompt": "question about bread:"}])
    with pytest.raises(ValueError, match="one finite number per response"):
        check_best_of_n_samples([{**SAMPLES[0], "gold_rewards": [1.0, 2.0]}])
    with pytest.raises(ValueError, match="needs a gold reward"):
        score_best_of_n(model, tokenizer, SAMPLES)
    with pytest.raises(ValueError, match="hold `gold_rewards` and a gold was given too"):
        score_best_of_n(model, tokenizer, [{**row, "gold_rewards": [0.0] * 4} for row in SAMPLES], gold=gold_reward)


def test_sample_best_of_n_from_a_policy():
    tokenizer = world_tokenizer()
    policy = tiny_causal_lm("qwen2", tokenizer, seed=0)
    prompts = ["question about bread:", [{"role": "user", "content": "brief about cats:"}]]
    settings = SamplingSettings(max_new_tokens=5)
    rows = sample_best_of_n(policy, tokenizer, prompts, 3, settings, seed=4)
    assert [row["prompt"] for row in rows] == prompts and all(len(row["responses"]) == 3 for row in rows)
    assert rows == sample_best_of_n(policy, tokenizer, prompts, 3, settings, seed=4)  # seeded
    assert rows != sample_best_of_n(policy, tokenizer, prompts, 3, settings, seed=5)


# ---------------------------------------------------------------------------------------------------------------------
# During training, and the CLI
# ---------------------------------------------------------------------------------------------------------------------


def test_callback_logs_best_of_n_and_the_model_card_shows_it(tmp_path):
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
        eval_dataset=sources["polite"],
        processing_class=tokenizer,
    )
    callback = BestOfNCallback(trainer, SAMPLES, gold=gold_reward, bootstrap_samples=50)
    assert [row["gold_rewards"] for row in callback.samples] == [[3, 4, -1, 5], [1.5, 1, -0.5, 2.5]]  # once, at init
    trainer.add_callback(callback)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "best_of_n/proxy_pick_n4" in entry]
    assert [entry["step"] for entry in logged] == [1, 2]
    assert logged[-1]["best_of_n/proxy_pick_n4"] == callback.last_result.curves["proxy pick"]["mean"][-1]
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert "### Best-of-N against a gold reward (step 2)" in card and "| N | KL |" in card


def test_trl_more_evaluate_best_of_n_from_samples_and_from_a_policy(tmp_path):
    from trl_more.cli import main as cli_main
    from trl_more.testing import save_tiny_reward_model

    model_dir = save_tiny_reward_model(tmp_path / "model")
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in SAMPLES))
    out = tmp_path / "bon"
    cli_main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--best_of_n",
            str(samples),
            "--gold_model",
            "trl_more.synthetic:gold_reward",
            "--best_of_n_bootstrap",
            "100",
            "--output_dir",
            str(out),
        ]
    )
    written = json.loads((out / "best_of_n.json").read_text())
    assert written["ns"] == [1, 2, 4] and written["curves"]["gold pick"]["mean"][-1] == pytest.approx((5 + 2.5) / 2)
    assert (out / "best_of_n.md").is_file() and (out / "best_of_n.png").is_file()
    scored = [json.loads(line) for line in (out / "best_of_n_samples.jsonl").read_text().splitlines()]
    assert scored[0]["gold_rewards"] == [3, 4, -1, 5] and len(scored[1]["proxy_rewards"]) == 4
    # The scored samples carry their gold rewards: scored again without a gold, they give the same curves.
    cli_main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--best_of_n",
            str(out / "best_of_n_samples.jsonl"),
            "--best_of_n_bootstrap",
            "100",
            "--output_dir",
            str(tmp_path / "again"),
        ]
    )
    assert json.loads((tmp_path / "again" / "best_of_n.json").read_text())["curves"] == written["curves"]
    # Bad input stops with an error that names it, before any model is loaded.
    with pytest.raises(ValueError, match="hold `gold_rewards` and a gold was given too"):
        cli_main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--best_of_n",
                str(out / "best_of_n_samples.jsonl"),
                "--gold_model",
                "trl_more.synthetic:gold_reward",
            ]
        )
    with pytest.raises(
        ValueError, match="`--gold_model trl_more.synthetic:no_such_function`: 'trl_more.synthetic' has no"
    ):
        cli_main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--best_of_n",
                str(samples),
                "--gold_model",
                "trl_more.synthetic:no_such_function",
            ]
        )
    with pytest.raises(ValueError, match="apply to `--best_of_n`"):
        cli_main(["evaluate", "--model", str(model_dir), "--rmbench", "x.json", "--gold_model", "m:f"])

    # Prompts alone, with a policy to sample 4 responses each.
    policy_dir = tmp_path / "policy"
    tokenizer = world_tokenizer()
    tiny_causal_lm("qwen2", tokenizer).save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": row["prompt"]}) + "\n" for row in SAMPLES))
    cli_main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--best_of_n",
            str(prompts),
            "--best_of_n_policy",
            str(policy_dir),
            "--best_of_n_num_samples",
            "4",
            "--best_of_n_max_new_tokens",
            "4",
            "--gold_model",
            "trl_more.synthetic:gold_reward",
            "--best_of_n_bootstrap",
            "10",
            "--output_dir",
            str(tmp_path / "sampled"),
        ]
    )
    sampled = [
        json.loads(line) for line in (tmp_path / "sampled" / "best_of_n_samples.jsonl").read_text().splitlines()
    ]
    assert [row["prompt"] for row in sampled] == [row["prompt"] for row in SAMPLES]
    assert all(len(row["responses"]) == 4 for row in sampled)
