"""Shared test set-up: offline, quiet, single-threaded-friendly, with the real data of ../shared/data when present."""

import os
from pathlib import Path

import pytest


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

SHARED_DATA = Path(
    os.environ.get("TRL_MORE_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real preference data (../shared/data); tests that need it skip with a clear message without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set TRL_MORE_SHARED_DATA to point at it)")
    return SHARED_DATA.resolve()


@pytest.fixture(autouse=True)
def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    yield


# ---------------------------------------------------------------------------------------------------------------------
# Parallel runs (pytest-xdist: `--numprocesses` and `--dist loadfile` in pyproject.toml's addopts, so that a module's
# fixtures are built once; tests that launch processes give each launch its own port, `trl_more.testing.accelerate_launch`)
# ---------------------------------------------------------------------------------------------------------------------

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: one thread each (also for the processes the tests launch), since two threads
    # per process on a shared core are several times slower than one.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
