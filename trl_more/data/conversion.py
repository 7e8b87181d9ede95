"""Collecting converted examples, and accounting for every raw row that did not become one.

A converter reads raw rows and hands each example to a builder. Rows that cannot be converted (e.g. an HH
transcript without an assistant turn, an empty response, chosen identical to rejected) are counted by reason with a
few examples in a `ConversionReport`, then dropped (and logged) or raised, as `on_invalid` says; nothing is dropped
silently. Rows that a source's construction rule leaves out by design (a WebGPT tie, an unranked OASST reply) are
counted as `skipped`, and rows kept with a documented adjustment as `notes`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from datasets import Dataset, Features, Value
from datasets.utils.tqdm import tqdm

from ..constants import SOURCE_COLUMN, check_choice
from .formats import PREFERENCE_COLUMNS, RATING_TEXT_COLUMNS


__all__ = [
    "ON_INVALID_CHOICES",
    "ConversionReport",
    "ConvertedSource",
    "InvalidRowsError",
    "KeptPairsBuilder",
    "PreferencePairsBuilder",
    "RatingsBuilder",
    "check_on_invalid",
]

logger = logging.getLogger(__name__)

ON_INVALID_CHOICES = ("drop", "raise")
_SAMPLES_PER_REASON = 3
_EXCERPT_CHARS = 80


@dataclass
class ConversionReport:
    """What a converter did with the raw rows of one source.

    Attributes:
        source: Name of the source (the value of the `source` column).
        rows_read: Raw records read (rows; for the nested OASST export, message trees).
        examples: Examples produced (preference pairs or rated responses).
        invalid: Count of rows that could not be converted, by reason (dropped, or raised with `on_invalid="raise"`).
        skipped: Count of rows or candidate pairs left out by the source's construction rule, by reason.
        notes: Count of examples kept with a documented adjustment, by reason.
        samples: Up to three short excerpts per invalid or noted reason, to show what the rows look like.
    """

    source: str
    rows_read: int = 0
    examples: int = 0
    invalid: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_invalid(self) -> int:
        return sum(self.invalid.values())

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def __str__(self) -> str:
        lines = [f"{self.source}: {self.rows_read} rows read, {self.examples} examples"]
        for title, counts in (("invalid", self.invalid), ("skipped", self.skipped), ("note", self.notes)):
            for reason, count in counts.most_common():
                lines.append(f"  {title}: {count} x {reason}")
                lines.extend(f"    e.g. {sample}" for sample in self.samples.get(reason, []))
        return "\n".join(lines)


class ConvertedSource(NamedTuple):
    """A converted source: the `Dataset` and the `ConversionReport` of how it was built."""

    dataset: Dataset
    report: ConversionReport


# What to check when no row of a known source converts (`InvalidRowsError`).
RAW_SCHEMA_HINT = (
    "Is the file in the raw schema of this source (see its converter in `trl_more.data`)? A file already in TRL's "
    "preference format (prompt/chosen/rejected) is a source of its own under any name that is not a known source "
    "(e.g. `{name: my-data, path: my_pairs.jsonl}` in a mixture)."
)


class InvalidRowsError(ValueError):
    """Raised when rows cannot be converted and `on_invalid="raise"`, or when no row at all could be converted (a
    file in another schema); `report` has the counts and examples."""

    def __init__(self, report: ConversionReport, columns: list[str] | None = None, schema_hint: str = RAW_SCHEMA_HINT):
        if columns is not None:  # nothing could be converted: most likely the rows are not in this source's schema
            fix = f"No row could be converted; the rows have the columns {columns}. {schema_hint}"
        else:
            fix = "Fix the data, or pass `on_invalid='drop'` to drop these rows (they are counted in the report)."
        super().__init__(
            f"{report.num_invalid} row(s) of source {report.source!r} cannot be converted:\n{report}\n{fix}"
        )
        self.report = report


def check_on_invalid(on_invalid: str) -> None:
    check_choice("on_invalid", on_invalid, ON_INVALID_CHOICES)


def _excerpt(where: str, fields: Mapping[str, Any]) -> str:
    parts = []
    for name, value in fields.items():
        text = repr(value)
        if len(text) > _EXCERPT_CHARS:
            half = (_EXCERPT_CHARS - 5) // 2
            text = f"{text[:half]} ... {text[-half:]}"
        parts.append(f"{name}={text}")
    return f"{where}: {', '.join(parts)}" if parts else where


class _ExampleBuilder:
    """Collects the columns of a converted source and its report; `finish` applies the `on_invalid` policy."""

    # What `InvalidRowsError` suggests when no row converts.
    schema_hint = RAW_SCHEMA_HINT

    def __init__(self, source: str, on_invalid: str, columns: Iterable[str], features: Features | None):
        check_on_invalid(on_invalid)
        self.on_invalid = on_invalid
        self.features = features
        self.columns: dict[str, list] = {name: [] for name in columns if name != SOURCE_COLUMN}
        self.report = ConversionReport(source=source)
        self.first_columns: list[str] | None = None

    def read(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Yield `("row <index>", row)` for every raw row, counted for the report, with a progress bar on a terminal."""
        description = f"Converting {self.report.source}"
        for index, row in enumerate(tqdm(rows, desc=description, unit=" rows", disable=None, leave=False)):
            self.count_read(row)
            yield f"row {index}", row

    def count_read(self, row: Any) -> None:
        """Count a raw row for the report (`read` does it; a converter that reads the rows itself calls this)."""
        if self.first_columns is None:
            self.first_columns = sorted(row) if isinstance(row, Mapping) else [type(row).__name__]
        self.report.rows_read += 1

    def invalid(self, reason: str, where: str, **fields: Any) -> None:
        """Count a row that cannot be converted."""
        self._count(self.report.invalid, reason, where, fields)

    def skip(self, reason: str, count: int = 1) -> None:
        """Count rows (or candidate pairs) that the source's construction rule leaves out."""
        self.report.skipped[reason] += count

    def note(self, reason: str, where: str, **fields: Any) -> None:
        """Count an example that is kept with a documented adjustment."""
        self._count(self.report.notes, reason, where, fields)

    def _count(self, counter: Counter, reason: str, where: str, fields: Mapping[str, Any]) -> None:
        counter[reason] += 1
        samples = self.report.samples.setdefault(reason, [])
        if len(samples) < _SAMPLES_PER_REASON:
            samples.append(_excerpt(where, fields))

    def _append(self, row: Mapping[str, Any]) -> None:
        for name, values in self.columns.items():
            values.append(row[name])
        self.report.examples += 1

    def finish(self) -> ConvertedSource:
        if self.report.num_invalid and (self.on_invalid == "raise" or not self.report.examples):
            raise InvalidRowsError(
                self.report, self.first_columns if not self.report.examples else None, self.schema_hint
            )
        if self.report.num_invalid:
            logger.warning(f"Dropped {self.report.num_invalid} row(s) that cannot be converted.\n{self.report}")
        elif self.report.skipped or self.report.notes:
            logger.info(str(self.report))
        self.columns[SOURCE_COLUMN] = [self.report.source] * self.report.examples
        return ConvertedSource(Dataset.from_dict(self.columns, features=self.features), self.report)


class PreferencePairsBuilder(_ExampleBuilder):
    """Builds a preference source: `prompt`, `chosen`, `rejected` (plain text) and `source`, plus the `extra` columns
    a source carries (e.g. precomputed preference strengths), with their features."""

    def __init__(self, source: str, on_invalid: str = "drop", extra: Mapping[str, Any] | None = None):
        features = Features({**{name: Value("string") for name in PREFERENCE_COLUMNS}, **(extra or {})})
        super().__init__(source, on_invalid, features, features)

    def add(
        self,
        where: str,
        prompt: str,
        chosen: str,
        rejected: str,
        allow_empty_response: bool = False,
        **extra: Any,
    ) -> None:
        """Add a pair, or count it as invalid: empty prompt, empty response (unless allowed), chosen == rejected."""
        fields = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if not prompt.strip():
            self.invalid("empty prompt", where, **fields)
        elif not allow_empty_response and not (chosen.strip() and rejected.strip()):
            self.invalid("empty response", where, **fields)
        elif chosen == rejected:
            self.invalid("chosen identical to rejected", where, **fields)
        else:
            self._append({"prompt": prompt, "chosen": chosen, "rejected": rejected, **extra})


class KeptPairsBuilder(_ExampleBuilder):
    """Builds a source of preference pairs kept as they are given, in any of TRL's preference formats (plain text,
    lists of messages, or token ids), with the features `datasets` infers from them; `columns` are the pair's columns
    (e.g. `prompt`, `chosen`, `rejected`, `margin`), and the `source` column is added."""

    schema_hint = (
        "Every row must hold its pair in the format of the file's first row: text, or lists of {role, content} "
        "messages (the prompt too, when there is a `prompt` column); fix the rows the report shows."
    )

    def __init__(self, source: str, on_invalid: str, columns: Iterable[str]):
        super().__init__(source, on_invalid, columns, None)

    def add(self, pair: Mapping[str, Any]) -> None:
        """Add a pair: a value for each of the builder's columns."""
        self._append(pair)


class RatingsBuilder(_ExampleBuilder):
    """Builds a rating source: `prompt`, `response`, `source` and one float column per objective (raw scale).

    `scales` maps every objective column to its `(low, high)` rating scale; a rating outside it is invalid, a missing
    one (`None`) is kept as NaN (multi-objective regression masks missing labels out of its loss).
    """

    def __init__(self, source: str, scales: Mapping[str, tuple[float, float]], on_invalid: str = "drop"):
        features = {name: Value("string") for name in RATING_TEXT_COLUMNS}
        features.update({name: Value("float64") for name in scales})
        super().__init__(source, on_invalid, features, Features(features))
        self.scales = dict(scales)

    def add(self, where: str, prompt: str, response: str, ratings: Mapping[str, Any]) -> None:
        """Add a rated response, or count it as invalid: empty prompt or response, no rating, a rating off scale."""
        fields = {"prompt": prompt, "response": response, **ratings}
        values = {}
        for name, (low, high) in self.scales.items():
            value = ratings.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                values[name] = math.nan
            elif isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                self.invalid(f"rating outside its scale [{low}, {high}]", where, **fields)
                return
            else:
                values[name] = float(value)
        if not prompt.strip():
            self.invalid("empty prompt", where, **fields)
        elif not response.strip():
            self.invalid("empty response", where, **fields)
        elif all(math.isnan(value) for value in values.values()):
            self.invalid("no rating", where, **fields)
        else:
            self._append({"prompt": prompt, "response": response, **values})
