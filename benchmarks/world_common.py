"""What the known-answer world benchmarks (`benchmarks/world_*.py`) share: training a tiny reward model in the world,
scoring it against the gold order, running many seeds in parallel workers with a cache, and intervals.

Models: `trl_more.testing.tiny_reward_model("qwen2", world_tokenizer())` (2 layers, width 32), trained with the
package's public trainers and configs only. On this machine one thread trains 400 steps of 32 pairs in about 10 s;
two one-thread workers use both cores (two threads per process make it several times slower when anything else runs).

Results of every job are cached as JSON in `outputs/benchmarks/world/<benchmark>/`, keyed by the job's arguments, so a
rerun after a crash or with more seeds retrains nothing it already has.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm.auto import tqdm


BENCHMARKS = Path(__file__).resolve().parent
CACHE = BENCHMARKS.parent / "outputs" / "benchmarks" / "world"
RESULTS_DIR = BENCHMARKS / "results"

# The reward-model training every benchmark starts from (a benchmark changes what its question is about).
TRAINING = {
    "per_device_train_batch_size": 32,
    "learning_rate": 3e-3,
    "max_steps": 400,
    "max_length": 64,
    "lambda_method": "uniform",
}


def worker_setup() -> None:
    """One thread per worker process, quiet logs, no progress bars."""
    import torch
    import transformers

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers.logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()


def train_reward_model(train_dataset, seed: int, trainer_class=None, **settings):
    """A tiny reward model trained on `train_dataset` (TRL columns) with `TRAINING` updated by `settings` (any field of
    the trainer's config); returns the trained model in eval mode and its tokenizer."""
    from trl_more import MORERewardConfig, MORERewardTrainer
    from trl_more.synthetic import world_tokenizer
    from trl_more.testing import tiny_reward_model

    tokenizer = world_tokenizer()
    options = {**TRAINING, **settings}
    config_class = options.pop("config_class", MORERewardConfig)
    with tempfile.TemporaryDirectory() as output_dir:
        args = config_class(
            output_dir,
            seed=seed,
            logging_strategy="no",
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            activation_checkpointing=False,
            **options,
        )
        model = tiny_reward_model("qwen2", tokenizer, seed=seed)
        trainer = (trainer_class or MORERewardTrainer)(
            model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer
        )
        trainer.train()
    return trainer.model.eval(), tokenizer


def predicted_margins(model, tokenizer, pairs) -> np.ndarray:
    """r(prompt, chosen) - r(prompt, rejected) for every pair."""
    from trl_more.rewards import RewardModelScorer

    scorer = RewardModelScorer([model], [tokenizer], batch_size=256)
    chosen = scorer.score(list(pairs["prompt"]), list(pairs["chosen"])).combined
    rejected = scorer.score(list(pairs["prompt"]), list(pairs["rejected"])).combined
    return (chosen - rejected).double().numpy()


def gold_metrics(margins: np.ndarray, pairs) -> dict[str, float]:
    """Accuracy against the gold order and the ECE of the predicted margins against labels drawn like the training
    labels (the pairs' own labels, e.g. Bradley-Terry)."""
    from trl_more.metrics.calibration import expected_calibration_error
    from trl_more.synthetic import gold_accuracy

    gold = np.asarray(pairs["gold_margin"])
    return {"gold_accuracy": gold_accuracy(margins, gold), "ece": expected_calibration_error(margins)}


def cached(benchmark: str, job: Callable[..., dict], **arguments: Any) -> dict:
    """`job(**arguments)`, or its cached result."""
    key = json.dumps({"job": job.__name__, **arguments}, sort_keys=True, default=str)
    path = CACHE / benchmark / f"{job.__name__}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())["result"]
    result = job(**arguments)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"key": json.loads(key), "result": result}))
    os.replace(temporary, path)  # never a half-written result under the final name
    return result


def _run_cached(task: tuple[str, Callable[..., dict], dict]) -> dict:
    benchmark, job, arguments = task
    return cached(benchmark, job, **arguments)


def run_jobs(benchmark: str, job: Callable[..., dict], argument_sets: Iterable[dict], workers: int = 2) -> list[dict]:
    """`job` on every argument set, in `workers` one-thread processes (spawned: forking a process whose OpenMP threads
    already ran can hang), cached; results in the order given."""
    tasks = [(benchmark, job, arguments) for arguments in argument_sets]
    if workers <= 1:
        worker_setup()
        return [_run_cached(task) for task in tqdm(tasks, desc=benchmark, unit="model")]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=worker_setup) as pool:
        return list(tqdm(pool.map(_run_cached, tasks), total=len(tasks), desc=benchmark, unit="model"))


def interval(values: Iterable[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval of the mean (0 for a single value)."""
    values = np.asarray(list(values), dtype=float)
    if values.size < 2:
        return float(values.mean()), 0.0
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def cell(values: Iterable[float], scale: float = 1.0, digits: int = 1) -> str:
    """`mean ± half-width` of the 95% interval, scaled (e.g. 100 for percentages)."""
    mean, half = interval(values)
    return f"{scale * mean:.{digits}f} ± {scale * half:.{digits}f}"


def write_report(benchmark: str, lines: list[str]) -> Path:
    """The report as Markdown in the cache folder (RESULTS.md takes it from there), and printed."""
    text = "\n".join(lines) + "\n"
    path = CACHE / benchmark / f"{benchmark}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    return path
