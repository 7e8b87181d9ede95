"""A user's own preference data, already in one of TRL's preference formats, as one source or several.

`trl.RewardTrainer` reads pairs in four formats: standard (plain text) or conversational (lists of `{role, content}`
messages), each with an explicit prompt (`prompt`, `chosen`, `rejected`) or an implicit one (`chosen`, `rejected`,
both starting with the prompt); and already tokenized pairs (`chosen_ids`, `rejected_ids`). An optional `margin`
column (a number per pair, which TRL's loss subtracts from the reward difference) is kept, and an optional `source`
column names each pair's source: a file with one holds one source per distinct value, labelled by that value.

Rows are kept as they are. A pair with an implicit prompt gets as its `prompt` what `chosen` and `rejected` share
(whole messages; for text, up to the last whitespace before they differ, so that the responses start with it, as in
`" Sure, ..."`): `prompt + chosen` is the original `chosen`, exactly, which is all `trl.RewardTrainer` reads, and every
source of a mixture has a prompt. Only rows that are not a pair in the file's format (a missing or ill-typed value,
conversations that share no message, a margin that is not a finite number) are invalid, counted by reason with their
row number (`ConversionReport`), and dropped or raised as `on_invalid` says.

Example:
    >>> from trl_more.data import mix_sources
    >>> mixture = mix_sources([{"name": "my-data", "path": "my_pairs.jsonl"}, {"name": "hh-helpful", "split": "test"}])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from datasets import Dataset

from ..constants import SOURCE_COLUMN
from .conversion import ConvertedSource, KeptPairsBuilder
from .formats import render_dialogue, render_reply
from .hh_rlhf_strength import finite_number


__all__ = ["TRL_PREFERENCE_FORMATS", "convert_trl_preferences", "is_conversational_source", "render_as_transcripts"]

# The formats `convert_trl_preferences` reads, for error messages.
TRL_PREFERENCE_FORMATS = (
    "`prompt`, `chosen`, `rejected` (explicit prompt) or `chosen`, `rejected` (implicit prompt), each plain text or "
    "lists of {role, content} messages, or tokenized `chosen_ids`, `rejected_ids`; optionally a `margin` (a number per "
    "pair) and a `source` (each pair's source)"
)


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(message, Mapping) and isinstance(message.get("role"), str) for message in value)
        and all("content" in message for message in value)
    )


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(token, int) and not isinstance(token, bool) for token in value)


# What a pair's values are, by kind, and how a report names them.
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (_is_text, "text"),
    "messages": (_is_messages, "a list of {role, content} messages"),
    "token ids": (_is_token_ids, "a list of token ids"),
}


def convert_trl_preferences(
    rows: Iterable[Mapping[str, Any]],
    source: str = "preferences",
    on_invalid: str = "drop",
    source_column: str | None = SOURCE_COLUMN,
    origin: str | None = None,
) -> dict[str, ConvertedSource]:
    """Read preference pairs in any of TRL's formats (module docstring), keeping them as they are.

    Args:
        rows: The raw rows (e.g. `read_records(path)`, or a `Dataset`).
        source: The label of the pairs when the rows have no `source_column`.
        on_invalid: `"drop"` or `"raise"` for rows that are not a pair in the format of the first row.
        source_column: Column naming each pair's source: with it, the rows give one source per distinct value (a
            string, or an integer used as its text); a row without a value there is an error. `None` reads every
            row as `source`, whatever its columns.
        origin: Where the rows come from (e.g. the file), for error messages; defaults to the source's label.

    Returns:
        `{label: ConvertedSource}`, one per source in order of first appearance; each dataset has the pair's columns
        (`prompt`, `chosen`, `rejected`, or `chosen_ids`, `rejected_ids`), `margin` when the rows have one, and
        `source`.
    """
    rows = list(rows)
    origin = origin or f"source {source!r}"
    columns = set().union(*(row for row in rows if isinstance(row, Mapping)))
    pair_columns, kind = _pair_layout(columns, rows, origin)
    implicit_prompt = "prompt" not in pair_columns and kind != "token ids"
    kept_columns = ("prompt", *pair_columns) if implicit_prompt else pair_columns
    if "margin" in columns:
        kept_columns += ("margin",)
    by_source = source_column is not None and source_column in columns
    builders: dict[str, KeptPairsBuilder] = {}
    for index, row in enumerate(rows):
        record = row if isinstance(row, Mapping) else {}  # e.g. a JSON line holding a list: a row with no columns
        label = _source_label(record, source_column, origin, index) if by_source else source
        if label not in builders:
            builders[label] = KeptPairsBuilder(label, on_invalid, kept_columns)
        builder = builders[label]
        builder.count_read(row)
        pair = _pair(record, pair_columns, kind, implicit_prompt, "margin" in columns)
        if isinstance(pair, str):
            builder.invalid(
                pair, f"row {index}", **{column: record[column] for column in kept_columns if column in record}
            )
        else:
            builder.add(pair)
    return {label: builder.finish() for label, builder in builders.items()}


def _pair_layout(columns: set[str], rows: Sequence[Any], origin: str) -> tuple[tuple[str, ...], str]:
    """The pair's columns and the kind of their values (`_KINDS`), from the columns of the rows and the first
    `chosen`; rows in none of TRL's formats are an error that names the columns found and the formats accepted."""
    found = sorted(columns)
    if {"chosen", "rejected"} <= columns:
        first = next((row["chosen"] for row in rows if row.get("chosen") is not None), None)
        kind = "messages" if isinstance(first, list) else "text"
        return (("prompt", "chosen", "rejected") if "prompt" in columns else ("chosen", "rejected")), kind
    if {"chosen_ids", "rejected_ids"} <= columns:
        return ("chosen_ids", "rejected_ids"), "token ids"
    if not rows:
        raise ValueError(f"{origin} holds no rows; give a file (or split) with preference pairs.")
    for present, missing in (("chosen", "rejected"), ("rejected", "chosen"), ("chosen_ids", "rejected_ids")):
        if present in columns:
            raise ValueError(
                f"{origin} has no `{missing}` column (its columns: {found}): TRL's preference formats pair every "
                f"`{present}` with a `{missing}`. Add the `{missing}` column; the formats read are {TRL_PREFERENCE_FORMATS}."
            )
    raise ValueError(
        f"{origin} is in none of TRL's preference formats: its columns are {found}, and the formats read are "
        f"{TRL_PREFERENCE_FORMATS}. Convert the file to one of them, or, if it is a known source's raw data, name that "
        "source (`trl_more.data.known_source_names()`) so that its converter reads it."
    )


def _source_label(row: Mapping[str, Any], source_column: str, origin: str, index: int) -> str:
    value = row.get(source_column)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError(
            f"{origin}, row {index}: no source in the `{source_column}` column (got {value!r}); every row of data with "
            "this column names its source. Fill it in, or read the data as one source (`source_column=None`; in a "
            "mixture, `options: {source_column: null}`)."
        )
    return str(value)


def _pair(
    row: Mapping[str, Any], pair_columns: tuple[str, ...], kind: str, implicit_prompt: bool, has_margin: bool
) -> dict[str, Any] | str:
    """The pair's values (prompt split off an implicit prompt, margin as a float), or why the row is invalid."""
    accepts, description = _KINDS[kind]
    pair = {}
    for column in pair_columns:
        if not accepts(row.get(column)):
            return f"`{column}` missing or not {description}"
        pair[column] = row[column]
    if implicit_prompt:
        pair = _split_implicit_prompt(pair["chosen"], pair["rejected"])
        if kind == "messages" and not pair["prompt"]:
            return "conversations that share no message (the implicit prompt is the messages both start with)"
    if has_margin:
        pair["margin"] = finite_number(row.get("margin"))
        if pair["margin"] is None:
            return "`margin` missing or not a finite number"
    return pair


def _split_implicit_prompt(chosen: str | list, rejected: str | list) -> dict[str, str | list]:
    """`prompt`, `chosen`, `rejected` with the prompt both start with split off (module docstring)."""
    shared = next(
        (length for length, (left, right) in enumerate(zip(chosen, rejected)) if left != right),
        min(len(chosen), len(rejected)),
    )
    if isinstance(chosen, str):  # cut where the last word both share starts, keeping the whitespace before it
        shared = max(0, *(chosen.rfind(space, 0, shared) for space in " \t\n\r"))
    return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}


def is_conversational_source(dataset: Dataset) -> bool:
    """Whether a source's pairs are lists of messages (TRL's conversational format), not text."""
    return "chosen" in dataset.column_names and isinstance(dataset[0]["chosen"], list)


def render_as_transcripts(converted: ConvertedSource) -> ConvertedSource:
    """A conversational source rendered in the shared transcript format of the known sources (`trl_more.data.
    formats`), so that it can be mixed with plain-text sources; its report notes every pair so rendered. A message
    that format cannot show (e.g. a system message) is an error that says how to go on."""
    label = converted.report.source

    def render(pair: Mapping[str, Any], index: int) -> dict[str, str]:
        try:
            return {
                "prompt": render_dialogue(_turns(pair["prompt"])),
                "chosen": render_reply(_turns(pair["chosen"])),
                "rejected": render_reply(_turns(pair["rejected"])),
            }
        except ValueError as error:
            raise ValueError(
                f"Source {label!r}, pair {index}: {error}. Its conversations are mixed with plain-text sources, so "
                "they are rendered in the transcript format of those (Human/Assistant turns). Remove such messages "
                "from the data, or mix it only with conversational sources, which keep their messages."
            ) from error

    dataset = converted.dataset.map(render, with_indices=True, desc=f"Rendering {label} as transcripts")
    converted.report.notes["conversation rendered as a transcript, to mix with plain-text sources"] += len(dataset)
    return ConvertedSource(dataset, converted.report)


def _turns(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(message["role"], message["content"] or "") for message in messages]
