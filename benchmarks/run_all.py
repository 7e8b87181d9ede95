"""Run the fast benchmarks, each in its own subprocess, and append their result tables to benchmarks/RESULTS.md.

The benchmarks (their own scripts, run with their default options unless `--quick`):

- more_overhead.py: training time and peak memory of `MORERewardTrainer` against `trl.RewardTrainer`;
- solver.py: the exact min-norm solver against the reference's Frank-Wolfe loop;
- ridge.py: the closed-form multi-alpha ridge against a loop of scikit-learn fits;
- generation_throughput.py: batched, length-sorted generation and scoring against naive loops;
- gate_training.py: stage-2 gate training on cached features against live backbone passes.

Every section appended to RESULTS.md starts with the date, the CPU model, the core count and the load average at
start (the machine may be shared, which moves absolute times; the ratios are the point).

    python benchmarks/run_all.py                      # all of them, about 10 minutes on 2 idle cores
    python benchmarks/run_all.py --only solver ridge  # some of them
    python benchmarks/run_all.py --no_append          # print only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


BENCHMARKS_DIR = Path(__file__).resolve().parent
RESULTS = BENCHMARKS_DIR / "RESULTS.md"

# name -> (title, extra arguments for a quick run)
FAST_BENCHMARKS = {
    "more_overhead": ("MORE overhead: MORERewardTrainer vs trl.RewardTrainer", ["--steps", "15", "--repeats", "2"]),
    "solver": ("Min-norm solver: exact vs Frank-Wolfe", ["--repeats", "5"]),
    "ridge": ("Stage-1 ridge: closed form vs scikit-learn", ["--repeats", "1", "--armorm"]),
    "generation_throughput": ("RJS generation and scoring throughput", ["--repeats", "1"]),
    "gate_training": ("Stage-2 gate training: cached features vs live passes", ["--steps", "10"]),
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description() -> str:
    """Date, CPU model, usable cores and load average, in one line (for every results section)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{date}, {cpu_model()}, {cores} cores, load average {load} (1/5/15 min) at start"


def run_benchmark(name: str, extra: list[str]) -> tuple[str, float, bool]:
    """The benchmark's printed results, its wall time in seconds, and whether it succeeded."""
    command = [sys.executable, str(BENCHMARKS_DIR / f"{name}.py"), *extra]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=BENCHMARKS_DIR.parent)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        return f"Failed with exit code {completed.returncode}:\n\n```\n{tail}\n```", seconds, False
    return results_text(completed.stdout), seconds, True


def results_text(stdout: str) -> str:
    """The printed results as Markdown: tables kept as they are, other lines kept verbatim in a code block (so
    aligned columns stay aligned); per-run progress lines ("repeat 1: ...") dropped."""
    blocks: list[tuple[bool, list[str]]] = []
    for line in stdout.rstrip().splitlines():
        if line.startswith("repeat "):
            continue
        is_table = line.lstrip().startswith("|")
        if not blocks or blocks[-1][0] != is_table:
            blocks.append((is_table, []))
        blocks[-1][1].append(line)
    parts = []
    for is_table, lines in blocks:
        text = "\n".join(lines).strip("\n")
        if not text.strip():
            continue
        parts.append(text if is_table else f"```\n{text}\n```")
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(FAST_BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke run, noisier)")
    parser.add_argument(
        "--no_append", action="store_true", help=f"print the section instead of appending to {RESULTS}"
    )
    options = parser.parse_args()

    names = options.only or list(FAST_BENCHMARKS)
    lines = [f"## Fast benchmarks ({machine_description()})", ""]
    for name in names:
        title, quick_arguments = FAST_BENCHMARKS[name]
        extra = quick_arguments if options.quick else []
        print(f"Running {name}.py {' '.join(extra)}...", flush=True)
        text, seconds, ok = run_benchmark(name, extra)
        print(f"  {'done' if ok else 'FAILED'} in {seconds:.0f} s", flush=True)
        command = " ".join(["python", f"benchmarks/{name}.py", *extra])
        lines += [f"### {title}", "", f"`{command}` ({seconds:.0f} s)", "", text, ""]
    section = "\n".join(lines)
    if options.no_append:
        print(section)
        return
    existing = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
    RESULTS.write_text(existing.rstrip("\n") + "\n\n" + section)
    print(f"Appended to {RESULTS}.")


if __name__ == "__main__":
    main()
