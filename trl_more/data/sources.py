"""Turning a multi-source training set into one `Dataset` with an integer source id per pair."""

from __future__ import annotations

from collections.abc import Mapping

from datasets import ClassLabel, Dataset, IterableDataset, concatenate_datasets


__all__ = ["SOURCE_ID_COLUMN", "attach_source_ids"]

SOURCE_ID_COLUMN = "source_id"


def attach_source_ids(
    dataset: Dataset | IterableDataset | Mapping[str, Dataset], source_column: str = "source"
) -> tuple[Dataset | IterableDataset, list[str]]:
    """Return the data set with an integer `source_id` column (0 .. K-1) and the K source names.

    Accepts a dict / `DatasetDict` of `{source_name: Dataset}` (concatenated in the dict's order), or one `Dataset`
    whose `source_column` holds source names (strings, sorted to give ids), integers, or a `ClassLabel`. A data set
    without that column is returned unchanged with no names. An `IterableDataset` cannot be balanced by source, so one
    with a source column, or a dict of them, is an error.
    """
    if isinstance(dataset, Mapping):
        return _concatenate_sources(dataset)
    if isinstance(dataset, IterableDataset):
        columns = dataset.column_names or list(dataset.features or {})
        if source_column in columns:
            raise ValueError(
                f"The training set is an `IterableDataset` with a `{source_column}` column. Source-balanced batches "
                "need random access to every source: load the data as a `Dataset` (e.g. `streaming=False`), or drop "
                f"the `{source_column}` column to train without per-source reweighting."
            )
        return dataset, []
    if source_column not in dataset.column_names:
        return dataset, []
    feature = dataset.features[source_column]
    values = dataset[source_column]
    if isinstance(feature, ClassLabel):
        names, ids = list(feature.names), list(values)
    else:
        if any(value is None for value in values):
            raise ValueError(f"Some rows have no value in the `{source_column}` column; every pair needs a source.")
        unique = sorted(set(values))
        names = [str(value) for value in unique]
        index = {value: position for position, value in enumerate(unique)}
        ids = [index[value] for value in values]
    if SOURCE_ID_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(SOURCE_ID_COLUMN)
    return dataset.add_column(SOURCE_ID_COLUMN, ids), names


# Keys of a `DatasetDict` of splits (what `load_dataset` returns without `split=`), which is not a dict of sources.
SPLIT_NAMES = {"train", "test", "validation", "valid", "dev", "eval", "evaluation"}


def _concatenate_sources(sources: Mapping[str, Dataset]) -> tuple[Dataset, list[str]]:
    if not sources:
        raise ValueError("The training set is an empty dict: give at least one `{source_name: Dataset}` entry.")
    if set(sources) <= SPLIT_NAMES:
        raise ValueError(
            f"The training set is a dict of splits ({', '.join(sources)}), but a dict is read as `{{source_name: "
            "Dataset}`. Pass the training split itself (e.g. `dataset['train']`, with a source column if it mixes "
            "sources), or a dict keyed by source."
        )
    parts, reference_columns = [], None
    for source_id, (name, part) in enumerate(sources.items()):
        if not isinstance(part, Dataset):
            raise ValueError(
                f"Source {name!r} is a {type(part).__name__}; source-balanced batches need a map-style `Dataset` for "
                "every source (e.g. load with `streaming=False`)."
            )
        if len(part) == 0:
            raise ValueError(f"Source {name!r} has no rows; remove it or give it data.")
        if SOURCE_ID_COLUMN in part.column_names:
            part = part.remove_columns(SOURCE_ID_COLUMN)
        columns = sorted(part.column_names)
        if reference_columns is None:
            reference_columns, reference_name = columns, name
        elif columns != reference_columns:
            raise ValueError(
                f"Sources {reference_name!r} and {name!r} have different columns ({reference_columns} vs {columns}); "
                "convert every source to the same preference format first (see `trl_more.data`)."
            )
        parts.append(part.add_column(SOURCE_ID_COLUMN, [source_id] * len(part)))
    return concatenate_datasets(parts), [str(name) for name in sources]
