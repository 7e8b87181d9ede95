"""WebGPT comparisons (`openai/webgpt_comparisons`) as explicit-prompt preference pairs.

Raw rows: `question{full_text, ...}`, `answer_0`, `answer_1`, `score_0`, `score_1` (scores in [-1, 1] summing to 0;
an answer is preferred iff its score is higher). The prompt is the question as one human turn; the answers are
taken as written (their citation markers such as `[1]` refer to quotes the reward model does not see, as in the
paper's setting).

Ties (equal scores, about 8% of the rows) carry no preference. By default (`ties="drop"`) they are skipped and counted
in the report; `ties="both"` keeps each tie as two pairs in opposite order, whose summed Bradley-Terry loss is
minimal when both answers get the same reward, which is how the Bradley-Terry model reads a tie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..constants import check_choice
from .conversion import ConvertedSource, PreferencePairsBuilder
from .formats import render_dialogue, render_response


__all__ = ["TIE_POLICIES", "convert_webgpt"]

TIE_POLICIES = ("drop", "both")


def convert_webgpt(
    rows: Iterable[Mapping[str, Any]], source: str = "webgpt", on_invalid: str = "drop", ties: str = "drop"
) -> ConvertedSource:
    """Convert WebGPT comparison rows to `prompt`, `chosen`, `rejected`, `source`.

    Args:
        rows: Raw rows in the Hub schema.
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for rows without question, answers or scores, and empty answers.
        ties: `"drop"` (skip and count) or `"both"` (keep as two opposite-order pairs), see the module docstring.
    """
    check_choice("`ties` policy", ties, TIE_POLICIES, option=False)
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        question = (row.get("question") or {}).get("full_text")
        answers = (row.get("answer_0"), row.get("answer_1"))
        scores = (row.get("score_0"), row.get("score_1"))
        if not isinstance(question, str) or not all(isinstance(answer, str) for answer in answers):
            builder.invalid("missing question or answer", where, question=question, answers=answers)
            continue
        if not all(isinstance(score, int | float) for score in scores):
            builder.invalid("missing score", where, scores=scores)
            continue
        prompt = render_dialogue([("human", question)])
        first, second = (render_response(answer) for answer in answers)
        if scores[0] == scores[1]:
            if ties == "drop":
                builder.skip("tie (equal scores)")
                continue
            builder.add(where, prompt, first, second)
            builder.add(where, prompt, second, first)
        elif scores[0] > scores[1]:
            builder.add(where, prompt, first, second)
        else:
            builder.add(where, prompt, second, first)
    return builder.finish()
