"""HH-RLHF with published preference strengths (`fnlp/hh-rlhf-strength-cleaned`) as pairs with strength columns.

The release of "Secrets of RLHF in Large Language Models Part II" (Wang et al., 2024): HH-RLHF re-split into a train
(151k) and a valid (17k) set, every pair scored by an ensemble of reward models. Raw rows:

- `chosen`, `rejected`: lists of utterances; all but the last are the dialogue history (shared by both, alternating
  human and assistant, the last one from the human), the last is the response;
- `mean preference difference`, `std preference difference`: the ensemble's strength mu and sigma;
- `chosen score list`, `rejected score list`: every model's reward of the two responses;
- `GPT4 label` (valid set only): 1 if GPT-4 prefers the chosen response, 0 if the rejected one, -1 for none.

They convert to `prompt`, `chosen`, `rejected` (the shared transcript format), `source`, `strength_mean`,
`strength_std`, `strength_differences` (chosen minus rejected score of every model) and `gpt4_label` (None when
absent), the columns `trl_more.noisy_preferences` reads. Rows whose `chosen` and `rejected` are full transcripts (the
original HH-RLHF layout) are accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from datasets import Sequence, Value

from ..constants import STRENGTH_COLUMN, STRENGTH_DIFFERENCES_COLUMN, STRENGTH_STD_COLUMN
from .conversion import ConvertedSource, PreferencePairsBuilder
from .formats import render_dialogue, render_response
from .hh_rlhf import split_transcripts


__all__ = ["convert_hh_rlhf_strength", "finite_number"]

GPT4_LABEL_COLUMN = "gpt4_label"
_EXTRA = {
    STRENGTH_COLUMN: Value("float64"),
    STRENGTH_STD_COLUMN: Value("float64"),
    STRENGTH_DIFFERENCES_COLUMN: Sequence(Value("float64")),
    GPT4_LABEL_COLUMN: Value("int64"),
}


def _history_turns(history: list[str]) -> list[tuple[str, str]]:
    """Roles of the utterances before the response: alternating, the last one from the human."""
    return [("human" if (len(history) - position) % 2 else "assistant", text) for position, text in enumerate(history)]


def _split(row: Mapping[str, Any]) -> tuple[str, str, str] | str:
    """`(prompt, chosen response, rejected response)`, or why the row cannot be split."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if isinstance(chosen, str) and isinstance(rejected, str):
        split = split_transcripts(chosen, rejected)
        return split if split is not None else "chosen and rejected share no assistant turn"
    if not isinstance(chosen, list) or not isinstance(rejected, list) or len(chosen) < 2 or len(rejected) < 2:
        return "chosen and rejected must be lists of utterances (history, then the response)"
    if chosen[:-1] != rejected[:-1]:
        return "chosen and rejected have different dialogue histories"
    if not all(isinstance(text, str) for text in [*chosen, *rejected]):
        return "an utterance is not text"
    return render_dialogue(_history_turns(chosen[:-1])), render_response(chosen[-1]), render_response(rejected[-1])


def finite_number(value: Any) -> float | None:
    """`value` as a float if it is a finite int or float (not a bool), else `None`."""
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def convert_hh_rlhf_strength(
    rows: Iterable[Mapping[str, Any]], source: str = "hh-rlhf-strength", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert `fnlp/hh-rlhf-strength-cleaned` rows (see the module docstring) to pairs with strength columns.

    Args:
        rows: Raw rows in the Hub schema.
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for rows that cannot be split, with a missing or non-finite strength, or
            score lists of different lengths.
    """
    builder = PreferencePairsBuilder(source, on_invalid, extra=_EXTRA)
    for where, row in builder.read(rows):
        split = _split(row)
        if isinstance(split, str):
            builder.invalid(split, where, chosen=row.get("chosen"), rejected=row.get("rejected"))
            continue
        mean, std = (
            finite_number(row.get("mean preference difference")),
            finite_number(row.get("std preference difference")),
        )
        chosen_scores, rejected_scores = row.get("chosen score list") or [], row.get("rejected score list") or []
        if mean is None or std is None:
            builder.invalid("missing or non-finite preference strength", where, mean=mean, std=std)
            continue
        if len(chosen_scores) != len(rejected_scores):
            builder.invalid("score lists of different lengths", where, chosen=chosen_scores, rejected=rejected_scores)
            continue
        label = row.get("GPT4 label")
        builder.add(
            where,
            *split,
            **{
                STRENGTH_COLUMN: mean,
                STRENGTH_STD_COLUMN: std,
                STRENGTH_DIFFERENCES_COLUMN: [float(c) - float(r) for c, r in zip(chosen_scores, rejected_scores)],
                GPT4_LABEL_COLUMN: int(label) if label in (0, 1) else None,
            },
        )
    return builder.finish()
