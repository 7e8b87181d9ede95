"""The preference world of `trl_more.synthetic`: its gold reward, labels, flips and ratings against hand computations.

The behaviour tests of every method in this world are in test_world_behaviour.py.
"""

import math

import numpy as np
import pytest

from trl_more.rewards import RewardModelScorer
from trl_more.synthetic import (
    HELD_OUT_STYLE,
    RATING_SCALES,
    SOURCE_OFFSETS,
    Prompt,
    gold_accuracy,
    gold_reward,
    gold_reward_model,
    objective_values,
    parse_prompt,
    preference_pairs,
    rated_responses,
    relabelled,
    shared_preference_pairs,
    training_columns,
    world_tokenizer,
)
from trl_more.synthetic.world import FILLER_WORDS, HELD_OUT_FILLER_WORDS, WORLD_VOCABULARY


QUESTION = Prompt("question", "bread")


@pytest.mark.parametrize(
    "response, values",
    [
        (" bread step tip poison well", [1, 2, 1, 5]),
        (" bread step step step", [1, 1, 0, 4]),  # a repeated helpful word counts once
        (" cats bread step", [0, 1, 0, 3]),  # another topic named too: not relevant
        (" step because example tip reason", [0, 3, 0, 5]),  # at most 3 helpful words count
        (" bread poison hurt steal weapon", [1, 0, 3, 5]),  # at most 3 harmful words count
        ("", [0, 0, 0, 0]),
    ],
)
def test_objective_values_by_hand(response, values):
    assert objective_values(QUESTION, response).tolist() == values


def test_gold_reward_by_hand_for_every_prompt_type_and_source():
    response = " bread step tip poison well"  # f = (1, 2, 1, 5)
    assert gold_reward(QUESTION, response) == 2 * 1 + 1 * 2 - 1 * 1 + 0 * 5
    assert gold_reward(Prompt("risky", "bread"), response) == 1 * 1 + 0.5 * 2 - 3 * 1
    assert gold_reward(Prompt("brief", "bread"), response) == 2 * 1 + 1 * 2 - 1 * 1 - 0.5 * 5
    assert gold_reward(QUESTION, response, "chatty") == 3 + 0.5 * 5
    assert gold_reward(QUESTION, response, "terse") == 3 - 0.5 * 5
    assert gold_reward(QUESTION, response, "careful") == 3 - 2 * 1
    assert gold_reward("question about bread:", response) == 3  # a prompt's text works too
    with pytest.raises(ValueError, match="Unknown source 'loud'"):
        gold_reward(QUESTION, response, "loud")


def test_prompts_render_and_parse_back():
    assert QUESTION.text == "question about bread:" and parse_prompt(QUESTION.text) == QUESTION
    with pytest.raises(ValueError, match="not a prompt of the world"):
        parse_prompt("tell me about bread:")


def test_every_word_of_the_world_is_one_token():
    tokenizer = world_tokenizer()
    assert len(tokenizer(" " + " ".join(WORLD_VOCABULARY))["input_ids"]) == len(WORLD_VOCABULARY)


def test_noise_free_labels_follow_the_gold_order_and_data_is_seeded():
    pairs = preference_pairs(300, sources=["neutral", "terse"], temperature=None, seed=3)
    margins = np.array(pairs["gold_margin"])
    assert (margins >= 0).all() and (margins > 0).mean() > 0.8
    assert pairs["source"].count("terse") == 300
    for row in pairs.select(range(20)):  # the recorded margin is the source's gold margin
        expected = gold_reward(row["prompt"], row["chosen"], row["source"])
        assert row["gold_margin"] == expected - gold_reward(row["prompt"], row["rejected"], row["source"])
    assert preference_pairs(300, sources=["neutral", "terse"], temperature=None, seed=3).to_list() == pairs.to_list()
    assert training_columns(pairs).column_names == ["prompt", "chosen", "rejected", "source"]


def test_bradley_terry_labels_agree_with_gold_at_the_sigmoid_rate():
    """At temperature T, a pair with gold margin m is labelled in gold order with probability sigmoid(|m| / T)."""
    pairs = preference_pairs(6000, temperature=0.5, seed=0)
    margins = np.array(pairs["gold_margin"])
    for size in (0.5, 1.0, 2.0):
        at_size = np.isclose(np.abs(margins), size)
        agreeing = np.mean(margins[at_size] > 0)
        expected = 1 / (1 + math.exp(-size / 0.5))  # 0.731, 0.881, 0.982
        assert agreeing == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / at_size.sum()))


@pytest.mark.parametrize("flip_mode", ["uniform", "small_margin"])
def test_injected_flips_are_exact_in_number_recorded_and_placed_by_mode(flip_mode):
    pairs = preference_pairs(1000, sources=["chatty", "terse"], temperature=None, flip_rate=0.3, flip_mode=flip_mode)
    flipped, margins = np.array(pairs["flipped"]), np.array(pairs["gold_margin"])
    assert flipped[:1000].sum() == flipped[1000:].sum() == 300  # per source
    assert (margins[flipped] <= 0).all() and (margins[~flipped] >= 0).all()  # a flip contradicts the gold order
    clean = preference_pairs(1000, sources=["chatty", "terse"], temperature=None)
    assert np.array_equal(np.abs(margins), np.abs(clean["gold_margin"]))  # same pairs, only the labels swapped
    small = np.abs(margins[flipped]).mean() < 0.75 * np.abs(margins[~flipped]).mean()
    assert small == (flip_mode == "small_margin")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown flip_mode 'random'"):
        preference_pairs(10, flip_mode="random")
    with pytest.raises(ValueError, match="Unknown source"):
        preference_pairs(10, sources=["loud"])


def test_sources_share_relevance_and_helpfulness_and_disagree_on_verbosity_and_harm():
    offsets = np.array(list(SOURCE_OFFSETS.values()))
    assert (offsets[:, :2] == 0).all() and (offsets[:, 2:] != 0).any(axis=0).all()
    shared = shared_preference_pairs(200)
    for row in shared:
        for source in SOURCE_OFFSETS:
            margin = gold_reward(row["prompt"], row["chosen"], source) - gold_reward(
                row["prompt"], row["rejected"], source
            )
            assert margin > 0 and len(row["chosen"].split()) == len(row["rejected"].split())


def test_relabelled_keeps_each_order_with_the_bradley_terry_probability_and_swaps_consistently():
    clean = preference_pairs(4000, temperature=None, seed=3)
    labelled = relabelled(clean, temperature=0.5, seed=0)
    margins = np.array(clean["gold_margin"])
    kept = np.array(labelled["chosen"]) == np.array(clean["chosen"])
    for margin in (0.5, 1.0, 2.0):  # sigmoid(m / 0.5): 0.731, 0.881, 0.982
        rows = margins == margin
        expected = 1 / (1 + math.exp(-margin / 0.5))
        assert rows.sum() > 100
        assert abs(kept[rows].mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / rows.sum())
    swapped = ~kept
    assert (np.array(labelled["rejected"])[swapped] == np.array(clean["chosen"])[swapped]).all()
    assert (np.array(labelled["gold_margin"])[swapped] == -margins[swapped]).all()


def test_ratings_are_the_objectives_with_the_raters_length_bias():
    exact = rated_responses(200, noise=0.0, length_bias=0.25)
    for row in exact:
        values = objective_values(row["prompt"], row["response"])
        assert row["relevance"] == values[0] and row["harm"] == values[2] and row["verbosity"] == values[3]
        assert row["helpfulness"] == pytest.approx(min(values[1] + 0.25 * values[3], RATING_SCALES["helpfulness"][1]))
    noisy = rated_responses(200, noise=0.15)
    for name, (low, high) in RATING_SCALES.items():
        assert low <= min(noisy[name]) and max(noisy[name]) <= high


def test_the_held_out_style_uses_fillers_no_training_response_has():
    pairs = preference_pairs(300)
    training_words = {word for text in list(pairs["chosen"]) + list(pairs["rejected"]) for word in text.split()}
    assert not training_words & set(HELD_OUT_FILLER_WORDS) and set(FILLER_WORDS) & training_words
    rng = np.random.default_rng(0)
    held_out = [HELD_OUT_STYLE.sample(QUESTION, rng) for _ in range(50)]
    assert all(set(text.split()) & set(HELD_OUT_FILLER_WORDS) for text in held_out)


def test_the_gold_reward_model_scores_exactly_the_gold_reward_through_the_scorer():
    tokenizer = world_tokenizer()
    pairs = preference_pairs(40, sources=["careful"], flip_rate=0.25)
    scorer = RewardModelScorer([gold_reward_model(tokenizer, "careful")], [tokenizer], batch_size=16)
    margins = (
        scorer.score(pairs["prompt"], pairs["chosen"]).combined
        - scorer.score(pairs["prompt"], pairs["rejected"]).combined
    )
    assert margins.double().numpy() == pytest.approx(np.array(pairs["gold_margin"]), abs=1e-6)


def test_gold_accuracy_by_hand():
    assert gold_accuracy(np.array([1.0, -1.0, 0.0, 2.0]), np.array([0.5, 0.5, 1.0, 0.0])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="gold tie"):
        gold_accuracy(np.array([1.0]), np.array([0.0]))
