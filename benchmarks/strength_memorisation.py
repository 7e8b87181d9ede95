"""When does out-of-sample preference strength beat the in-sample one? A synthetic set the models can memorise.

On the real sources at CPU scale (`noisy_preferences.py`) the in-sample `seeds` mode ranks the injected flips better
than cross-fitting: its MiniLM members stay below one epoch and barely memorise. This benchmark varies exactly that.
Data: the toy pairs of `trl_more.testing` (three sources, each with a learnable marker rule), every prompt tagged with
a unique random three-word code so that a model can learn individual pairs, and `--flip_fraction` of the labels
flipped at random (recorded). Models: tiny random-weight Qwen2 reward models (`tiny_reward_model`), M = 4 in each mode
(cross-fit: 2 folds, so 2 out-of-sample scores per pair), trained for each of `--steps` (one epoch is
pairs / batch size steps).

Per number of steps and mode: AUROC of -mu for finding the flips; for `seeds` also the AUROC from 2 of its 4 members
(as many scores per pair as cross-fitting has); and the paper's rule, flip where mu < 0: the share of the flipped pairs
it catches and of the clean pairs it would flip. Every model's scores are cached in `--work_dir` (the estimate's own
resumable files); the table goes to stdout and `<work_dir>/strength_memorisation.md`, the plot to
`benchmarks/results/strength_memorisation.png`.

    python benchmarks/strength_memorisation.py                       # 4 step counts, 32 tiny models, ~10 min on 2 cores
    python benchmarks/strength_memorisation.py --steps 10 40 --pairs_per_source 20   # smoke
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from noisy_preferences import auroc, sign_rule, subset_auroc
from run_all import machine_description
from tqdm.auto import tqdm


BENCHMARKS = Path(__file__).resolve().parent
CODE_WORDS = "apple river stone cloud music garden winter silver paper candle forest bridge tiger lemon ocean castle"


def memorisable_pairs(pairs_per_source: int, flip_fraction: float, seed: int = 0):
    """The toy pairs with a unique code in every prompt and `flip_fraction` of the labels swapped; and the mask."""
    from datasets import Dataset, concatenate_datasets

    from trl_more.testing import toy_preference_sources

    parts = [
        data.add_column("source", [name] * len(data))
        for name, data in toy_preference_sources(pairs_per_source, seed=seed).items()
    ]
    rows = concatenate_datasets(parts).to_list()
    words, rng = CODE_WORDS.split(), random.Random(seed)
    codes = set()
    while len(codes) < len(rows):
        codes.add(" ".join(rng.choice(words) for _ in range(3)))
    flipped = np.zeros(len(rows), dtype=bool)
    flipped[np.random.default_rng(seed).choice(len(rows), round(flip_fraction * len(rows)), replace=False)] = True
    for row, code, flip in zip(rows, sorted(codes), flipped):
        row["prompt"] = row["prompt"].replace("Human:", f"Human: [{code}]", 1)
        if flip:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    return Dataset.from_list(rows), flipped


def estimate(pairs, mode: str, steps: int, options, work_dir: Path):
    from trl_more import MORERewardConfig
    from trl_more.noisy_preferences import estimate_preference_strength
    from trl_more.testing import tiny_reward_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    args = MORERewardConfig(
        str(work_dir / f"{mode}-{steps}-steps"),
        per_device_train_batch_size=options.batch_size,
        max_steps=steps,
        learning_rate=options.learning_rate,
        lambda_method="uniform",
        max_length=64,
        truncation_mode="keep_end",
        logging_steps=max(1, steps // 5),
        report_to="none",
        bf16=False,
        disable_tqdm=True,
        seed=0,
    )
    return estimate_preference_strength(
        lambda: tiny_reward_model("qwen2", tokenizer),
        pairs,
        args,
        num_models=4,
        mode=mode,
        processing_class=tokenizer,
        show_progress=False,
    )


def measures(differences: np.ndarray, flipped: np.ndarray) -> dict:
    mu = differences.mean(axis=1)
    return {
        "auroc": auroc(-mu, flipped),
        "auroc_two_members": subset_auroc(differences, flipped, 2),
        **sign_rule(mu, flipped),
    }


def plot(results: dict, epochs_per_step: float, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100)
    left, right = figure.subplots(1, 2)
    steps = sorted(results["seeds"])
    epochs = [step * epochs_per_step for step in steps]
    for mode, label, color in (("seeds", "seeds (in-sample)", "C0"), ("cross_fit", "cross-fit", "C1")):
        rows = [results[mode][step] for step in steps]
        left.plot(epochs, [row["auroc"] for row in rows], marker="o", color=color, label=label)
        right.plot(
            epochs,
            [100 * row["flipped_negative"] for row in rows],
            marker="o",
            color=color,
            label=f"{label}: flipped pairs",
        )
        right.plot(
            epochs,
            [100 * row["clean_negative"] for row in rows],
            marker="o",
            color=color,
            linestyle="--",
            label=f"{label}: clean pairs",
        )
    left.plot(
        epochs,
        [results["seeds"][step]["auroc_two_members"] for step in steps],
        marker="o",
        color="C0",
        linestyle=":",
        label="seeds, 2 of 4 members",
    )
    left.set(ylabel="AUROC of -mu for the flipped pairs", title="Ranking the flips")
    right.set(ylabel="pairs with mu < 0 (%)", title="The rule 'flip where mu < 0'")
    for axes in (left, right):
        axes.set(xscale="log", xlabel="epochs")
        axes.set_xticks(epochs, [f"{value:g}" for value in epochs])
        axes.minorticks_off()
    left.legend(fontsize="small")
    right.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[40, 200, 400, 1000])
    parser.add_argument("--pairs_per_source", type=int, default=40)
    parser.add_argument("--flip_fraction", type=float, default=0.2)
    parser.add_argument("--batch_size", type=int, default=6)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument(
        "--work_dir", type=Path, default=BENCHMARKS.parent / "outputs" / "benchmarks" / "strength_memorisation"
    )
    parser.add_argument("--plot_dir", type=Path, default=BENCHMARKS / "results")
    options = parser.parse_args()
    work_dir = options.work_dir / f"{options.pairs_per_source}-pairs-{options.flip_fraction}-{options.learning_rate}"
    pairs, flipped = memorisable_pairs(options.pairs_per_source, options.flip_fraction)
    epochs_per_step = options.batch_size / len(pairs)
    machine = machine_description()  # before the training loads the machine
    results: dict = {"seeds": {}, "cross_fit": {}}
    for steps in tqdm(options.steps, desc="Step counts"):
        for mode in results:
            differences = np.asarray(estimate(pairs, mode, steps, options, work_dir).dataset["strength_differences"])
            results[mode][steps] = measures(differences, flipped)
    lines = [f"Machine: {machine}", "", f"{len(pairs)} pairs, {flipped.sum()} flipped.", ""]
    lines += [
        "| steps | epochs | seeds AUROC | seeds AUROC, 2 of 4 members | cross-fit AUROC | "
        "mu < 0 seeds: flipped / clean | mu < 0 cross-fit: flipped / clean |",
        "|---|---|---|---|---|---|---|",
    ]
    for steps in options.steps:
        seeds, cross = results["seeds"][steps], results["cross_fit"][steps]
        lines.append(
            f"| {steps} | {steps * epochs_per_step:.1f} | {seeds['auroc']:.3f} | {seeds['auroc_two_members']:.3f} | "
            f"{cross['auroc']:.3f} | {100 * seeds['flipped_negative']:.0f}% / {100 * seeds['clean_negative']:.0f}% | "
            f"{100 * cross['flipped_negative']:.0f}% / {100 * cross['clean_negative']:.0f}% |"
        )
    report = "\n".join(lines) + "\n"
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "strength_memorisation.md").write_text(report)
    plot(results, epochs_per_step, options.plot_dir / "strength_memorisation.png")
    print(report)


if __name__ == "__main__":
    main()
