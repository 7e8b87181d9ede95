"""Anthropic HH-RLHF (`Anthropic/hh-rlhf`, any data_dir) as explicit-prompt preference pairs.

Raw rows hold two full transcripts, `chosen` and `rejected`, that share a conversation and differ in the last
assistant reply. The prompt is the transcript up to and including the last `"\\n\\nAssistant:"`; chosen and rejected
are the rest, so `prompt + chosen` and `prompt + rejected` give back the raw transcripts exactly.

A few raw pairs continue the conversation differently (9 in the helpful-base test split, 5 in harmless-base): one
transcript has an extra turn, or a `Human:` inside a reply without the blank line before it. Their prompt is the
common prefix of both transcripts up to the last `"\\n\\nAssistant:"` they share; the responses keep the rest of
each transcript. These pairs are kept and counted in the report's notes.

An empty final reply is kept (`keep_empty_responses=True`): in HH it is a real annotated outcome (in the
harmless-base test split the 4 empty replies are all chosen, saying nothing beating a harmful answer; in
helpful-base the 4 are all rejected). With these rules the test splits give 2,352 helpful pairs (2,354 rows, 2 with
identical transcripts) and 2,312 harmless pairs, the test sizes the MORE paper reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from .conversion import ConvertedSource, PreferencePairsBuilder
from .formats import ASSISTANT_TAG


__all__ = ["convert_hh_rlhf", "split_transcripts"]


def split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """`(prompt, chosen_response, rejected_response)` split at the last `"\\n\\nAssistant:"` both transcripts share,
    or `None` when they share none."""
    prompt = _own_prompt(chosen)
    if prompt and _own_prompt(rejected) == prompt:  # the usual case, without a character-by-character scan
        end = len(prompt)
    else:
        tag = os.path.commonprefix([chosen, rejected]).rfind(ASSISTANT_TAG)
        if tag < 0:
            return None
        end = tag + len(ASSISTANT_TAG)
    return chosen[:end], chosen[end:], rejected[end:]


def _own_prompt(transcript: str) -> str:
    """The transcript up to and including its last `"\\n\\nAssistant:"` (empty without one)."""
    tag = transcript.rfind(ASSISTANT_TAG)
    return transcript[: tag + len(ASSISTANT_TAG)] if tag >= 0 else ""


def convert_hh_rlhf(
    rows: Iterable[Mapping[str, Any]],
    source: str = "hh-rlhf",
    on_invalid: str = "drop",
    keep_empty_responses: bool = True,
) -> ConvertedSource:
    """Convert HH-RLHF rows (`chosen`, `rejected` transcripts) to `prompt`, `chosen`, `rejected`, `source`.

    Args:
        rows: Raw rows, e.g. a `datasets.Dataset` or a list of dicts.
        source: Value of the `source` column.
        on_invalid: `"drop"` (count, log and drop) or `"raise"` for rows that cannot be converted: a transcript
            without `"\\n\\nAssistant:"`, transcripts sharing no assistant turn, identical transcripts.
        keep_empty_responses: Keep pairs whose chosen or rejected reply is empty (see the module docstring).
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            builder.invalid("missing chosen or rejected transcript", where, chosen=chosen, rejected=rejected)
            continue
        if ASSISTANT_TAG not in chosen or ASSISTANT_TAG not in rejected:
            builder.invalid("transcript without '\\n\\nAssistant:'", where, chosen=chosen, rejected=rejected)
            continue
        split = split_transcripts(chosen, rejected)
        if split is None:
            builder.invalid("chosen and rejected share no assistant turn", where, chosen=chosen, rejected=rejected)
            continue
        prompt, chosen_response, rejected_response = split
        if not prompt == _own_prompt(chosen) == _own_prompt(rejected):
            builder.note(
                "transcripts continue differently: prompt = common prefix up to the last shared '\\n\\nAssistant:'",
                where,
                chosen=chosen_response,
                rejected=rejected_response,
            )
        if keep_empty_responses and chosen != rejected and not (chosen_response.strip() and rejected_response.strip()):
            builder.note("empty reply kept (an annotated outcome)", where, prompt=prompt)
        builder.add(where, prompt, chosen_response, rejected_response, allow_empty_response=keep_empty_responses)
    return builder.finish()
