"""Writing result objects out: JSON text (optionally saved) and Markdown tables, one rule for every report.

The evaluation, audit, benchmark (RewardBench, RM-Bench, best-of-n), pre-flight and strength results all write
themselves with these two helpers, so their files and tables look the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


__all__ = ["json_text", "markdown_row", "markdown_table"]


def json_text(data: Any, path: str | os.PathLike | None = None, default: Callable[[Any], Any] | None = None) -> str:
    """`data` as indented JSON text, also written to `path` (with a final newline) when given; `default` converts
    values `json` cannot write (e.g. `float` for numpy numbers)."""
    text = json.dumps(data, indent=2, default=default)
    if path is not None:
        Path(path).write_text(text + "\n")
    return text


def markdown_row(cells: Iterable[str]) -> str:
    """One row of a Markdown table: `| a | b |`."""
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: Sequence[str], rows: Iterable[Iterable[str]] = ()) -> list[str]:
    """The lines of a Markdown table: the header, the `|---|` separator and the rows (strings, already formatted)."""
    return [markdown_row(header), "|" + "---|" * len(header), *(markdown_row(row) for row in rows)]
