"""GRM's text regularisation in the known-answer world, next to one reward model, the prediction ensemble and WARM.

GRM's claim (docs/robust_rewards.md): keeping the reward model's hidden states able to generate text (an SFT loss on
the chosen responses, weight w, through the base causal LM's head) makes the reward generalise better to responses
unlike its training pairs. Its premise is a base language model that knows more text than the preference pairs show,
so that there is something for the regulariser to keep.

Per seed: a base causal LM (the world's SFT policy, `train_sft_policy`, 300 steps on 2,000 examples) taught either only
the training response style or both the training and the held-out style (`BASES`: the premise holds only for the
second), saved and loaded as a reward model; then, on the same 2,000 Bradley-Terry pairs of the training style (T =
0.5), M = 4 reward models trained from it with their own data orders, and GRM (`text_regularization_coefficient` w in
`WEIGHTS`) with member 0's data order, so that "GRM minus one member" is paired and isolates the regulariser. Two
regimes (`REGIMES`): the world's reward training (`REWARD_TRAINING`), and the gentler fine-tuning of WARM's setting
in world_warm.py. Compared, on held-out pairs of the training and of the held-out style (the evaluation
sets of `world_warm.py`): one member, the prediction ensemble of the 4, their weight average (WARM), and GRM; gold-order
accuracy on clean pairs and ECE on their Bradley-Terry relabelling. A reward model trained from a random initialisation
(the world's usual one) is the reference for what the base itself brings.

    python benchmarks/world_grm.py              # 5 seeds, both bases, both regimes (time: benchmarks/RESULTS.md)
    python benchmarks/world_grm.py --smoke      # seed 0, short training: the wiring
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile

from run_all import machine_description
from world_common import cell, run_jobs, world_options, write_report
from world_warm import ensemble_margins, evaluation_sets, method_metrics


BENCHMARK = "world_grm"
NUM_MODELS = 4
TRAIN_PAIRS = 2000
TEMPERATURE = 0.5
WEIGHTS = (0.01, 0.1)  # GRM's w: the paper's 0.01, and ten times more
BASES = {
    "training style": "a base LM taught only the training style (GRM's premise does not hold)",
    "both styles": "a base LM taught the training and the held-out style (GRM's premise holds)",
}
# How far the reward models move from the base: the world's reward training, and the gentler fine-tuning of WARM's
# setting in world_warm.py (its FINE_TUNING).
REGIMES = {
    "world": ({"max_steps": 400, "learning_rate": 3e-3}, "the world's reward training (400 steps at lr 3e-3)"),
    "fine-tuning": ({"max_steps": 200, "learning_rate": 1e-3}, "fine-tuning (200 steps at lr 1e-3)"),
}


@dataclasses.dataclass
class Settings:
    sft_steps: int = 300
    sft_examples: int = 2000
    reward_steps: int | None = None  # None: the regime's


SMOKE = Settings(sft_steps=20, sft_examples=200, reward_steps=20)


def method_names() -> list[str]:
    """The report's rows, in order."""
    return [
        "random initialisation (one model)",
        "one member",
        "prediction ensemble",
        "weight average (WARM)",
        *(f"GRM, w = {weight:g}" for weight in WEIGHTS),
    ]


def grm_job(seed: int, base: str, regime: str, settings: dict) -> dict:
    """Train the base LM for `base` (one of `BASES`), the members and the GRM models in `regime` (one of `REGIMES`);
    per evaluation set and method: gold accuracy and ECE."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from world_common import predicted_margins, train_reward_model

    from trl_more.rewards import average_reward_models
    from trl_more.synthetic import HELD_OUT_STYLE, TRAINING_STYLE, preference_pairs, training_columns, world_tokenizer
    from trl_more.synthetic.models import train_sft_policy

    train = training_columns(preference_pairs(TRAIN_PAIRS, temperature=TEMPERATURE, seed=seed))
    styles = (TRAINING_STYLE,) if base == "training style" else (TRAINING_STYLE, HELD_OUT_STYLE)
    policy = train_sft_policy(seed, settings["sft_steps"], settings["sft_examples"], styles)
    reward_steps = dict(REGIMES[regime][0])
    if settings["reward_steps"] is not None:
        reward_steps["max_steps"] = settings["reward_steps"]
    models = {}
    with tempfile.TemporaryDirectory() as folder:  # GRM reads the LM head from the base's checkpoint
        policy.save_pretrained(folder)
        torch.manual_seed(seed)
        start = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
        members = [
            train_reward_model(train, 1000 * seed + member, initial_model=start, **reward_steps)[0]
            for member in range(NUM_MODELS)
        ]
        for weight in WEIGHTS:
            models[f"GRM, w = {weight:g}"], _ = train_reward_model(
                train, 1000 * seed, initial_model=start, text_regularization_coefficient=weight, **reward_steps
            )
    models["random initialisation (one model)"], _ = train_reward_model(train, 1000 * seed, **reward_steps)
    models["one member"] = members[0]
    models["weight average (WARM)"] = average_reward_models(members)
    tokenizer = world_tokenizer()
    result = {}
    for name, (clean, labelled) in evaluation_sets(seed).items():
        margins = {
            method: [predicted_margins(model, tokenizer, pairs) for pairs in (clean, labelled)]
            for method, model in models.items()
        }
        member_margins = [
            [predicted_margins(model, tokenizer, pairs) for pairs in (clean, labelled)] for model in members
        ]
        margins["prediction ensemble"] = ensemble_margins(member_margins)
        result[name] = method_metrics(margins, clean, labelled)
    return result


def main() -> None:
    options = world_options(__doc__.split("\n\n")[0], "seed 0, short training", BENCHMARK, Settings(), SMOKE)
    seeds = options.seeds
    jobs = [
        {"seed": seed, "base": base, "regime": regime, "settings": options.settings}
        for regime in REGIMES
        for base in BASES
        for seed in seeds
    ]
    outputs = run_jobs(options.report, grm_job, jobs, options.workers)
    results = {(job["regime"], job["base"], job["seed"]): output for job, output in zip(jobs, outputs)}
    sets = list(evaluation_sets(0))
    lines = [
        f"Machine: {machine_description()}",
        "",
        f"M = {NUM_MODELS} members, {TRAIN_PAIRS} Bradley-Terry pairs (T = {TEMPERATURE}) of the training style, "
        f"seeds {seeds}, settings {options.settings}; mean ± 95% interval over the seeds. Accuracy: gold order of "
        "clean held-out pairs; ECE: Bradley-Terry labels.",
        "",
    ]
    for (regime, (_, regime_title)), (base, title) in itertools.product(REGIMES.items(), BASES.items()):
        lines += [f"### {regime_title[0].upper()}{regime_title[1:]}, from {title}", ""]
        lines += ["| method | " + " | ".join(f"{name}: accuracy (%) / ECE" for name in sets) + " |", "|---|---|---|"]
        for method in method_names():
            cells = []
            for name in sets:
                values = [results[(regime, base, seed)][name][method] for seed in seeds]
                accuracy, ece = [v["gold_accuracy"] for v in values], [v["ece"] for v in values]
                cells.append(f"{cell(accuracy, 100)} / {cell(ece, digits=3)}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        for name in sets:
            for method in [*(f"GRM, w = {weight:g}" for weight in WEIGHTS), "weight average (WARM)"]:
                gap = [
                    100
                    * (
                        results[(regime, base, seed)][name][method]["gold_accuracy"]
                        - results[(regime, base, seed)][name]["one member"]["gold_accuracy"]
                    )
                    for seed in seeds
                ]
                lines.append(f"- {name}: {method} minus one member, accuracy {cell(gap, digits=2)} points (paired)")
        lines.append("")
    write_report(options.report, lines)


if __name__ == "__main__":
    main()
