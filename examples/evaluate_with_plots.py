"""Compare reward models per source: accuracy, ECE, reliability diagrams, reward differences, temperature scaling.

Every model scores the held-out pairs of every source. Half of them (even rows) fit a temperature per model; the other
half is reported before and after it. Per model, `<output_dir>/<model>/` gets `metrics.md`/`.json`,
`reliability.png`, `reward_differences.png` and the `*_calibrated` versions; `<output_dir>/reward_differences.png`
compares the models source by source.

Offline by default: the MORE and MultiTask models of the CPU recipes when they have been trained
(`trl-more reward --config recipes/reward/cpu-minilm-more.yaml`, then `...-multitask.yaml`), on the held-out pairs of
their mixture; otherwise (or with `--tiny`) two tiny random models on the toy sources, which show the plots, not a
result (seconds).

    python examples/evaluate_with_plots.py
    python examples/evaluate_with_plots.py --models MORE=runs/my-more MultiTask=runs/my-multitask \\
        --mixture recipes/mixtures/cpu_four_sources.yaml
    python examples/evaluate_with_plots.py --tiny --output_dir /tmp/evaluation-tiny
"""

import argparse
from pathlib import Path

import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_more.cli.evaluate import write_evaluation
from trl_more.data import load_mixture
from trl_more.metrics import RewardEvaluation, evaluate_reward_model, fit_temperature
from trl_more.plots import plot_reward_differences
from trl_more.testing import save_tiny_reward_model, write_toy_mixture


RECIPE_MODELS = {"MORE": "runs/cpu-minilm-more", "MultiTask": "runs/cpu-minilm-multitask"}

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--models", nargs="+", help="NAME=PATH of saved reward models (default: the CPU recipes' runs).")
parser.add_argument("--mixture", default="recipes/mixtures/cpu_four_sources.yaml", help="Mixture of held-out pairs.")
parser.add_argument("--max_length", type=int, default=128)
parser.add_argument("--output_dir", default="runs/evaluation-example")
parser.add_argument("--tiny", action="store_true", help="Two tiny random models on the toy sources.")
options = parser.parse_args()
output_dir = Path(options.output_dir)

models = dict(spec.split("=", 1) for spec in options.models) if options.models else RECIPE_MODELS
if options.tiny or (not options.models and not all(Path(path).is_dir() for path in models.values())):
    print("Two tiny random models on the toy sources (train the CPU recipes or pass --models for real ones).")
    models = {name: save_tiny_reward_model(output_dir / "models" / name, seed=seed) for seed, name in enumerate("AB")}
    options.mixture = write_toy_mixture(output_dir / "toy-data", num_pairs=80, test_size=40)
held_out = load_mixture(options.mixture).test_by_source()
report_half = {source: pairs.select(range(1, len(pairs), 2)) for source, pairs in held_out.items()}
fit_half = {source: pairs.select(range(0, len(pairs), 2)) for source, pairs in held_out.items()}

results = {}
for name, path in models.items():
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    result = evaluate_reward_model(model, tokenizer, report_half, batch_size=16, max_length=options.max_length)
    write_evaluation(result, output_dir / name, training_log=path)  # + lambda.png when `path` holds a MORE log
    print(f"\n{name} ({path})\n{result.to_markdown()}")
    results[name] = result

    fit_margins = evaluate_reward_model(model, tokenizer, fit_half, batch_size=16, max_length=options.max_length)
    try:
        fit = fit_temperature(np.concatenate(list(fit_margins.margins.values())))
    except ValueError as error:  # e.g. a model no better than chance has no finite temperature
        print(f"No temperature for {name}: {error}")
        continue
    calibrated = RewardEvaluation.from_margins(
        {source: margins / fit.temperature for source, margins in result.margins.items()},
        temperature=fit.temperature,
    )
    write_evaluation(calibrated, output_dir / name, suffix="_calibrated")
    print(f"Temperature {fit.temperature:.3g}: average ECE {result.average()['ece']:.4f} -> "
          f"{calibrated.average()['ece']:.4f}, accuracy unchanged at {100 * result.average()['preference_accuracy']:.2f}%")  # fmt: skip

plot_reward_differences(results, output_dir / "reward_differences.png")
print(f"\nTables and plots in {output_dir}.")
