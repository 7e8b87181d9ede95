"""Every method's effect in the known-answer world (`trl_more.synthetic`, issue 35): a reduced version of each
benchmark measurement (one seed, one regime point), asserting the effect with a margin set from the benchmark's seed
spread at exactly these settings. The margins and settings come from the benchmarks and are written next to each
assertion; they are not tuned to pass. The world itself is tested in test_synthetic_world.py.
"""

import json
import tempfile

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy import stats
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from trl_more import MORERewardConfig, RejectionSamplingConfig, RejectionSamplingTrainer
from trl_more.metrics.calibration import expected_calibration_error
from trl_more.noisy_preferences import estimate_preference_strength
from trl_more.rewards import RewardModelScorer
from trl_more.synthetic import (
    gold_accuracy,
    gold_reward,
    gold_reward_model,
    policy_prompts,
    preference_pairs,
    relabelled,
    shared_preference_pairs,
    training_columns,
    world_tokenizer,
)
from trl_more.synthetic.models import REWARD_TRAINING, predicted_margins, train_reward_model, train_sft_policy
from trl_more.testing import tiny_reward_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The benchmarks train on one thread per process: the same seed then gives exactly their numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# =====================================================================================================================
# Rejection sampling and MetaRM (benchmarks/world_rejection_sampling.py, measurements 7 and 4)
#
# Seed 0 of the benchmark's test point (its `TEST_POINT`, the settings below): an SFT policy (300 steps), a proxy
# trained on 1000 Bradley-Terry pairs of the policy's training style (`REWARD_TRAINING`, 200 steps), 3 RJS iterations of 128 prompts x 4
# samples at learning rate 3e-3, measured on 4 samples of 128 other prompts. The margins are the mean minus 3 standard
# deviations over the 5 seeds of `python benchmarks/world_rejection_sampling.py --test_point` (benchmarks/RESULTS.md).
# =====================================================================================================================

RJS_SEED = 0
RJS_SAMPLES = 4
RJS_ITERATIONS = 3


def rjs_pair_accuracy(scorer, prompts, samples) -> float:
    """Gold-order accuracy of `scorer` on every pair of samples of one prompt whose gold rewards differ."""
    prompt_texts = [prompt.text for prompt, group in zip(prompts, samples) for _ in group]
    rewards = scorer.score(prompt_texts, [text for group in samples for text in group]).combined.double().numpy()
    rewards = rewards.reshape(len(samples), -1)
    gold = np.array([[gold_reward(prompt, text) for text in group] for prompt, group in zip(prompts, samples)])
    first, second = np.triu_indices(RJS_SAMPLES, k=1)
    return gold_accuracy((rewards[:, first] - rewards[:, second]).ravel(), (gold[:, first] - gold[:, second]).ravel())


@pytest.fixture(scope="module")
def rjs_world(tmp_path_factory):
    """The tokenizer, the folders of the SFT policy and of the proxy, and the proxy's pairs. Every arm loads its own
    copies from the folders: a deep copy of a model a Trainer has prepared keeps calling the original's forward
    (accelerate binds it to the instance), so its updates would not reach the copy's outputs."""
    folder = tmp_path_factory.mktemp("rjs-world")
    tokenizer = world_tokenizer()
    train_sft_policy(RJS_SEED, max_steps=300, num_examples=2000).save_pretrained(folder / "policy")
    pairs = preference_pairs(1000, seed=RJS_SEED, temperature=0.5)
    proxy, _ = train_reward_model(training_columns(pairs), RJS_SEED, max_steps=200)
    proxy.save_pretrained(folder / "proxy")
    return tokenizer, folder, pairs


def rjs_run(world, arm: str) -> dict:
    """RJS selecting with `arm` ("gold", "fixed" or "metarm": the proxy updated by MetaRM at eta 1 before every
    iteration's scoring); the gold reward of the policy's evaluation samples and the arm's reward model's gold-order
    accuracy on pairs of them and in distribution, before and after; the last iteration's logged metrics."""
    tokenizer, folder, pairs = world
    prompts = policy_prompts(RJS_ITERATIONS * 128, seed=RJS_SEED)
    eval_prompts = policy_prompts(128, seed=10_000 + RJS_SEED)
    eval_ids = [tokenizer(text=prompt.text)["input_ids"] for prompt in eval_prompts]
    test = preference_pairs(500, seed=10_000 + RJS_SEED, temperature=0.5)
    with tempfile.TemporaryDirectory() as output_dir:
        config = RejectionSamplingConfig(
            output_dir,
            num_iterations=RJS_ITERATIONS,
            prompts_per_iteration=128,
            num_samples_per_prompt=RJS_SAMPLES,
            selection="best_per_prompt",
            temperature=1.0,
            max_new_tokens=16,
            generation_batch_size=64,
            reward_batch_size=256,
            max_length=64,
            per_device_train_batch_size=32,
            learning_rate=3e-3,
            lr_scheduler_type="constant",
            num_epochs_per_iteration=2,
            max_grad_norm=1.0,
            gradient_checkpointing=False,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            bf16=False,
            disable_tqdm=True,
            seed=RJS_SEED,
            metarm=arm == "metarm",
            metarm_learning_rate=1e-3,
            metarm_meta_learning_rate=1.0,
            metarm_per_device_train_batch_size=32,
            metarm_per_device_meta_batch_size=16,
            metarm_steps_per_iteration=32,
        )
        trainer = RejectionSamplingTrainer(
            model=AutoModelForCausalLM.from_pretrained(folder / "policy"),
            reward_models=gold_reward_model(tokenizer)
            if arm == "gold"
            else AutoModelForSequenceClassification.from_pretrained(folder / "proxy"),
            args=config,
            train_dataset=Dataset.from_dict({"prompt": [prompt.text for prompt in prompts]}),
            processing_class=tokenizer,
            reward_processing_classes=tokenizer,
            reward_train_dataset=training_columns(pairs) if arm == "metarm" else None,
        )

        def measure() -> dict:
            generated = trainer.generation_backend.generate(
                trainer.model_wrapped, eval_ids, RJS_SAMPLES, seed=RJS_SEED
            )
            samples = [[tokenizer.decode(ids, skip_special_tokens=True) for ids in group] for group in generated]
            scorer = RewardModelScorer(trainer.reward_models, [tokenizer], batch_size=256)
            chosen = scorer.score(test["prompt"], test["chosen"]).combined
            rejected = scorer.score(test["prompt"], test["rejected"]).combined
            return {
                "gold_mean": float(np.mean([[gold_reward(p, t) for t in g] for p, g in zip(eval_prompts, samples)])),
                "accuracy_on_policy": rjs_pair_accuracy(scorer, eval_prompts, samples),
                "accuracy_in_distribution": gold_accuracy((chosen - rejected).numpy(), np.array(test["gold_margin"])),
            }

        before = measure()
        trainer.train()
        last = json.loads((trainer.iteration_store.path(RJS_ITERATIONS - 1) / "metrics.json").read_text())
        return {"before": before, "after": measure(), "last_iteration": last}


@pytest.fixture(scope="module")
def rjs_runs(rjs_world):
    return {arm: rjs_run(rjs_world, arm) for arm in ("gold", "fixed", "metarm")}


def test_rejection_sampling_with_the_gold_selector_raises_the_gold_reward(rjs_runs):
    gain = rjs_runs["gold"]["after"]["gold_mean"] - rjs_runs["gold"]["before"]["gold_mean"]
    assert gain >= 1.8  # benchmark: 2.21, standard deviation 0.14 (lowest 2.07) over 5 seeds


def test_a_fixed_proxy_selects_less_gold_reward_than_the_gold_itself(rjs_runs):
    """Over-optimisation: the proxy's best of 4 is partly its error (it counts repeated helpful words, which the gold
    ignores), so its policy ends with less gold reward than the policy the gold reward selected for."""
    shortfall = rjs_runs["gold"]["after"]["gold_mean"] - rjs_runs["fixed"]["after"]["gold_mean"]
    assert shortfall >= 0.25  # benchmark: 0.59, standard deviation 0.11 (lowest 0.47)


def test_the_fixed_proxy_is_less_accurate_on_the_moved_policys_samples_than_in_distribution(rjs_runs):
    """MetaRM's premise: RJS moves the policy to samples the proxy orders worse than the data it was trained on."""
    after = rjs_runs["fixed"]["after"]
    gap = after["accuracy_in_distribution"] - after["accuracy_on_policy"]
    assert gap >= 0.07  # benchmark: 19.1 points, standard deviation 4.0 (lowest 12.9); 2.3 before the first iteration


def test_metarm_raises_the_difference_loss_and_costs_little_accuracy_in_distribution(rjs_runs):
    """What the benchmark measures for MetaRM in this world: its meta steps spread the rewards of the policy's samples
    (J rises), and it is no more accurate than the fixed proxy on them (+0.5 +- 2.9 points at this point; the
    default run misses the issue's target of +3 points at every eta), at a small cost in distribution. So this test
    asserts only the mechanism and a bound on that cost, not an effect the method does not have here."""
    last = rjs_runs["metarm"]["last_iteration"]
    assert last["metarm/difference_after"] - last["metarm/difference"] >= 0.075  # benchmark: 0.102, s.d. 0.008
    cost = (
        rjs_runs["fixed"]["after"]["accuracy_in_distribution"]
        - rjs_runs["metarm"]["after"]["accuracy_in_distribution"]
    )
    assert cost <= 0.13  # benchmark: 2.6 points, standard deviation 3.4 (highest 8.0)


# =====================================================================================================================
# Multi-objective reward model with gated scalarization, ArmoRM (benchmarks/world_multi_objective.py, measurement 6)
#
# Seed 0 of the benchmark's test point (its `TEST_POINT`, the settings below): a backbone trained as a reward model
# on 2000 Bradley-Terry pairs and 1000 shared-preference pairs (400 steps), then end to end on 1000 noise-free ratings
# of the four objectives (200 steps) and frozen; stage 1 (ridge) on 500 noisy ratings with the rater's length bias
# 0.25 (250 to choose alphas); the package's verbosity debiasing on the gate's 1000 pairs, then the gate (2 x 256,
# beta from 20, 300 steps of 256 at learning rate 1e-2); measured on 1000 held-out pairs. The margins are the mean
# minus (or plus) 3 standard deviations over the 5 seeds of `python benchmarks/world_multi_objective.py --test_point`
# (benchmarks/RESULTS.md). This reduced backbone does not learn relevance reliably (held-out R^2 0.01 to 0.98 over
# the seeds), so no assertion rests on relevance alone.
# =====================================================================================================================

ARMO_SEED = 0
ARMO_OBJECTIVES = ("relevance", "helpfulness", "harmlessness", "verbosity")  # harm rated as harmlessness = 3 - harm
ARMO_SCALES = {"relevance": (0, 1), "helpfulness": (0, 4), "harmlessness": (0, 3), "verbosity": (0, 16)}
# d(rating target)/d f_k of relevance, helpfulness and harm: the gate's weight times this is its weight on f_k.
ARMO_REGRESSION_SCALE = np.array([1.0, 1 / 4, -1 / 3])
ARMO_HELPFULNESS = 1


def armo_rated(num_responses: int, seed: int, **options):
    """The world's rated responses, harm rated as harmlessness (a softmax gate's weights are never negative)."""
    from trl_more.synthetic import rated_responses

    ratings = rated_responses(num_responses, seed=seed, **options)
    return ratings.add_column("harmlessness", [3.0 - value for value in ratings["harm"]])


def armo_features(model, tokenizer, prompts, responses):
    """The frozen backbone's states of (prompt, response) texts, tokenized as the trainers tokenize them."""
    from trl_more.multi_objective import extract_features
    from trl_more.tokenization import tokenize_scored_response

    encoded = [tokenize_scored_response(tokenizer, prompt, response) for prompt, response in zip(prompts, responses)]
    return extract_features(model, *zip(*encoded), batch_size=512, show_progress=False)


def armo_backbone(tokenizer):
    """A backbone that has learned the world, in a multi-objective model with a fresh gate: a reward model on world
    pairs (they teach relevance and make the prompt type visible at the last prompt token, which is all the gate
    reads), then fine-tuned end to end on noise-free ratings of the objectives."""
    from datasets import concatenate_datasets
    from transformers import TrainingArguments

    from trl_more.multi_objective import MultiObjectiveRewardModel, prepare_rating_dataset, regression_trainer
    from trl_more.synthetic import shared_preference_pairs

    pairs = concatenate_datasets(
        [
            training_columns(preference_pairs(2000, seed=50_000 + ARMO_SEED)),
            training_columns(shared_preference_pairs(1000, seed=50_000 + ARMO_SEED)),
        ]
    )
    reward_model, _ = train_reward_model(pairs, ARMO_SEED, max_steps=400)
    model = MultiObjectiveRewardModel.from_backbone(
        reward_model, ARMO_OBJECTIVES, gate_hidden_sizes=[256, 256], regression_bias=True
    )
    ratings = armo_rated(1000, 60_000 + ARMO_SEED, noise=0.0, length_bias=0.0)
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir,
            per_device_train_batch_size=32,
            learning_rate=1e-3,
            max_steps=200,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_strategy="no",
            seed=ARMO_SEED,
        )
        regression_trainer(
            model, args, prepare_rating_dataset(ratings, tokenizer, ARMO_OBJECTIVES, ARMO_SCALES)
        ).train()
    return model.eval()


@pytest.fixture(scope="module")
def armo_run():
    """Stage 1 and the debiased gate on the backbone; R^2 against noise-free ratings, the gate's weights per prompt
    type, and the held-out responses' rewards, scores and lengths."""
    from trl_more.multi_objective import (
        MultiObjectiveRewardConfig,
        MultiObjectiveRewardTrainer,
        debias_verbosity,
        fit_regression_layer,
        r2_per_objective,
        rating_targets,
    )
    from trl_more.synthetic import PROMPT_TYPES

    tokenizer = world_tokenizer()
    model = armo_backbone(tokenizer)
    test = preference_pairs(1000, seed=10_000 + ARMO_SEED)
    noisy, exact = (armo_rated(1250, ARMO_SEED, length_bias=0.25, **options) for options in ({}, {"noise": 0.0}))
    labels, exact_labels = (rating_targets(ratings, ARMO_OBJECTIVES, ARMO_SCALES) for ratings in (noisy, exact))
    pooled = armo_features(model, tokenizer, noisy["prompt"], noisy["response"]).pooled
    fit_regression_layer(model, pooled[:500], labels[:500], pooled[500:750], labels[500:750])
    with torch.no_grad():
        r2 = r2_per_objective(model.regression_layer(pooled[750:]), exact_labels[750:], labels[:500], ARMO_OBJECTIVES)
    pairs = preference_pairs(1000, seed=ARMO_SEED)
    sides = ("chosen", "rejected")
    reference = torch.cat([armo_features(model, tokenizer, pairs["prompt"], pairs[side]).pooled for side in sides])
    debias_verbosity(model, reference, "verbosity")
    with tempfile.TemporaryDirectory() as output_dir:
        args = MultiObjectiveRewardConfig(
            output_dir,
            cache_features=True,
            per_device_eval_batch_size=512,
            seed=ARMO_SEED,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_strategy="no",
            max_steps=300,
            per_device_train_batch_size=256,
            learning_rate=1e-2,
        )
        with torch.no_grad():
            model.gate.beta.fill_(20.0)  # about the calibrated score's scale (benchmark docstring)
        MultiObjectiveRewardTrainer(
            model, args=args, train_dataset=training_columns(pairs), processing_class=tokenizer
        ).train()
    model.eval()
    with torch.no_grad():
        outputs = {
            side: model(pooled_hidden_states=features.pooled, prompt_hidden_states=features.prompt)
            for side in sides
            for features in [armo_features(model, tokenizer, test["prompt"], test[side])]
        }
    types = np.array(test["prompt_type"])
    gates = outputs["chosen"].gating_weights.numpy()
    return {
        "r2": r2,
        "gate_weights": np.array([gates[types == kind].mean(0) for kind in PROMPT_TYPES]),
        "rewards": torch.cat([outputs[side].rewards for side in sides]).numpy(),
        "transformed_rewards": torch.cat([outputs[side].transformed_rewards for side in sides]).numpy(),
        "margins": (outputs["chosen"].logits - outputs["rejected"].logits)[:, 0].numpy(),
        "gold_margins": np.array(test["gold_margin"]),
        "lengths": np.array([len(text.split()) for side in sides for text in test[side]]),
    }


def test_armo_stage_one_reads_the_objectives_off_the_frozen_backbone(armo_run):
    """Held-out R^2 of the ridge-fitted regression layer against the noise-free ratings (with the rater's bias)."""
    r2 = armo_run["r2"]
    assert r2["helpfulness"] >= 0.90  # benchmark: 0.949, standard deviation 0.015 (lowest 0.924)
    assert r2["harmlessness"] >= 0.88  # benchmark: 0.922, standard deviation 0.013 (lowest 0.901)
    assert r2["verbosity"] >= 0.67  # benchmark: 0.772, standard deviation 0.034 (lowest 0.733)


def test_armo_gate_recovers_the_true_weights_of_every_prompt_type(armo_run):
    """The gate's weight on each f_k (mixture weight times the regression scale) against the true w_k(x) of the world,
    for relevance, helpfulness and harm (verbosity's true weight is out of a softmax gate's reach): correlated as they
    are, and after centring every objective's weights over the prompt types, which only a gate that reads the prompt
    gets right (a prompt-blind gate scores about 0 there)."""
    from trl_more.synthetic import PROMPT_TYPE_WEIGHTS, PROMPT_TYPES

    estimated = armo_run["gate_weights"][:, :3] * ARMO_REGRESSION_SCALE
    true = np.array([PROMPT_TYPE_WEIGHTS[kind][:3] for kind in PROMPT_TYPES])
    correlation = np.corrcoef(estimated.ravel(), true.ravel())[0, 1]
    centred, true_centred = estimated - estimated.mean(0), true - true.mean(0)
    centred_correlation = np.corrcoef(centred.ravel(), true_centred.ravel())[0, 1]
    assert correlation >= 0.69  # benchmark: 0.915, standard deviation 0.074 (lowest 0.790)
    assert centred_correlation >= 0.47  # benchmark: 0.703, standard deviation 0.079 (lowest 0.596)


def test_armo_verbosity_debiasing_removes_the_raters_length_bias(armo_run):
    """The rater favours long answers, so the helpfulness reward follows response length; the package's debiasing
    takes that out of the reward the gate combines."""
    from scipy.stats import spearmanr

    lengths = armo_run["lengths"]
    raw = spearmanr(armo_run["rewards"][:, ARMO_HELPFULNESS], lengths)[0]
    debiased = spearmanr(armo_run["transformed_rewards"][:, ARMO_HELPFULNESS], lengths)[0]
    assert raw >= 0.59  # benchmark: 0.695, standard deviation 0.035 (lowest 0.638)
    assert abs(debiased) <= 0.23  # benchmark: 0.066, standard deviation 0.055 (highest 0.137)


def test_armo_gated_model_orders_held_out_pairs_like_the_gold(armo_run):
    accuracy = gold_accuracy(armo_run["margins"], armo_run["gold_margins"])
    assert accuracy >= 0.75  # benchmark: 0.887, standard deviation 0.047 (lowest 0.814)


# =====================================================================================================================
# Learnability, preference strength, denoising and MORE (benchmarks/world_strength.py, world_denoising.py and
# world_more.py: measurements 1, 2 and 5). Tiny Qwen2 reward models trained with `REWARD_TRAINING` as in the
# benchmarks; each test is one seed of a benchmark point, its margin the mean minus 3 standard deviations of the
# benchmark's seeds at that point (benchmarks/RESULTS.md, section 13).
# =====================================================================================================================


def denoising_accuracy(**settings) -> float:
    """Gold-order accuracy of a model trained on world_denoising.py's 4000 noise-free pairs (seed 0) with `settings`,
    on its 1000 clean test pairs."""
    train = training_columns(preference_pairs(4000, temperature=None, seed=0))
    test = preference_pairs(1000, temperature=None, seed=20_000)
    model, tokenizer = train_reward_model(train, seed=0, **settings)
    return gold_accuracy(predicted_margins(model, tokenizer, test), np.array(test["gold_margin"]))


@pytest.fixture(scope="module")
def clean_baseline_accuracy() -> float:
    return denoising_accuracy()


def test_a_tiny_model_learns_the_world_to_90_percent_on_clean_labels(clean_baseline_accuracy):
    """The world is learnable: 400 steps on 4000 noise-free pairs, about 10 s on one thread (benchmark: 90.4 +- 2.9%
    over 5 seeds, 91.9% at seed 0; 800 steps on 6400 pairs reach 96.1%)."""
    assert clean_baseline_accuracy >= 0.90


def test_simcse_makes_a_tiny_model_more_accurate_on_clean_labels(clean_baseline_accuracy):
    """Contrastive learning where its premise holds (a representation the preference loss alone learns poorly): SimCSE
    on the same pairs is more accurate (benchmark: +5.4 points over 5 seeds, s.d. 2.2, higher in every seed, the
    least at seed 0: +2.2; SimCSE's accuracy 95.8%, s.d. 1.3)."""
    simcse = denoising_accuracy(contrastive_loss="simcse")
    assert simcse >= 0.92 and simcse > clean_baseline_accuracy


def cross_fitted_strength(train: Dataset, **training) -> np.ndarray:
    """mu of every pair from a cross-fitted ensemble of 4 tiny models (`REWARD_TRAINING` updated by `training`), as
    the benchmarks estimate it."""
    tokenizer = world_tokenizer()
    with tempfile.TemporaryDirectory() as output_dir:
        args = MORERewardConfig(
            output_dir,
            seed=0,
            **{**REWARD_TRAINING, **training},
            logging_strategy="no",
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            activation_checkpointing=False,
            per_device_eval_batch_size=256,
        )
        estimate = estimate_preference_strength(
            lambda: tiny_reward_model("qwen2", tokenizer),
            train,
            args,
            num_models=4,
            mode="cross_fit",
            processing_class=tokenizer,
            show_progress=False,
        )
    return np.array(estimate.dataset["strength_mean"])


def test_cross_fitted_strength_ranks_the_injected_flips_first():
    """Preference strength where its premise holds (an ensemble that learns the true preference): -mu of a cross-fitted
    ensemble (4 members, 60 steps, 4000 pairs, 20% uniform flips) ranks the flipped pairs above the clean ones, and
    the paper's rule "flip where mu < 0" catches most flips."""
    pairs = preference_pairs(4000, temperature=None, flip_rate=0.2, seed=0)
    mu, flipped = cross_fitted_strength(training_columns(pairs), max_steps=60), np.array(pairs["flipped"])
    # AUROC of -mu for the flips, by its rank-sum definition (ties count one half).
    ranks = stats.rankdata(-mu)
    auroc = (ranks[flipped].sum() - flipped.sum() * (flipped.sum() + 1) / 2) / (flipped.sum() * (~flipped).sum())
    assert auroc >= 0.82  # benchmark: 0.853, s.d. 0.010 over 3 seeds (0.859 at seed 0)
    assert (mu[flipped] < 0).mean() >= 0.70  # benchmark: 77.6%, s.d. 0.8


MORE_SOURCES = ["chatty", "terse", "careful"]


def more_shared_ece(**settings) -> float:
    """ECE on Bradley-Terry-labelled shared-preference pairs of a model trained on the three disagreeing sources
    (1500 pairs each at T = 0.5, batches of 10 pairs per source) with `settings`, as world_more.py measures it."""
    train = training_columns(preference_pairs(1500, sources=MORE_SOURCES, temperature=0.5, seed=0))
    model, tokenizer = train_reward_model(train, seed=0, per_device_train_batch_size=30, **settings)
    shared = relabelled(shared_preference_pairs(600, seed=50_000), temperature=0.5, seed=0)
    return expected_calibration_error(predicted_margins(model, tokenizer, shared))


def test_more_as_the_paper_writes_it_calibrates_the_shared_preference_better_than_multitask():
    """MORE's premise: sources share one preference (relevance, helpfulness) and disagree on others (verbosity, harm).
    Min-norm weights over the batch's raw reward-head gradients (the paper's Eq. 9) keep the shared preference better
    calibrated than uniform weights (MultiTask). The package's default (l2-normalised gradients, moving average 0.99)
    lowered it in only 3 of 5 seeds (10 +- 24%), so it is not asserted; neither is the issue's target of 30%."""
    multitask = more_shared_ece(lambda_method="uniform")
    more = more_shared_ece(lambda_method="min_norm", gradient_normalization="none", lambda_momentum=1.0)
    # Benchmark: 23.3 +- 18.3% lower over 5 seeds, lower in every seed (lowest 11.5%; seed 0: 0.094 against 0.116).
    assert 1 - more / multitask >= 0.05


def mean_source_ece(model, tokenizer) -> float:
    """The ECE on each source's clean held-out pairs relabelled by Bradley-Terry (T = 0.5), averaged over sources."""
    eces = []
    for number, source in enumerate(MORE_SOURCES):
        clean = preference_pairs(600, sources=[source], temperature=None, seed=40_000 + number)
        labelled = relabelled(clean, temperature=0.5, seed=0)
        eces.append(expected_calibration_error(predicted_margins(model, tokenizer, labelled)))
    return float(np.mean(eces))


def test_soft_labels_and_margins_restore_calibration_under_flipped_labels():
    """The denoising losses where their premise holds (wrong labels an ensemble can see): with 20% of the three
    sources' labels flipped, "soft label + margin" (label smoothing 0.1 where the cross-fitted mu < 0, adaptive
    margin 1) on top of MultiTask brings the ECE against the true Bradley-Terry labels down to near its noise-free
    level. Its accuracy is unchanged; what the flips cost in accuracy it does not recover (benchmarks/RESULTS.md)."""
    train = training_columns(preference_pairs(1500, sources=MORE_SOURCES, temperature=0.5, flip_rate=0.2, seed=0))
    baseline = train_reward_model(train, seed=0, per_device_train_batch_size=30)
    mu = cross_fitted_strength(train, per_device_train_batch_size=30)
    denoised = train_reward_model(
        train.add_column("strength_mean", mu.tolist()),
        seed=0,
        per_device_train_batch_size=30,
        label_smoothing=0.1,
        label_smoothing_below_strength=0.0,
        adaptive_margin=1.0,
    )
    # Benchmark (world_more.py, 5 seeds): 54 +- 10% lower, s.d. 7.7 (lowest 44%; seed 0: 0.125 -> 0.043).
    assert 1 - mean_source_ece(*denoised) / mean_source_ece(*baseline) >= 0.30


# =====================================================================================================================
# WARM (benchmarks/world_warm.py, issue 38)
#
# Seed 0 of the benchmark exactly: 4 members on the same 2,000 Bradley-Terry pairs (T = 0.5), each with its own data
# order, scored on 600 clean held-out pairs of the training style. About 65 s on one thread.
# =====================================================================================================================


def warm_accuracies(initial_model, **settings) -> tuple[float, float, float]:
    """Gold-order accuracy of member 0, of the 4 members' prediction ensemble and of their weight average."""
    from trl_more.rewards import average_reward_models

    train = training_columns(preference_pairs(2000, temperature=0.5, seed=0))
    clean = preference_pairs(600, temperature=None, seed=60_000)
    members = [train_reward_model(train, member, initial_model=initial_model, **settings)[0] for member in range(4)]
    tokenizer = world_tokenizer()
    margins = [predicted_margins(model, tokenizer, clean) for model in members]
    average = predicted_margins(average_reward_models(members), tokenizer, clean)
    gold = np.asarray(clean["gold_margin"])
    return tuple(gold_accuracy(values, gold) for values in (margins[0], np.mean(margins, axis=0), average))


def test_warm_averages_members_from_one_warm_up_as_well_as_their_ensemble_and_others_not():
    """WARM where its premise holds: members fine-tuned (200 steps at lr 1e-3) from one reward model warmed up on
    other pairs average into a model as accurate as their prediction ensemble (benchmark: -0.45 +- 0.63 points over 5
    seeds, s.d. 0.5; seed 0: -1.3). Where it does not, members each from its own random initialisation, the average
    is far below the ensemble and below a single member (benchmark: -9.0 +- 5.8 points against the ensemble; seed 0:
    -15.4, and 77.7% against member 0's 89.5%)."""
    warm_up_pairs = training_columns(preference_pairs(2000, temperature=0.5, seed=70_000))
    start, _ = train_reward_model(warm_up_pairs, 0)
    _, ensemble, average = warm_accuracies(start, max_steps=200, learning_rate=1e-3)
    assert average >= ensemble - 0.02  # the benchmark's mean minus 3 s.d.
    member, ensemble, average = warm_accuracies(None)
    assert average <= ensemble - 0.03 and average < member
