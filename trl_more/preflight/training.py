"""The pre-flight checks as a trainer runs them, at the start of `train()` (see `trl_more.preflight`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from ..constants import SOURCE_INDEX_COLUMN
from . import PairSample, PreflightReport, act_on, default_tolerance, pair_sample, preflight_checks


__all__ = ["preflight_before_training", "samples_by_source"]

logger = logging.getLogger(__name__)


def samples_by_source(dataset: Dataset, sources: Sequence[str]) -> dict[str, PairSample]:
    """A `PairSample` of every source of a tokenized training set (its source index column names them); the whole set
    as one source `"train"` when it has none."""
    if not sources or SOURCE_INDEX_COLUMN not in dataset.column_names:
        return {"train": pair_sample(dataset)}
    index = np.asarray(dataset[SOURCE_INDEX_COLUMN])
    return {name: pair_sample(dataset.select(np.flatnonzero(index == i))) for i, name in enumerate(sources)}


def preflight_before_training(trainer: Any, dataset: Any, sources: Sequence[str] = ()) -> PreflightReport | None:
    """Run the pre-flight checks of `trainer` on `dataset` (its tokenized training pairs before truncation) and act on
    them as `trainer.args.preflight` says; the report, or `None` when the checks are off or cannot run (an
    `IterableDataset` is not sampled)."""
    mode = trainer.args.preflight
    where = type(trainer).__name__
    if mode == "off":
        return None
    if not isinstance(dataset, Dataset):
        logger.info(
            f"{where} pre-flight: skipped, the training pairs cannot be sampled (an `IterableDataset`, or pairs prepared beforehand)."
        )
        return None
    # Sharded models (ZeRO-3, FSDP) are only whole inside the training loop: the checks that run them are skipped.
    run_model = not (getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False))
    mixed_precision = trainer.accelerator.mixed_precision != "no"
    with trainer.accelerator.autocast():  # the model runs as in training (bf16 autocast around a float32 head, say)
        report = preflight_checks(
            trainer.model,
            trainer.processing_class,
            samples_by_source(dataset, sources),
            max_length=trainer.args.max_length,
            truncation_mode=trainer.args.truncation_mode,
            tolerance=default_tolerance(trainer.model, mixed_precision),
            run_model=run_model,
        )
    if not run_model:
        report.notes.append("The model is sharded (DeepSpeed ZeRO or FSDP): the checks that run it were skipped.")
    logger.info(f"{where} pre-flight: {len(report.findings)} finding(s) in {report.seconds:.1f} s.")
    act_on(report, mode, where)
    return report
