"""Pairs with preference strengths written by `trl-more strength` (`PreferenceStrength.save`), read back as a source.

`strength.jsonl` and `strength.parquet` hold the training pairs (`prompt`, `chosen`, `rejected`, `source`) with
`strength_mean`, `strength_std` and `strength_differences`. A mixture reads them like any other source, so that
`trl-more reward` can train on them with the denoising losses (recipes/mixtures/hh_cpu_strength.yaml):

    sources:
      - {name: trl-more-strength, path: runs/hh-strength/strength.jsonl, label: hh-helpful,
         options: {only_source: hh-helpful}}

`only_source` keeps the rows of one of the file's sources: declare one entry per source so that MORE still sees them
as separate sources. Without it every row is read under the entry's label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from datasets import Sequence, Value

from ..constants import SOURCE_COLUMN, STRENGTH_COLUMN, STRENGTH_DIFFERENCES_COLUMN, STRENGTH_STD_COLUMN
from .conversion import ConvertedSource, PreferencePairsBuilder
from .hh_rlhf_strength import finite_number


__all__ = ["convert_strength_records"]

_EXTRA = {
    STRENGTH_COLUMN: Value("float64"),
    STRENGTH_STD_COLUMN: Value("float64"),
    STRENGTH_DIFFERENCES_COLUMN: Sequence(Value("float64")),
}


def convert_strength_records(
    rows: Iterable[Mapping[str, Any]],
    source: str = "trl-more-strength",
    on_invalid: str = "drop",
    only_source: str | None = None,
) -> ConvertedSource:
    """Convert the rows of a `strength.jsonl`/`.parquet` written by `PreferenceStrength.save` to pairs with strengths.

    Args:
        rows: The saved rows: plain-text `prompt`, `chosen`, `rejected`, their `source` and the three strength columns.
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for rows without plain-text pairs or with a missing or non-finite strength.
        only_source: Keep only the rows whose saved `source` is this one (the others are not read, and not counted as
            invalid: the report counts them as skipped); `None` keeps every row. A source that no row has is an
            error that lists the file's sources.
    """
    builder = PreferencePairsBuilder(source, on_invalid, extra=_EXTRA)
    seen_sources: set[str] = set()
    for where, row in builder.read(rows):
        seen_sources.add(str(row.get(SOURCE_COLUMN)))
        if only_source is not None and row.get(SOURCE_COLUMN) != only_source:
            builder.skip(f"source not {only_source!r}")
            continue
        texts = [row.get(column) for column in ("prompt", "chosen", "rejected")]
        if not all(isinstance(text, str) for text in texts):
            builder.invalid(
                "prompt, chosen and rejected must be plain text (load conversational pairs with "
                "`datasets.Dataset.from_json` and pass them to the trainer directly)",
                where,
                **dict(zip(("prompt", "chosen", "rejected"), texts)),
            )
            continue
        mean, std = finite_number(row.get(STRENGTH_COLUMN)), finite_number(row.get(STRENGTH_STD_COLUMN))
        differences = row.get(STRENGTH_DIFFERENCES_COLUMN) or []
        if mean is None or std is None or any(finite_number(value) is None for value in differences):
            builder.invalid("missing or non-finite preference strength", where, mean=mean, std=std)
            continue
        builder.add(
            where,
            *texts,
            **{
                STRENGTH_COLUMN: mean,
                STRENGTH_STD_COLUMN: std,
                STRENGTH_DIFFERENCES_COLUMN: [float(value) for value in differences],
            },
        )
    if only_source is not None and only_source not in seen_sources:
        raise ValueError(
            f"No row has source {only_source!r}; the file's sources are {sorted(seen_sources)}. Set `only_source` to "
            "one of them."
        )
    return builder.finish()
