"""The checks and reports `MORERewardTrainer` makes on its data sets, as functions of the data set and its sources.

Before tokenization, rows without texts or with a non-finite margin are refused (`check_rows`). After TRL's
tokenization, MORE applies the length limit itself (`fit_to_max_length`), so that dropped pairs are counted per source
and a source left empty is an error; tied pairs (identical chosen and rejected tokens, no gradient) are reported
(`check_tied_pairs`); sources resampled (`resample_to`) or cycled (`warn_about_cycling`) many times per epoch are warned about.
Every message names the row or the source, so the fix is clear without reading the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from accelerate.logging import get_logger
from datasets import Dataset, IterableDataset

from ..constants import SOURCE_INDEX_COLUMN
from ..data.resampling import resample_sources
from ..tokenization import truncate


__all__ = [
    "PAIR_TEXT_COLUMNS",
    "REPETITION_WARNING",
    "check_rows",
    "check_tied_pairs",
    "fit_to_max_length",
    "per_source_counts",
    "resample_to",
    "row_location",
    "warn_about_cycling",
    "warn_about_repetition",
]

logger = get_logger(__name__)

# A source repeated more often than this (resampled, or cycled to fill balanced batches) is worth a warning.
REPETITION_WARNING = 10
PAIR_TEXT_COLUMNS = ("prompt", "chosen", "rejected")


def row_location(dataset: Dataset, row: int, sources: Sequence[str]) -> str:
    """`row R (source S)` for messages about a row of a data set."""
    if sources and SOURCE_INDEX_COLUMN in dataset.column_names:
        return f"row {row} (source {sources[dataset[row][SOURCE_INDEX_COLUMN]]!r})"
    return f"row {row}"


def per_source_counts(dataset: Dataset, num_sources: int) -> np.ndarray:
    """Pairs of every source, from the source index column."""
    return np.bincount(dataset[SOURCE_INDEX_COLUMN], minlength=num_sources)


def check_rows(dataset: Dataset, dataset_name: str, sources: Sequence[str]) -> None:
    """Refuse missing texts and non-finite margins before tokenization, naming the row and its source."""
    table = dataset.with_format("arrow")
    for column in (name for name in PAIR_TEXT_COLUMNS if name in dataset.column_names):
        if table[column].null_count:
            rows = np.flatnonzero(table[column].is_null().to_numpy(zero_copy_only=False))
            raise ValueError(
                f"{rows.size} pair(s) of the {dataset_name} set have no `{column}` (e.g. "
                f"{row_location(dataset, rows[0], sources)}). Drop or fill them before training."
            )
    if "margin" in dataset.column_names:
        margins = np.asarray(table["margin"].to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(margins))
        if bad.size:
            raise ValueError(
                f"{bad.size} pair(s) of the {dataset_name} set have a margin that is not a finite number (e.g. "
                f"{row_location(dataset, bad[0], sources)}: {margins[bad[0]]}); one such margin makes every weight "
                "NaN after one step. Fix or drop these rows, or remove the `margin` column."
            )


def fit_to_max_length(
    dataset: Dataset | IterableDataset,
    max_length: int,
    truncation_mode: str | None,
    dataset_name: str,
    sources: Sequence[str],
) -> Dataset | IterableDataset:
    """The tokenized pairs within `max_length`: truncated as `truncation_mode` says, or, without one, the longer
    pairs dropped (as TRL does) with a warning that counts them per source, and an error when a source is left
    without pairs."""

    def is_short(example):
        return len(example["chosen_ids"]) <= max_length and len(example["rejected_ids"]) <= max_length

    if truncation_mode is not None:

        def truncated(example):
            return {
                side: truncate(example[side], max_length, truncation_mode) for side in ("chosen_ids", "rejected_ids")
            }

        return dataset.map(truncated)
    if isinstance(dataset, IterableDataset):
        return dataset.filter(is_short)
    kept = dataset.filter(is_short, desc=f"Filtering {dataset_name} >{max_length} tokens")
    if len(kept) < len(dataset):
        _report_dropped(dataset, kept, max_length, dataset_name, sources)
    return kept


def _report_dropped(
    before: Dataset, after: Dataset, max_length: int, dataset_name: str, sources: Sequence[str]
) -> None:
    message = (
        f"{len(before) - len(after)} of {len(before)} pairs of the {dataset_name} set are longer than "
        f"max_length={max_length} tokens and were dropped"
    )
    if SOURCE_INDEX_COLUMN in before.column_names and sources:
        counts_before, counts_after = per_source_counts(before, len(sources)), per_source_counts(after, len(sources))
        per_source = ", ".join(f"{name}: {b - a} of {b}" for name, b, a in zip(sources, counts_before, counts_after))
        message += f" ({per_source})"
        empty = [name for name, count in zip(sources, counts_after) if count == 0]
        if empty:
            raise ValueError(
                f"{message}, which leaves no pairs for source(s) {empty}. Raise `max_length` or set "
                "`truncation_mode='keep_end'` to truncate instead of dropping."
            )
    logger.warning(f"{message}. Set `truncation_mode='keep_end'` to truncate them instead.")


def check_tied_pairs(dataset: Dataset, sources: Sequence[str], truncation_mode: str | None) -> None:
    """Report pairs whose chosen and rejected sequences are identical token for token (after truncation): they
    have no gradient. A source made only of such pairs is an error, since it cannot be learned from."""
    tied = dataset.filter(
        lambda chosen, rejected: [c == r for c, r in zip(chosen, rejected)],
        input_columns=["chosen_ids", "rejected_ids"],
        batched=True,
        desc="Finding tied pairs",
    )
    if len(tied) == 0:
        return
    if sources:
        tied_counts, counts = per_source_counts(tied, len(sources)), per_source_counts(dataset, len(sources))
    else:
        tied_counts, counts = np.array([len(tied)]), np.array([len(dataset)])
    names = sources or ["the training set"]
    hint = (
        " `truncation_mode='keep_start'` keeps the beginning of every sequence, which cuts the responses of long "
        "prompts: use 'keep_end' or a larger `max_length`."
        if truncation_mode == "keep_start"
        else " Such pairs usually repeat one response twice, or differ only beyond `max_length`."
    )
    report = ", ".join(f"{name}: {t} of {n}" for name, t, n in zip(names, tied_counts, counts) if t)
    all_tied = [name for name, t, n in zip(names, tied_counts, counts) if t == n]
    if all_tied:
        raise ValueError(
            f"Every training pair of {all_tied} has identical chosen and rejected tokens, so nothing can be "
            f"learned from it (tied pairs: {report}).{hint}"
        )
    logger.warning(f"Tied pairs (identical chosen and rejected tokens; no gradient): {report}.{hint}")


def resample_to(dataset: Dataset, sources: Sequence[str], samples_per_source: int, seed: int) -> Dataset:
    """Every source resampled to `samples_per_source` pairs (`trl_more.data.resampling`), said in the log, with a
    warning for sources repeated many times."""
    counts = per_source_counts(dataset, len(sources))
    resampled = dataset.select(resample_sources(dataset[SOURCE_INDEX_COLUMN], samples_per_source, seed))
    sizes = ", ".join(f"{name}: {count} -> {samples_per_source}" for name, count in zip(sources, counts))
    logger.info(f"MORE: resampled every source to {samples_per_source} pairs ({sizes}).")
    warn_about_repetition({name: samples_per_source / count for name, count in zip(sources, counts)})
    return resampled


def warn_about_cycling(dataset: Dataset, sources: Sequence[str]) -> None:
    """Warn about sources that balanced batches cycle many times per epoch (each as often as the largest source)."""
    counts = per_source_counts(dataset, len(sources))
    warn_about_repetition({name: counts.max() / count for name, count in zip(sources, counts)})


def warn_about_repetition(repetitions: Mapping[str, float]) -> None:
    """Warn about sources whose pairs every epoch repeats more than `REPETITION_WARNING` times."""
    repeated = {name: times for name, times in repetitions.items() if times > REPETITION_WARNING}
    if repeated:
        listing = ", ".join(f"{name}: {times:.0f}x" for name, times in repeated.items())
        logger.warning(
            f"Every epoch repeats the pairs of some sources many times ({listing}), which over-fits them. Give "
            "them more pairs, lower `samples_per_source`, or drop them."
        )
