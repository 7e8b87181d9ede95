"""What the known-answer world benchmarks (`benchmarks/world_*.py`) share: scoring against the gold order, running many
seeds in parallel workers with a cache, and intervals. The tiny reward models and their training settings are
`trl_more.synthetic.models`' (shared with the behaviour tests). One thread trains 400 steps of 32 pairs in about 10 s;
two one-thread workers use both cores (two threads per process make it several times slower when anything else runs).

Results of every job are cached as JSON in `outputs/benchmarks/world/<benchmark>/`, keyed by the job's arguments, so a
rerun after a crash or with more seeds retrains nothing it already has.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

# The world's reward-model training, re-exported for the benchmarks (explicit re-exports: `name as name`).
from trl_more.synthetic.models import predicted_margins as predicted_margins
from trl_more.synthetic.models import train_reward_model as train_reward_model


BENCHMARKS = Path(__file__).resolve().parent
CACHE = BENCHMARKS.parent / "outputs" / "benchmarks" / "world"
RESULTS_DIR = BENCHMARKS / "results"


def world_options(
    description: str,
    smoke_help: str,
    benchmark: str,
    settings: Any,
    smoke_settings: Any,
    argv: list[str] | None = None,
) -> argparse.Namespace:
    """The command line of a world benchmark: `--seeds` (default 0 to 4), `--smoke` (`smoke_help`; seed 0 only,
    whatever `--seeds` says) and `--workers` (one-thread processes, default 2). Adds `settings`, the chosen settings
    dataclass (`smoke_settings` under `--smoke`) as a dict, and `report`, the report's name (`<benchmark>_smoke`
    under `--smoke`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args(argv)
    if options.smoke:
        options.seeds = [0]
    options.settings = dataclasses.asdict(smoke_settings if options.smoke else settings)
    options.report = f"{benchmark}_smoke" if options.smoke else benchmark
    return options


def worker_setup() -> None:
    """One thread per worker process, quiet logs, no progress bars."""
    import torch
    import transformers

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers.logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()


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
