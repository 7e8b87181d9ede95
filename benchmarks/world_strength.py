"""Preference strength in the known-answer world: does -mu find injected label flips, in-sample or cross-fitted?

The premise of the method ("Secrets of RLHF Part II", docs/noisy_preferences.md) is an ensemble that learns the true
preference well enough that a mislabelled pair stands out by a negative mean reward difference mu. The world
(`trl_more.synthetic`) makes that premise hold by construction: noise-free labels in the gold order, then a known
share of them flipped (uniformly at random), on pairs a tiny model learns to over 95% accuracy.

Swept, each point over several seeds (data, flips and models all change with the seed), with the 95% interval of the
mean:
- the flip rate (10-40%) at the default training length (`--seeds`);
- the training length (steps of every member: under one epoch up to many) at 20% flips (`--length_seeds`);
- a data set small enough for the members to memorise (400 pairs, up to 80 epochs), at 20% flips.
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
from noisy_preferences import accuracy_bound, auroc, sign_rule
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
    return {
        "auroc": auroc(-mu, flipped),
        "member_accuracy": result["member_accuracy"],
        "bound": accuracy_bound(result["member_accuracy"]),
        **sign_rule(mu, flipped),
    }


def sweep_points(options) -> list[tuple[int, float, int]]:
    """(pairs, flip rate, steps): the flip rates at the default length, the lengths at 20% flips, and the small data
    set the members can memorise, at 20% flips."""
    points = [(options.num_pairs, rate, options.default_steps) for rate in options.flip_rates]
    points += [(options.num_pairs, 0.2, steps) for steps in options.length_steps]
    points += [(options.memorise_pairs, 0.2, steps) for steps in options.memorise_steps]
    return list(dict.fromkeys(points))


def at(results: dict, point: tuple[int, float, int], mode: str) -> list[dict]:
    """The measures of every seed run at this point."""
    return [value for (*where, m, _), value in results.items() if (tuple(where), m) == (point, mode)]


def table(points, results: dict) -> list[str]:
    lines = [
        "| pairs | flips | steps | epochs (seeds / cross-fit) | mode | AUROC of -mu | members' clean accuracy (%) | "
        "AUROC bound from that accuracy | flipped with mu < 0 (%) | clean with mu < 0 (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    batch = REWARD_TRAINING["per_device_train_batch_size"]
    for pairs, rate, steps in points:
        epochs = f"{steps * batch / pairs:.1f} / {2 * steps * batch / pairs:.1f}"
        for mode in MODES:
            rows = at(results, (pairs, rate, steps), mode)
            lines.append(
                f"| {pairs} | {rate:.0%} | {steps} | {epochs} | {mode} ({len(rows)} seeds) | "
                f"{cell([r['auroc'] for r in rows], digits=3)} | {cell([r['member_accuracy'] for r in rows], 100)} | "
                f"{cell([r['bound'] for r in rows], digits=3)} | {cell([r['flipped_negative'] for r in rows], 100)} | "
                f"{cell([r['clean_negative'] for r in rows], 100)} |"
            )
    return lines


def plot(points, results: dict, options) -> None:
    from matplotlib.figure import Figure
    from world_common import interval

    figure = Figure(figsize=(11, 4.2), dpi=100)
    left, right = figure.subplots(1, 2)
    batch = REWARD_TRAINING["per_device_train_batch_size"]
    for mode, color in zip(MODES, ("C0", "C1")):
        curves = [
            (
                left,
                [p for p in points if p[0] == options.num_pairs and p[2] == options.default_steps],
                lambda p: 100 * p[1],
                "-",
                mode,
            ),
            (
                right,
                [p for p in points if p[0] == options.num_pairs and p[1] == 0.2],
                lambda p: p[2] * batch / p[0],
                "-",
                f"{mode}, {options.num_pairs} pairs",
            ),
            (
                right,
                [p for p in points if p[0] == options.memorise_pairs],
                lambda p: p[2] * batch / p[0],
                "--",
                f"{mode}, {options.memorise_pairs} pairs",
            ),
        ]
        for axes, selected, x_of, style, label in curves:
            selected = sorted(selected, key=x_of)
            stats = [interval([row["auroc"] for row in at(results, point, mode)]) for point in selected]
            axes.errorbar(
                [x_of(p) for p in selected],
                [m for m, _ in stats],
                yerr=[h for _, h in stats],
                marker="o",
                color=color,
                linestyle=style,
                capsize=3,
                label=label,
            )
    left.set(xlabel="flipped labels (%)", ylabel="AUROC of -mu for the flips", title=f"{options.default_steps} steps")
    right.set(xlabel="epochs of the in-sample members", xscale="log", title="20% flips")
    for axes in (left, right):
        axes.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        axes.legend(fontsize="small")
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
    parser.add_argument("--length_seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds of the other points.")
    parser.add_argument("--memorise_pairs", type=int, default=400, help="A data set small enough to memorise.")
    parser.add_argument("--memorise_steps", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    machine = machine_description()
    points = sweep_points(options)
    jobs = [
        {"num_pairs": pairs, "flip_rate": rate, "steps": steps, "mode": mode, "seed": seed}
        for pairs, rate, steps in points
        for mode in MODES
        for seed in (
            options.seeds if (pairs, steps) == (options.num_pairs, options.default_steps) else options.length_seeds
        )
    ]
    outputs = run_jobs(BENCHMARK, strength_job, jobs, options.workers)
    results = {
        (j["num_pairs"], j["flip_rate"], j["steps"], j["mode"], j["seed"]): measures(o) for j, o in zip(jobs, outputs)
    }
    lines = [
        f"Machine: {machine}",
        "",
        f"Noise-free pairs (one source), uniform flips, {NUM_MODELS} tiny models per estimate, seeds {options.seeds} "
        f"at {options.num_pairs} pairs and {options.default_steps} steps, {options.length_seeds} at the other points; "
        "mean ± 95% interval over seeds.",
        "",
        *table(points, results),
    ]
    write_report(BENCHMARK, lines)
    plot(points, results, options)


if __name__ == "__main__":
    main()
