"""Noisy preferences: the denoising losses, contrastive learning and preference strength, against known answers."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, concatenate_datasets
from trl import RewardConfig, RewardTrainer

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.cli import main as cli_main
from trl_more.data import load_preference_source
from trl_more.losses import pairwise_loss, pairwise_loss_slope
from trl_more.noisy_preferences import (
    estimate_preference_strength,
    flip_weak_pairs,
    simcse_loss,
    sinkhorn,
    swav_loss,
)
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


FIXTURES = Path(__file__).parent / "fixtures"
SOURCES = ("polite", "concise", "factual")
TINY = dict(
    per_device_train_batch_size=6,
    max_steps=3,
    learning_rate=1e-3,
    logging_steps=1,
    report_to="none",
    bf16=False,
    save_strategy="no",
    seed=0,
)


def with_strength(dataset: Dataset, values) -> Dataset:
    return dataset.add_column("strength_mean", [float(value) for value in values])


def trainer(tmp_path, train_dataset, architecture="qwen2", **overrides):
    tokenizer = tiny_tokenizer("wordpiece" if architecture == "bert" else "bpe")
    return MORERewardTrainer(
        tiny_reward_model(architecture, tokenizer),
        MORERewardConfig(str(tmp_path), **{**TINY, **overrides}),
        train_dataset=train_dataset,
        processing_class=tokenizer,
    )


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


# ---------------------------------------------------------------------------------------------------------------------
# The losses, by hand
# ---------------------------------------------------------------------------------------------------------------------


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_label_smoothing_and_margin_by_hand():
    rewards = torch.tensor([2.0, 0.5, 1.0, 1.5])  # chosen 2.0, 0.5; rejected 1.0, 1.5: d = 1.0, -1.0
    margin = torch.tensor([0.25, -0.5])
    expected = [
        -(0.9 * log_sigmoid(1.0 - 0.25) + 0.1 * log_sigmoid(-(1.0 - 0.25))),
        -(0.9 * log_sigmoid(-1.0 + 0.5) + 0.1 * log_sigmoid(-(-1.0 + 0.5))),
    ]
    torch.testing.assert_close(pairwise_loss(rewards, margin, 0.1), torch.tensor(expected))
    per_pair = torch.tensor([0.1, 0.0])  # smoothing for the first pair only
    expected[1] = -log_sigmoid(-1.0 + 0.5)
    torch.testing.assert_close(pairwise_loss(rewards, margin, per_pair), torch.tensor(expected))


@pytest.mark.parametrize("smoothing", [None, 0.2, "per_pair"])
@pytest.mark.parametrize("with_margin", [False, True])
def test_the_slope_is_the_derivative_of_the_loss(smoothing, with_margin):
    rewards = torch.tensor([1.2, -0.3, 0.7, 2.0, 0.1, 0.9], requires_grad=True)
    margin = torch.tensor([0.4, -0.2, 0.1]) if with_margin else None
    alpha = torch.tensor([0.3, 0.0, 0.1]) if smoothing == "per_pair" else smoothing
    pairwise_loss(rewards, margin, alpha).sum().backward()
    slope = pairwise_loss_slope(rewards, margin, alpha)
    torch.testing.assert_close(rewards.grad[:3], slope)  # dL/dr_chosen = dL/d delta
    torch.testing.assert_close(rewards.grad[3:], -slope)


def test_smoothing_one_half_makes_the_label_uninformative():
    differences = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    rewards = torch.cat([differences, torch.zeros(4)])
    mirrored = torch.cat([-differences, torch.zeros(4)])
    torch.testing.assert_close(pairwise_loss(rewards, None, 0.5), pairwise_loss(mirrored, None, 0.5))  # L(d) = L(-d)
    at_zero = torch.zeros(8, requires_grad=True)
    pairwise_loss(at_zero, None, 0.5).sum().backward()
    assert torch.all(at_zero.grad == 0)  # equal rewards: no push towards either response
    away = rewards.clone().requires_grad_(True)
    pairwise_loss(away, None, 0.5).sum().backward()  # elsewhere the gradient only pulls d to 0: 0.5 tanh(d / 2)
    torch.testing.assert_close(away.grad[:4], 0.5 * torch.tanh(differences / 2))


# ---------------------------------------------------------------------------------------------------------------------
# The options in the trainer
# ---------------------------------------------------------------------------------------------------------------------


def test_defaults_ignore_a_strength_column_and_equal_trl_bit_for_bit(tmp_path):
    pairs = toy_preference_sources(12)["polite"]
    ours = trainer(tmp_path / "ours", with_strength(pairs, np.linspace(-1, 1, len(pairs))), max_steps=4)
    plain = RewardTrainer(
        tiny_reward_model("qwen2", ours.processing_class),
        RewardConfig(str(tmp_path / "plain"), **{**TINY, "max_steps": 4}),
        train_dataset=pairs,
        processing_class=ours.processing_class,
    )
    ours.train()
    plain.train()
    assert logged(ours, "loss") == logged(plain, "loss")
    for (name, p_ours), (_, p_plain) in zip(ours.model.named_parameters(), plain.model.named_parameters()):
        assert torch.equal(p_ours, p_plain), name


def test_the_adaptive_margin_is_trls_margin_plus_gamma_times_strength(tmp_path):
    pairs = toy_preference_sources(12)["concise"]
    strengths = np.linspace(-1.5, 1.5, len(pairs))
    margins = np.linspace(0.0, 0.3, len(pairs))
    ours = trainer(
        tmp_path / "ours",
        with_strength(pairs, strengths).add_column("margin", margins.tolist()),
        adaptive_margin=0.8,
        adaptive_margin_clip=1.0,
        max_steps=4,
    )
    folded = (margins + np.clip(0.8 * strengths, -1.0, 1.0)).tolist()  # the same margin, precomputed for TRL
    plain = RewardTrainer(
        tiny_reward_model("qwen2", ours.processing_class),
        RewardConfig(str(tmp_path / "plain"), **{**TINY, "max_steps": 4}),
        train_dataset=pairs.add_column("margin", folded),
        processing_class=ours.processing_class,
    )
    ours.train()
    plain.train()
    assert logged(ours, "loss") == pytest.approx(logged(plain, "loss"), abs=1e-6)
    for (name, p_ours), (_, p_plain) in zip(ours.model.named_parameters(), plain.model.named_parameters()):
        torch.testing.assert_close(p_ours, p_plain, atol=1e-6, rtol=0, msg=name)


def test_label_smoothing_below_a_strength_equals_smoothing_those_pairs_by_hand(tmp_path):
    pairs = toy_preference_sources(12)["factual"]
    strengths = np.where(np.arange(len(pairs)) % 3 == 0, -1.0, 1.0)
    model_trainer = trainer(
        tmp_path, with_strength(pairs, strengths), label_smoothing=0.2, label_smoothing_below_strength=0.0
    )
    batch = model_trainer.data_collator([model_trainer.train_dataset[i] for i in range(6)])
    model_trainer.model.train()
    loss = model_trainer.compute_loss(model_trainer.model, dict(batch))
    with torch.no_grad():
        rewards = model_trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    alpha = torch.tensor([0.2 if value < 0 else 0.0 for value in strengths[:6]])
    torch.testing.assert_close(loss.detach(), pairwise_loss(rewards.squeeze(-1), None, alpha).mean())


def test_with_more_the_lambdas_weigh_the_denoised_per_source_losses_by_hand(tmp_path):
    from trl_more._compat import trainer_metrics
    from trl_more.constants import SOURCE_INDEX_COLUMN

    sources = {
        name: with_strength(data, np.linspace(-1, 1, len(data))) for name, data in toy_preference_sources(6).items()
    }
    more = trainer(
        tmp_path,
        sources,
        lambda_method="min_norm",
        label_smoothing=0.1,
        label_smoothing_below_strength=0.0,
        adaptive_margin=0.5,
        adaptive_margin_clip=0.3,
    )
    index = np.asarray(more.train_dataset[SOURCE_INDEX_COLUMN])
    # 2 pairs per source: mu = -1 (smoothed, margin clipped to -0.3) and mu = 0.2 (not smoothed, margin 0.1)
    rows = [int(row) for source in range(3) for row in np.flatnonzero(index == source)[[0, 3]]]
    batch = more.data_collator([more.train_dataset[row] for row in rows])
    more.model.train()
    loss = more.compute_loss(more.model, dict(batch))
    with torch.no_grad():
        rewards = more.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    strength = [more.train_dataset[row]["strength_mean"] for row in rows]
    assert strength == pytest.approx([-1.0, 0.2] * 3)
    expected = []
    for pair, mu in enumerate(strength):  # -[(1 - a) log sigmoid(d - m) + a log sigmoid(-(d - m))], by hand
        d = (rewards[pair] - rewards[pair + len(rows)]).item()
        alpha, margin = (0.1 if mu < 0 else 0.0), max(-0.3, min(0.3, 0.5 * mu))
        expected.append(-((1 - alpha) * log_sigmoid(d - margin) + alpha * log_sigmoid(-(d - margin))))
    per_source = [np.mean(expected[2 * source : 2 * source + 2]) for source in range(3)]
    metrics = trainer_metrics(more, "train")
    lambdas = [metrics[f"lambda/{name}"][-1] for name in more.sources]
    assert [metrics[f"loss/{name}"][-1] for name in more.sources] == pytest.approx(per_source, abs=1e-5)
    assert sum(lambdas) == pytest.approx(1.0) and min(lambdas) >= 0
    assert loss.item() == pytest.approx(sum(w * value for w, value in zip(lambdas, per_source)), abs=1e-5)


def test_flipping_swaps_the_weakest_pairs_per_source_and_negates_their_strength(tmp_path, caplog):
    sources = {
        name: with_strength(data, np.linspace(-1, 1, len(data))) for name, data in toy_preference_sources(8).items()
    }
    reference = trainer(tmp_path / "reference", dict(sources), per_device_train_batch_size=6)
    with caplog.at_level("INFO"):
        flipped = trainer(tmp_path / "flipped", dict(sources), flip_below_strength=-0.5)
    assert flipped.flipped_pairs == {"polite": 2, "concise": 2, "factual": 2}  # -1.0 and -0.71 of every source
    assert "Flipped the weakest training pairs" in caplog.text and "polite: 2 of 8" in caplog.text
    before, after = reference.train_dataset, flipped.train_dataset
    for row in range(len(before)):
        if before[row]["strength_mean"] < -0.5:
            assert after[row]["chosen_ids"] == before[row]["rejected_ids"]
            assert after[row]["strength_mean"] == -before[row]["strength_mean"]
        else:
            assert after[row] == before[row]
    by_fraction = trainer(tmp_path / "fraction", dict(sources), flip_fraction=0.25)
    assert by_fraction.flipped_pairs == {"polite": 2, "concise": 2, "factual": 2}
    card = by_fraction.model_card_data().settings
    assert card["flipped pairs"].startswith("the weakest 25% of every source")


def test_flip_weak_pairs_on_a_single_source():
    data = Dataset.from_dict({"chosen_ids": [[1], [2], [3]], "rejected_ids": [[4], [5], [6]], "s": [0.5, -2.0, 1.0]})
    flipped, counts = flip_weak_pairs(data, "s", [], below=0.0)
    assert counts == {"all": 1} and flipped["chosen_ids"] == [[1], [5], [3]] and flipped["s"] == [0.5, 2.0, 1.0]


def test_bad_noisy_preference_options_are_clear_errors(tmp_path):
    pairs = toy_preference_sources(6)["polite"]
    with pytest.raises(ValueError, match="`strength_mean` column, which the train set does not have"):
        trainer(tmp_path, pairs, adaptive_margin=1.0)
    with pytest.raises(ValueError, match=r"strength that is not a finite number \(e.g. row 2"):
        trainer(tmp_path, with_strength(pairs, [0.1, 0.2, math.nan, 0.3, 0.4, 0.5]), flip_below_strength=0.0)
    for alpha in (0.5, -0.1, 0.7):
        with pytest.raises(ValueError, match=r"`label_smoothing` must be in \[0, 0.5\)"):
            MORERewardConfig(str(tmp_path), label_smoothing=alpha, bf16=False)
    sources = {name: with_strength(data, [-1.0] * len(data)) for name, data in toy_preference_sources(6).items()}
    sources["polite"] = with_strength(toy_preference_sources(6)["polite"], [1.0] * 6)
    with pytest.raises(ValueError, match="flips every one of the 6 training pairs of source 'concise'"):
        trainer(tmp_path, sources, flip_below_strength=0.0)
    with pytest.raises(ValueError, match="`flip_below_strength` or `flip_fraction`, not both"):
        MORERewardConfig(str(tmp_path), flip_below_strength=0.0, flip_fraction=0.1, bf16=False)


def test_the_strength_column_survives_preprocessing_and_reaches_the_loss(tmp_path):
    sources = {
        name: with_strength(data, np.linspace(-1, 1, len(data))) for name, data in toy_preference_sources(6).items()
    }
    more = trainer(tmp_path, sources, adaptive_margin=0.5, remove_unused_columns=True)
    assert "strength_mean" in more.train_dataset.column_names
    batch = more.data_collator([more.train_dataset[i] for i in range(6)])
    assert batch["strength"].dtype == torch.float32 and batch["strength"].shape == (6,)
    more.train()  # the MORE loss with an adaptive margin runs end to end
    assert len(logged(more, "lambda/polite")) == 3


# ---------------------------------------------------------------------------------------------------------------------
# Contrastive learning
# ---------------------------------------------------------------------------------------------------------------------


def test_simcse_by_hand():
    views = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cos similarities [[1, 0], [0, 1]] at tau 1: -log(e / (e + 1)) for both rows
    assert simcse_loss(views, views, temperature=1.0).item() == pytest.approx(math.log1p(math.exp(-1.0)))
    scaled = simcse_loss(views * 3, views, temperature=1.0)  # cosine similarity ignores the length
    assert scaled.item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_sinkhorn_codes_are_doubly_stochastic():
    scores = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    codes = sinkhorn(scores, epsilon=0.5, iterations=200)
    torch.testing.assert_close(codes.sum(1), torch.ones(8))  # every example's code is a distribution
    torch.testing.assert_close(codes.sum(0), torch.full((4,), 2.0), atol=1e-4, rtol=0)  # spread evenly: B / K
    assert torch.all(codes >= 0)


def test_swav_predicts_the_other_views_codes():
    prototypes = torch.eye(3)
    views = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    aligned = swav_loss(views, views, prototypes, temperature=0.1)
    shuffled = swav_loss(views, views[[1, 2, 0]], prototypes, temperature=0.1)
    assert aligned < shuffled  # views that agree on their prototype score better
    # By hand at epsilon = tau = 1: the scores are the identity, already balanced, so the codes are the rows of
    # exp(I) normalised, q_ii = e / (e + 2) and q_ij = 1 / (e + 2), and log softmax(I)_ij = [i == j] - log(e + 2).
    e = math.e
    aligned = swav_loss(views, views, prototypes, temperature=1.0, epsilon=1.0)
    assert aligned.item() == pytest.approx(math.log(e + 2) - e / (e + 2))
    shuffled = swav_loss(views, views[[1, 2, 0]], prototypes, temperature=1.0, epsilon=1.0)
    assert shuffled.item() == pytest.approx(math.log(e + 2) - 1 / (e + 2))  # each view's code peaks elsewhere


@pytest.mark.parametrize("loss", ["simcse", "swav"])
@pytest.mark.parametrize("representation", ["pair", "difference"])
def test_training_with_a_contrastive_loss_lowers_it_and_changes_every_parameter(tmp_path, loss, representation):
    more = trainer(
        tmp_path,
        dict(toy_preference_sources(24)),
        contrastive_loss=loss,
        contrastive_representation=representation,
        contrastive_dropout=0.1,
        max_steps=12,
        learning_rate=5e-3,
        swav_prototypes=6,
    )
    before = {name: parameter.detach().clone() for name, parameter in more.model.named_parameters()}
    prototypes = more.swav_prototypes.weight.detach().clone() if loss == "swav" else None
    more.train()
    losses = logged(more, "loss/contrastive")
    assert len(losses) == 12 and np.mean(losses[-4:]) < np.mean(losses[:4])
    for name, parameter in more.model.named_parameters():
        assert not torch.equal(parameter, before[name]), f"{name} did not change"
    if loss == "swav":
        assert not torch.equal(more.swav_prototypes.weight, prototypes)
        torch.testing.assert_close(more.swav_prototypes.weight.norm(dim=1), torch.ones(6))


@pytest.mark.parametrize(("loss", "representation"), [("simcse", "pair"), ("swav", "difference")])
def test_the_contrastive_gradient_reaches_every_backbone_parameter(tmp_path, loss, representation):
    # The reward pass is deterministic (TRL turns dropout off), so two runs that differ only in the auxiliary loss
    # end apart exactly where its gradient flows: every parameter below the reward head (the head itself after the
    # second step, through the representation it reads).
    data = dict(toy_preference_sources(24))
    plain, again = (trainer(tmp_path / name, data, max_steps=2) for name in ("plain", "again"))
    plain.train()
    again.train()
    for (name, parameter), repeated in zip(plain.model.named_parameters(), again.model.parameters()):
        assert torch.equal(parameter, repeated), f"without the auxiliary loss two runs differ at {name}"
    contrastive = trainer(
        tmp_path / "contrastive",
        data,
        max_steps=2,
        contrastive_loss=loss,
        contrastive_representation=representation,
    )
    contrastive.train()
    reference = dict(plain.model.named_parameters())
    for name, parameter in contrastive.model.named_parameters():
        assert not torch.equal(parameter, reference[name]), f"the {loss} loss did not reach {name}"


def test_contrastive_learning_with_lora_and_gradient_checkpointing_on_one_source(tmp_path):
    from peft import LoraConfig

    tokenizer = tiny_tokenizer()
    more = MORERewardTrainer(
        tiny_reward_model("llama", tokenizer),
        MORERewardConfig(str(tmp_path), **{**TINY, "gradient_checkpointing": True}, contrastive_loss="simcse"),
        train_dataset=toy_preference_sources(12)["polite"],
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="SEQ_CLS", r=4, target_modules="all-linear"),
    )
    lora = {name: p.detach().clone() for name, p in more.model.named_parameters() if p.requires_grad}
    more.train()
    assert len(logged(more, "loss/contrastive")) == 3
    assert all(not torch.equal(p, lora[name]) for name, p in more.model.named_parameters() if p.requires_grad)


def test_swav_prototypes_are_in_checkpoints_and_resume_exactly_but_not_in_the_model(tmp_path):
    options = dict(contrastive_loss="swav", max_steps=4, save_strategy="steps", save_steps=2, swav_prototypes=5)
    full = trainer(tmp_path / "full", dict(toy_preference_sources(12)), **options)
    full.train()
    state = torch.load(tmp_path / "full" / "checkpoint-2" / "trl_more_state_rank0.pt", weights_only=True)
    assert state["swav_prototypes"]["weight"].shape == (5, 32)
    assert not any("prototype" in name for name in full.model.state_dict())
    resumed = trainer(tmp_path / "full", dict(toy_preference_sources(12)), **options)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    torch.testing.assert_close(resumed.swav_prototypes.weight, full.swav_prototypes.weight, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Preference strength
# ---------------------------------------------------------------------------------------------------------------------


def flipped_toy_pairs(num_pairs=40, fraction=0.25, seed=0):
    """The toy sources with a known random subset of labels flipped; returns (dataset, flipped mask)."""
    parts = [data.add_column("source", [name] * len(data)) for name, data in toy_preference_sources(num_pairs).items()]
    data = concatenate_datasets(parts)
    flipped = np.random.default_rng(seed).random(len(data)) < fraction
    rows = data.to_list()
    for row, flip in zip(rows, flipped):
        if flip:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    return Dataset.from_list(rows), flipped


def auroc(scores, positives) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    scores, positives = np.asarray(scores), np.asarray(positives, dtype=bool)
    above = (scores[positives][:, None] > scores[~positives][None, :]).mean()
    ties = (scores[positives][:, None] == scores[~positives][None, :]).mean()
    return float(above + ties / 2)


STRENGTH_TRAINING = dict(
    per_device_train_batch_size=6,
    max_steps=40,
    learning_rate=3e-3,
    logging_steps=50,
    report_to="none",
    bf16=False,
    max_length=64,
    truncation_mode="keep_end",
    seed=0,
    disable_tqdm=True,
)


@pytest.fixture(scope="module")
def flipped_estimate(tmp_path_factory):
    pairs, flipped = flipped_toy_pairs()
    output = tmp_path_factory.mktemp("strength")
    tokenizer = tiny_tokenizer()
    args = MORERewardConfig(str(output), **STRENGTH_TRAINING)
    estimate = estimate_preference_strength(
        lambda: tiny_reward_model("qwen2", tokenizer),
        pairs,
        args,
        num_models=4,
        processing_class=tokenizer,
        eval_dataset=HELD_OUT,
        show_progress=False,
    )
    return estimate, flipped, output, pairs, args, tokenizer


HELD_OUT = dict(toy_preference_sources(6, seed=3))


def test_the_out_of_sample_strength_ranks_the_flipped_pairs_lowest(flipped_estimate):
    estimate, flipped, *_ = flipped_estimate
    mu = np.asarray(estimate.dataset["strength_mean"])
    assert auroc(-mu, flipped) > 0.9  # -mu finds the injected flips
    assert (mu[flipped] < 0).mean() > 0.8 and (mu[~flipped] > 0).mean() > 0.8


def test_every_model_of_the_ensemble_scores_the_held_out_pairs(flipped_estimate):
    estimate, *_ = flipped_estimate
    assert len(estimate.evaluations) == 4
    for evaluation in estimate.evaluations:  # the models learned the true signal despite the flipped labels
        assert set(evaluation.metrics) == set(SOURCES) and evaluation.average()["preference_accuracy"] > 0.8


def test_strength_is_the_mean_and_population_std_of_the_models_differences(flipped_estimate):
    estimate, *_ = flipped_estimate
    for row in estimate.dataset.select(range(10)):
        differences = row["strength_differences"]
        assert len(differences) == 2  # cross-fitting, 4 models in 2 folds: two out-of-sample scores per pair
        mean = sum(differences) / 2
        assert row["strength_mean"] == pytest.approx(mean)
        assert row["strength_std"] == pytest.approx(math.sqrt(sum((d - mean) ** 2 for d in differences) / 2))


def test_a_restarted_estimate_reuses_the_finished_models(flipped_estimate, monkeypatch):
    estimate, _, output, pairs, args, tokenizer = flipped_estimate
    (output / "model-03" / "scores.json").unlink()  # as if killed while training the last model
    (output / "model-03" / "scores.json.tmp").parent.mkdir(exist_ok=True)
    (output / "model-03" / "scores.json.tmp").write_text("{half written")  # a partial file is never read
    trained = []
    original = MORERewardTrainer.train
    monkeypatch.setattr(MORERewardTrainer, "train", lambda self, *a, **k: trained.append(1) or original(self, *a, **k))
    again = estimate_preference_strength(
        lambda: tiny_reward_model("qwen2", tokenizer),
        pairs,
        args,
        num_models=4,
        processing_class=tokenizer,
        eval_dataset=HELD_OUT,
        show_progress=False,
    )
    assert trained == [1]
    assert again.dataset["strength_mean"] == pytest.approx(estimate.dataset["strength_mean"], abs=1e-6)
    with pytest.raises(ValueError, match="scores of a model trained on other data, with other settings"):
        estimate_preference_strength("unused", pairs.select(range(100)), args, num_models=4, show_progress=False)


def test_the_progress_bar_counts_the_models_and_can_be_turned_off(flipped_estimate, capsys):
    _, _, _, pairs, args, tokenizer = flipped_estimate

    def bar(show_progress: bool) -> str:  # every member's scores are saved: only the bar runs
        estimate_preference_strength(
            lambda: tiny_reward_model("qwen2", tokenizer),
            pairs,
            args,
            num_models=4,
            processing_class=tokenizer,
            eval_dataset=HELD_OUT,
            show_progress=show_progress,
        )
        return capsys.readouterr().err

    shown = bar(True)
    assert "Strength models" in shown and "4/4" in shown
    assert "Strength models" not in bar(False)


@pytest.mark.parametrize("change", ["initial weights", "architecture", "peft_config", "tokenizer"])
def test_saved_scores_of_another_starting_model_are_refused(flipped_estimate, change):
    from peft import LoraConfig

    _, _, output, pairs, args, tokenizer = flipped_estimate
    model = {
        "initial weights": lambda: tiny_reward_model("qwen2", tokenizer, seed=1),
        "architecture": lambda: tiny_reward_model("llama", tokenizer),
    }.get(change, lambda: tiny_reward_model("qwen2", tokenizer))
    options = {
        "peft_config": LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"]),
        "processing_class": tiny_tokenizer(vocab_size=300) if change == "tokenizer" else tokenizer,
    }
    if change != "peft_config":
        options.pop("peft_config")
    before = {path: path.read_text() for path in output.glob("model-*/scores.json")}
    with pytest.raises(ValueError, match=r"from another model \(weights, PEFT config or tokenizer\)"):
        estimate_preference_strength(
            model, pairs, args, num_models=4, eval_dataset=HELD_OUT, show_progress=False, **options
        )
    assert {path: path.read_text() for path in output.glob("model-*/scores.json")} == before  # nothing overwritten


def test_a_restart_from_a_model_path_with_lora_reuses_every_member(tmp_path, monkeypatch):
    from peft import LoraConfig

    from trl_more.testing import save_tiny_reward_model

    model = str(save_tiny_reward_model(tmp_path / "model"))
    pairs, _ = flipped_toy_pairs(12)
    args = MORERewardConfig(str(tmp_path / "strength"), **{**STRENGTH_TRAINING, "max_steps": 2})

    def estimate():  # a new LoraConfig every time: PEFT fills in its fields while training
        lora = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"])
        return estimate_preference_strength(model, pairs, args, num_models=4, peft_config=lora, show_progress=False)

    first = estimate()
    trained = []
    monkeypatch.setattr(MORERewardTrainer, "train", lambda *a, **k: trained.append(1))
    again = estimate()
    assert trained == []  # every member's saved scores were accepted
    assert again.dataset["strength_mean"] == first.dataset["strength_mean"]


@pytest.mark.parametrize(("num_models", "num_folds"), [(4, 2), (6, 3), (6, 2)])
def test_cross_fitting_scores_every_pair_only_with_models_that_never_trained_on_it(num_models, num_folds):
    from trl_more.noisy_preferences.strength import _fold_plan

    source_index = np.repeat([0, 1, 2], [7, 10, 13])
    plan = _fold_plan(source_index, "cross_fit", num_models, num_folds, seed=0)
    scored_by = [[] for _ in source_index]
    assert len(plan) == num_models
    for member, (train_rows, score_rows) in enumerate(plan):
        assert not set(train_rows) & set(score_rows)
        assert sorted([*train_rows, *score_rows]) == list(range(len(source_index)))
        for source, size in enumerate((7, 10, 13)):  # stratified: (F - 1) / F of every source, rounded
            assert abs((source_index[train_rows] == source).sum() - size * (num_folds - 1) / num_folds) < 1
        for row in score_rows:
            scored_by[row].append(member)
    assert all(len(members) == num_models // num_folds for members in scored_by)  # R = M / F >= 2 scores each


def test_the_strength_summary_and_files(flipped_estimate, tmp_path):
    estimate, flipped, *_ = flipped_estimate
    summary = estimate.summary()
    assert set(summary) == {*SOURCES, "all"} and summary["all"]["pairs"] == 120
    mu = np.asarray(estimate.dataset["strength_mean"])
    assert summary["all"]["share_negative"] == pytest.approx((mu < 0).mean())
    paths = estimate.save(tmp_path)
    rows = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    assert len(rows) == 120 and {"strength_mean", "strength_std", "strength_differences", "source"} <= set(rows[0])
    assert Dataset.from_parquet(str(paths["parquet"]))["strength_mean"] == pytest.approx(mu.tolist())
    assert "mu < 0 (%)" in paths["summary_md"].read_text() and paths["plot"].stat().st_size > 10_000


def test_saved_strengths_load_back_as_a_source_of_a_mixture(flipped_estimate, tmp_path):
    from trl_more.data import mix_sources

    estimate, *_ = flipped_estimate
    paths = estimate.save(tmp_path, plots=False)
    expected = estimate.dataset.filter(lambda row: row["source"] == "concise")
    for path in (paths["jsonl"], paths["parquet"]):
        pairs, report = load_preference_source("trl-more-strength", path=path, source="concise", only_source="concise")
        assert report.examples == len(expected) == 40 and report.skipped == {"source not 'concise'": 80}
        assert pairs["prompt"] == expected["prompt"] and pairs["chosen"] == expected["chosen"]
        assert set(pairs["source"]) == {"concise"}
        assert pairs["strength_mean"] == pytest.approx(expected["strength_mean"])
        assert pairs["strength_std"] == pytest.approx(expected["strength_std"])
        assert pairs["strength_differences"] == [pytest.approx(row) for row in expected["strength_differences"]]
    entries = [
        {"name": "trl-more-strength", "path": str(paths["jsonl"]), "label": name, "options": {"only_source": name}}
        for name in SOURCES
    ]
    mixture = mix_sources(entries, test_size=0.25, seed=0)
    assert len(mixture.train) + sum(len(part) for part in mixture.test_by_source().values()) == 120
    assert {"strength_mean", "strength_std", "source"} <= set(mixture.train.column_names)
    assert set(mixture.train["source"]) == set(SOURCES)
    with pytest.raises(ValueError, match=r"No row has source 'consise'; the file's sources are \['concise', "):
        load_preference_source("trl-more-strength", path=paths["jsonl"], only_source="consise")


def test_saved_strength_rows_without_a_finite_strength_are_counted_not_read(tmp_path):
    good = {"prompt": "Human: hi Assistant:", "chosen": " Hello!", "rejected": " Go away.", "source": "polite"}
    rows = [
        {**good, "strength_mean": 0.5, "strength_std": 0.1, "strength_differences": [0.4, 0.6]},
        {**good, "strength_mean": float("nan"), "strength_std": 0.1, "strength_differences": [0.4, 0.6]},
        {**good, "strength_mean": 0.5, "strength_std": None, "strength_differences": [0.4, 0.6]},
    ]
    path = tmp_path / "strength.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))  # NaN is written as JSON's NaN literal
    pairs, report = load_preference_source("trl-more-strength", path=path)
    assert report.examples == 1 and report.invalid == {"missing or non-finite preference strength": 2}
    assert pairs[0]["strength_mean"] == 0.5 and pairs[0]["strength_differences"] == [0.4, 0.6]


def test_bad_strength_settings_are_clear_errors(tmp_path):
    pairs, _ = flipped_toy_pairs(6)
    args = MORERewardConfig(str(tmp_path), bf16=False)
    with pytest.raises(ValueError, match="two or more models that never saw it"):
        estimate_preference_strength("unused", pairs, args, num_models=3, num_folds=2)
    with pytest.raises(ValueError, match="at least two models"):
        estimate_preference_strength("unused", pairs, args, num_models=1, mode="seeds")


def test_trl_more_strength_runs_the_seeds_mode_from_the_command_line(tmp_path, capsys):
    from trl_more.testing import save_tiny_reward_model

    model = save_tiny_reward_model(tmp_path / "model")
    cli_main(
        [
            "strength",
            "--demo",
            "--mode",
            "seeds",
            "--num_models",
            "2",
            "--model_name_or_path",
            str(model),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "6",
            "--output_dir",
            str(tmp_path / "out"),
            "--bf16",
            "false",
            "--report_to",
            "none",
        ]
    )
    output = capsys.readouterr().out
    assert "Strength from 2 reward models, mode seeds" in output
    assert {"strength.jsonl", "strength.parquet", "strength_summary.json", "strength.png"} <= {
        path.name for path in (tmp_path / "out").iterdir()
    }


def test_the_published_strengths_load_in_their_hub_schema():
    pairs, report = load_preference_source("hh-rlhf-strength", path=FIXTURES / "hh_rlhf_strength.jsonl")
    assert (report.rows_read, report.examples) == (4, 3)
    assert report.invalid == {"chosen and rejected have different dialogue histories": 1}
    first = pairs[0]
    assert first["prompt"] == (
        "\n\nHuman: How do I keep basil fresh?\n\nAssistant: Do you keep it in the fridge?\n\nHuman: Yes, usually."
        "\n\nAssistant:"
    )
    assert first["chosen"].startswith(" Keep it in a glass of water") and first["rejected"] == " Just buy dried basil."
    assert (first["strength_mean"], first["strength_std"], first["gpt4_label"]) == (1.8125, 0.4375, 1)
    assert first["strength_differences"] == [1.75, 1.5, 1.25, 2.75]  # chosen minus rejected score of every model
    assert pairs["gpt4_label"] == [1, None, None]  # -1 (no label) and a train-set row without the field
    assert pairs["strength_mean"][1] == -1.25
