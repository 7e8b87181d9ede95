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
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer
from trl_more.rewards import RewardModelScorer
from trl_more.synthetic import (
    gold_accuracy,
    gold_reward,
    gold_reward_model,
    policy_prompts,
    preference_pairs,
    sft_examples,
    training_columns,
    world_tokenizer,
)
from trl_more.synthetic.models import train_reward_model
from trl_more.testing import tiny_causal_lm


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


def rjs_sft_policy(tokenizer):
    """The world's tiny policy taught its response style (TRL's SFTTrainer on `sft_examples`)."""
    from trl import SFTConfig, SFTTrainer

    policy = tiny_causal_lm("qwen2", tokenizer, seed=RJS_SEED)
    with tempfile.TemporaryDirectory() as output_dir:
        args = SFTConfig(
            output_dir, max_steps=300, per_device_train_batch_size=32, learning_rate=3e-3, lr_scheduler_type="cosine",
            warmup_steps=10, max_length=64, gradient_checkpointing=False, save_strategy="no", logging_strategy="no",
            report_to="none", bf16=False, seed=RJS_SEED, disable_tqdm=True,
        )  # fmt: skip
        SFTTrainer(
            model=policy, args=args, train_dataset=sft_examples(2000, seed=RJS_SEED), processing_class=tokenizer
        ).train()
    return policy


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
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("rjs-world")
    tokenizer = world_tokenizer()
    rjs_sft_policy(tokenizer).save_pretrained(folder / "policy")
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
            output_dir, num_iterations=RJS_ITERATIONS, prompts_per_iteration=128, num_samples_per_prompt=RJS_SAMPLES,
            selection="best_per_prompt", temperature=1.0, max_new_tokens=16, generation_batch_size=64,
            reward_batch_size=256, max_length=64, per_device_train_batch_size=32, learning_rate=3e-3,
            lr_scheduler_type="constant", num_epochs_per_iteration=2, max_grad_norm=1.0, gradient_checkpointing=False,
            save_strategy="no", logging_strategy="no", report_to="none", bf16=False, disable_tqdm=True, seed=RJS_SEED,
            metarm=arm == "metarm", metarm_learning_rate=1e-3, metarm_meta_learning_rate=1.0, metarm_batch_size=32,
            metarm_meta_batch_size=16, metarm_steps_per_iteration=32,
        )  # fmt: skip
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
