"""Reward ensembles, selection, and scoring (prompt, response) pairs with sequence-classification reward models."""

import pytest
import torch
from accelerate import Accelerator

from trl_more.rejection_sampling import max_selected, select_samples
from trl_more.rewards import RewardModelScorer, align_pad_token, combine_rewards, prepare_reward_model
from trl_more.testing import tiny_reward_model, tiny_tokenizer


# ---------------------------------------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------------------------------------

FIXED = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 4.0], [-1.0, 1.0]])


def test_ensemble_modes_give_the_documented_values():
    assert combine_rewards(FIXED, "mean").tolist() == [2.0, 2.0, 2.0, 0.0]
    assert combine_rewards(FIXED, "min").tolist() == [1.0, 2.0, 0.0, -1.0]
    # Population standard deviation of two values is |r1 - r2| / 2: 1, 0, 2, 1.
    assert combine_rewards(FIXED, "mean_minus_std").tolist() == [1.0, 2.0, 0.0, -1.0]
    assert combine_rewards(FIXED, "mean_minus_std", std_coef=0.5).tolist() == [1.5, 2.0, 1.0, -0.5]
    three = torch.tensor([[1.0, 2.0, 6.0]])  # mean 3, population std sqrt(14/3)
    assert combine_rewards(three, "mean_minus_std", 2.0).item() == pytest.approx(3 - 2 * (14 / 3) ** 0.5)


@pytest.mark.parametrize("mode", ["mean", "min", "mean_minus_std"])
def test_every_ensemble_mode_of_one_model_is_its_reward(mode):
    rewards = torch.tensor([[0.5], [-2.0]])
    assert combine_rewards(rewards, mode, std_coef=3.0).tolist() == [0.5, -2.0]


def test_ensemble_rejects_bad_shapes_and_modes():
    with pytest.raises(ValueError, match="num_samples, num_models"):
        combine_rewards(torch.zeros(3))
    with pytest.raises(ValueError, match="Unknown ensemble mode 'max'"):
        combine_rewards(FIXED, "max")


# ---------------------------------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------------------------------

PROMPTS = [0, 0, 0, 1, 1, 1, 2, 2, 2]
REWARDS = [0.1, 0.9, 0.5, 0.3, 0.3, -1.0, 2.0, 1.5, 0.0]


def test_best_per_prompt_takes_each_prompts_highest_eligible_reward():
    everything = [True] * len(REWARDS)
    assert select_samples(PROMPTS, REWARDS, everything) == [1, 3, 6]  # a tie goes to the earlier sample (3, not 4)
    filtered = [True, False, True, True, True, True, False, False, False]
    assert select_samples(PROMPTS, REWARDS, filtered) == [2, 3]  # prompt 2 has no eligible sample


def test_top_fraction_takes_the_best_of_the_whole_set():
    everything = [True] * len(REWARDS)
    # ceil(0.34 * 9) = 4 samples: 2.0, 1.5, 0.9, 0.5
    assert select_samples(PROMPTS, REWARDS, everything, "top_fraction", 0.34) == [1, 2, 6, 7]
    assert max_selected("top_fraction", 3, 3, 0.34) == 4
    # The count is a fraction of all samples: filtering never pulls worse samples in.
    only_two = [False, True, False, False, False, False, False, True, False]
    assert select_samples(PROMPTS, REWARDS, only_two, "top_fraction", 0.34) == [1, 7]
    assert max_selected("best_per_prompt", 3, 3) == 3
    assert max_selected("top_fraction", 2048, 4, 0.25) == 2048


def test_selection_rejects_mismatched_inputs_and_unknown_strategies():
    with pytest.raises(ValueError, match="same length"):
        select_samples([0, 1], [0.0], [True, True])
    with pytest.raises(ValueError, match="Unknown selection 'random'"):
        select_samples([0], [0.0], [True], "random")


# ---------------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoder_reward_model():
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model("qwen2", tokenizer, seed=3).eval()
    return model, tokenizer


def _reference_reward(model, tokenizer, text, last_tokens=None):
    """The reward of a plain-text pair as TRL's RewardTrainer trains on it: text + eos token, tokenized."""
    ids = tokenizer(text + tokenizer.eos_token)["input_ids"]
    ids = ids[-last_tokens:] if last_tokens else ids
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


PAIRS = [
    ("Human: hi Assistant:", " Hello!"),
    ("Human: How do I bake bread at home? Assistant:", " Mix flour, water, salt and yeast, then bake it."),
    ("Human: joke? Assistant:", " Why did the scarecrow win an award? Because he was outstanding in his field."),
    ("Human: capital? Assistant:", " Paris."),
    ("Human: boil? Assistant:", ""),
]


@pytest.mark.parametrize("sort_by_length", [True, False])
def test_batched_scores_equal_one_pair_at_a_time(decoder_reward_model, sort_by_length):
    model, tokenizer = decoder_reward_model
    scorer = RewardModelScorer([model], [tokenizer], batch_size=2, sort_by_length=sort_by_length)
    scores = scorer.score([prompt for prompt, _ in PAIRS], [response for _, response in PAIRS])
    expected = [_reference_reward(model, tokenizer, prompt + response) for prompt, response in PAIRS]
    assert scores.per_model.shape == (len(PAIRS), 1)
    assert scores.combined.tolist() == pytest.approx(expected, abs=1e-5)


def test_long_inputs_lose_the_start_of_their_prompt(decoder_reward_model):
    model, tokenizer = decoder_reward_model
    prompt, response = "Human: tell me about bread. " * 4 + "Assistant:", " Yes."
    assert len(tokenizer(prompt + response)["input_ids"]) > 12
    scores = RewardModelScorer([model], [tokenizer], max_length=12).score([prompt], [response])
    assert scores.combined.item() == pytest.approx(
        _reference_reward(model, tokenizer, prompt + response, 12), abs=1e-5
    )
    with pytest.raises(ValueError, match="leaves no room for the prompt"):
        RewardModelScorer([model], [tokenizer], max_length=4).score(["Human: hi"], [" a much longer response"])


def test_ensemble_of_models_with_different_tokenizers(decoder_reward_model):
    decoder, bpe = decoder_reward_model
    wordpiece = tiny_tokenizer("wordpiece")
    encoder = tiny_reward_model("bert", wordpiece, seed=4).eval()
    prompts, responses = [prompt for prompt, _ in PAIRS], [response for _, response in PAIRS]
    scorer = RewardModelScorer([decoder, encoder], [bpe, wordpiece], ensemble="min", batch_size=3, calibration="none")
    scores = scorer.score(prompts, responses)
    encoder_alone = RewardModelScorer([encoder], [wordpiece], batch_size=1).score(prompts, responses).combined
    decoder_alone = [_reference_reward(decoder, bpe, prompt + response) for prompt, response in PAIRS]
    assert scores.per_model[:, 0].tolist() == pytest.approx(decoder_alone, abs=1e-5)
    assert scores.per_model[:, 1].tolist() == pytest.approx(encoder_alone.tolist(), abs=1e-5)
    assert scores.combined.tolist() == pytest.approx(scores.per_model.min(dim=1).values.tolist())


def test_a_calibrated_ensemble_does_not_follow_a_model_whose_rewards_are_100_times_wider(decoder_reward_model):
    import copy

    import numpy as np
    from scipy.stats import spearmanr

    from trl_more.rewards import fit_reward_statistics, reward_scale, set_reward_statistics

    model, tokenizer = decoder_reward_model
    first = copy.deepcopy(model)  # statistics are set on it below; the fixture stays as it is
    second = tiny_reward_model("qwen2", tokenizer, seed=9).eval()
    wide = copy.deepcopy(second)
    with torch.no_grad():
        wide.score.weight.mul_(100.0)  # the same ranking as `second`, rewards 100 times wider (no bias)
    prompts = [f"Human: question {i}? Assistant:" for i in range(12)]
    responses = [f" answer number {i} {'yes ' * (i % 4)}" for i in range(12)]
    for model in (first, second, wide):  # statistics from held-out responses (here the same ones)
        alone = RewardModelScorer([model], [tokenizer]).score(prompts, responses).combined
        set_reward_statistics(model, *fit_reward_statistics(alone.numpy()))
    assert reward_scale(wide).scale == pytest.approx(100 * reward_scale(second).scale, rel=1e-5)

    raw = RewardModelScorer([first, wide], [tokenizer] * 2, calibration="none").score(prompts, responses)
    wide_alone = raw.per_model[:, 1].numpy()
    assert spearmanr(raw.combined.numpy(), wide_alone).statistic > 0.99  # the raw mean is the wide model's ranking
    calibrated = RewardModelScorer([first, wide], [tokenizer] * 2).score(prompts, responses).combined
    reference = RewardModelScorer([first, second], [tokenizer] * 2).score(prompts, responses).combined
    torch.testing.assert_close(calibrated, reference, atol=1e-4, rtol=0)  # z-scores do not see the factor 100
    z = [(values - values.mean()) / values.std() for values in (raw.per_model[:, 0].numpy(), wide_alone)]
    np.testing.assert_allclose(calibrated.numpy(), (z[0] + z[1]) / 2, atol=1e-4)  # the mean of the z-scores


def test_an_ensemble_member_without_a_stored_scale_is_refused_and_a_temperature_is_used(decoder_reward_model):
    first, tokenizer = decoder_reward_model
    second = tiny_reward_model("qwen2", tokenizer, seed=10).eval()
    with pytest.raises(ValueError, match=r"Reward model\(s\) \[1\] .* store no reward scale.*--save_calibrated_model"):
        RewardModelScorer([copy_with_temperature(first, 2.0), second], [tokenizer] * 2)
    scorer = RewardModelScorer(
        [copy_with_temperature(first, 2.0), copy_with_temperature(second, 0.5)], [tokenizer] * 2
    )
    scores = scorer.score(["Human: hi Assistant:"], [" Hello!"])
    raw = RewardModelScorer([first, second], [tokenizer] * 2, calibration="none").score(
        ["Human: hi Assistant:"], [" Hello!"]
    )
    torch.testing.assert_close(scores.per_model, raw.per_model / torch.tensor([2.0, 0.5]))
    # The mean and its uncertainty are read on that one scale: two members r1, r2 have spread |r1 - r2| / 2.
    first_scaled, second_scaled = (raw.per_model[0] / torch.tensor([2.0, 0.5])).tolist()
    assert scores.mean.item() == pytest.approx((first_scaled + second_scaled) / 2, abs=1e-6)
    assert scores.spread.item() == pytest.approx(abs(first_scaled - second_scaled) / 2, abs=1e-6)
    alone = RewardModelScorer([first], [tokenizer]).score(["Human: hi Assistant:"], [" Hello!"])
    assert alone.spread.item() == 0.0 and alone.mean.item() == alone.combined.item()
    with pytest.raises(ValueError, match="choose one of"):
        RewardModelScorer([first], [tokenizer], calibration="zscore")


def copy_with_temperature(model, temperature):
    import copy

    from trl_more.metrics import set_reward_temperature

    copied = copy.deepcopy(model)
    set_reward_temperature(copied, temperature)
    return copied


def test_conversational_prompts_use_the_reward_models_chat_template(decoder_reward_model):
    model, tokenizer = decoder_reward_model
    conversation = [{"role": "user", "content": "How do I bake bread?"}]
    score = RewardModelScorer([model], [tokenizer]).score([conversation], ["Knead and bake."]).combined.item()
    full = [*conversation, {"role": "assistant", "content": "Knead and bake."}]
    ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=True)["input_ids"]
    assert tokenizer.decode(ids) == "<|user|>How do I bake bread?<|end|><|assistant|>Knead and bake.<|end|>"
    with torch.no_grad():
        assert score == pytest.approx(model(input_ids=torch.tensor([ids])).logits[0, 0].item(), abs=1e-5)
    no_template = tiny_tokenizer("wordpiece")
    encoder = tiny_reward_model("bert", no_template)
    with pytest.raises(ValueError, match="no chat template"):
        RewardModelScorer([encoder], [no_template]).score([conversation], ["Knead and bake."])


def test_the_multi_objective_model_gets_prompt_lengths_and_can_be_steered():
    from trl_more.multi_objective import MultiObjectiveRewardModel
    from trl_more.testing import tiny_causal_lm
    from trl_more.tokenization import tokenize_prompt_response

    tokenizer = tiny_tokenizer()
    model = MultiObjectiveRewardModel.from_backbone(tiny_causal_lm("qwen2", tokenizer), ["helpful", "safe"]).eval()
    align_pad_token(model, tokenizer)
    prompts, responses = [prompt for prompt, _ in PAIRS[:3]], [response for _, response in PAIRS[:3]]
    scorer = RewardModelScorer([model], [tokenizer], batch_size=2)
    expected = []
    for prompt, response in zip(prompts, responses):
        ids, prompt_length = tokenize_prompt_response(tokenizer, prompt, response)
        with torch.no_grad():
            output = model(input_ids=torch.tensor([ids]), prompt_lengths=torch.tensor([prompt_length]))
        expected.append((output.logits[0, 0].item(), output.rewards[0, 1].item()))
    assert scorer.score(prompts, responses).combined.tolist() == pytest.approx([e[0] for e in expected], abs=1e-5)
    with model.steer({"safe": 1.0}):  # fixed weights instead of the gate: the score is the "safe" reward
        steered = scorer.score(prompts, responses).combined.tolist()
    assert steered == pytest.approx([e[1] for e in expected], abs=1e-5)


def test_reward_models_are_prepared_frozen_with_a_pad_token():
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model("llama", tokenizer)
    tokenizer.pad_token = None
    model.config.pad_token_id = None
    align_pad_token(model, tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token
    assert model.config.pad_token_id == tokenizer.eos_token_id
    model.train()
    prepared = prepare_reward_model(model, Accelerator(cpu=True))
    assert not prepared.training
    assert not any(parameter.requires_grad for parameter in prepared.parameters())
    with pytest.raises(ValueError, match="one tokenizer per model"):
        RewardModelScorer([model], [])


def test_reward_statistics_are_stored_in_the_keys_openrlhf_reads_and_ours(tmp_path):
    """OpenRLHF's reward model reads `config.mean` and `config.std` (openrlhf/models/model.py, `_get_reward_model`:
    `if hasattr(config, "mean"): self.mean[0] = config.mean; self.std[0] = config.std`, then with `normalize_reward`
    returns `(reward - self.mean) / self.std`; openrlhf/trainer/rm_trainer.py writes `config.mean` / `config.std`
    after every evaluation). The names are pinned here; trl-more's own keys stay readable next to them."""
    import json

    from transformers import AutoConfig

    from trl_more import constants
    from trl_more.rewards import reward_statistics, set_reward_statistics

    assert (constants.OPENRLHF_MEAN_ATTRIBUTE, constants.OPENRLHF_STD_ATTRIBUTE) == ("mean", "std")
    assert (constants.REWARD_MEAN_ATTRIBUTE, constants.REWARD_STD_ATTRIBUTE) == ("reward_mean", "reward_std")
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model("qwen2", tokenizer, seed=2)
    set_reward_statistics(model, 0.25, 1.5)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["mean"], saved["std"], saved["reward_mean"], saved["reward_std"]) == (0.25, 1.5, 0.25, 1.5)
    config = AutoConfig.from_pretrained(tmp_path)  # as OpenRLHF's loader reads it
    assert hasattr(config, "mean") and (config.mean, config.std) == (0.25, 1.5)

    openrlhf_trained = tiny_reward_model("qwen2", tokenizer, seed=2)
    openrlhf_trained.config.mean, openrlhf_trained.config.std = -1.0, 2.0  # only OpenRLHF's keys
    assert reward_statistics(openrlhf_trained) == (-1.0, 2.0)
    openrlhf_trained.config.reward_mean, openrlhf_trained.config.reward_std = 3.0, 4.0  # ours first
    assert reward_statistics(openrlhf_trained) == (3.0, 4.0)
    for mean, std in ((0.0, 0.0), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match="standard deviation must be positive|must be finite"):
            set_reward_statistics(model, mean, std)
