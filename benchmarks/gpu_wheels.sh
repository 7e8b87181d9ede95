#!/usr/bin/env bash
# Fetch the wheels benchmarks/gpu_check.sh installs on a GPU machine without network (which has torch,
# transformers, accelerate and peft): trl and datasets at the versions CI tests, with the dependencies those need
# beyond that set. Run on a machine with the package registries; writes benchmarks/gpu_wheels/ (not committed).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
python -m pip download --quiet --dest "$HERE/gpu_wheels" --only-binary=:all: \
    "trl==1.16.0" "datasets==5.2.0" pyarrow dill xxhash multiprocess fsspec pandas
echo "wheels in $HERE/gpu_wheels"
