"""Token ids and prompt lengths for the multi-objective reward model.

The gate reads the hidden state of the last prompt token, so every tokenized sequence carries its prompt length: the
number of leading tokens that belong to the prompt. It is derived from the tokenization itself, never from a
template-specific token pattern:

- explicit prompt: the common prefix of the tokenized prompt (with the generation prompt of the chat template, for
  conversations) and the tokenized full sequence; a prompt whose last token merges with the response's first one
  ends one token earlier;
- implicit prompt (only `chosen` and `rejected`): the common prefix of the two tokenized sequences. If both
  responses start with the same tokens, those count as prompt: give explicit prompts where that matters.

Texts are tokenized as TRL's `RewardTrainer` tokenizes them (plain text gets the eos token appended), so the features
of stage 1 (ratings) and stage 2 (preferences) come from identically built sequences.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase
from trl.data_utils import _tokenize, common_prefix_length, is_conversational


__all__ = [
    "TRUNCATION_MODES",
    "fit_to_max_length",
    "prompt_length_of",
    "tokenize_prompt",
    "tokenize_prompt_response",
]

TRUNCATION_MODES = ("keep_start", "keep_end")


def tokenize_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict[str, Any]], **chat_template_kwargs
) -> list[int]:
    """Token ids of a prompt alone: plain text as is, a conversation with the chat template's generation prompt."""
    if isinstance(prompt, list):
        return _tokenize(tokenizer, prompt, add_generation_prompt=True, **chat_template_kwargs)["input_ids"]
    return _tokenize(tokenizer, prompt)["input_ids"]


def tokenize_prompt_response(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | list[dict[str, Any]],
    response: str | list[dict[str, Any]],
    **chat_template_kwargs,
) -> tuple[list[int], int]:
    """Token ids of prompt + response and the prompt length, tokenized as TRL's reward trainer does."""
    if is_conversational({"prompt": prompt}):
        ids = _tokenize(tokenizer, prompt + response, **chat_template_kwargs)["input_ids"]
    else:
        if tokenizer.eos_token is not None and not response.endswith(tokenizer.eos_token):
            response = response + tokenizer.eos_token
        ids = _tokenize(tokenizer, prompt + response)["input_ids"]
    return ids, prompt_length_of([ids], tokenize_prompt(tokenizer, prompt, **chat_template_kwargs))


def prompt_length_of(sequences: list[list[int]], prompt_ids: list[int] | None = None) -> int:
    """Number of leading prompt tokens shared by `sequences`, at least 1 and leaving every sequence a response token.

    With `prompt_ids`, the common prefix of the prompt and every sequence; without, the common prefix of the sequences
    (implicit prompt).
    """
    shortest = min(len(ids) for ids in sequences)
    if shortest < 2:
        raise ValueError(
            f"A sequence of {shortest} token(s) cannot hold both a prompt and a response; check for empty texts."
        )
    reference = prompt_ids if prompt_ids is not None else sequences[0]
    length = min(common_prefix_length(reference, ids) for ids in sequences)
    if length == 0:
        raise ValueError(
            "The tokenized sequences share no leading token with the prompt, so the prompt's end cannot be located. "
            "Tokenize prompt and response with the same tokenizer and template."
        )
    return min(length, shortest - 1)


def fit_to_max_length(
    ids: list[int], prompt_length: int, max_length: int | None, truncation_mode: str, where: str = "a sequence"
) -> tuple[list[int], int]:
    """Truncate a sequence to `max_length` tokens, keeping its prompt length right.

    `"keep_start"` cuts the end of the response (the prompt is kept whole); `"keep_end"` cuts the start of the prompt
    (the response is kept whole). Raises a `ValueError` naming `where` when no prompt or no response token would
    remain, instead of dropping the example.
    """
    if truncation_mode not in TRUNCATION_MODES:
        raise ValueError(f"Unknown `truncation_mode` {truncation_mode!r}; choose one of {TRUNCATION_MODES}.")
    if max_length is None or len(ids) <= max_length:
        return ids, prompt_length
    if truncation_mode == "keep_start":
        if prompt_length >= max_length:
            raise ValueError(
                f"The prompt of {where} is {prompt_length} tokens long, which leaves no room for the response within "
                f"max_length={max_length}. Raise `max_length`, shorten the prompt, or set truncation_mode='keep_end' "
                "to cut the start of the prompt instead."
            )
        return ids[:max_length], prompt_length
    removed = len(ids) - max_length
    if prompt_length - removed < 1:
        raise ValueError(
            f"The response of {where} is {len(ids) - prompt_length} tokens long, which leaves no room for the prompt "
            f"within max_length={max_length}. Raise `max_length`, or set truncation_mode='keep_start' to cut the end "
            "of the response instead."
        )
    return ids[removed:], prompt_length - removed
