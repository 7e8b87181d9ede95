"""Denoising losses and contrastive learning in the known-answer world: what do they recover of what flips cost?

Premise of the methods ("Secrets of RLHF Part II", docs/noisy_preferences.md): some training labels are wrong, and a
loss that trusts weak or contradicted pairs less (flip, label smoothing, adaptive margin) or a representation that
generalises better (SimCSE, SwAV) recovers part of the accuracy the wrong labels cost. In the world (`trl_more.synthetic`)
the labels are noise-free in the gold order and a known share is then flipped at random; accuracy is measured against
the gold order on clean held-out pairs, calibration (ECE) on held-out pairs labelled like the training pairs.

1. Flip-rate sweep (0, 10, 20, 40% flips), every variant, `--seeds` seeds: baseline (MultiTask BT), flip where mu < 0,
   flip the lowest 10% of mu, label smoothing 0.1, adaptive margin (gamma 1), soft label + margin (smoothing 0.1 below
   mu = 0, margin gamma 1), SimCSE, SwAV on differences (beta 0.5). Strength: the cross-fit ensemble of
   `world_strength.py` (4 models, same data, cached there). Targets (issue 35): at 20% and 40% flips the best variant
   recovers at least half of the accuracy the flips cost, with an interval above zero; at 0% no variant costs more
   than 0.5 points.
2. Training length (30% flips, 3 seeds): flip where mu < 0 with the strength members and the final model each trained
   1 or 3 epochs, in-sample (`seeds`) and cross-fitted: the share of the lost accuracy recovered, and how many flips
   the rule leaves uncorrected.
3. Bradley-Terry ambiguity (no flips; labels drawn at temperature 0.5 for training and test): the ECE of the baseline,
   label smoothing and adaptive margin (the issue's claim: adaptive margins lower the ECE on such data).
4. Held-out response styles (`HELD_OUT_STYLE`: fillers never seen in training, longer answers), 0% and 20% flips:
   gold accuracy of the baseline, SimCSE and SwAV (the paper's generalisation claim for contrastive learning).
5. Reference check of "flip where mu < 0" (20% flips, first seed): the labels swapped by hand where mu < 0 and the
   plain loss, against the package's `flip_below_strength=0`; the rewards must be the same, so that a miss in part 1
   is the method's, not the implementation's.

    python benchmarks/world_denoising.py                       # every part, 5 seeds (time: benchmarks/RESULTS.md)
    python benchmarks/world_denoising.py --seeds 0 --flip_rates 0.2 --parts 1   # smoke
"""

from __future__ import annotations

import argparse

import numpy as np
from run_all import machine_description
from world_common import RESULTS_DIR, cell, interval, run_jobs, write_report
from world_strength import strength_job

from trl_more.synthetic.models import REWARD_TRAINING


BENCHMARK = "world_denoising"
TEST_PAIRS = 1000
NUM_PAIRS = 4000
VARIANTS = {
    "baseline": {},
    "flip mu<0": {"flip_below_strength": 0.0},
    "flip lowest 10%": {"flip_fraction": 0.1},
    "label smoothing": {"label_smoothing": 0.1},
    "adaptive margin": {"adaptive_margin": 1.0},
    "soft label + margin": {"label_smoothing": 0.1, "label_smoothing_below_strength": 0.0, "adaptive_margin": 1.0},
    "SimCSE": {"contrastive_loss": "simcse"},
    "SwAV (differences)": {
        "contrastive_loss": "swav",
        "contrastive_representation": "difference",
        "contrastive_coefficient": 0.5,
    },
}
STRENGTH_OPTIONS = ("flip_below_strength", "flip_fraction", "label_smoothing_below_strength", "adaptive_margin")


def denoising_job(
    flip_rate: float,
    variant: str,
    seed: int,
    steps: int = REWARD_TRAINING["max_steps"],
    strength_steps: int = REWARD_TRAINING["max_steps"],
    strength_mode: str = "cross_fit",
    temperature: float | None = None,
    held_out_style: bool = False,
) -> dict:
    """Train `variant` on the world's pairs (noise-free or Bradley-Terry labels, then `flip_rate` flipped) and score it:
    gold-order accuracy on clean held-out pairs, ECE on held-out pairs labelled like the training ones."""
    from world_common import cached, gold_metrics, predicted_margins, train_reward_model

    from trl_more.synthetic import HELD_OUT_STYLE, TRAINING_STYLE, preference_pairs, training_columns

    settings = VARIANTS[variant]
    pairs = preference_pairs(NUM_PAIRS, temperature=temperature, flip_rate=flip_rate, seed=seed)
    train = training_columns(pairs)
    if any(name in settings for name in STRENGTH_OPTIONS):
        strength = cached(
            "world_strength",
            strength_job,
            **strength_arguments(flip_rate, strength_steps, strength_mode, seed, temperature),
        )
        train = train.add_column("strength_mean", strength["mu"])
    model, tokenizer = train_reward_model(train, seed, **{**settings, "max_steps": steps})
    style = HELD_OUT_STYLE if held_out_style else TRAINING_STYLE
    clean = preference_pairs(TEST_PAIRS, temperature=None, seed=20_000 + seed, style=style)
    like_training = preference_pairs(
        TEST_PAIRS, temperature=temperature, flip_rate=flip_rate, seed=30_000 + seed, style=style
    )
    accuracy = gold_metrics(predicted_margins(model, tokenizer, clean), clean)["gold_accuracy"]
    ece = gold_metrics(predicted_margins(model, tokenizer, like_training), like_training)["ece"]
    return {"gold_accuracy": accuracy, "ece": ece}


def strength_arguments(flip_rate: float, steps: int, mode: str, seed: int, temperature: float | None) -> dict:
    """The arguments of the `strength_job` whose pairs are the variant's training pairs."""
    arguments = {"num_pairs": NUM_PAIRS, "flip_rate": flip_rate, "steps": steps, "mode": mode, "seed": seed}
    return arguments if temperature is None else {**arguments, "temperature": temperature}


def strength_jobs(points: list[dict]) -> list[dict]:
    """The strength estimates the variants of `points` read, each once."""
    needed = []
    for point in points:
        if any(name in VARIANTS[point["variant"]] for name in STRENGTH_OPTIONS):
            arguments = strength_arguments(
                point["flip_rate"],
                point.get("strength_steps", REWARD_TRAINING["max_steps"]),
                point.get("strength_mode", "cross_fit"),
                point["seed"],
                point.get("temperature"),
            )
            if arguments not in needed:
                needed.append(arguments)
    return needed


def run(points: list[dict], workers: int) -> list[dict]:
    """The strength estimates first (each once, in `world_strength.py`'s cache), then the variants."""
    run_jobs("world_strength", strength_job, strength_jobs(points), workers)
    return run_jobs(BENCHMARK, denoising_job, points, workers)


# ---------------------------------------------------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------------------------------------------------


def flip_rate_sweep(options) -> tuple[list[str], dict]:
    points = [
        {"flip_rate": rate, "variant": variant, "seed": seed}
        for rate in options.flip_rates
        for variant in VARIANTS
        for seed in options.seeds
    ]
    results = dict(zip(((p["flip_rate"], p["variant"], p["seed"]) for p in points), run(points, options.workers)))
    rates, seeds = options.flip_rates, options.seeds
    lines = ["### Gold-order accuracy (%) on clean held-out pairs", ""]
    lines += [
        "| variant | " + " | ".join(f"{rate:.0%} flips" for rate in rates) + " |",
        "|---" * (len(rates) + 1) + "|",
    ]
    for variant in VARIANTS:
        row = [cell([results[(rate, variant, s)]["gold_accuracy"] for s in seeds], 100) for rate in rates]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    lines += ["", "### ECE on held-out pairs labelled like the training pairs", ""]
    lines += [
        "| variant | " + " | ".join(f"{rate:.0%} flips" for rate in rates) + " |",
        "|---" * (len(rates) + 1) + "|",
    ]
    for variant in VARIANTS:
        row = [cell([results[(rate, variant, s)]["ece"] for s in seeds], digits=3) for rate in rates]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    lines += ["", "### Share of the accuracy the flips cost that each variant recovers (paired by seed)", ""]
    noisy = [rate for rate in rates if rate > 0]
    if 0.0 in rates and noisy:
        lines += ["| variant | " + " | ".join(f"{rate:.0%} flips" for rate in noisy) + " |"]
        lines += ["|---" * (len(noisy) + 1) + "|"]
        for variant in VARIANTS:
            row = []
            for rate in noisy:
                clean = np.array([results[(0.0, "baseline", s)]["gold_accuracy"] for s in seeds])
                base = np.array([results[(rate, "baseline", s)]["gold_accuracy"] for s in seeds])
                mine = np.array([results[(rate, variant, s)]["gold_accuracy"] for s in seeds])
                cost = (clean - base).mean()
                row.append(
                    f"{cell(100 * (mine - base), digits=2)} pts ({(mine - base).mean() / cost:.0%} of {100 * cost:.2f})"
                )
            lines.append(f"| {variant} | " + " | ".join(row) + " |")
        lines += ["", "At 0% flips, each variant's change against the baseline (points, paired):", ""]
        for variant in list(VARIANTS)[1:]:
            delta = [
                results[(0.0, variant, s)]["gold_accuracy"] - results[(0.0, "baseline", s)]["gold_accuracy"]
                for s in seeds
            ]
            lines.append(f"- {variant}: {cell(delta, 100, 2)}")
    return lines, results


def length_sweep(options) -> list[str]:
    seeds = options.seeds[:3]
    steps_per_epoch = NUM_PAIRS // REWARD_TRAINING["per_device_train_batch_size"]
    lengths = {"1 epoch": steps_per_epoch, "3 epochs": 3 * steps_per_epoch}
    points = []
    for final in lengths.values():
        for seed in seeds:
            points += [{"flip_rate": rate, "variant": "baseline", "seed": seed, "steps": final} for rate in (0.0, 0.3)]
            for member in lengths.values():
                for mode in ("seeds", "cross_fit"):
                    points.append(
                        {
                            "flip_rate": 0.3,
                            "variant": "flip mu<0",
                            "seed": seed,
                            "steps": final,
                            "strength_steps": member,
                            "strength_mode": mode,
                        }
                    )
    outputs = run(points, options.workers)
    result = {tuple(sorted(p.items())): o["gold_accuracy"] for p, o in zip(points, outputs)}

    def accuracy(**point):
        return np.array([result[tuple(sorted({**point, "seed": s}.items()))] for s in seeds])

    lines = [
        "| final model | strength members | mode | accuracy (%) | recovered of the lost accuracy |",
        "|---|---|---|---|---|",
    ]
    for final_name, final in lengths.items():
        clean = accuracy(flip_rate=0.0, variant="baseline", steps=final)
        base = accuracy(flip_rate=0.3, variant="baseline", steps=final)
        lines.append(f"| {final_name} | — | baseline, 30% flips | {cell(base, 100)} | (clean: {cell(clean, 100)}) |")
        for member_name, member in lengths.items():
            for mode in ("seeds", "cross_fit"):
                mine = accuracy(
                    flip_rate=0.3, variant="flip mu<0", steps=final, strength_steps=member, strength_mode=mode
                )
                share = (mine - base).mean() / (clean - base).mean()
                lines.append(f"| {final_name} | {member_name} | {mode} | {cell(mine, 100)} | {share:.0%} |")
    return lines


def ambiguity(options) -> list[str]:
    variants = ["baseline", "label smoothing", "adaptive margin"]
    points = [{"flip_rate": 0.0, "variant": v, "seed": s, "temperature": 0.5} for v in variants for s in options.seeds]
    outputs = run(points, options.workers)
    lines = ["| variant | gold accuracy (%) | ECE on Bradley-Terry labels |", "|---|---|---|"]
    for variant in variants:
        rows = [o for p, o in zip(points, outputs) if p["variant"] == variant]
        lines.append(
            f"| {variant} | {cell([r['gold_accuracy'] for r in rows], 100)} | {cell([r['ece'] for r in rows], digits=3)} |"
        )
    return lines


def held_out_styles(options) -> list[str]:
    variants = ["baseline", "SimCSE", "SwAV (differences)"]
    points = [
        {"flip_rate": rate, "variant": v, "seed": s, "held_out_style": True}
        for rate in (0.0, 0.2)
        for v in variants
        for s in options.seeds
    ]
    outputs = run(points, options.workers)
    lines = ["| variant | 0% flips | 20% flips |", "|---|---|---|"]
    for variant in variants:
        row = [
            cell(
                [
                    o["gold_accuracy"]
                    for p, o in zip(points, outputs)
                    if p["variant"] == variant and p["flip_rate"] == rate
                ],
                100,
            )
            for rate in (0.0, 0.2)
        ]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    return lines


def reference_flip_job(seed: int) -> dict:
    """Part 5: the package's flip where mu < 0 against the same flip done by hand, same seed and data."""
    from world_common import cached, predicted_margins, train_reward_model

    from trl_more.synthetic import preference_pairs, training_columns

    pairs = training_columns(preference_pairs(NUM_PAIRS, temperature=None, flip_rate=0.2, seed=seed))
    mu = cached(
        "world_strength",
        strength_job,
        **strength_arguments(0.2, REWARD_TRAINING["max_steps"], "cross_fit", seed, None),
    )["mu"]

    def by_hand(row, index):
        weak = mu[index] < 0
        return {
            **row,
            "chosen": row["rejected"] if weak else row["chosen"],
            "rejected": row["chosen"] if weak else row["rejected"],
        }

    test = preference_pairs(TEST_PAIRS, temperature=None, seed=20_000 + seed)
    package, tokenizer = train_reward_model(pairs.add_column("strength_mean", mu), seed, **VARIANTS["flip mu<0"])
    reference, _ = train_reward_model(pairs.map(by_hand, with_indices=True), seed)
    difference = np.abs(predicted_margins(package, tokenizer, test) - predicted_margins(reference, tokenizer, test))
    return {"max_difference": float(difference.max()), "flipped_by_hand": int(np.sum(np.asarray(mu) < 0))}


def plot(results: dict, options) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=100)
    left, right = figure.subplots(1, 2)
    rates = options.flip_rates
    for index, variant in enumerate(VARIANTS):
        for axes, key, scale in ((left, "gold_accuracy", 100), (right, "ece", 1)):
            stats = [interval([scale * results[(rate, variant, s)][key] for s in options.seeds]) for rate in rates]
            axes.errorbar(
                [100 * rate + 0.4 * (index - 3.5) for rate in rates],
                [m for m, _ in stats],
                yerr=[h for _, h in stats],
                marker="o",
                capsize=2,
                label=variant,
            )
    left.set(
        xlabel="flipped training labels (%)", ylabel="gold-order accuracy (%)", title="Accuracy, clean test pairs"
    )
    right.set(xlabel="flipped training labels (%)", ylabel="ECE", title="Calibration, test labels like training")
    left.legend(fontsize="small")
    figure.tight_layout()
    RESULTS_DIR.mkdir(exist_ok=True)
    figure.savefig(RESULTS_DIR / f"{BENCHMARK}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--flip_rates", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.4])
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    lines = [
        f"Machine: {machine_description()}",
        "",
        f"{NUM_PAIRS} noise-free pairs (one source) with uniform flips; tiny models, {REWARD_TRAINING['max_steps']} steps "
        f"of {REWARD_TRAINING['per_device_train_batch_size']}; seeds {options.seeds}; mean ± 95% interval.",
        "",
    ]
    if 1 in options.parts:
        sweep, results = flip_rate_sweep(options)
        lines += ["## 1. Flip rate", "", *sweep, ""]
        plot(results, options)
    if 2 in options.parts:
        lines += ["## 2. Training length (30% flips, flip where mu < 0)", "", *length_sweep(options), ""]
    if 3 in options.parts:
        lines += ["## 3. Bradley-Terry ambiguity (temperature 0.5, no flips)", "", *ambiguity(options), ""]
    if 4 in options.parts:
        lines += ["## 4. Held-out response styles: gold accuracy (%)", "", *held_out_styles(options), ""]
    if 5 in options.parts:
        check = run_jobs(BENCHMARK, reference_flip_job, [{"seed": options.seeds[0]}], 1)[0]
        lines += [
            "## 5. Reference check of flip where mu < 0",
            "",
            f"{check['flipped_by_hand']} pairs with mu < 0 swapped by hand and trained with the plain loss: the "
            f"held-out margins differ from the package's `flip_below_strength=0` by at most "
            f"{check['max_difference']:.2e}.",
            "",
        ]
    write_report(BENCHMARK, lines)


if __name__ == "__main__":
    main()
