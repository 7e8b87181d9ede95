"""Tiny reward models and policies trained in the world, with the settings every world benchmark and behaviour test
shares.

`REWARD_TRAINING` is the training the benchmarks (`benchmarks/world_*.py`) and the behaviour tests
(`tests/test_world_behaviour.py`) start from; a benchmark changes only what its question is about. Models are
`trl_more.testing.tiny_reward_model("qwen2", world_tokenizer())` (2 layers, width 32), trained with the package's
public trainers: 400 steps take about 10 s on one CPU thread. `train_sft_policy` is the policy that rejection sampling
and MetaRM start from: `trl_more.testing.tiny_causal_lm("qwen2", world_tokenizer())` taught the world's response style
by TRL's `SFTTrainer`.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from .world import TRAINING_STYLE, ResponseStyle, world_tokenizer


__all__ = ["REWARD_TRAINING", "predicted_margins", "train_reward_model", "train_sft_policy"]

REWARD_TRAINING: dict[str, Any] = {
    "per_device_train_batch_size": 32,
    "learning_rate": 3e-3,
    "max_steps": 400,
    "max_length": 64,
    "lambda_method": "uniform",
}


def train_reward_model(train_dataset, seed: int, trainer_class=None, initial_model=None, **settings):
    """A tiny reward model trained on `train_dataset` (TRL's columns) with `REWARD_TRAINING` updated by `settings`
    (any field of the trainer's config; `config_class` picks another config class); the trained model in eval mode
    and its tokenizer. Training starts from a copy of `initial_model` when given (models that share one share their
    initialisation, as weight averaging needs), else from the tiny model `seed` draws."""
    from ..more import MORERewardConfig, MORERewardTrainer
    from ..testing import tiny_reward_model

    tokenizer = world_tokenizer()
    options = {**REWARD_TRAINING, **settings}
    config_class = options.pop("config_class", MORERewardConfig)
    with tempfile.TemporaryDirectory() as output_dir:
        args = config_class(
            output_dir,
            seed=seed,
            logging_strategy="no",
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            activation_checkpointing=False,
            **options,
        )
        model = (
            tiny_reward_model("qwen2", tokenizer, seed=seed) if initial_model is None else copy.deepcopy(initial_model)
        )
        trainer = (trainer_class or MORERewardTrainer)(
            model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer
        )
        trainer.train()
    return trainer.model.eval(), tokenizer


def train_sft_policy(
    seed: int, max_steps: int, num_examples: int, styles: Sequence[ResponseStyle] = (TRAINING_STYLE,)
):
    """The world's tiny policy (`seed` draws its initialisation and its `sft_examples`) after `max_steps` steps of
    TRL's `SFTTrainer` on `num_examples` examples of the world's response style, or split evenly over `styles` (batch
    32, learning rate 3e-3 with a cosine schedule and 10 warm-up steps)."""
    from datasets import concatenate_datasets
    from trl import SFTConfig, SFTTrainer

    from ..testing import tiny_causal_lm
    from .data import sft_examples

    tokenizer = world_tokenizer()
    policy = tiny_causal_lm("qwen2", tokenizer, seed=seed)
    with tempfile.TemporaryDirectory() as output_dir:
        args = SFTConfig(
            output_dir,
            max_steps=max_steps,
            per_device_train_batch_size=32,
            learning_rate=3e-3,
            lr_scheduler_type="cosine",
            warmup_steps=10,
            max_length=64,
            gradient_checkpointing=False,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            bf16=False,
            seed=seed,
            disable_tqdm=True,
        )
        share = num_examples // len(styles)
        examples = concatenate_datasets(
            [sft_examples(share, seed=seed + 100 * index, style=style) for index, style in enumerate(styles)]
        )
        SFTTrainer(model=policy, args=args, train_dataset=examples, processing_class=tokenizer).train()
    return policy


def predicted_margins(model, tokenizer, pairs) -> np.ndarray:
    """r(prompt, chosen) - r(prompt, rejected) for every pair, as float64."""
    from ..rewards import RewardModelScorer

    scorer = RewardModelScorer([model], [tokenizer], batch_size=256)
    chosen = scorer.score(list(pairs["prompt"]), list(pairs["chosen"])).combined
    rejected = scorer.score(list(pairs["prompt"]), list(pairs["rejected"])).combined
    return (chosen - rejected).double().numpy()
