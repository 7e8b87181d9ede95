"""WARM on the CPU sources with MiniLM: one reward model, the prediction ensemble of M and their weight average.

The calibration benchmark's setting (`calibration.py`: the pretrained all-MiniLM-L6-v2 encoder, embeddings and 3 of
its 6 layers frozen, last 128 tokens, lr 1e-4 with 5% warm-up and linear decay), with one source held out: M = 4
MultiTask reward models (uniform weights) are trained on HH-helpful, HH-harmless and OASST1 (`TRAINING_SOURCES`,
batches of 4 pairs of each), all from one initialisation (the pretrained encoder and one reward head drawn by the
replicate's seed: WARM's premise) and each with its own batch order and dropout. Compared, on the held-out test pairs
of the three training sources and of UltraFeedback, a source none of them trained on: member 0 alone, the prediction
ensemble (the mean of the members' margins) and the weight average (`average_reward_models`); accuracy and ECE
(docs/calibration.md), and the time to score the test pairs with the 4 members against the average. GRM is not
measured here: MiniLM is an encoder, with no next-token head to keep (`text_regularization_coefficient` refuses it;
world_grm.py measures GRM on a decoder).

    python benchmarks/minilm_warm.py                  # 3 replicates x 4 members (time: benchmarks/RESULTS.md)
    python benchmarks/minilm_warm.py --replicates 0 --steps 4 --work_dir /tmp/minilm_warm   # smoke

Every member's margins are cached in `--work_dir` (a rerun reuses them); the averages are rebuilt from the members'
saved weights. The report is `<work_dir>/minilm_warm.md`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from calibration import DATA_DIR, Settings, held_out_margins, load_splits, train_reward_model
from run_all import machine_description
from world_common import cell


BENCHMARKS = Path(__file__).resolve().parent
TRAINING_SOURCES = ("hh-helpful", "hh-harmless", "oasst1")
HELD_OUT_SOURCE = "ultrafeedback"
NUM_MODELS = 4
METHODS = ("one member", "prediction ensemble", "weight average")


def member_folder(work_dir: Path, settings: Settings, replicate: int, member: int) -> Path:
    return work_dir / f"replicate{replicate}-member{member}-steps{settings.steps}"


def train_member(train, settings: Settings, replicate: int, member: int, work_dir: Path) -> Path:
    """Member `member` of `replicate` (initialisation seed `replicate`, batch-order seed `1000 * replicate + member`),
    saved (weights and tokenizer) under `work_dir`, unless it already is."""
    folder = member_folder(work_dir, settings, replicate, member)
    if (folder / "done").is_file():
        return folder
    trainer, tokenizer = train_reward_model(
        "multitask", train, settings, 1000 * replicate + member, folder / "trainer", initialisation_seed=replicate
    )
    trainer.save_model(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "done").write_text("")  # written last: a folder without it is a half-finished member, retrained
    return folder


def replicate_margins(train, held_out: dict, settings: Settings, replicate: int, work_dir: Path) -> dict:
    """`{method: {source: margins}}` and the two scoring times of one replicate, cached as JSON."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trl_more.rewards import average_reward_models

    path = work_dir / f"replicate{replicate}-steps{settings.steps}.json"
    if path.is_file():
        return json.loads(path.read_text())
    folders = [train_member(train, settings, replicate, member, work_dir) for member in range(NUM_MODELS)]
    tokenizer = AutoTokenizer.from_pretrained(folders[0])
    members = [AutoModelForSequenceClassification.from_pretrained(folder).eval() for folder in folders]
    start = time.perf_counter()
    member_margins = [held_out_margins(model, tokenizer, held_out, settings) for model in members]
    ensemble_seconds = time.perf_counter() - start
    averaged = average_reward_models(members).eval()
    start = time.perf_counter()
    average_margins = held_out_margins(averaged, tokenizer, held_out, settings)
    average_seconds = time.perf_counter() - start
    result = {
        "margins": {
            "one member": member_margins[0],
            "prediction ensemble": {s: np.mean([m[s] for m in member_margins], axis=0) for s in held_out},
            "weight average": average_margins,
        },
        "members_accuracy": {s: [float(np.mean(m[s] > 0)) for m in member_margins] for s in held_out},
        "seconds": {"prediction ensemble": ensemble_seconds, "weight average": average_seconds},
    }
    result["margins"] = {
        method: {s: np.asarray(v).tolist() for s, v in by_source.items()}
        for method, by_source in result["margins"].items()
    }
    path.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, default=DATA_DIR)
    parser.add_argument("--work_dir", type=Path, default=BENCHMARKS.parent / "outputs" / "benchmarks" / "minilm_warm")
    parser.add_argument("--replicates", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    settings = Settings(
        steps=options.steps,
        batch_size=4 * len(TRAINING_SOURCES),
        max_length=128,
        frozen_layers=3,
        learning_rate=1e-4,
        warmup_ratio=0.05,
        lambda_momentum=0.99,
        gradient_normalization="l2",
    )
    from trl_more.metrics import RewardEvaluation

    begun = time.perf_counter()
    train, held_out = load_splits(options.data_dir, settings)
    train = train.filter(lambda row: row["source"] in TRAINING_SOURCES)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    results = [replicate_margins(train, held_out, settings, r, options.work_dir) for r in options.replicates]
    sources = [*TRAINING_SOURCES, HELD_OUT_SOURCE]
    lines = [
        f"Machine: {machine_description()}",
        "",
        f"M = {NUM_MODELS} MultiTask members trained on {', '.join(TRAINING_SOURCES)}; held-out source "
        f"{HELD_OUT_SOURCE}; replicates {options.replicates}; settings `{json.dumps(asdict(settings))}`; "
        f"mean ± 95% interval over the replicates. Wall time {(time.perf_counter() - begun) / 60:.1f} min.",
        "",
        "| method | "
        + " | ".join(f"{s}: accuracy (%) / ECE" for s in sources)
        + " | training sources' mean accuracy (%) |",
        "|---|" + "---|" * (len(sources) + 1),
    ]
    metrics = {
        method: [
            RewardEvaluation.from_margins({s: np.asarray(result["margins"][method][s]) for s in sources}).metrics
            for result in results
        ]
        for method in METHODS
    }
    for method in METHODS:
        cells = [
            f"{cell([m[s]['preference_accuracy'] for m in metrics[method]], 100)} / "
            f"{cell([m[s]['ece'] for m in metrics[method]], digits=3)}"
            for s in sources
        ]
        mean = [np.mean([m[s]["preference_accuracy"] for s in TRAINING_SOURCES]) for m in metrics[method]]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {cell(mean, 100)} |")
    lines.append("")
    for s in sources:
        gap = [
            100 * (a[s]["preference_accuracy"] - e[s]["preference_accuracy"])
            for a, e in zip(metrics["weight average"], metrics["prediction ensemble"])
        ]
        spread = [100 * np.std(result["members_accuracy"][s]) for result in results]
        lines.append(
            f"- {s}: weight average minus ensemble accuracy {cell(gap, digits=2)} points (paired); the members' "
            f"accuracy spread (std over the 4) {cell(spread, digits=2)} points"
        )
    ratio = [r["seconds"]["prediction ensemble"] / r["seconds"]["weight average"] for r in results]
    lines.append(f"- scoring time, ensemble / weight average: {cell(ratio, digits=2)}x")
    text = "\n".join(lines) + "\n"
    (options.work_dir / "minilm_warm.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
