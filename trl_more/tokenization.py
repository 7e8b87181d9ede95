"""Token ids, prompt lengths and truncation, shared by every trainer and scorer of trl-more.

Several parts need to know where the prompt of a tokenized sequence ends (the multi-objective model's gate reads the
hidden state of the last prompt token; reward scoring truncates the prompt, never the response). That prompt length,
the number of leading tokens that belong to the prompt, is derived from the tokenization itself, never from a
template-specific token pattern:

- explicit prompt: the common prefix of the tokenized prompt (with the generation prompt of the chat template, for
  conversations) and the tokenized full sequence; a prompt whose last token merges with the response's first one
  ends one token earlier;
- implicit prompt (only `chosen` and `rejected`): the common prefix of the two tokenized sequences. If both
  responses start with the same tokens, those count as prompt: give explicit prompts where that matters.

Texts are tokenized as TRL's `RewardTrainer` tokenizes them (plain text with the tokenizer's `__call__`, eos token
appended; conversations with its chat template), so every part of trl-more scores the sequences a reward model was
trained on.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from .constants import TRUNCATION_MODES, check_choice


__all__ = [
    "align_pad_token",
    "common_prefix_length",
    "default_pad_token",
    "fit_to_max_length",
    "model_pad_token_id",
    "prompt_length_of",
    "tokenize",
    "tokenize_prompt",
    "tokenize_prompt_response",
    "tokenize_scored_response",
    "truncate",
]


def tokenize(
    tokenizer: PreTrainedTokenizerBase, text: str | list[dict[str, Any]], **chat_template_kwargs
) -> list[int]:
    """Token ids of plain text (the tokenizer's `__call__`, with its special tokens) or of a conversation (a list of
    `{"role", "content"}` messages, with the chat template), as TRL's trainers tokenize them."""
    if isinstance(text, list):
        return tokenizer.apply_chat_template(text, tokenize=True, return_dict=True, **chat_template_kwargs)[
            "input_ids"
        ]
    return tokenizer(text=text)["input_ids"]


def common_prefix_length(ids: list[int], other_ids: list[int]) -> int:
    """Number of leading tokens the two sequences share."""
    length = 0
    for token, other_token in zip(ids, other_ids):
        if token != other_token:
            break
        length += 1
    return length


def truncate(ids: list[int], max_length: int | None, truncation_mode: str = "keep_end") -> list[int]:
    """At most `max_length` tokens of `ids`: the last ones (`"keep_end"`) or the first ones (`"keep_start"`)."""
    if max_length is None or len(ids) <= max_length:
        return ids
    check_choice("truncation_mode", truncation_mode, TRUNCATION_MODES)
    return ids[-max_length:] if truncation_mode == "keep_end" else ids[:max_length]


def tokenize_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict[str, Any]], **chat_template_kwargs
) -> list[int]:
    """Token ids of a prompt alone: plain text as is, a conversation with the chat template's generation prompt."""
    if isinstance(prompt, list):
        return tokenize(tokenizer, prompt, add_generation_prompt=True, **chat_template_kwargs)
    return tokenize(tokenizer, prompt)


def tokenize_prompt_response(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | list[dict[str, Any]],
    response: str | list[dict[str, Any]],
    **chat_template_kwargs,
) -> tuple[list[int], int]:
    """Token ids of prompt + response and the prompt length, tokenized as TRL's reward trainer does."""
    if isinstance(prompt, list):
        ids = tokenize(tokenizer, prompt + response, **chat_template_kwargs)
    else:
        if tokenizer.eos_token is not None and not response.endswith(tokenizer.eos_token):
            response = response + tokenizer.eos_token
        ids = tokenize(tokenizer, prompt + response)
    return ids, prompt_length_of([ids], tokenize_prompt(tokenizer, prompt, **chat_template_kwargs))


def tokenize_scored_response(
    tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict[str, Any]], response: str
) -> tuple[list[int], int]:
    """Token ids of a (prompt, response) to be scored by a reward model and its prompt length, built as TRL's
    `RewardTrainer` builds training pairs: a conversational prompt gets the response as an assistant message."""
    if isinstance(prompt, str):
        return tokenize_prompt_response(tokenizer, prompt, response)
    if not tokenizer.chat_template:
        raise ValueError(
            "The prompt is conversational but the reward model's tokenizer has no chat template. Give the reward "
            "model a tokenizer with a chat template, or give plain-text prompts in the reward model's format."
        )
    return tokenize_prompt_response(tokenizer, prompt, [{"role": "assistant", "content": response}])


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
    check_choice("truncation_mode", truncation_mode, TRUNCATION_MODES)
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


def align_pad_token(model: Any, tokenizer: PreTrainedTokenizerBase) -> int:
    """Give the tokenizer a pad token (`default_pad_token`) and tell the model which one it is; return its id.

    This is `trl.RewardTrainer`'s rule. Sequence-classification models read the reward at the last token that is not
    padding, found through their (text) config's `pad_token_id`, so the two must agree; the multi-objective model
    keeps it in its `text_config` (`config.get_text_config()`).
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = default_pad_token(tokenizer)
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return tokenizer.pad_token_id


def model_pad_token_id(model: Any, tokenizer: PreTrainedTokenizerBase) -> int:
    """The token id a model pads with: its (text) config's `pad_token_id`, else the id of the tokenizer's
    `default_pad_token`, which is then written into the config (as `align_pad_token` would, without changing the
    tokenizer). For scoring and checking a model as it reads, where a pad id the config already names wins."""
    config = model.config.get_text_config()
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.convert_tokens_to_ids(default_pad_token(tokenizer))
    return config.pad_token_id


def default_pad_token(tokenizer: PreTrainedTokenizerBase) -> str:
    """The token to pad with: the tokenizer's pad token, else its eos token (`trl.RewardTrainer`'s rule)."""
    pad_token = tokenizer.pad_token or tokenizer.eos_token
    if pad_token is None:
        raise ValueError("The tokenizer has neither a pad token nor an eos token to pad with; set a pad token.")
    return pad_token
