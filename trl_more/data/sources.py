"""Turning a multi-source training set into one `Dataset` whose every row carries its source's index.

One rule orders the sources everywhere: they are numbered 0 .. K-1 in the order in which they first appear in the
data. For a dict of datasets that is the dict's order (the order of the concatenation); for a source column it is
the order of first appearance of its values, whatever their type (names, integers, or a `ClassLabel`'s labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datasets import ClassLabel, Dataset, IterableDataset, concatenate_datasets

from ..constants import SOURCE_COLUMN, SOURCE_INDEX_COLUMN


__all__ = ["attach_source_indices"]

# Keys of a `DatasetDict` of splits (what `load_dataset` returns without `split=`), which is not a dict of sources.
SPLIT_NAMES = {"train", "test", "validation", "valid", "dev", "eval", "evaluation"}


def attach_source_indices(
    dataset: Dataset | IterableDataset | Mapping[str, Dataset], source_column: str = SOURCE_COLUMN
) -> tuple[Dataset | IterableDataset, list[str]]:
    """Return the data set with a `source_index` column (0 .. K-1) and the K source names, in that order.

    Accepts a dict / `DatasetDict` of `{source_name: Dataset}` (concatenated in the dict's order), or one `Dataset`
    whose `source_column` holds source names (strings), integers, or a `ClassLabel`. A data set without that column
    is returned unchanged with no names. An `IterableDataset` cannot be balanced by source, so one with a source
    column (declared, or found in its first row when it declares no columns), or a dict of them, is an error.
    """
    if isinstance(dataset, Mapping):
        return _concatenate_sources(dataset)
    if isinstance(dataset, IterableDataset):
        if source_column in _iterable_columns(dataset):
            raise ValueError(
                f"The training set is an `IterableDataset` with a `{source_column}` column. Source-balanced batches "
                "need random access to every source: load the data as a `Dataset` (e.g. `streaming=False`), or drop "
                f"the `{source_column}` column to train without per-source weighting."
            )
        return dataset, []
    if source_column not in dataset.column_names:
        return dataset, []
    feature = dataset.features[source_column]
    values = dataset[source_column]
    missing = [row for row, value in enumerate(values) if value is None]
    if missing:
        raise ValueError(
            f"{len(missing)} row(s) have no value in the `{source_column}` column (e.g. row {missing[0]}); every pair "
            "needs a source."
        )
    if isinstance(feature, ClassLabel):
        values = [feature.names[value] for value in values]
    order = list(dict.fromkeys(values))  # first appearance
    index = {value: position for position, value in enumerate(order)}
    if SOURCE_INDEX_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(SOURCE_INDEX_COLUMN)
    return dataset.add_column(SOURCE_INDEX_COLUMN, [index[value] for value in values]), [str(value) for value in order]


def _iterable_columns(dataset: IterableDataset) -> list[str]:
    columns = dataset.column_names or list(dataset.features or {})
    if not columns:  # no declared features (e.g. a generator): read the first row
        first = next(iter(dataset), None)
        columns = list(first) if isinstance(first, Mapping) else []
    return columns


def _is_conversational(example: Mapping[str, Any]) -> bool:
    value = example.get("chosen")
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping)


def _raise_mixed_formats(conversational: Mapping[str, bool]) -> None:
    chat = [name for name, is_chat in conversational.items() if is_chat]
    text = [name for name, is_chat in conversational.items() if not is_chat]
    raise ValueError(
        f"The sources mix conversational pairs (lists of messages: {chat}) with plain-text pairs ({text}). Convert "
        "every source to one format first, e.g. with `trl_more.data` (which renders every known source as plain-text "
        "transcripts) or by applying a chat template to the conversational ones."
    )


def _concatenate_sources(sources: Mapping[str, Dataset]) -> tuple[Dataset, list[str]]:
    if not sources:
        raise ValueError("The training set is an empty dict: give at least one `{source_name: Dataset}` entry.")
    if set(sources) <= SPLIT_NAMES:
        raise ValueError(
            f"The training set is a dict of splits ({', '.join(sources)}), but a dict is read as `{{source_name: "
            "Dataset}`. Pass the training split itself (e.g. `dataset['train']`, with a source column if it mixes "
            "sources), or a dict keyed by source."
        )
    parts, reference_columns, conversational = [], None, {}
    for source_index, (name, part) in enumerate(sources.items()):
        if not isinstance(part, Dataset):
            raise ValueError(
                f"Source {name!r} is a {type(part).__name__}; source-balanced batches need a map-style `Dataset` for "
                "every source (e.g. load with `streaming=False`)."
            )
        if len(part) == 0:
            raise ValueError(f"Source {name!r} has no rows; remove it or give it data.")
        if SOURCE_INDEX_COLUMN in part.column_names:
            part = part.remove_columns(SOURCE_INDEX_COLUMN)
        if "chosen" in part.column_names:
            conversational[str(name)] = _is_conversational(part[0])
        columns = sorted(part.column_names)
        if reference_columns is None:
            reference_columns, reference_name = columns, name
        elif columns != reference_columns:
            raise ValueError(
                f"Sources {reference_name!r} and {name!r} have different columns ({reference_columns} vs {columns}); "
                "convert every source to the same preference format first (see `trl_more.data`)."
            )
        parts.append(part.add_column(SOURCE_INDEX_COLUMN, [source_index] * len(part)))
    if len(set(conversational.values())) > 1:
        _raise_mixed_formats(conversational)
    return concatenate_datasets(parts), [str(name) for name in sources]
