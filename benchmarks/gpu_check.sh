#!/usr/bin/env bash
# The GPU figures trl-more cannot measure on CPU, in one short run (under 10 minutes on one H200):
#
#   bash benchmarks/gpu_check.sh OUTPUT_DIR              # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh OUTPUT_DIR --cpu-smoke   # every part on a CPU with tiny layouts (~1 minute)
#
# The GPU machine has torch, transformers, accelerate and peft but no network: trl, datasets (and what they need)
# are installed from the wheels in benchmarks/gpu_wheels/ (fetch them beforehand with `bash
# benchmarks/gpu_wheels.sh`, on a machine with the package registries), then trl-more itself without dependencies.
# What it measures and writes (one JSON file per part in OUTPUT_DIR): see benchmarks/gpu_check.py.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
OUTPUT="${1:?usage: bash benchmarks/gpu_check.sh OUTPUT_DIR [--cpu-smoke]}"
shift
mkdir -p "$OUTPUT"

if ! python -c "import trl, datasets" 2>/dev/null; then
    if [ ! -d "$HERE/gpu_wheels" ]; then
        echo "trl / datasets are missing and $HERE/gpu_wheels does not exist: run benchmarks/gpu_wheels.sh first" >&2
        exit 2
    fi
    python -m pip install --quiet --no-index --find-links "$HERE/gpu_wheels" trl datasets
fi
python -c "import trl_more" 2>/dev/null || python -m pip install --quiet --no-deps --no-build-isolation -e "$REPO"

if [ "${1:-}" = "--cpu-smoke" ]; then
    exec python "$HERE/gpu_check.py" --output_dir "$OUTPUT" --device cpu --tiny --batch 4 --steps 2
fi
exec timeout 540 python "$HERE/gpu_check.py" --output_dir "$OUTPUT" --device cuda
