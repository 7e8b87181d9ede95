"""WARM in the known-answer world: the weight average of M reward models against their prediction ensemble.

WARM's claim (docs/robust_rewards.md): M reward models fine-tuned from one initialisation, averaged in weight space,
are as accurate and as well calibrated as the prediction ensemble of the same M models, at 1/M of its scoring cost.
Its premise is the shared initialisation: models trained from different initialisations should not average well.

Per seed: M = 4 tiny reward models (`trl_more.synthetic.models`' training) on the same 2,000 Bradley-Terry pairs
(T = 0.5, source `neutral`), each with its own training seed (data order), starting from (`INITIALISATIONS`): one
reward model warmed up on 2,000 other pairs (400 steps), fine-tuned for 200 steps at a third of the learning rate
(WARM's setting: fine-tuning from one pre-trained model); one random initialisation (400 steps from scratch); or each
its own random initialisation (the control). Compared, on held-out pairs of the training style and of the held-out style
(`HELD_OUT_STYLE`: fillers never seen in training, longer answers): one member alone, the prediction ensemble (the
mean of the members' margins), and the weight average (`average_reward_models`); gold-order accuracy on clean pairs,
ECE on Bradley-Terry labels of the same pairs; and the time to score the evaluation pairs with the ensemble against
the average.

    python benchmarks/world_warm.py                 # 5 seeds, the three initialisations (time: benchmarks/RESULTS.md)
    python benchmarks/world_warm.py --seeds 0       # smoke
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from run_all import machine_description
from world_common import cell, gold_metrics, run_jobs, write_report


BENCHMARK = "world_warm"
NUM_MODELS = 4
TRAIN_PAIRS = 2000
TEST_PAIRS = 600
TEMPERATURE = 0.5
METHODS = ("one member", "prediction ensemble", "weight average")
# Where the members start: WARM's setting (fine-tuning one reward model warmed up on other pairs), one random
# initialisation (trained from scratch: far from fine-tuning), and each its own random one (the control).
INITIALISATIONS = {
    "warm-up": "fine-tuned from one warmed-up reward model (WARM's setting)",
    "one random": "trained from one random initialisation",
    "own random": "each trained from its own random initialisation (control)",
}
# The members' fine-tuning of the warmed-up model: half the steps, a third of the learning rate.
FINE_TUNING = {"max_steps": 200, "learning_rate": 1e-3}


def evaluation_sets(seed: int) -> dict:
    """Clean pairs (gold accuracy) and their Bradley-Terry relabelling (ECE), in the training and held-out styles."""
    from trl_more.synthetic import HELD_OUT_STYLE, TRAINING_STYLE, preference_pairs, relabelled

    sets = {}
    for number, (name, style) in enumerate((("training style", TRAINING_STYLE), ("held-out style", HELD_OUT_STYLE))):
        clean = preference_pairs(TEST_PAIRS, temperature=None, style=style, seed=60_000 + 10 * seed + number)
        sets[name] = (clean, relabelled(clean, TEMPERATURE, seed))
    return sets


def ensemble_margins(member_margins: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The prediction ensemble's [clean, relabelled] margins: the mean of the members' (each [clean, relabelled])."""
    return [np.mean([margins[index] for margins in member_margins], axis=0) for index in (0, 1)]


def method_metrics(margins: dict[str, list[np.ndarray]], clean, labelled) -> dict[str, dict[str, float]]:
    """Per method, the gold accuracy of its margins on the clean pairs and the ECE of its margins on their
    Bradley-Terry relabelling (`margins[method]` holds the two, in that order)."""
    return {
        method: {
            "gold_accuracy": gold_metrics(values[0], clean)["gold_accuracy"],
            "ece": gold_metrics(values[1], labelled)["ece"],
        }
        for method, values in margins.items()
    }


def warm_job(seed: int, initialisation: str) -> dict:
    """Train the M members from `initialisation` (one of `INITIALISATIONS`), then per evaluation set and method: gold
    accuracy and ECE; and the scoring times."""
    from world_common import predicted_margins, train_reward_model

    from trl_more.rewards import average_reward_models
    from trl_more.synthetic import preference_pairs, training_columns, world_tokenizer
    from trl_more.testing import tiny_reward_model

    train = training_columns(preference_pairs(TRAIN_PAIRS, temperature=TEMPERATURE, seed=seed))
    settings = {}
    if initialisation == "warm-up":  # a reward model trained on other pairs, which every member fine-tunes
        warm_up_pairs = training_columns(preference_pairs(TRAIN_PAIRS, temperature=TEMPERATURE, seed=70_000 + seed))
        start, _ = train_reward_model(warm_up_pairs, seed)
        settings = FINE_TUNING
    elif initialisation == "one random":
        start = tiny_reward_model("qwen2", world_tokenizer(), seed=seed)
    members = []
    for member in range(NUM_MODELS):
        training_seed = 1000 * seed + member  # its own data order (and, for "own random", its own weights)
        initial = None if initialisation == "own random" else start
        model, tokenizer = train_reward_model(train, training_seed, initial_model=initial, **settings)
        members.append(model)
    averaged = average_reward_models(members)
    result: dict = {"seconds": {}}
    sets = evaluation_sets(seed)
    start = time.perf_counter()
    member_margins = {
        name: [[predicted_margins(model, tokenizer, pairs) for pairs in both] for model in members]
        for name, both in sets.items()
    }
    result["seconds"]["prediction ensemble"] = time.perf_counter() - start
    start = time.perf_counter()
    average_margins = {
        name: [predicted_margins(averaged, tokenizer, pairs) for pairs in both] for name, both in sets.items()
    }
    result["seconds"]["weight average"] = time.perf_counter() - start
    for name, (clean, labelled) in sets.items():
        margins = {
            "one member": member_margins[name][0],
            "prediction ensemble": ensemble_margins(member_margins[name]),
            "weight average": average_margins[name],
        }
        result[name] = method_metrics(margins, clean, labelled)
        result[name]["members_mean_accuracy"] = float(
            np.mean([gold_metrics(m[0], clean)["gold_accuracy"] for m in member_margins[name]])
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    seeds = options.seeds
    jobs = [{"seed": seed, "initialisation": start} for start in INITIALISATIONS for seed in seeds]
    outputs = run_jobs(BENCHMARK, warm_job, jobs, options.workers)
    results = {(job["initialisation"], job["seed"]): output for job, output in zip(jobs, outputs)}
    lines = [
        f"Machine: {machine_description()}",
        "",
        f"M = {NUM_MODELS} members, {TRAIN_PAIRS} Bradley-Terry pairs (T = {TEMPERATURE}), seeds {seeds}; "
        "mean ± 95% interval over the seeds. Accuracy: gold order of clean held-out pairs; ECE: Bradley-Terry labels.",
        "",
    ]
    for start, title in INITIALISATIONS.items():
        lines += [f"### Members {title}", ""]
        lines += ["| method | " + " | ".join(f"{name}: accuracy (%) / ECE" for name in evaluation_sets(0)) + " |"]
        lines += ["|---|---|---|"]
        for method in METHODS:
            cells = []
            for name in evaluation_sets(0):
                values = [results[(start, seed)][name][method] for seed in seeds]
                cells.append(
                    f"{cell([v['gold_accuracy'] for v in values], 100)} / {cell([v['ece'] for v in values], digits=3)}"
                )
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        for name in evaluation_sets(0):
            gap = [
                100
                * (
                    results[(start, seed)][name]["weight average"]["gold_accuracy"]
                    - results[(start, seed)][name]["prediction ensemble"]["gold_accuracy"]
                )
                for seed in seeds
            ]
            members = [100 * results[(start, seed)][name]["members_mean_accuracy"] for seed in seeds]
            lines.append(
                f"- {name}: weight average minus ensemble accuracy {cell(gap, digits=2)} points (paired); "
                f"members' mean accuracy {cell(members)}%"
            )
        ratio = [
            results[(start, seed)]["seconds"]["prediction ensemble"]
            / results[(start, seed)]["seconds"]["weight average"]
            for seed in seeds
        ]
        lines += [f"- scoring time, ensemble / weight average: {cell(ratio, digits=2)}x", ""]
    write_report(BENCHMARK, lines)


if __name__ == "__main__":
    main()
