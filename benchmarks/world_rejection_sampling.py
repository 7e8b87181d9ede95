"""Rejection sampling and MetaRM in the known-answer world (issue 35, measurements 7 and 4).

Where the premises of both methods hold by construction and the right answer is known: does rejection sampling (RJS)
raise the gold reward, does a proxy's flaw show up as over-optimisation, and does MetaRM keep a proxy accurate on the
policy's new samples? Everything reaches the package through its public trainers and configs.

The setting, per seed (the seed fixes the initialisation of the policy and of the proxy, their data and all sampling):

1. Policy: `trl_more.testing.tiny_causal_lm("qwen2", world_tokenizer())` taught the world's response style by TRL's
   `SFTTrainer` on `sft_examples` (`TRAINING_STYLE`, prompt-completion, 800 steps). It then answers like the world (a
   topic word, then helpful, harmful and filler words) with a gold reward well below the best (0.23 on average over
   5 seeds, 1.96 for the best of 4 samples, 3.49 for the best response to every prompt), so RJS has room to improve. A model this small does not learn to draw
   helpful words without replacement: about 10% of its samples repeat one, which the gold reward ignores.
2. Proxy: a tiny reward model (`world_common.train_reward_model`, 400 steps of 32 pairs) trained on `preference_pairs`
   of `TRAINING_STYLE` with Bradley-Terry labels (temperature 0.5). Why these pairs rather than pairs of the SFT
   policy's own samples: the SFT policy imitates `TRAINING_STYLE`, so the proxy is accurate where RJS starts (89%
   gold-order accuracy on held-out pairs, 86% on the SFT policy's samples; the premise of both methods: a reward
   model good on the data it saw); and these
   pairs never repeat a helpful word, so the proxy cannot learn that a repeat is worth nothing and counts it as
   helpfulness. That is the flaw a policy optimised against it can exploit (over-optimisation, measurement 7), and
   the repeats, extra helpful words and fewer harmful ones that the policy moves to are a shift the proxy has not seen
   (MetaRM's premise, measurement 4). Pairs of the policy's own samples would contain repeats and teach the proxy
   part of the answer.
3. RJS (`RejectionSamplingTrainer`: 5 iterations of 256 fresh prompts x 4 samples, best of 4, 2 epochs on the
   selected samples at learning rate 1e-3), the same policy, prompts and sampling seeds in every arm, selecting with:
   - `gold`: the gold reward itself (`gold_reward_model`): what RJS does with a perfect reward model;
   - `fixed`: the proxy as trained;
   - `metarm` at eta = 0, 0.3, 1, 3: the proxy updated before every iteration's scoring (`metarm=True`) by 128 steps
     of AdamW (learning rate 1e-3) on 32 of the original pairs, each step's gradient taken after a meta step of
     size eta up the difference loss J on 16 of the iteration's prompts with their 4 unlabeled samples. eta = 0 is the
     same training without the meta step: the control that tells MetaRM's effect from that of more training;
   - `labelled`: the same 128 steps without a meta step, on pairs of every iteration's samples ordered by the gold
     reward, instead of the original pairs (samples 0-1 and 2-3 of every prompt, gold ties left out): the upper bound,
     which needs labels no real run has (`rjs_common.LabelledUpdatesTrainer`).
4. Measured before the first iteration (round 0) and after every iteration, on 256 evaluation prompts drawn apart
   from the RJS prompts (4 samples each of the current policy, one sampling seed throughout):
   - the gold reward of the samples (mean) and how often they repeat a helpful word;
   - the arm's reward model's gold-order accuracy on every pair of samples of one prompt whose gold rewards differ
     (the current policy's distribution); next to it, the initial proxy's accuracy on the very same pairs, so that
     what the updates changed is a paired difference; and the arm's accuracy on 1000 held-out pairs of
     `TRAINING_STYLE` (in distribution);
   - the proxy-gold gap of the iteration's selected samples: their mean proxy reward minus their mean gold reward,
     each standardised on the initial policy's evaluation samples (mean 0 and standard deviation 1 under that
     reward: a proxy's scale is arbitrary, so both are in units of the spread of the policy RJS started from; an
     updated proxy is standardised with its current weights). Selection alone makes the gap positive (the proxy's
     best of 4 is partly its error); a gap that grows as the policy moves is over-optimisation made visible;
   - whether MetaRM's meta step orders the current policy's samples more like the gold: the change of the arm's
     proxy's gold-order accuracy on their pairs after one meta step up J on them (eta 1), next to a step of the same
     length down the Bradley-Terry loss of their gold-ordered pairs (written by hand, like 5).
5. A hand-written MetaRM update (the three steps of docs/metarm.md in plain torch, with AdamW and clipping as the
   package applies them) against the package's `RewardModelUpdater` from the same proxy on the same data (batches
   as large as the data, so that the package's choice of batches does not matter): the parameters after 3 updates
   must agree far more closely than the meta step moves them, which tells an implementation bug from a method that
   does not help here.

Targets (issue 35): MetaRM at least 3 points above the fixed proxy on the current policy's samples after 3 rounds,
at most 1 point lower in distribution; with a proxy, the gold reward per iteration and the proxy-gold gap growing as
the policy moves (over-optimisation made visible).

    python benchmarks/world_rejection_sampling.py               # 5 seeds x 7 arms (36 min on 2 shared cores)
    python benchmarks/world_rejection_sampling.py --smoke       # tiny settings, 1 seed, about 1.5 minutes
    python benchmarks/world_rejection_sampling.py --test_point  # the behaviour tests' settings, 5 seeds (5 minutes)

Results are cached in outputs/benchmarks/world/world_rejection_sampling/ (a rerun retrains nothing it has); the report
is written there and printed, the plot goes to benchmarks/results/world_rejection_sampling.png.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rjs_common import EveryIteration, LabelledUpdatesTrainer
from run_all import machine_description
from world_common import (
    CACHE,
    RESULTS_DIR,
    cell,
    interval,
    predicted_margins,
    run_jobs,
    train_reward_model,
    write_report,
)


BENCHMARK = "world_rejection_sampling"
METARM_ETAS = (0.0, 0.3, 1.0, 3.0)  # eta 0: the same updates without the meta step
TARGET_ROUND = 3
REFERENCE_STEPS = 3
MAX_GRAD_NORM = 1.0  # the RJS config's default, which the package's reward-model updates clip with
DIAGNOSTIC_ETA = 1.0  # the meta step of `meta_step_accuracy_change`


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a job depends on (part of every cached job's key)."""

    policy_steps: int = 800  # SFT steps of 32 examples at learning rate 3e-3 (cosine)
    sft_examples: int = 4000
    proxy_pairs: int = 2000
    proxy_steps: int = 400
    test_pairs: int = 1000
    label_temperature: float = 0.5  # Bradley-Terry temperature of the proxy's labels
    iterations: int = 5
    prompts_per_iteration: int = 256
    samples_per_prompt: int = 4
    max_new_tokens: int = 16
    epochs_per_iteration: int = 2
    rjs_learning_rate: float = 1e-3
    eval_prompts: int = 256
    update_learning_rate: float = 1e-3  # alpha of the proxy's updates (every updated arm)
    update_batch_size: int = 32  # preference pairs per update step
    meta_batch_size: int = 16  # prompts (with their samples) per meta step
    update_steps: int = 128  # per iteration


SMOKE = Settings(
    policy_steps=150,
    sft_examples=600,
    proxy_pairs=300,
    proxy_steps=60,
    test_pairs=200,
    iterations=2,
    prompts_per_iteration=32,
    eval_prompts=32,
    update_steps=4,
)
# The behaviour tests' point (tests/test_world_behaviour.py runs seed 0 of it; `--test_point` runs every seed, so that
# their margins come from this spread): smaller models and data, 3 iterations of 128 prompts at a higher learning
# rate (the policy moves about as far as in 3-4 default iterations), MetaRM at eta 1 with 32 steps per iteration.
TEST_POINT = Settings(
    policy_steps=300,
    sft_examples=2000,
    proxy_pairs=1000,
    proxy_steps=200,
    test_pairs=500,
    iterations=3,
    prompts_per_iteration=128,
    rjs_learning_rate=3e-3,
    eval_prompts=128,
    update_steps=32,
)
TEST_POINT_ARMS = (("gold", 0.0), ("fixed", 0.0), ("metarm", 1.0))
# The fields the initial models depend on (their folder's name).
INITIAL_FIELDS = ("policy_steps", "sft_examples", "proxy_pairs", "proxy_steps", "label_temperature")


def arm_name(arm: str, eta: float) -> str:
    return f"metarm eta={eta:g}" if arm == "metarm" else arm


def arms(etas: tuple[float, ...]) -> list[tuple[str, float]]:
    """(arm, eta) of every arm: the selector, and the meta step of the updated proxy."""
    return [("gold", 0.0), ("fixed", 0.0), *(("metarm", eta) for eta in etas), ("labelled", 0.0)]


# ---------------------------------------------------------------------------------------------------------------------
# The world's measurements
# ---------------------------------------------------------------------------------------------------------------------


def repeats_helpful(response: str) -> bool:
    """Whether a response names some helpful word more than once (worth nothing to the gold reward)."""
    from trl_more.synthetic.world import HELPFUL_WORDS

    helpful = [word for word in response.split() if word in HELPFUL_WORDS]
    return len(helpful) > len(set(helpful))


def best_gold(prompt) -> float:
    """The highest gold reward of any response to `prompt`: its topic and three distinct helpful words, nothing else
    (harm and length only cost; for a brief prompt a word costs 0.5 and a helpful word earns 1)."""
    from trl_more.synthetic import gold_reward
    from trl_more.synthetic.world import HELPFUL_WORDS

    return gold_reward(prompt, " " + " ".join([prompt.topic, *HELPFUL_WORDS[:3]]))


def gold_of(prompts, samples: list[list[str]]) -> np.ndarray:
    """(prompts, samples) gold rewards."""
    from trl_more.synthetic import gold_reward

    return np.array([[gold_reward(prompt, text) for text in group] for prompt, group in zip(prompts, samples)])


def within_prompt_pairs(gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompt, first sample, second sample) of every pair of samples of one prompt whose gold rewards differ, the
    gold-better sample first."""
    first, second = np.triu_indices(gold.shape[1], k=1)
    rows = np.repeat(np.arange(gold.shape[0]), len(first))
    first, second = np.tile(first, gold.shape[0]), np.tile(second, gold.shape[0])
    margins = gold[rows, first] - gold[rows, second]
    decided = margins != 0
    better = np.where(margins > 0, first, second)[decided]
    worse = np.where(margins > 0, second, first)[decided]
    return rows[decided], better, worse


def within_prompt_accuracy(rewards: np.ndarray, gold: np.ndarray) -> float:
    """Gold-order accuracy over every pair of samples of one prompt (rows: prompts) whose gold rewards differ; a
    predicted tie counts as wrong."""
    rows, better, worse = within_prompt_pairs(gold)
    return float(np.mean(rewards[rows, better] > rewards[rows, worse]))


def gold_ordered_pairs(prompt: str, responses: list[str]) -> list[tuple[str, str]]:
    """Samples (0, 1), (2, 3), ... of one prompt as (chosen, rejected) in the gold order; the pairs the gold ties are
    left out (they say nothing about the order)."""
    from trl_more.synthetic import gold_reward

    pairs = []
    for first, second in zip(responses[0::2], responses[1::2]):
        margin = gold_reward(prompt, first) - gold_reward(prompt, second)
        if margin != 0:
            pairs.append((first, second) if margin > 0 else (second, first))
    return pairs


# ---------------------------------------------------------------------------------------------------------------------
# MetaRM written by hand (docs/metarm.md): the reference of the package's updates and the meta-step diagnostic
# ---------------------------------------------------------------------------------------------------------------------


def sequence_rewards(model, sequences: list[list[int]], pad_token_id: int):
    """r(x, y) of every token sequence (right-padded, read at the last real token), with the autograd graph."""
    import torch

    input_ids = torch.full((len(sequences), max(map(len, sequences))), pad_token_id)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()


def difference_loss(rewards):
    """J = (2 / k^2) sum_{i<j} sigmoid(|r_i - r_j|), averaged over the prompts (rows)."""
    import torch

    k = rewards.shape[1]
    first, second = torch.triu_indices(k, k, offset=1)
    return (2.0 / k**2) * torch.sigmoid((rewards[:, first] - rewards[:, second]).abs()).sum(dim=1).mean()


def bradley_terry_loss(model, pairs: list[tuple[list[int], list[int]]], pad_token_id: int):
    """-log sigmoid(r(chosen) - r(rejected)), averaged over the pairs."""
    import torch

    rewards = sequence_rewards(
        model, [chosen for chosen, _ in pairs] + [rejected for _, rejected in pairs], pad_token_id
    )
    return -torch.nn.functional.logsigmoid(rewards[: len(pairs)] - rewards[len(pairs) :]).mean()


def meta_objective(model, meta_rows: list[list[list[int]]], pad_token_id: int):
    """J of the meta data (k token sequences per prompt)."""
    flat = [ids for row in meta_rows for ids in row]
    return difference_loss(sequence_rewards(model, flat, pad_token_id).view(len(meta_rows), -1))


def reference_metarm_updates(model, meta_rows, pairs, steps: int, eta: float, alpha: float, pad_token_id: int):
    """`steps` MetaRM updates of docs/metarm.md on all of `meta_rows` and `pairs`: theta' = theta + eta grad J;
    g = grad of the Bradley-Terry loss at theta'; theta restored; g clipped to norm `MAX_GRAD_NORM`; AdamW (no weight
    decay) applies g at learning rate alpha."""
    import torch

    parameters = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=alpha, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        meta_gradient = torch.autograd.grad(meta_objective(model, meta_rows, pad_token_id), parameters)
        theta = [param.detach().clone() for param in parameters]
        with torch.no_grad():
            for param, gradient in zip(parameters, meta_gradient):
                param.add_(gradient, alpha=eta)
        optimizer.zero_grad()
        bradley_terry_loss(model, pairs, pad_token_id).backward()
        with torch.no_grad():
            for param, value in zip(parameters, theta):
                param.copy_(value)
        torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
        optimizer.step()
    return model.eval()


def meta_step_accuracy_change(model, rows, gold: np.ndarray, pad_token_id: int) -> tuple[float, float]:
    """Does MetaRM's meta step order the policy's samples more like the gold reward? The change of the gold-order
    accuracy on the pairs of samples of one prompt (`rows`: their token ids, `gold`: their gold rewards) when the
    proxy takes one meta step theta + eta grad J on those samples (eta = `DIAGNOSTIC_ETA`), and, for scale, when it
    takes a step of the same length down the Bradley-Terry loss of their gold-ordered pairs (what a step that size
    could do with the labels). Accuracy is blind to the reward's scale, which dominates both gradients (spreading the
    rewards raises J and, where most pairs are ordered right, lowers the loss), so their cosine would say little."""
    import torch

    model = copy.deepcopy(model).eval().requires_grad_(True)
    parameters = list(model.parameters())
    flat = [ids for row in rows for ids in row]
    pair_rows, better, worse = within_prompt_pairs(gold)
    gold_pairs = [(rows[p][b], rows[p][w]) for p, b, w in zip(pair_rows, better, worse)]

    def gradient(objective) -> list:
        grads = torch.autograd.grad(objective, parameters, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, parameters)]

    def accuracy_after(step: list) -> float:
        with torch.no_grad():
            moved = copy.deepcopy(model)
            for param, change in zip(moved.parameters(), step):
                param.add_(change)
            rewards = sequence_rewards(moved, flat, pad_token_id).view(len(rows), -1).double().numpy()
        return within_prompt_accuracy(rewards, gold)

    meta_step = [DIAGNOSTIC_ETA * g for g in gradient(meta_objective(model, rows, pad_token_id))]
    descent = gradient(bradley_terry_loss(model, gold_pairs, pad_token_id))
    ratio = torch.sqrt(sum(g.square().sum() for g in meta_step) / sum(g.square().sum() for g in descent))
    before = accuracy_after([torch.zeros_like(p) for p in parameters])
    return accuracy_after(meta_step) - before, accuracy_after([-ratio * g for g in descent]) - before


# ---------------------------------------------------------------------------------------------------------------------
# Initial models: the SFT policy and the proxy
# ---------------------------------------------------------------------------------------------------------------------


def models_folder(seed: int, settings: dict) -> Path:
    key = json.dumps({name: settings[name] for name in INITIAL_FIELDS}, sort_keys=True)
    return CACHE / BENCHMARK / f"models-{hashlib.sha1(key.encode()).hexdigest()[:12]}" / f"seed-{seed}"


def evaluation_prompts(seed: int, options: Settings) -> list:
    """The prompts every evaluation of the seed answers (drawn apart from the RJS prompts)."""
    from trl_more.synthetic import policy_prompts

    return policy_prompts(options.eval_prompts, seed=10_000 + seed)


def proxy_pairs(seed: int, options: Settings, test: bool = False):
    """The proxy's training pairs, or its held-out test pairs (the in-distribution accuracy)."""
    from trl_more.synthetic import preference_pairs

    if test:
        return preference_pairs(options.test_pairs, seed=10_000 + seed, temperature=options.label_temperature)
    return preference_pairs(options.proxy_pairs, seed=seed, temperature=options.label_temperature)


def in_distribution_accuracy(model, tokenizer, pairs) -> float:
    from trl_more.synthetic import gold_accuracy

    return gold_accuracy(predicted_margins(model, tokenizer, pairs), np.asarray(pairs["gold_margin"]))


def scorer_accuracy(scorer, pairs) -> float:
    """Gold-order accuracy on `pairs` of a `RewardModelScorer`'s combined reward (an ensemble's selection score)."""
    from trl_more.synthetic import gold_accuracy

    chosen = scorer.score(list(pairs["prompt"]), list(pairs["chosen"])).combined
    rejected = scorer.score(list(pairs["prompt"]), list(pairs["rejected"])).combined
    return gold_accuracy((chosen - rejected).double().numpy(), np.asarray(pairs["gold_margin"]))


def rewards_of(scorer, prompts, samples: list[list[str]]) -> np.ndarray:
    """(prompts, samples) rewards of a `RewardModelScorer`."""
    texts = [text for group in samples for text in group]
    prompt_texts = [prompt.text for prompt, group in zip(prompts, samples) for _ in group]
    return scorer.score(prompt_texts, texts).combined.double().numpy().reshape(len(samples), -1)


def token_rows(tokenizer, prompts, samples: list[list[str]]) -> list[list[list[int]]]:
    """The token ids of every (prompt, sample) as a reward model reads them, prompt by prompt."""
    from trl_more.tokenization import tokenize_scored_response

    return [
        [tokenize_scored_response(tokenizer, prompt.text, text or " ")[0] for text in group]
        for prompt, group in zip(prompts, samples)
    ]


def sample_responses(policy, tokenizer, prompts, options: Settings, seed: int) -> list[list[str]]:
    """`samples_per_prompt` responses per prompt from `policy`, sampled as RJS samples them (temperature 1)."""
    from accelerate import Accelerator

    from trl_more.rejection_sampling.generation import SamplingSettings, TransformersGenerationBackend

    backend = TransformersGenerationBackend(
        Accelerator(cpu=True),
        SamplingSettings(max_new_tokens=options.max_new_tokens, temperature=1.0),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_ids=[tokenizer.eos_token_id],
        batch_size=64,
        show_progress=False,
    )
    prompt_ids = [tokenizer(text=prompt.text)["input_ids"] for prompt in prompts]
    samples = backend.generate(policy, prompt_ids, options.samples_per_prompt, seed=seed)
    return [[tokenizer.decode(ids, skip_special_tokens=True) for ids in group] for group in samples]


def load_initial_models(seed: int, settings: dict):
    """The seed's SFT policy and proxy, trained on first use and read back from their folder afterwards."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from trl_more.synthetic import training_columns, world_tokenizer
    from trl_more.synthetic.models import train_sft_policy

    options = Settings(**settings)
    folder = models_folder(seed, settings)
    tokenizer = world_tokenizer()
    if not (folder / "proxy" / "config.json").is_file():
        policy = train_sft_policy(seed, options.policy_steps, options.sft_examples)
        policy.save_pretrained(folder / "policy")
        proxy, _ = train_reward_model(
            training_columns(proxy_pairs(seed, options)), seed, max_steps=options.proxy_steps
        )
        proxy.save_pretrained(folder / "proxy")
    policy = AutoModelForCausalLM.from_pretrained(folder / "policy")
    proxy = AutoModelForSequenceClassification.from_pretrained(folder / "proxy")
    return policy, proxy, tokenizer


def initial_job(seed: int, settings: dict) -> dict:
    """The seed's models before any RJS: samples of the SFT policy, their gold reward against the best of 4 and the
    best possible, how often they repeat a helpful word; the proxy's accuracy in distribution and on those samples;
    and the package's MetaRM updates against the hand-written ones, from this proxy."""
    from trl_more.rewards import RewardModelScorer

    options = Settings(**settings)
    policy, proxy, tokenizer = load_initial_models(seed, settings)
    prompts = evaluation_prompts(seed, options)
    samples = sample_responses(policy.eval(), tokenizer, prompts, options, seed)
    gold = gold_of(prompts, samples)
    flat = [text for group in samples for text in group]
    proxy_rewards = rewards_of(RewardModelScorer([proxy.eval()], [tokenizer], batch_size=256), prompts, samples)
    return {
        "examples": [f"{prompt.text}{group[0]}" for prompt, group in zip(prompts[:6], samples)],
        "gold_mean": float(gold.mean()),
        "gold_best_of_samples": float(gold.max(axis=1).mean()),
        "gold_best_possible": float(np.mean([best_gold(prompt) for prompt in prompts])),
        "repeat_rate": float(np.mean([repeats_helpful(text) for text in flat])),
        "words": float(np.mean([len(text.split()) for text in flat])),
        "proxy_accuracy_in_distribution": in_distribution_accuracy(proxy, tokenizer, proxy_pairs(seed, options, True)),
        "proxy_accuracy_on_policy": within_prompt_accuracy(proxy_rewards, gold),
        "reference": reference_check(proxy, tokenizer, token_rows(tokenizer, prompts, samples), seed, options),
    }


def reference_check(proxy, tokenizer, rows, seed: int, options: Settings) -> dict:
    """The package's `RewardModelUpdater` (what `metarm=True` runs) against `reference_metarm_updates`, from copies of
    `proxy`, for `REFERENCE_STEPS` updates at eta 1 on the first `meta_batch_size` prompts' samples and the first
    `update_batch_size` training pairs (every batch is all of them). Returns the largest parameter difference between
    the two, how far the package moved the parameters, and how far the meta step moved them (the hand-written updates
    with eta 1 against eta 0): agreement means the first is far below the third."""
    import torch
    from accelerate import Accelerator

    from trl_more.metarm.reward_model_updates import RewardModelUpdater
    from trl_more.synthetic import training_columns

    meta_rows = rows[: options.meta_batch_size]
    pairs = training_columns(proxy_pairs(seed, options)).select(range(options.update_batch_size))
    package = copy.deepcopy(proxy)
    updater = RewardModelUpdater(
        package,
        tokenizer,
        pairs,
        Accelerator(cpu=True),
        learning_rate=options.update_learning_rate,
        meta_learning_rate=1.0,
        batch_size=options.update_batch_size,
        meta_batch_size=options.meta_batch_size,
        steps=REFERENCE_STEPS,
        abs_epsilon=0.0,
        max_length=None,
        max_grad_norm=MAX_GRAD_NORM,
        seed=seed,
    )
    updater.update(0, meta_rows, show_progress=False)
    # The pairs as the package tokenized them (TRL's reward-data preparation): the step is what is checked here.
    pad = tokenizer.pad_token_id
    update = dict(steps=REFERENCE_STEPS, alpha=options.update_learning_rate, pad_token_id=pad)
    reference = reference_metarm_updates(copy.deepcopy(proxy), meta_rows, updater.pairs, eta=1.0, **update)
    without_meta = reference_metarm_updates(copy.deepcopy(proxy), meta_rows, updater.pairs, eta=0.0, **update)

    def largest_difference(first, second) -> float:
        return max((a - b).abs().max().item() for a, b in zip(first.parameters(), second.parameters()))

    with torch.no_grad():
        return {
            "package_vs_reference": largest_difference(package, reference),
            "moved": largest_difference(package, proxy),
            "meta_step_effect": largest_difference(reference, without_meta),
        }


# ---------------------------------------------------------------------------------------------------------------------
# One RJS run per (seed, arm)
# ---------------------------------------------------------------------------------------------------------------------


def rjs_job(seed: int, arm: str, eta: float, settings: dict) -> dict:
    """RJS of the seed's SFT policy with the arm's selector; the measurements of every round (round 0: the initial
    policy; round t: after t iterations)."""
    from trl_more.synthetic import gold_reward_model, training_columns

    options = Settings(**settings)
    policy, proxy, tokenizer = load_initial_models(seed, settings)
    updated = arm in ("metarm", "labelled")
    return run_rjs(
        seed,
        options,
        policy,
        tokenizer,
        gold_reward_model(tokenizer) if arm == "gold" else proxy,
        initial_proxy=copy.deepcopy(proxy).eval(),
        trainer_class=LabelledUpdatesTrainer if arm == "labelled" else None,
        diagnostics=arm != "gold",
        reward_train_dataset=training_columns(proxy_pairs(seed, options)) if updated else None,
        metarm=updated,
        metarm_meta_learning_rate=eta,
        **({"label_pairs": gold_ordered_pairs} if arm == "labelled" else {}),
    )


def run_rjs(
    seed: int,
    options: Settings,
    policy,
    tokenizer,
    reward_models,
    initial_proxy,
    trainer_class=None,
    diagnostics: bool = True,
    reward_train_dataset=None,
    label_pairs=None,
    **config_settings,
) -> dict:
    """RJS of `policy` selecting with `reward_models` (one model or a list, combined as `config_settings` say, e.g.
    `ensemble="mean_minus_std"`), measured every round against the gold reward; `initial_proxy` is the single proxy
    whose accuracy on the same samples is reported next to the arm's. `diagnostics`: also the meta-step diagnostic
    (`meta_step_accuracy_change`) of the first reward model. The other arguments go to the trainer (`trainer_class`,
    default `RejectionSamplingTrainer`) and its `RejectionSamplingConfig`."""
    from datasets import Dataset

    from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer
    from trl_more.rewards import RewardModelScorer
    from trl_more.synthetic import gold_reward, policy_prompts

    prompts = policy_prompts(options.iterations * options.prompts_per_iteration, seed=seed)
    extra = {} if label_pairs is None else {"label_pairs": label_pairs}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as output_dir:
        config = RejectionSamplingConfig(
            output_dir,
            num_iterations=options.iterations,
            prompts_per_iteration=options.prompts_per_iteration,
            num_samples_per_prompt=options.samples_per_prompt,
            selection="best_per_prompt",
            temperature=1.0,
            max_new_tokens=options.max_new_tokens,
            generation_batch_size=64,
            reward_batch_size=256,
            max_length=64,
            per_device_train_batch_size=32,
            learning_rate=options.rjs_learning_rate,
            lr_scheduler_type="constant",
            num_epochs_per_iteration=options.epochs_per_iteration,
            max_grad_norm=MAX_GRAD_NORM,
            gradient_checkpointing=False,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            bf16=False,
            disable_tqdm=True,
            seed=seed,
            metarm_learning_rate=options.update_learning_rate,
            metarm_per_device_train_batch_size=options.update_batch_size,
            metarm_per_device_meta_batch_size=options.meta_batch_size,
            metarm_steps_per_iteration=options.update_steps,
            **config_settings,
        )
        trainer = (trainer_class or RejectionSamplingTrainer)(
            model=policy,
            reward_models=reward_models,
            args=config,
            train_dataset=Dataset.from_dict({"prompt": [prompt.text for prompt in prompts]}),
            processing_class=tokenizer,
            reward_processing_classes=tokenizer,
            reward_train_dataset=reward_train_dataset,
            **extra,
        )
        eval_prompts = evaluation_prompts(seed, options)
        eval_ids = [tokenizer(text=prompt.text)["input_ids"] for prompt in eval_prompts]
        initial_scorer = RewardModelScorer([initial_proxy], [tokenizer], batch_size=256)
        test = proxy_pairs(seed, options, test=True)
        rounds: list[dict] = []
        reference: dict = {}  # the initial policy's evaluation samples: the scale of the proxy-gold gap

        def evaluate(done: int) -> None:
            generated = trainer.generation_backend.generate(
                trainer.model_wrapped, eval_ids, options.samples_per_prompt, seed=seed
            )
            samples = [[tokenizer.decode(ids, skip_special_tokens=True) for ids in group] for group in generated]
            gold = gold_of(eval_prompts, samples)
            if done == 0:
                reference.update(samples=samples, gold_mean=gold.mean(), gold_std=gold.std())
            flat = [text for group in samples for text in group]
            row = {
                "round": done,
                "gold_mean": float(gold.mean()),
                "repeat_rate": float(np.mean([repeats_helpful(text) for text in flat])),
                "words": float(np.mean([len(text.split()) for text in flat])),
                "accuracy_on_policy": within_prompt_accuracy(
                    rewards_of(trainer.reward_scorer, eval_prompts, samples), gold
                ),
                "initial_proxy_accuracy_on_policy": within_prompt_accuracy(
                    rewards_of(initial_scorer, eval_prompts, samples), gold
                ),
                "accuracy_in_distribution": in_distribution_accuracy(trainer.reward_models[0], tokenizer, test)
                if len(trainer.reward_models) == 1
                else scorer_accuracy(trainer.reward_scorer, test),
            }
            if diagnostics:
                row["meta_step_accuracy_change"], row["gold_step_accuracy_change"] = meta_step_accuracy_change(
                    trainer.reward_models[0],
                    token_rows(tokenizer, eval_prompts, samples),
                    gold,
                    tokenizer.pad_token_id,
                )
            if done > 0:
                on_reference = rewards_of(trainer.reward_scorer, eval_prompts, reference["samples"])
                selected = [sample for sample in trainer.iteration_store.read(done - 1) if sample["selected"]]
                proxy_rewards = np.array([sample["reward"] for sample in selected])
                selected_gold = np.array([gold_reward(sample["prompt"], sample["response"]) for sample in selected])
                proxy_z = (proxy_rewards.mean() - on_reference.mean()) / on_reference.std()
                gold_z = (selected_gold.mean() - reference["gold_mean"]) / reference["gold_std"]
                metrics = json.loads((trainer.iteration_store.path(done - 1) / "metrics.json").read_text())
                row.update(
                    selected_gold_mean=float(selected_gold.mean()),
                    selected_proxy_z=float(proxy_z),
                    selected_gold_z=float(gold_z),
                    gap=float(proxy_z - gold_z),
                    selected_repeat_rate=float(np.mean([repeats_helpful(s["response"]) for s in selected])),
                    **{name.replace("/", "_"): value for name, value in metrics.items() if name.startswith("metarm/")},
                )
            rounds.append(row)

        trainer.add_callback(EveryIteration(evaluate))
        trainer.train()
    return {"rounds": rounds, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------

PERCENT_METRICS = (
    "repeat_rate",
    "accuracy_on_policy",
    "accuracy_in_distribution",
    "initial_proxy_accuracy_on_policy",
    "selected_repeat_rate",
    "meta_step_accuracy_change",
    "gold_step_accuracy_change",
)


def series(runs: dict, name: str, metric: str, seeds: list[int]) -> np.ndarray:
    """(seeds, rounds) values of `metric` for the arm `name` (NaN where a round lacks it)."""
    return np.array([[row.get(metric, np.nan) for row in runs[seed, name]["rounds"]] for seed in seeds])


def round_table(runs, names: list[str], metric: str, seeds, values=None) -> list[str]:
    """Mean ± 95% interval over seeds of `metric` (or of `values(name)`, a (seeds, rounds) array) per arm and round."""
    scale, digits = (100.0, 1) if metric in PERCENT_METRICS else (1.0, 2)
    columns = series(runs, names[0], "round", seeds).shape[1]
    lines = ["| arm | " + " | ".join(f"round {r}" for r in range(columns)) + " |", "|---" * (columns + 1) + "|"]
    for name in names:
        table = values(name) if values else series(runs, name, metric, seeds)
        cells = ["" if np.isnan(column).all() else cell(column, scale, digits) for column in table.T]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def initial_table(initial: dict, seeds) -> list[str]:
    rows = [
        ("SFT policy: gold reward of its samples", "gold_mean", 1, 2),
        ("best of its 4 samples (gold)", "gold_best_of_samples", 1, 2),
        ("best possible response (gold)", "gold_best_possible", 1, 2),
        ("samples repeating a helpful word (%)", "repeat_rate", 100, 1),
        ("words per sample", "words", 1, 2),
        ("proxy: gold-order accuracy in distribution (%)", "proxy_accuracy_in_distribution", 100, 1),
        ("proxy: gold-order accuracy on the SFT policy's samples (%)", "proxy_accuracy_on_policy", 100, 1),
    ]
    lines = ["| before RJS | mean ± 95% interval |", "|---|---|"]
    lines += [
        f"| {label} | {cell([initial[s][key] for s in seeds], scale, digits)} |" for label, key, scale, digits in rows
    ]
    return lines


def reference_table(initial: dict, seeds) -> list[str]:
    lines = [
        "| seed | package vs hand-written (largest parameter difference) | moved by the updates | moved by the meta step |",
        "|---|---|---|---|",
    ]
    for seed in seeds:
        check = initial[seed]["reference"]
        lines.append(
            f"| {seed} | {check['package_vs_reference']:.1e} | {check['moved']:.1e} | {check['meta_step_effect']:.1e} |"
        )
    return lines


def paired(runs, name: str, other: str, metric: str, seeds, other_metric: str | None = None) -> np.ndarray:
    """(seeds, rounds) differences `metric` of `name` minus `other_metric` (default: the same) of `other`."""
    return series(runs, name, metric, seeds) - series(runs, other, other_metric or metric, seeds)


def targets(runs, seeds, metarm_names: list[str], iterations: int) -> list[str]:
    """Every target of the issue for these measurements, hit or missed, with the numbers that decide it."""
    at = min(TARGET_ROUND, iterations)
    lines = [
        f"MetaRM (target: at least 3 points above the fixed proxy on the current policy's samples after {at} rounds, "
        "at most 1 point lower in distribution; differences per seed, mean ± 95% interval, in points):",
        "",
        "| arm | vs fixed arm, current policy's samples | vs the initial proxy on the same samples | vs fixed arm, "
        "in distribution | target |",
        "|---|---|---|---|---|",
    ]
    for name in metarm_names:
        shifted = paired(runs, name, "fixed", "accuracy_on_policy", seeds)[:, at]
        same = paired(runs, name, name, "accuracy_on_policy", seeds, "initial_proxy_accuracy_on_policy")[:, at]
        in_distribution = paired(runs, name, "fixed", "accuracy_in_distribution", seeds)[:, at]
        hit = 100 * shifted.mean() >= 3 and 100 * in_distribution.mean() >= -1
        lines.append(
            f"| {name} | {cell(shifted, 100)} | {cell(same, 100)} | {cell(in_distribution, 100)} | "
            f"{'hit' if hit else 'missed'} |"
        )
    last = iterations
    gold = series(runs, "fixed", "gold_mean", seeds)
    gap = series(runs, "fixed", "gap", seeds)
    growth = gap[:, last] - gap[:, 1]
    shortfall = paired(runs, "gold", "fixed", "gold_mean", seeds)
    shortfall_growth = shortfall[:, last] - shortfall[:, 1]
    excess = paired(runs, "fixed", "gold", "repeat_rate", seeds)[:, last]
    lines += [
        "",
        "Over-optimisation with the fixed proxy (target: the gold reward per iteration and the proxy-gold gap growing "
        "as the policy moves; a growth is a hit when its 95% interval lies above 0):",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| gold reward of the samples, round 0 -> {last} | {cell(gold[:, 0], 1, 2)} -> {cell(gold[:, last], 1, 2)} | "
        f"{_verdict(gold[:, last] - gold[:, 0])} |",
        f"| proxy-gold gap of the selected samples, round 1 -> {last} (growth) | {cell(gap[:, 1], 1, 2)} -> "
        f"{cell(gap[:, last], 1, 2)} ({cell(growth, 1, 2)}) | {_verdict(growth)} |",
        f"| gold reward the proxy loses against the gold selector, round 1 -> {last} (growth) | "
        f"{cell(shortfall[:, 1], 1, 2)} -> {cell(shortfall[:, last], 1, 2)} ({cell(shortfall_growth, 1, 2)}) | "
        f"{_verdict(shortfall_growth)} |",
        f"| samples repeating a helpful word, fixed proxy minus gold selector, round {last} (points) | "
        f"{cell(excess, 100)} | {_verdict(excess)} |",
    ]
    return lines


def test_point_table(runs, seeds) -> list[str]:
    """Per seed, the quantities tests/test_world_behaviour.py asserts at `TEST_POINT`, after its last iteration."""
    last = TEST_POINT.iterations

    def at_end(name: str, metric: str) -> np.ndarray:
        return series(runs, name, metric, seeds)[:, last]

    metarm = "metarm eta=1"
    columns = {
        "gold selector: gold reward gain": at_end("gold", "gold_mean")
        - series(runs, "gold", "gold_mean", seeds)[:, 0],
        "gold reward, gold selector minus fixed proxy": at_end("gold", "gold_mean") - at_end("fixed", "gold_mean"),
        "fixed proxy: in distribution minus on the policy's samples (points)": 100
        * (at_end("fixed", "accuracy_in_distribution") - at_end("fixed", "accuracy_on_policy")),
        "MetaRM minus fixed, in distribution (points)": 100
        * (at_end(metarm, "accuracy_in_distribution") - at_end("fixed", "accuracy_in_distribution")),
        "MetaRM minus fixed, on the policy's samples (points)": 100
        * (at_end(metarm, "accuracy_on_policy") - at_end("fixed", "accuracy_on_policy")),
        "MetaRM: J after minus before the meta steps (last iteration)": at_end(metarm, "metarm_difference_after")
        - at_end(metarm, "metarm_difference"),
    }
    lines = ["| seed | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, seed in enumerate(seeds):
        lines.append(f"| {seed} | " + " | ".join(f"{values[row]:.3f}" for values in columns.values()) + " |")
    lines.append("| mean ± 95% interval | " + " | ".join(cell(values, 1, 3) for values in columns.values()) + " |")
    lines.append(
        "| standard deviation | " + " | ".join(f"{values.std(ddof=1):.3f}" for values in columns.values()) + " |"
    )
    lines.append("| lowest | " + " | ".join(f"{values.min():.3f}" for values in columns.values()) + " |")
    return lines


def _verdict(differences: np.ndarray) -> str:
    """'hit' when the 95% interval of the mean lies above 0."""
    mean, half = interval(differences)
    return "hit" if mean - half > 0 else "missed"


def plot(runs, names: list[str], seeds, path: Path, panels=None, title: str | None = None) -> Path:
    """The curves per round, mean ± 95% interval over the seeds; one colour per arm in every panel. `panels`: (metric,
    title, arms, scale) per panel, 2 rows (default: this benchmark's six); the first panel must show every arm."""
    from matplotlib.figure import Figure

    panels = panels or [
        ("gold_mean", "gold reward of the policy's samples", names, 1),
        ("repeat_rate", "samples repeating a helpful word (%)", names, 100),
        ("accuracy_on_policy", "gold-order accuracy on the current policy's samples (%)", names[1:], 100),
        ("accuracy_in_distribution", "gold-order accuracy in distribution (%)", names[1:], 100),
        ("gap", "proxy-gold gap of the selected samples (standardised)", names[1:], 1),
        ("meta_step_accuracy_change", "accuracy change of one meta step on those samples (points)", names[1:], 100),
    ]
    colours = {name: f"C{number}" for number, name in enumerate(names)}
    rounds = series(runs, names[0], "round", seeds).shape[1]
    columns = (len(panels) + 1) // 2
    figure = Figure(figsize=(16 * columns / 3, 9.5), dpi=100)
    for axis, (metric, title_, arm_names, scale) in zip(figure.subplots(2, columns).ravel(), panels):
        for name in arm_names:
            table = series(runs, name, metric, seeds)
            kept = [r for r in range(table.shape[1]) if not np.isnan(table[:, r]).all()]
            means, halves = zip(*(interval(table[:, r]) for r in kept))
            axis.errorbar(
                kept,
                scale * np.array(means),
                yerr=scale * np.array(halves),
                marker="o",
                capsize=3,
                label=name,
                color=colours[name],
            )
        axis.set(xlabel="RJS iterations done", title=title_, xticks=range(rounds))
        axis.title.set_fontsize("medium")
        axis.grid(alpha=0.3)
    handles = [figure.axes[0].get_legend_handles_labels()[0][names.index(name)] for name in names]
    figure.legend(handles, names, loc="lower center", ncol=len(names), fontsize="medium")
    figure.suptitle(
        f"{title or 'Rejection sampling in the known-answer world'}: mean ± 95% interval over {len(seeds)} seeds"
    )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--metarm_etas", type=float, nargs="+", default=list(METARM_ETAS))
    parser.add_argument("--smoke", action="store_true", help="tiny settings and seed 0 only: a quick check")
    parser.add_argument("--test_point", action="store_true", help="the behaviour tests' settings and arms")
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    seeds = [0] if options.smoke else options.seeds
    settings = dataclasses.asdict(SMOKE if options.smoke else TEST_POINT if options.test_point else Settings())
    report = f"{BENCHMARK}_test_point" if options.test_point else BENCHMARK
    machine, start = machine_description(), time.perf_counter()
    initial_jobs = [{"seed": seed, "settings": settings} for seed in seeds]
    initial = dict(zip(seeds, run_jobs(BENCHMARK, initial_job, initial_jobs, options.workers)))
    arm_list = list(TEST_POINT_ARMS) if options.test_point else arms(tuple(options.metarm_etas))
    jobs = [{"seed": seed, "arm": arm, "eta": eta, "settings": settings} for seed in seeds for arm, eta in arm_list]
    outputs = run_jobs(BENCHMARK, rjs_job, jobs, options.workers)
    runs = {(job["seed"], arm_name(job["arm"], job["eta"])): output for job, output in zip(jobs, outputs)}
    minutes = (time.perf_counter() - start) / 60
    job_minutes = sum(output["seconds"] for output in outputs) / 60
    names = [arm_name(arm, eta) for arm, eta in arm_list]
    metarm_names = [name for name in names if name.startswith("metarm") and name != "metarm eta=0"]
    updated = [name for name in names if name.startswith("metarm") or name == "labelled"]
    proxies = names[1:]
    # Only the default run's plot goes with the results; the others' stay in the cache folder.
    plot_dir = CACHE / report if options.smoke or options.test_point else RESULTS_DIR
    plot_path = plot(runs, names, seeds, plot_dir / f"{report}.png")
    iterations = settings["iterations"]
    example_lines = [f"    {text}" for text in initial[seeds[0]]["examples"]]
    lines = [
        f"Machine: {machine}",
        "",
        f"Command: `python benchmarks/world_rejection_sampling.py{' --smoke' * options.smoke}"
        f"{' --test_point' * options.test_point}` "
        f"(seeds {seeds}, {options.workers} one-thread workers). Wall time {minutes:.1f} min (jobs found in the "
        f"cache are read back, not run again); the RJS runs took {job_minutes:.1f} min of worker time when they ran.",
        "",
        f"Settings: {settings}. Mean ± 95% interval over the seeds everywhere.",
        "",
        "Samples of the SFT policy (seed 0):",
        "",
        *example_lines,
        "",
        *initial_table(initial, seeds),
        "",
        "Gold reward of the policy's samples (mean over 4 samples of the evaluation prompts):",
        "",
        *round_table(runs, names, "gold_mean", seeds),
        "",
        "Samples repeating a helpful word (%; the gold reward ignores a repeat, the proxy has never seen one):",
        "",
        *round_table(runs, names, "repeat_rate", seeds),
        "",
        "Gold-order accuracy of the arm's reward model on pairs of the current policy's samples (%):",
        "",
        *round_table(runs, proxies, "accuracy_on_policy", seeds),
        "",
        "The same, minus the initial proxy's accuracy on the very same pairs (points; what the updates changed):",
        "",
        *round_table(
            runs,
            updated,
            "accuracy_on_policy",
            seeds,
            lambda name: paired(runs, name, name, "accuracy_on_policy", seeds, "initial_proxy_accuracy_on_policy"),
        ),
        "",
        "Gold-order accuracy of the arm's reward model on held-out pairs of the proxy's training style (%, in "
        "distribution):",
        "",
        *round_table(runs, proxies, "accuracy_in_distribution", seeds),
        "",
        "Proxy-gold gap of the iteration's selected samples: mean proxy reward minus mean gold reward, both standardised "
        "on the initial policy's samples (0 for the gold selector by construction):",
        "",
        *round_table(runs, names, "gap", seeds),
        "",
        "Gold reward of the selected samples:",
        "",
        *round_table(runs, names, "selected_gold_mean", seeds),
        "",
        f"Does the meta step order the policy's samples more like the gold? Change of the arm's proxy's gold-order "
        f"accuracy on pairs of the current policy's samples after one meta step (eta {DIAGNOSTIC_ETA:g}, grad J on "
        "those samples), in points:",
        "",
        *round_table(runs, proxies, "meta_step_accuracy_change", seeds),
        "",
        "The same for a step of the same length down the Bradley-Terry loss of the samples' gold-ordered pairs (what "
        "a step that size could do with the labels), in points:",
        "",
        *round_table(runs, proxies, "gold_step_accuracy_change", seeds),
        "",
        "The difference loss J on the iteration's samples before the meta steps and after them (MetaRM arms, mean "
        "over the iteration's updates; the package's `metarm/difference` and `metarm/difference_after`):",
        "",
        *round_table(runs, metarm_names, "metarm_difference", seeds),
        "",
        "After:",
        "",
        *round_table(runs, metarm_names, "metarm_difference_after", seeds),
        "",
        f"The package's MetaRM updates against the hand-written ones ({REFERENCE_STEPS} updates at eta 1 from the same "
        "proxy on the same meta samples and pairs):",
        "",
        *reference_table(initial, seeds),
        "",
        *targets(runs, seeds, metarm_names, iterations),
        "",
        f"Plot: {plot_path.relative_to(RESULTS_DIR.parents[1])}",
    ]
    if options.test_point:
        lines += [
            "",
            "The quantities the behaviour tests assert (seed 0 is what they run):",
            "",
            *test_point_table(runs, seeds),
        ]
    write_report(report, lines)


if __name__ == "__main__":
    main()
