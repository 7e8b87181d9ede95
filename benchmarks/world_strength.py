"""Preference strength in the known-answer world: does -mu find injected label flips, in-sample or cross-fitted?

The premise of the method ("Secrets of RLHF Part II", docs/noisy_preferences.md) is an ensemble that learns the true
preference well enough that a mislabelled pair stands out by a negative mean reward difference mu. The world
(`trl_more.synthetic`) makes that premise hold by construction: noise-free labels in the gold order, then a known
share of them flipped (uniformly at random), on pairs a tiny model learns to over 95% accuracy.

Swept, each point over several seeds (data, flips and models all change with the seed), with the 95% interval of the
mean:
- the flip rate (10-40%) at the default training length (`--seeds`);
- the training length (steps of every member: under one epoch up to many) at 20% flips (`--length_seeds`).
For every point and both modes (`seeds`: the paper's M models trained on every pair; `cross_fit`: 2 folds x 2
repeats, every pair scored by the 2 models that never saw it): the AUROC of -mu for the flipped pairs, the members'
accuracy on clean held-out pairs, and the paper's rule "flip where mu < 0": the share of flipped pairs it catches and
of clean pairs it would wrongly flip. Target (issue 35): cross-fit AUROC >= 0.95 at 20% uniform flips once the members
exceed 95% clean accuracy, and ahead of in-sample once the members memorise.

    python benchmarks/world_strength.py                 # the default sweep, 5 seeds (time: benchmarks/RESULTS.md)
    python benchmarks/world_strength.py --seeds 0 --flip_rates 0.2 --length_steps  # smoke
"""

from __future__ import annotations

import argparse

import numpy as np
from noisy_preferences import auroc, sign_rule
from run_all import machine_description
from world_common import RESULTS_DIR, cell, run_jobs, write_report

from trl_more.synthetic.models import REWARD_TRAINING


BENCHMARK = "world_strength"
MODES = ("seeds", "cross_fit")
NUM_MODELS = 4
TEST_PAIRS = 500


def strength_job(
    num_pairs: int, flip_rate: float, steps: int, mode: str, seed: int, temperature: float | None = None
) -> dict:
    """One strength estimate on `num_pairs` pairs (noise-free labels, or Bradley-Terry at `temperature`) with
    `flip_rate` of them flipped: mu, the flip mask and the members' accuracy on clean held-out pairs."""
    import tempfile

    from trl_more import MORERewardConfig
    from trl_more.noisy_preferences import estimate_preference_strength
    from trl_more.synthetic import preference_pairs, training_columns, world_tokenizer
    from trl_more.testing import tiny_reward_model

    pairs = preference_pairs(num_pairs, temperature=temperature, flip_rate=flip_rate, seed=seed)
    test = preference_pairs(TEST_PAIRS, temperature=None, seed=10_000 + seed)
    tokenizer = world_tokenizer()
    with tempfile.TemporaryDirectory() as output_dir:
        args = MORERewardConfig(
            output_dir,
            seed=seed,
            **{**REWARD_TRAINING, "max_steps": steps},
            logging_strategy="no",
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            activation_checkpointing=False,
            per_device_eval_batch_size=256,
        )
        estimate = estimate_preference_strength(
            lambda: tiny_reward_model("qwen2", tokenizer),
            training_columns(pairs),
            args,
            num_models=NUM_MODELS,
            mode=mode,
            processing_class=tokenizer,
            eval_dataset=training_columns(test),
            show_progress=False,
        )
    gold = np.asarray(test["gold_margin"])
    member_accuracy = [
        float(np.mean(np.sign(evaluation.margins["eval"][gold != 0]) == np.sign(gold[gold != 0])))
        for evaluation in estimate.evaluations
    ]
    return {
        "mu": list(estimate.dataset["strength_mean"]),
        "differences": list(estimate.dataset["strength_differences"]),
        "flipped": list(pairs["flipped"]),
        "member_accuracy": float(np.mean(member_accuracy)),
    }


def measures(result: dict) -> dict:
    mu, flipped = np.asarray(result["mu"]), np.asarray(result["flipped"], dtype=bool)
    return {"auroc": auroc(-mu, flipped), "member_accuracy": result["member_accuracy"], **sign_rule(mu, flipped)}


def sweep_points(options) -> list[tuple[float, int]]:
    """(flip rate, steps): the flip rates at the default length, then the lengths at 20% flips."""
    points = [(rate, options.default_steps) for rate in options.flip_rates]
    points += [(0.2, steps) for steps in options.length_steps if (0.2, steps) not in points]
    return points


def at(results: dict, rate: float, steps: int, mode: str) -> list[dict]:
    """The measures of every seed run at this point."""
    return [value for (r, s, m, _), value in results.items() if (r, s, m) == (rate, steps, mode)]


def table(points, results: dict, num_pairs: int, batch: int) -> list[str]:
    lines = [
        "| flips | steps | epochs (seeds / cross-fit) | mode | AUROC of -mu | members' clean accuracy (%) | "
        "flipped with mu < 0 (%) | clean with mu < 0 (%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rate, steps in points:
        epochs = f"{steps * batch / num_pairs:.1f} / {2 * steps * batch / num_pairs:.1f}"
        for mode in MODES:
            rows = at(results, rate, steps, mode)
            lines.append(
                f"| {rate:.0%} | {steps} | {epochs} | {mode} ({len(rows)} seeds) | {cell([r['auroc'] for r in rows], digits=3)} | "
                f"{cell([r['member_accuracy'] for r in rows], 100)} | "
                f"{cell([r['flipped_negative'] for r in rows], 100)} | {cell([r['clean_negative'] for r in rows], 100)} |"
            )
    return lines


def plot(points, results: dict, options) -> None:
    from matplotlib.figure import Figure
    from world_common import interval

    figure = Figure(figsize=(11, 4.2), dpi=100)
    left, right = figure.subplots(1, 2)
    epochs_per_step = REWARD_TRAINING["per_device_train_batch_size"] / options.num_pairs
    for mode, color in zip(MODES, ("C0", "C1")):
        for axes, selected, x_of in (
            (left, [(r, s) for r, s in points if s == options.default_steps], lambda r, s: 100 * r),
            (right, [(r, s) for r, s in points if r == 0.2], lambda r, s: s * epochs_per_step),
        ):
            selected = sorted(selected, key=lambda point: x_of(*point))
            stats = [interval([row["auroc"] for row in at(results, *point, mode)]) for point in selected]
            axes.errorbar(
                [x_of(*p) for p in selected],
                [m for m, _ in stats],
                yerr=[h for _, h in stats],
                marker="o",
                color=color,
                capsize=3,
                label=mode,
            )
    left.set(xlabel="flipped labels (%)", ylabel="AUROC of -mu for the flips", title=f"{options.default_steps} steps")
    right.set(xlabel="epochs of the in-sample members", xscale="log", title="20% flips")
    for axes in (left, right):
        axes.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        axes.legend()
    figure.tight_layout()
    RESULTS_DIR.mkdir(exist_ok=True)
    figure.savefig(RESULTS_DIR / f"{BENCHMARK}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--num_pairs", type=int, default=4000)
    parser.add_argument("--flip_rates", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--default_steps", type=int, default=400)
    parser.add_argument("--length_steps", type=int, nargs="*", default=[60, 125, 1600])
    parser.add_argument("--length_seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds of the length sweep.")
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    machine = machine_description()
    points = sweep_points(options)
    jobs = [
        {"num_pairs": options.num_pairs, "flip_rate": rate, "steps": steps, "mode": mode, "seed": seed}
        for rate, steps in points
        for mode in MODES
        for seed in (options.seeds if steps == options.default_steps else options.length_seeds)
    ]
    outputs = run_jobs(BENCHMARK, strength_job, jobs, options.workers)
    results = {(j["flip_rate"], j["steps"], j["mode"], j["seed"]): measures(o) for j, o in zip(jobs, outputs)}
    batch = REWARD_TRAINING["per_device_train_batch_size"]
    lines = [
        f"Machine: {machine}",
        "",
        f"{options.num_pairs} noise-free pairs (one source), uniform flips, {NUM_MODELS} tiny models per estimate, "
        f"seeds {options.seeds} ({options.length_seeds} for the other lengths); mean ± 95% interval over seeds.",
        "",
        *table(points, results, options.num_pairs, batch),
    ]
    write_report(BENCHMARK, lines)
    plot(points, results, options)


if __name__ == "__main__":
    main()
