"""Best-of-N against the gold reward in the known-answer world (issue 39): does `trl_more.metrics.best_of_n` find a
proxy's known flaw?

The world's proxy has one flaw by construction (benchmarks/world_rejection_sampling.py, point 2): it was trained on
pairs that never repeat a helpful word, so it counts a repeat as helpfulness, which the gold reward ignores. Picking
the best of more and more samples by the proxy should therefore pick more repeats and, past some N, stop gaining gold
reward: an over-optimisation point the gold pick, which picks by the known answer, does not have. Everything reaches
the package through its public API (`sample_best_of_n`, `score_best_of_n`, `expected_pick`).

Per seed (the seed fixes the models, the prompts and the sampling):

1. Policy and proxy: the SFT policy and the proxy of world_rejection_sampling.py's default settings (the same
   `load_initial_models`, read from its cache, trained there on first use): the policy answers like the world and
   repeats a helpful word in about 10% of its samples; the proxy is 89% accurate in distribution.
2. An ensemble: the proxy and `ensemble_members - 1` more reward models trained the same way on their own draws of
   the same kind of pairs (`train_reward_model`, seeds 1000 x member + seed), each given its reward statistics on the
   responses of held-out pairs (`fit_reward_statistics`), so that their rewards are combined on one scale. They share
   the flaw (no member has seen a repeat): the ensemble shows whether its lower bound (mean - 1 std) avoids what
   they disagree on.
3. Samples: `samples_per_prompt` responses to each of `prompts` evaluation prompts (world_rejection_sampling's
   evaluation prompts of the seed), sampled by `sample_best_of_n` (temperature 1, at most 16 new tokens). Why 1024
   samples of 64 prompts rather than 64 of 256: the proxy is accurate enough that its pick keeps gaining gold reward
   up to N = 64 (seed 0, 256 prompts x 64 samples: no over-optimisation point, only a growing shortfall against the
   gold pick, 0.10 at N = 2 and 0.56 at N = 64); the flaw flattens the curve only after a few hundred samples.
4. Curves: `score_best_of_n` with the proxy alone and with the ensemble, the gold being the world's gold reward as a
   function (`trl_more.synthetic.gold_reward`), prompts read as the models were trained (`chat_template="plain"`);
   N = 1, 2, 4, ..., 1024; 1000 bootstrap resamples of the prompts. Next to them, the expected share of picks that
   repeat a helpful word (`expected_pick` of the repeat indicator): the mechanism of the flaw made visible.

Reported: mean ± 95% t-interval over the seeds of every curve; every seed's over-optimisation point (the first N at
the maximum of the gold curve of a selector) and the change of the gold reward from there to the largest N with its
bootstrap interval over prompts. The plot (mean over seeds) goes to benchmarks/results/world_best_of_n.png.

    python benchmarks/world_best_of_n.py            # 5 seeds, 64 prompts x 1024 samples, 3-member ensemble
                                                    # (11 min of CPU time; 17 min on 2 cores shared with other jobs)
    python benchmarks/world_best_of_n.py --smoke    # 1 seed, 32 prompts x 16 samples (smoke models): under a minute

Results are cached in outputs/benchmarks/world/world_best_of_n/ (a rerun recomputes nothing it has); the report is
written there and printed.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from run_all import machine_description
from world_common import CACHE, RESULTS_DIR, cell, interval, run_jobs, train_reward_model, world_options, write_report
from world_rejection_sampling import SMOKE as RJS_SMOKE
from world_rejection_sampling import Settings as RJSSettings
from world_rejection_sampling import (
    best_gold,
    evaluation_prompts,
    in_distribution_accuracy,
    load_initial_models,
    proxy_pairs,
    repeats_helpful,
)


BENCHMARK = "world_best_of_n"
SELECTORS = ("proxy pick", "ensemble: mean pick", "ensemble: lower-bound pick", "gold pick", "random pick")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a job depends on (part of its cache key); `initial` are the settings of the policy and proxy."""

    initial: dict = dataclasses.field(default_factory=lambda: dataclasses.asdict(RJSSettings()))
    prompts: int = 64
    samples_per_prompt: int = 1024
    max_new_tokens: int = 16
    ensemble_members: int = 3
    std_coef: float = 1.0
    bootstrap_samples: int = 1000


SMOKE = Settings(initial=dataclasses.asdict(RJS_SMOKE), prompts=32, samples_per_prompt=16, ensemble_members=2)


def ensemble_member(seed: int, member: int, initial: RJSSettings):
    """A reward model trained like the proxy on its own draw of the proxy's kind of pairs."""
    from trl_more.synthetic import preference_pairs, training_columns

    member_seed = 1000 * member + seed
    pairs = preference_pairs(initial.proxy_pairs, seed=member_seed, temperature=initial.label_temperature)
    return train_reward_model(training_columns(pairs), member_seed, max_steps=initial.proxy_steps)[0]


def set_statistics(model, tokenizer, test_pairs) -> None:
    """The model's reward mean and std on the chosen and rejected responses of held-out pairs, stored in its config."""
    from trl_more.metrics.benchmark_scoring import score_sequences
    from trl_more.rewards import fit_reward_statistics, set_reward_statistics

    prompts = list(test_pairs["prompt"]) * 2
    responses = list(test_pairs["chosen"]) + list(test_pairs["rejected"])
    rewards = score_sequences(model, tokenizer, prompts, responses, batch_size=256, chat_template="plain").rewards
    set_reward_statistics(model, *fit_reward_statistics(rewards))


def curves_of(result) -> dict:
    """The JSON-ready parts of a `BestOfNResult` this benchmark reports."""
    return {
        "curves": {name: curve["mean"] for name, curve in result.curves.items()},
        "proxy_reward": result.proxy_reward["mean"],
        "overoptimisation": result.overoptimisation,
    }


def best_of_n_job(seed: int, settings: dict) -> dict:
    """The seed's samples, proxy and ensemble; the best-of-N curves against the gold reward, and the repeat rate of
    every selector's pick."""
    from trl_more.metrics.best_of_n import expected_pick, sample_best_of_n, score_best_of_n
    from trl_more.rejection_sampling.generation import SamplingSettings
    from trl_more.synthetic import gold_reward

    options = Settings(**settings)
    initial = RJSSettings(**options.initial)
    start = time.perf_counter()
    policy, proxy, tokenizer = load_initial_models(seed, options.initial)
    prompt_objects = evaluation_prompts(seed, dataclasses.replace(initial, eval_prompts=options.prompts))
    prompts = [prompt.text for prompt in prompt_objects]
    samples = sample_best_of_n(
        policy.eval(),
        tokenizer,
        prompts,
        options.samples_per_prompt,
        SamplingSettings(max_new_tokens=options.max_new_tokens, temperature=1.0),
        batch_size=64,
        seed=seed,
    )
    sampled = time.perf_counter()
    common = dict(chat_template="plain", batch_size=256, bootstrap_samples=options.bootstrap_samples, seed=seed)
    single = score_best_of_n(proxy, tokenizer, samples, gold=gold_reward, **common)
    test_pairs = proxy_pairs(seed, initial, test=True)
    members = [proxy] + [ensemble_member(seed, member, initial) for member in range(1, options.ensemble_members)]
    for model in members:
        set_statistics(model, tokenizer, test_pairs)
    with_gold = [{**row, "gold_rewards": gold} for row, gold in zip(samples, single.gold_rewards.tolist())]
    ensemble = score_best_of_n(members, [tokenizer] * len(members), with_gold, std_coef=options.std_coef, **common)

    repeats = np.array([[float(repeats_helpful(text)) for text in row["responses"]] for row in samples])
    pickers = {
        "proxy pick": single.proxy_rewards,
        "ensemble: mean pick": ensemble.proxy_rewards,
        "ensemble: lower-bound pick": ensemble.lower_bound_rewards,
        "gold pick": single.gold_rewards,
    }
    repeat_rate = {
        name: [float(expected_pick(keys, repeats, n).mean()) for n in single.ns] for name, keys in pickers.items()
    }
    return {
        "ns": single.ns,
        "kl": single.kl,
        "single": curves_of(single),
        "ensemble": curves_of(ensemble),
        "repeat_rate": repeat_rate,
        "sample_repeat_rate": float(repeats.mean()),
        "best_possible": float(np.mean([best_gold(prompt) for prompt in prompt_objects])),
        "member_accuracy": [in_distribution_accuracy(model, tokenizer, test_pairs) for model in members],
        "examples": [f"{row['prompt']}{row['responses'][0]}" for row in samples[:4]],
        "sampling_seconds": sampled - start,
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def selector_series(run: dict, name: str) -> list[float]:
    """The gold curve of a selector of `SELECTORS` in one seed's run."""
    if name == "proxy pick":
        return run["single"]["curves"]["proxy pick"]
    if name.startswith("ensemble: "):
        return run["ensemble"]["curves"]["lower-bound pick" if "lower-bound" in name else "proxy pick"]
    return run["single"]["curves"][name]


def point_of(run: dict, name: str) -> dict:
    """The over-optimisation point of a selector (not the gold or random pick) in one seed's run."""
    if name == "proxy pick":
        return run["single"]["overoptimisation"]["proxy pick"]
    return run["ensemble"]["overoptimisation"]["lower-bound pick" if "lower-bound" in name else "proxy pick"]


def curve_table(runs: list[dict], values, header: str, digits: int = 2, scale: float = 1.0) -> list[str]:
    """One row per N (and KL), one column per selector: mean ± 95% interval over the seeds of `values(run, name)`."""
    ns, kl = runs[0]["ns"], runs[0]["kl"]
    names = [name for name in SELECTORS if values(runs[0], name) is not None]
    lines = [f"| N | KL | {' | '.join(names)} |", "|---" * (len(names) + 2) + "|"]
    for index, (n, cost) in enumerate(zip(ns, kl)):
        cells = [cell([values(run, name)[index] for run in runs], scale, digits) for name in names]
        lines.append(f"| {n} | {cost:.2f} | " + " | ".join(cells) + " |")
    return [header, "", *lines]


def point_table(runs: list[dict], seeds: list[int]) -> list[str]:
    names = ("proxy pick", "ensemble: mean pick", "ensemble: lower-bound pick")
    lines = ["| seed | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for seed, run in zip(seeds, runs):
        cells = []
        for name in names:
            row = point_of(run, name)
            if row["n"] is None:
                cells.append(f"none (still gaining at {run['ns'][-1]})")
            else:
                cells.append(
                    f"N = {row['n']}: {row['gold_at_peak']:.2f} -> {row['gold_at_largest']:.2f} at {run['ns'][-1]} "
                    f"({row['change']:+.2f} [{row['change_lower']:+.2f}, {row['change_upper']:+.2f}])"
                )
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines


def plot(runs: list[dict], path) -> None:
    """Gold reward of every pick, and the repeat rate of the picks, against KL (N on top): mean ± 95% interval over
    the seeds; a dotted line at the over-optimisation point of the mean proxy curve."""
    from matplotlib.figure import Figure

    ns, kl = runs[0]["ns"], runs[0]["kl"]
    figure = Figure(figsize=(13, 4.8), dpi=100)
    gold_axis, repeat_axis = figure.subplots(1, 2)
    for index, name in enumerate(SELECTORS):
        means, halves = zip(*(interval([selector_series(run, name)[i] for run in runs]) for i in range(len(ns))))
        colour, label = f"C{index}", name
        peak = int(np.argmax(means))
        if name in ("proxy pick", "ensemble: mean pick", "ensemble: lower-bound pick") and peak < len(ns) - 1:
            gold_axis.axvline(kl[peak], color=colour, linestyle=":", linewidth=1.2)
            label = f"{name} (stops gaining after N = {ns[peak]})"
        gold_axis.errorbar(kl, means, yerr=halves, marker="o", capsize=3, color=colour, label=label)
        if name in runs[0]["repeat_rate"]:
            rates = [np.mean([100 * run["repeat_rate"][name][i] for run in runs]) for i in range(len(ns))]
            repeat_axis.plot(kl, rates, marker="o", color=colour, label=name)
    gold_axis.set(xlabel="KL = log N - (N - 1) / N", ylabel="gold reward of the pick")
    repeat_axis.set(xlabel="KL = log N - (N - 1) / N", ylabel="picks repeating a helpful word (%)")
    gold_axis.legend(fontsize="small", loc="lower right", bbox_to_anchor=(1.0, 0.08))  # between the curves
    repeat_axis.legend(fontsize="small", loc="upper left")
    for axis in (gold_axis, repeat_axis):
        axis.grid(alpha=0.3)
        top = axis.secondary_xaxis("top")
        top.set_xticks(kl, [str(n) for n in ns], fontsize="small")
        top.set_xlabel("N", fontsize="small")
    figure.suptitle(
        f"Best-of-N in the known-answer world: mean ± 95% interval over {len(runs)} seeds (dotted: over-optimisation "
        "point of the mean curve)",
        fontsize="medium",
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def main() -> None:
    options = world_options(
        __doc__.split("\n\n")[0], "smoke models, 32 prompts x 16 samples, seed 0 only", BENCHMARK, Settings(), SMOKE
    )
    seeds, settings, report = options.seeds, options.settings, options.report
    machine, start = machine_description(), time.perf_counter()
    runs = run_jobs(
        BENCHMARK, best_of_n_job, [{"seed": seed, "settings": settings} for seed in seeds], options.workers
    )
    minutes = (time.perf_counter() - start) / 60
    job_minutes = sum(run["seconds"] for run in runs) / 60
    plot_path = (CACHE / BENCHMARK if options.smoke else RESULTS_DIR) / f"{report}.png"
    plot(runs, plot_path)
    accuracy = [value for run in runs for value in run["member_accuracy"]]

    def repeat(run: dict, name: str) -> list[float] | None:
        return run["repeat_rate"].get(name)  # not for the random pick: the samples' own rate, at every N

    def proxy_reward(run: dict, name: str) -> list[float] | None:
        return run["single"]["proxy_reward"] if name == "proxy pick" else None

    lines = [
        f"Machine: {machine}",
        "",
        f"Command: `python benchmarks/world_best_of_n.py{' --smoke' * options.smoke}` (seeds {seeds}, "
        f"{options.workers} one-thread workers). Wall time {minutes:.1f} min (jobs found in the cache are read back, "
        f"not run again); the jobs took {job_minutes:.1f} min of worker time when they ran.",
        "",
        f"Settings: {settings}. Samples repeating a helpful word: {cell([run['sample_repeat_rate'] for run in runs], 100)}"
        f"%. Gold-order accuracy of the ensemble members in distribution: {cell(accuracy, 100)}%. Gold reward of the "
        f"best possible response: {cell([run['best_possible'] for run in runs], 1, 2)}.",
        "",
        "Samples of the SFT policy (seed 0):",
        "",
        *[f"    {text}" for text in runs[0]["examples"]],
        "",
        *curve_table(runs, selector_series, "Gold reward of the pick (mean ± 95% interval over the seeds):"),
        "",
        *curve_table(runs, repeat, "Picks repeating a helpful word (%):", 1, 100.0),
        "",
        *curve_table(runs, proxy_reward, "Proxy reward of the proxy's pick (what the proxy believes it gains):"),
        "",
        "Over-optimisation point of every seed (the first N at the maximum of the selector's gold curve; gold reward "
        f"there -> at N = {runs[0]['ns'][-1]}, the change with its 95% bootstrap interval over prompts):",
        "",
        *point_table(runs, seeds),
        "",
        f"Plot: {plot_path.relative_to(RESULTS_DIR.parents[1])}",
    ]
    write_report(report, lines)


if __name__ == "__main__":
    main()
