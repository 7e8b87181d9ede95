"""Declared rating sets: any file or Hub dataset of rated responses, converted by a column mapping instead of code.

A `DeclaredRatingSet` says where the prompt, the response and every objective's rating are in a row, and each
objective's scale. Column names are dotted paths into nested mappings (`scores.honesty` reads
`row["scores"]["honesty"]`; a numeric part indexes a list, `ratings.0`); a key that itself contains dots is matched
first. The text comes either from a `prompt` column (text, or a list of `{role, content}` messages) and a `response`
column, or from one `messages` column holding the whole conversation, whose last (assistant) message is the rated
response. Ratings may be numbers, booleans (True = 1, False = 0) or numeric strings; `missing_values` lists strings
that mean "not rated" (e.g. `"N/A"`), and a missing or null rating is NaN. The converted rows have the same columns,
rules and invalid-row report as the built-in rating sets (docs/multi_objective.md).

Example (a mixture YAML source; in Python, `SourceConfig(name=..., path=..., ratings={...})`):

    - name: my-ratings                  # with `path` any name; without it, the Hub dataset id to load
      path: data/rated.jsonl
      ratings:
        prompt: instruction
        response: completion
        missing_values: ["N/A"]
        objectives:
          - {name: ultrafeedback-honesty, column: scores.honesty, scale: [1, 5]}
          - {name: my-is-safe, column: is_safe, scale: [0, 1]}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .conversion import ConvertedSource, RatingsBuilder
from .formats import render_dialogue, render_response


__all__ = ["DeclaredRatingSet", "RatingObjective", "convert_declared_ratings", "parse_rating"]

_MISSING = object()


@dataclass
class RatingObjective:
    """One objective of a declared rating set.

    Attributes:
        name: The objective's column in the converted data, e.g. `"ultrafeedback-honesty"` (`<set>-<attribute>`, as
            the built-in sets name theirs).
        column: Dotted path of the rating in a raw row, e.g. `"scores.honesty"`.
        scale: `(low, high)` of the raw ratings; stage 1 scales them to [0, 1] with `(rating - low) / (high - low)`.
    """

    name: str
    column: str
    scale: tuple[float, float]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(
                f"A rating objective needs a `name` (its column in the converted data), got {self.name!r}."
            )
        if not isinstance(self.column, str) or not self.column.strip():
            raise ValueError(f"Objective {self.name!r} needs a `column` (the dotted path of its rating in a row).")
        scale = self.scale
        valid = (
            isinstance(scale, Sequence)
            and not isinstance(scale, str)
            and len(scale) == 2
            and all(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in scale)
        )
        if not valid or not scale[0] < scale[1]:
            raise ValueError(
                f"Objective {self.name!r}: `scale` must be [low, high] with low < high (e.g. [1, 5]), got {scale!r}."
            )
        self.scale = (float(scale[0]), float(scale[1]))


@dataclass
class DeclaredRatingSet:
    """Where the text and the ratings of a rating set are, by column; see the module docstring.

    Attributes:
        objectives: The objectives, each a `RatingObjective` (in YAML: a mapping of its fields).
        prompt: Column of the prompt: text (one human turn) or a list of `{role, content}` messages.
        response: Column of the rated response (text). Required with `prompt`.
        messages: Column holding the whole conversation as `{role, content}` messages, ending with the rated
            assistant reply. Exclusive with `prompt` and `response`.
        missing_values: Strings that mean "not rated" (e.g. `["N/A"]`); any other non-numeric string is invalid.
    """

    objectives: list[RatingObjective]
    prompt: str | None = None
    response: str | None = None
    messages: str | None = None
    missing_values: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.objectives, Sequence) or isinstance(self.objectives, str) or not self.objectives:
            raise ValueError("A declared rating set needs `objectives`: a list of {name, column, scale}.")
        self.objectives = [_as_objective(entry, index) for index, entry in enumerate(self.objectives)]
        names = [objective.name for objective in self.objectives]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"Objective(s) {repeated} are declared more than once; give each objective one column.")
        if self.messages is not None:
            if self.prompt is not None or self.response is not None:
                raise ValueError(
                    "Give either `messages` (one column with the whole conversation, the rated reply last) or "
                    "`prompt` and `response`, not both."
                )
        elif self.prompt is None or self.response is None:
            raise ValueError(
                "A declared rating set needs the `prompt` and `response` columns, or one `messages` column holding the "
                "conversation with the rated reply last."
            )
        if isinstance(self.missing_values, str) or not all(isinstance(value, str) for value in self.missing_values):
            raise ValueError(f"`missing_values` must be a list of strings, got {self.missing_values!r}.")
        self.missing_values = list(self.missing_values)

    @property
    def scales(self) -> dict[str, tuple[float, float]]:
        """`{objective: (low, high)}`, as `RATING_SCALES` gives them for the built-in sets."""
        return {objective.name: objective.scale for objective in self.objectives}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "the rating declaration") -> DeclaredRatingSet:
        """Build from a mapping (e.g. parsed YAML); an unknown key is an error that names it."""
        if isinstance(data, DeclaredRatingSet):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"`ratings` of {origin} must be a mapping with `objectives`, got {data!r}.")
        known = [item.name for item in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in known]
        if unknown:
            raise ValueError(
                f"Unknown key(s) {unknown} in `ratings` of {origin}; the known keys are: {', '.join(known)}."
            )
        return cls(**data)


def _as_objective(entry: RatingObjective | Mapping[str, Any], index: int) -> RatingObjective:
    if isinstance(entry, RatingObjective):
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(f"objectives[{index}] must be a mapping {{name, column, scale}}, got {entry!r}.")
    fields = {"name", "column", "scale"}
    if set(entry) != fields:
        raise ValueError(
            f"objectives[{index}] must have exactly the keys name, column and scale; got {sorted(entry)}."
        )
    return RatingObjective(**entry)


def _lookup(record: Any, path: str) -> Any:
    """The value at the dotted `path` of `record`, or `_MISSING` when the path is absent."""
    if isinstance(record, Mapping) and path in record:
        return record[path]
    head, dot, rest = path.partition(".")
    if isinstance(record, Sequence) and not isinstance(record, str) and head.isdigit() and int(head) < len(record):
        return _lookup(record[int(head)], rest) if dot else record[int(head)]  # a list index, last part or not
    if dot and isinstance(record, Mapping) and head in record:
        return _lookup(record[head], rest)
    return _MISSING


def parse_rating(value: Any, missing_values: Iterable[str] = ()) -> float | None:
    """A raw rating as a float, or `None` when it is not rated.

    Booleans count as 1 / 0, numeric strings are parsed, and `None`, NaN and the `missing_values` strings (e.g.
    `"N/A"`) are missing. Anything else raises a `ValueError`.
    """
    if value is None or value is _MISSING or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, int | float):  # bool is an int: True = 1, False = 0
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in missing_values:
            return None
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"not a number: {value!r}") from None
        return None if math.isnan(number) else number
    raise ValueError(f"not a number: {type(value).__name__}")


def convert_declared_ratings(
    rows: Iterable[Mapping[str, Any]],
    declaration: DeclaredRatingSet | Mapping[str, Any],
    source: str = "ratings",
    on_invalid: str = "raise",
) -> ConvertedSource:
    """Convert rows by a column mapping to `prompt`, `response`, `source` and one float column per declared objective.

    Args:
        rows: Raw rows.
        declaration: A `DeclaredRatingSet` or a mapping of its fields.
        source: Value of the `source` column.
        on_invalid: `"raise"` (default, as for the built-in rating sets) or `"drop"` for rows with an empty prompt or
            response or without its column, a conversation that does not end with an assistant reply or has a role the
            transcript format cannot show, a rating that is not a number or lies outside its scale, or no rating at all.

    Raises:
        ValueError: when an objective's column is in no row at all (most likely a misspelled column), naming it and
            the columns of the first row.
    """
    declaration = DeclaredRatingSet.from_dict(declaration)
    builder = RatingsBuilder(source, declaration.scales, on_invalid)
    found: set[str] = set()
    for where, row in builder.read(rows):
        ratings, unreadable = {}, None
        for objective in declaration.objectives:
            raw = _lookup(row, objective.column)
            if raw is not _MISSING:
                found.add(objective.name)
            try:
                ratings[objective.name] = parse_rating(raw, declaration.missing_values)
            except ValueError:
                unreadable = objective.name, raw
                break
        if unreadable is not None:
            builder.invalid(f"rating of {unreadable[0]} is not a number", where, rating=unreadable[1])
            continue
        text = _prompt_and_response(row, declaration)
        if isinstance(text, str):
            builder.invalid(text, where, **{name: _present(_lookup(row, name)) for name in _text_columns(declaration)})
            continue
        builder.add(where, *text, ratings)
    absent = [objective for objective in declaration.objectives if objective.name not in found]
    if absent and builder.report.rows_read:
        listing = ", ".join(f"{objective.name!r} (column {objective.column!r})" for objective in absent)
        raise ValueError(
            f"Source {source!r}: the rating column of {listing} is in no row; the first row has the columns "
            f"{builder.first_columns}. Fix `column` (a dotted path reaches into nested mappings, e.g. 'scores.honesty')."
        )
    return builder.finish()


def _present(value: Any) -> Any:
    return None if value is _MISSING else value


def _text_columns(declaration: DeclaredRatingSet) -> list[str]:
    return [declaration.messages] if declaration.messages is not None else [declaration.prompt, declaration.response]


def _prompt_and_response(row: Mapping[str, Any], declaration: DeclaredRatingSet) -> tuple[str, str] | str:
    """The rendered `(prompt, response)` of a row, or the reason it has none."""
    if declaration.messages is not None:
        conversation = _lookup(row, declaration.messages)
        if not _is_conversation(conversation) or not conversation:
            return f"column {declaration.messages!r} is not a list of {{role, content}} messages"
        if conversation[-1].get("role") != "assistant":
            return "conversation does not end with an assistant reply"
        context, reply = conversation[:-1], conversation[-1].get("content") or ""
    else:
        context, reply = _lookup(row, declaration.prompt), _lookup(row, declaration.response)
        for column, value in ((declaration.prompt, context), (declaration.response, reply)):
            if value is _MISSING:  # most likely a misspelled column: the reason names it
                return f"no column {column!r}"
        if reply is None:
            reply = ""
        if not isinstance(reply, str):
            return f"column {declaration.response!r} is not text"
        if context is None or isinstance(context, str):
            context = [{"role": "user", "content": context or ""}]
        elif not _is_conversation(context):
            return f"column {declaration.prompt!r} is neither text nor a list of {{role, content}} messages"
    if not context:
        return "conversation without a prompt"
    try:
        prompt = render_dialogue([(message.get("role"), message.get("content") or "") for message in context])
    except ValueError as error:
        return str(error)
    if not any((message.get("content") or "").strip() for message in context):
        prompt = ""  # an empty prompt is counted as such by the builder
    return prompt, render_response(reply)


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(message, Mapping) for message in value)
