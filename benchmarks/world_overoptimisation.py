"""Over-optimisation in the known-answer world: a single proxy against an ensemble (mean and lower-bound selection)
and WARM (issue 38, the over-optimisation measurement).

The setting is `world_rejection_sampling.py`'s (its docstring says why each choice): per seed, the same SFT policy,
prompts and sampling seeds in every arm, 5 RJS iterations of 256 prompts x 4 samples (best of 4), and a proxy with a
known flaw: trained on pairs that never repeat a helpful word, it counts a repeat as helpfulness, which the gold
reward ignores and the policy learns to exploit. The arms select with:

- `gold`: the gold reward itself (what RJS does with a perfect reward model);
- `fixed`: the single proxy of `world_rejection_sampling.py` (400 steps from a random initialisation);
- `one_member`: member 0 of the ensemble below alone (the proxy's pairs, fine-tuned from the warmed-up model): tells
  what the ensembles and WARM gain from several members from what the warm-up alone gives;
- `ensemble_mean`: M = 4 members, their rewards standardised (each member stores the mean and standard deviation of
  its rewards on held-out responses, `set_reward_statistics`) and averaged (`ensemble="mean"`);
- `ensemble_lower_bound`: the same 4, mean minus k = 1 standard deviation of the members (`ensemble="mean_minus_std"`);
- `warm`: the weight average of the same 4 (`average_reward_models`), one model.

The members follow WARM's premise, one shared initialisation fine-tuned (`world_warm.py`'s setting): a reward model
warmed up on other pairs of the same style (seed 70,000 + s, as many pairs and steps as the proxy), then fine-tuned by
every member for half the proxy's steps at `world_warm.FINE_TUNING`'s learning rate on its own pairs (member m: the
pairs of data seed s + 1000 m, so member 0 has the fixed proxy's pairs). Like the proxy, no member has seen a repeat:
the flaw is shared, as the flaws of reward models trained on one kind of data are. Whether averaging their opinions
(or distrusting where they disagree) still helps is the question.

Measured per round (`world_rejection_sampling.run_rjs`): the gold reward of the policy's samples on 256 evaluation
prompts, how often they repeat a helpful word, and the proxy-gold gap of the iteration's selected samples (their mean
selection score minus their mean gold reward, each standardised on the initial policy's evaluation samples; for the
ensembles the selection score is the combined one the selector maximised); the gold-order accuracy of the selector on
the policy's samples and on held-out pairs of the training style. Paired differences per seed against `fixed` and
against `one_member`.

Target (issue 38): a smaller proxy-gold gap at the same or higher gold reward.

    python benchmarks/world_overoptimisation.py               # 5 seeds x 5 arms
    python benchmarks/world_overoptimisation.py --smoke       # tiny settings, 1 seed
    python benchmarks/world_overoptimisation.py --seeds 0 1 2 # fewer seeds

Results are cached in outputs/benchmarks/world/world_overoptimisation/ (the initial policy and proxy in
world_rejection_sampling's folder, shared with it); the report is written there and printed, the plot of the default
run goes to benchmarks/results/world_overoptimisation.png.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from run_all import machine_description
from world_common import CACHE, RESULTS_DIR, cell, interval, run_jobs, train_reward_model, world_options, write_report
from world_rejection_sampling import (
    INITIAL_FIELDS,
    SMOKE,
    Settings,
    load_initial_models,
    plot,
    proxy_pairs,
    round_table,
    run_rjs,
    scorer_accuracy,
    series,
)
from world_warm import FINE_TUNING


BENCHMARK = "world_overoptimisation"
NUM_MEMBERS = 4
STD_COEF = 1.0  # k of the lower bound, mean - k std
ARMS = ("gold", "fixed", "one_member", "ensemble_mean", "ensemble_lower_bound", "warm")
ENSEMBLE_MODES = {"ensemble_mean": "mean", "ensemble_lower_bound": "mean_minus_std"}


def members_folder(seed: int, settings: dict) -> Path:
    key = json.dumps({name: settings[name] for name in (*INITIAL_FIELDS, "test_pairs")}, sort_keys=True)
    return CACHE / BENCHMARK / f"members-{hashlib.sha1(key.encode()).hexdigest()[:12]}" / f"seed-{seed}"


def member_pairs(seed: int, member: int, options: Settings):
    """Member m's training pairs: the proxy's kind of pairs with data seed s + 1000 m (member 0: the proxy's own)."""
    from trl_more.synthetic import preference_pairs

    return preference_pairs(options.proxy_pairs, seed=seed + 1000 * member, temperature=options.label_temperature)


def load_members(seed: int, settings: dict) -> list:
    """The seed's M members, trained on first use (from one warmed-up model, with their reward statistics stored)
    and read back from their folder afterwards."""
    from transformers import AutoModelForSequenceClassification

    from trl_more.rewards import RewardModelScorer, fit_reward_statistics, set_reward_statistics
    from trl_more.synthetic import preference_pairs, training_columns

    options = Settings(**settings)
    folder = members_folder(seed, settings)
    if not (folder / f"member-{NUM_MEMBERS - 1}" / "config.json").is_file():
        warm_up_pairs = preference_pairs(
            options.proxy_pairs, seed=70_000 + seed, temperature=options.label_temperature
        )
        start, tokenizer = train_reward_model(training_columns(warm_up_pairs), seed, max_steps=options.proxy_steps)
        # Held-out responses for each member's reward statistics (the common scale of the ensemble).
        calibration = preference_pairs(options.test_pairs, seed=20_000 + seed, temperature=options.label_temperature)
        prompts = list(calibration["prompt"]) * 2
        responses = list(calibration["chosen"]) + list(calibration["rejected"])
        for member in range(NUM_MEMBERS):
            model, _ = train_reward_model(
                training_columns(member_pairs(seed, member, options)),
                seed + 1000 * member,
                initial_model=start,
                max_steps=options.proxy_steps // 2,
                learning_rate=FINE_TUNING["learning_rate"],
            )
            rewards = RewardModelScorer([model], [tokenizer], batch_size=256).score(prompts, responses).combined
            set_reward_statistics(model, *fit_reward_statistics(rewards.double().numpy()))
            model.save_pretrained(folder / f"member-{member}")
    return [AutoModelForSequenceClassification.from_pretrained(folder / f"member-{m}") for m in range(NUM_MEMBERS)]


def prepare_job(seed: int, settings: dict) -> dict:
    """The seed's policy, proxy and members (trained once, before the RJS jobs read them); the gold-order accuracy
    on held-out pairs of the training style of the proxy, every member, the ensemble's two scores and WARM."""
    from trl_more.rewards import RewardModelScorer, average_reward_models

    options = Settings(**settings)
    _, proxy, tokenizer = load_initial_models(seed, settings)
    members = load_members(seed, settings)
    test = proxy_pairs(seed, options, test=True)

    def accuracy(models: list, ensemble: str = "mean") -> float:
        scorer = RewardModelScorer(models, [tokenizer] * len(models), ensemble=ensemble, std_coef=STD_COEF)
        return scorer_accuracy(scorer, test)

    return {
        "fixed": accuracy([proxy]),
        "members": [accuracy([member]) for member in members],
        "ensemble_mean": accuracy(members),
        "ensemble_lower_bound": accuracy(members, "mean_minus_std"),
        "warm": accuracy([average_reward_models(members)]),
    }


def overoptimisation_job(seed: int, arm: str, settings: dict) -> dict:
    """RJS of the seed's SFT policy selecting with the arm's reward model(s); the measurements of every round."""
    from trl_more.rewards import average_reward_models
    from trl_more.synthetic import gold_reward_model

    options = Settings(**settings)
    policy, proxy, tokenizer = load_initial_models(seed, settings)
    extra = {}
    if arm == "gold":
        reward_models = gold_reward_model(tokenizer)
    elif arm == "fixed":
        reward_models = proxy
    elif arm == "one_member":
        reward_models = load_members(seed, settings)[0]
    elif arm == "warm":
        reward_models = average_reward_models(load_members(seed, settings))
    else:
        reward_models = load_members(seed, settings)
        extra = {"ensemble": ENSEMBLE_MODES[arm], "ensemble_std_coef": STD_COEF}
    return run_rjs(seed, options, policy, tokenizer, reward_models, proxy.eval(), diagnostics=False, **extra)


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def versus(
    runs, names: list[str], metric: str, seeds, scale: float = 1.0, digits: int = 2, baseline: str = "fixed"
) -> list[str]:
    """Per arm and round, the paired difference arm minus `baseline` of `metric` (mean ± 95% interval over seeds)."""
    rounds = series(runs, names[0], "round", seeds).shape[1]
    lines = [f"| arm minus {baseline} | " + " | ".join(f"round {r}" for r in range(rounds)) + " |"]
    lines.append("|---" * (rounds + 1) + "|")
    for name in names:
        table = series(runs, name, metric, seeds) - series(runs, baseline, metric, seeds)
        cells = ["" if np.isnan(column).all() else cell(column, scale, digits) for column in table.T]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def targets(runs, names: list[str], seeds, iterations: int, baseline: str = "fixed") -> list[str]:
    """The issue's target per arm: a smaller gap (the paired difference's 95% interval below 0) at the same or higher
    gold reward (the paired difference's interval not entirely below 0), at the last iteration and averaged over the
    iterations."""
    lines = [
        f"| arm | when | gap minus {baseline} | gold reward minus {baseline} | repeats minus {baseline} (points) | "
        "smaller gap | "
        "same or higher gold | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for when, pick in ((f"round {iterations}", lambda t: t[:, iterations]), ("mean of rounds 1 to last", None)):
            values = {}
            for metric in ("gap", "gold_mean", "repeat_rate"):
                table = series(runs, name, metric, seeds) - series(runs, baseline, metric, seeds)
                values[metric] = pick(table) if pick else table[:, 1:].mean(axis=1)
            gap_mean, gap_half = interval(values["gap"])
            gold_mean, gold_half = interval(values["gold_mean"])
            smaller, same = gap_mean + gap_half < 0, gold_mean + gold_half >= 0
            lines.append(
                f"| {name} | {when} | {cell(values['gap'], 1, 2)} | {cell(values['gold_mean'], 1, 2)} | "
                f"{cell(values['repeat_rate'], 100)} | {'yes' if smaller else 'no'} | {'yes' if same else 'no'} | "
                f"{'hit' if smaller and same else 'missed'} |"
            )
    return lines


def main() -> None:
    options = world_options(
        __doc__.split("\n\n")[0], "tiny settings and seed 0 only: a quick check", BENCHMARK, Settings(), SMOKE
    )
    seeds, settings, report = options.seeds, options.settings, options.report
    machine, start = machine_description(), time.perf_counter()
    # The models first (one job per seed, so that no two RJS jobs train the same seed's models at once).
    jobs = [{"seed": seed, "arm": arm, "settings": settings} for seed in seeds for arm in ARMS]
    prepared = run_jobs(
        BENCHMARK, prepare_job, [{"seed": seed, "settings": settings} for seed in seeds], options.workers
    )
    prepare_minutes = (time.perf_counter() - start) / 60
    outputs = run_jobs(BENCHMARK, overoptimisation_job, jobs, options.workers)
    runs = {(job["seed"], job["arm"]): output for job, output in zip(jobs, outputs)}
    minutes = (time.perf_counter() - start) / 60
    job_minutes = sum(output["seconds"] for output in outputs) / 60
    names, proxies, challengers, ensembles = list(ARMS), list(ARMS[1:]), list(ARMS[2:]), list(ARMS[3:])
    iterations = settings["iterations"]
    panels = [
        ("gold_mean", "gold reward of the policy's samples", names, 1),
        ("repeat_rate", "samples repeating a helpful word (%)", names, 100),
        ("gap", "proxy-gold gap of the selected samples (standardised)", proxies, 1),
        ("accuracy_on_policy", "selector's gold-order accuracy on the policy's samples (%)", proxies, 100),
    ]
    plot_dir = CACHE / report if options.smoke or options.seeds != [0, 1, 2, 3, 4] else RESULTS_DIR
    plot_path = plot(runs, names, seeds, plot_dir / f"{report}.png", panels, "Over-optimisation in the world")
    accuracy_rows = [
        ("fixed proxy", [p["fixed"] for p in prepared]),
        ("member 0 (the one_member arm)", [p["members"][0] for p in prepared]),
        ("one member (mean over the 4)", [np.mean(p["members"]) for p in prepared]),
        ("ensemble, mean", [p["ensemble_mean"] for p in prepared]),
        ("ensemble, mean - 1 std", [p["ensemble_lower_bound"] for p in prepared]),
        ("WARM (weight average)", [p["warm"] for p in prepared]),
    ]
    lines = [
        f"Machine: {machine}",
        "",
        f"Command: `python benchmarks/world_overoptimisation.py{' --smoke' * options.smoke}` (seeds {seeds}, "
        f"{options.workers} one-thread workers). Wall time {minutes:.1f} min, of which {prepare_minutes:.1f} min for "
        f"the initial models and members (jobs found in the cache are read back, not run again); the RJS runs took "
        f"{job_minutes:.1f} min of worker time when they ran.",
        "",
        f"Settings: {settings}; M = {NUM_MEMBERS}, k = {STD_COEF:g}. Mean ± 95% interval over the seeds everywhere.",
        "",
        f"Plot: {plot_path.relative_to(RESULTS_DIR.parents[1])}",
        "",
        "Gold-order accuracy on held-out pairs of the training style before RJS (%):",
        "",
        "| selector | accuracy |",
        "|---|---|",
        *(f"| {label} | {cell(values, 100)} |" for label, values in accuracy_rows),
        "",
        "Gold reward of the policy's samples (mean over 4 samples of the evaluation prompts):",
        "",
        *round_table(runs, names, "gold_mean", seeds),
        "",
        *versus(runs, ["gold", *challengers], "gold_mean", seeds),
        "",
        *versus(runs, ensembles, "gold_mean", seeds, baseline="one_member"),
        "",
        "Proxy-gold gap of the iteration's selected samples (selection score minus gold, both standardised on the "
        "initial policy's samples):",
        "",
        *round_table(runs, proxies, "gap", seeds),
        "",
        *versus(runs, challengers, "gap", seeds),
        "",
        *versus(runs, ensembles, "gap", seeds, baseline="one_member"),
        "",
        "Samples repeating a helpful word (%):",
        "",
        *round_table(runs, names, "repeat_rate", seeds),
        "",
        *versus(runs, ["gold", *challengers], "repeat_rate", seeds, 100, 1),
        "",
        "Gold reward of the selected samples:",
        "",
        *round_table(runs, names, "selected_gold_mean", seeds),
        "",
        "Selector's gold-order accuracy on pairs of the current policy's samples (%):",
        "",
        *round_table(runs, proxies, "accuracy_on_policy", seeds),
        "",
        "The fixed proxy's accuracy on the very same pairs (%):",
        "",
        *round_table(runs, proxies, "initial_proxy_accuracy_on_policy", seeds),
        "",
        "Target (a smaller proxy-gold gap at the same or higher gold reward; paired differences against the fixed "
        "proxy, 95% intervals):",
        "",
        *targets(runs, challengers, seeds, iterations),
        "",
        "The same against one member alone (what several members add to the warm-up):",
        "",
        *targets(runs, ensembles, seeds, iterations, baseline="one_member"),
    ]
    write_report(report, lines)


if __name__ == "__main__":
    main()
