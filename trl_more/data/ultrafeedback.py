"""UltraFeedback binarized as explicit-prompt preference pairs, from any of its published layouts.

- `trl-lib/ultrafeedback_binarized`: `chosen` and `rejected` are conversations (lists of `{role, content}`) that
  share every message but the last assistant reply; the shared messages are the prompt.
- `HuggingFaceH4/ultrafeedback_binarized`: the same, plus a `prompt` string repeating the first user message.
- TRL's conversational explicit-prompt layout: `prompt` is a list of messages, `chosen`/`rejected` the replies.
- The plain-text sample in ../shared/data/ultrafeedback: `prompt`, `chosen`, `rejected` strings.

Every layout is rendered in the shared transcript format. Pairs are taken as given (the binarized set pairs the best
rated response with a random other one); the scores are not kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .conversion import ConvertedSource, PreferencePairsBuilder
from .formats import render_dialogue, render_response


__all__ = ["convert_ultrafeedback"]


def _split_conversations(row: Mapping[str, Any]) -> tuple[list[tuple[str, str]], str, str] | str:
    """`(prompt turns, chosen text, rejected text)` of a conversational row, or the reason it cannot be split."""
    prompt, chosen, rejected = row.get("prompt"), row["chosen"], row["rejected"]
    if not chosen or not rejected:
        return "empty conversation"
    if chosen[-1].get("role") != "assistant" or rejected[-1].get("role") != "assistant":
        return "conversation does not end with an assistant reply"
    if chosen[:-1] != rejected[:-1]:
        return "chosen and rejected conversations have different prompts"
    context = (list(prompt) if isinstance(prompt, list) else []) + list(chosen[:-1])
    if not context:
        return "conversation without a prompt"
    turns = [(message.get("role"), message.get("content") or "") for message in context]
    return turns, chosen[-1].get("content") or "", rejected[-1].get("content") or ""


def convert_ultrafeedback(
    rows: Iterable[Mapping[str, Any]], source: str = "ultrafeedback", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert UltraFeedback binarized rows (any layout of the module docstring) to `prompt`, `chosen`, `rejected`,
    `source`.

    Args:
        rows: Raw rows.
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for rows with missing fields, conversations that do not share their prompt
            or do not end with an assistant reply, roles the transcript format cannot show, empty or identical
            responses.
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        prompt, chosen, rejected = row.get("prompt"), row.get("chosen"), row.get("rejected")
        if isinstance(chosen, str) and isinstance(rejected, str) and isinstance(prompt, str):
            turns, chosen_text, rejected_text = [("human", prompt)], chosen, rejected
        elif isinstance(chosen, list) and isinstance(rejected, list):
            split = _split_conversations(row)
            if isinstance(split, str):
                builder.invalid(split, where, prompt=prompt, chosen=chosen, rejected=rejected)
                continue
            turns, chosen_text, rejected_text = split
        else:
            builder.invalid(
                "missing prompt, chosen or rejected", where, prompt=prompt, chosen=chosen, rejected=rejected
            )
            continue
        try:
            rendered_prompt = render_dialogue(turns)
        except ValueError as error:
            builder.invalid(str(error), where, prompt=prompt)
            continue
        builder.add(where, rendered_prompt, render_response(chosen_text), render_response(rejected_text))
    return builder.finish()
