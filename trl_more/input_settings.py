"""How a reward model reads its input: recorded with the model by trl-more's trainers, read back by every scorer.

A reward model scores well only the sequences it can read the way it was trained to. trl-more's reward trainers
record in the model's config how it was trained to read (`record_input_settings`; the `training_*` config attributes
named in `trl_more.constants`), so the record is saved with the model and travels with it:

- the token limit and the truncation mode (`training_max_length`, `training_truncation_mode`);
- the rendering of its pairs (`training_rendering`): `"chat"` (conversations through its chat template), `"hh"`
  (plain text in the Anthropic-HH transcript format) or `"plain"` (other plain text);
- the EOS token TRL appends to plain-text pairs (`training_eos_token`), and the pad token and the side its batches
  were padded with (`training_pad_token`, `training_padding_side`: TRL's preference collator pads on the right);
- where the reward is read (`training_pooling`): `"last_token"`, the last token that is not padding (decoders; with
  the pad token equal to the EOS token, the token before the final EOS), or `"first_token"` (bidirectional encoders:
  the pooler reads the first token, [CLS], which has seen the whole sequence).

`input_settings(model)` reads the record back, with the model's own position limit; a model from elsewhere has no
record and gets the defaults below. Every scorer (`trl-more evaluate` and its audits, RewardBench and RM-Bench,
`trl-more strength`, the rejection-sampling scorer, `trl-more serve`, `trl-more doctor`) takes its default token limit
from `scoring_max_length(model, max_length)`:

1. the `max_length` the user gave, when given;
2. else the `max_length` the model was trained with, at most its position limit;
3. else its position limit: `max_position_embeddings` less the positions the architecture reserves (RoBERTa-style
   embeddings number a sequence's positions from `padding_idx + 1` on: 514 positions read 512 tokens);
4. else none: nothing is truncated.

The truncation mode of pair scoring (`scoring_truncation_mode`) is the one given, else the recorded one, else
`"keep_end"`; the benchmarks render with the recorded rendering unless told otherwise. A scorer told to read
differently from the record (another `max_length`, truncation mode or rendering, a tokenizer with another EOS or pad
token) says so in one warning (`warn_if_read_differently`) and does as told.

A forward pass that fails because its sequences are longer than the model can read is re-raised as an error naming
`--max_length` (`length_errors_explained`), never as the raw tensor-size error of the embeddings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .constants import (
    TRAINING_EOS_TOKEN_ATTRIBUTE,
    TRAINING_MAX_LENGTH_ATTRIBUTE,
    TRAINING_PAD_TOKEN_ATTRIBUTE,
    TRAINING_PADDING_SIDE_ATTRIBUTE,
    TRAINING_POOLING_ATTRIBUTE,
    TRAINING_RENDERING_ATTRIBUTE,
    TRAINING_TRUNCATION_MODE_ATTRIBUTE,
)


__all__ = [
    "RECORD_ATTRIBUTES",
    "InputSettings",
    "input_settings",
    "length_errors_explained",
    "pooling_rule",
    "position_limit",
    "record_input_settings",
    "rendering_of",
    "scoring_max_length",
    "scoring_truncation_mode",
    "warn_if_read_differently",
]

logger = logging.getLogger(__name__)

# The config attribute of every recorded field of `InputSettings`.
RECORD_ATTRIBUTES = {
    "trained_max_length": TRAINING_MAX_LENGTH_ATTRIBUTE,
    "trained_truncation_mode": TRAINING_TRUNCATION_MODE_ATTRIBUTE,
    "rendering": TRAINING_RENDERING_ATTRIBUTE,
    "eos_token": TRAINING_EOS_TOKEN_ATTRIBUTE,
    "pad_token": TRAINING_PAD_TOKEN_ATTRIBUTE,
    "padding_side": TRAINING_PADDING_SIDE_ATTRIBUTE,
    "pooling": TRAINING_POOLING_ATTRIBUTE,
}
# What each rendering means, for messages.
_RENDERING_NAMES = {
    "chat": "conversations in its chat template",
    "hh": "plain text in the HH transcript format",
    "plain": "plain text",
}
# TRL's preference collator pads every batch on the right, whatever the tokenizer's `padding_side`.
TRAINING_PADDING_SIDE = "right"


@dataclass(frozen=True)
class InputSettings:
    """How a reward model reads its input: what its trainer recorded, and the limit of its position embeddings.

    Attributes:
        trained_max_length: the `max_length` it was trained with (`None`: not recorded, or trained without a limit).
        trained_truncation_mode: how longer sequences were cut in training (`None`: not recorded, or longer pairs
            were dropped).
        position_limit: the longest sequence the model can read (`None`: no known limit; see `position_limit`).
        rendering: how its training pairs were rendered, one of `trl_more.constants.RENDERINGS` (`None`: not
            recorded, pre-tokenized pairs, or sources rendered differently).
        eos_token: the EOS token appended to its plain-text training pairs (`None`: not recorded, or conversations).
        pad_token: the token its training batches were padded with.
        padding_side: the side they were padded on (`"right"` for every trl-more trainer).
        pooling: where it reads the reward, one of `trl_more.constants.POOLING_RULES`.
    """

    trained_max_length: int | None
    trained_truncation_mode: str | None
    position_limit: int | None
    rendering: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    padding_side: str | None = None
    pooling: str | None = None

    @property
    def max_length(self) -> int | None:
        """The token limit to score with by default: the training one, at most the position limit; else the
        position limit; `None` when neither is known."""
        known = [limit for limit in (self.trained_max_length, self.position_limit) if limit is not None]
        return min(known) if known else None

    def describe_max_length(self) -> str:
        """`max_length` and where it comes from, for messages (e.g. "max_length=512, the model's position limit")."""
        if self.max_length is None:
            return "no max_length: the model records none and declares no position limit"
        if self.max_length == self.trained_max_length:
            return f"max_length={self.max_length}, the one the model was trained with"
        return f"max_length={self.max_length}, the model's position limit"

    @property
    def recorded(self) -> bool:
        """Whether a trl-more trainer recorded how the model reads (a model from elsewhere has no record)."""
        return any(getattr(self, name) is not None for name in RECORD_ATTRIBUTES)

    def describe(self) -> str:
        """The reading in one sentence, for reports and messages; the defaults for a model without a record."""
        if not self.recorded:
            return (
                f"no record (a model trained elsewhere): scored with the defaults, {self.describe_max_length()}, "
                "longer sequences lose their start (keep_end), padded on the right"
            )
        parts = []
        if self.rendering is not None:
            parts.append(_RENDERING_NAMES[self.rendering])
        if self.eos_token is not None:
            parts.append(f"{self.eos_token!r} appended")
        limit = f"max_length={self.trained_max_length}" if self.trained_max_length is not None else "no max_length"
        cut = self.trained_truncation_mode or "longer pairs dropped"
        parts.append(f"{limit} ({cut})" if self.trained_max_length is not None else limit)
        if self.pad_token is not None or self.padding_side is not None:
            parts.append(f"padded on the {self.padding_side or 'right'} with {self.pad_token!r}")
        if self.pooling == "last_token":
            skipped = " (the pad token is the EOS token: the token before the final EOS)" if self.pads_with_eos else ""
            parts.append(f"reward read at the last token that is not padding{skipped}")
        elif self.pooling == "first_token":
            parts.append("reward read at the first token ([CLS], through the pooler)")
        return "; ".join(parts)

    @property
    def pads_with_eos(self) -> bool:
        """Whether training padded with the EOS token it appended: the reward is then read before that EOS."""
        return self.pad_token is not None and self.pad_token == self.eos_token

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (JSON-ready), with the `max_length` scorers use by default."""
        return {**asdict(self), "max_length": self.max_length}


def record_input_settings(
    model: Any,
    tokenizer: Any,
    max_length: int | None,
    truncation_mode: str | None,
    rendering: str | None = None,
) -> InputSettings:
    """Record in `model.config` how it is trained to read: `max_length`, `truncation_mode`, the `rendering` of its
    pairs (see `rendering_of`), the EOS token TRL appends to plain-text pairs and the pad token of `tokenizer`, right
    padding, and its pooling rule; `save_pretrained` saves them, `input_settings` reads them back (returned)."""
    config = _unwrapped(model).config
    plain_text = rendering != "chat"  # TRL appends the EOS token to every plain-text pair (pre-tokenized: unknown)
    record = {
        "trained_max_length": max_length,
        "trained_truncation_mode": truncation_mode,
        "rendering": rendering,
        "eos_token": tokenizer.eos_token if plain_text and rendering is not None else None,
        "pad_token": tokenizer.pad_token,
        "padding_side": TRAINING_PADDING_SIDE,
        "pooling": pooling_rule(model),
    }
    for name, value in record.items():
        setattr(config, RECORD_ATTRIBUTES[name], value)
    return input_settings(model)


def input_settings(model: Any) -> InputSettings:
    """How `model` reads its input: the record of its trainer (`record_input_settings`) and its position limit."""
    config = _unwrapped(model).config
    recorded = {name: getattr(config, attribute, None) for name, attribute in RECORD_ATTRIBUTES.items()}
    return InputSettings(position_limit=position_limit(model), **recorded)


def scoring_max_length(model: Any, max_length: int | None = None) -> int | None:
    """The token limit to score `model` with: `max_length` when given (the user's choice wins), else the model's
    own (`input_settings(model).max_length`; see the module docstring)."""
    return max_length if max_length is not None else input_settings(model).max_length


def scoring_truncation_mode(model: Any, truncation_mode: str | None = None) -> str:
    """How to cut pairs longer than the token limit: `truncation_mode` when given, else the one the model was trained
    with, else `"keep_end"` (the end, where the reward is read; also for a model trained with longer pairs dropped)."""
    return truncation_mode or input_settings(model).trained_truncation_mode or "keep_end"


def pooling_rule(model: Any) -> str:
    """Where `model` reads its reward: `"first_token"` for bidirectional encoders (their pooler reads [CLS]),
    `"last_token"` (the last token that is not padding) otherwise, as transformers' sequence classifiers do."""
    from .pair_encoding import encodes_bidirectionally

    return "first_token" if encodes_bidirectionally(_unwrapped(model)) else "last_token"


# The tags of an HH transcript, with or without the blank lines of trl-more's own sources.
_HH_TAGS = ("Human:", "Assistant:")


def rendering_of(data: Any) -> str | None:
    """How preference pairs are rendered: `"chat"` (conversations), `"hh"` (plain text with the HH transcript's tags),
    `"plain"` (other plain text); `None` for pre-tokenized pairs, no rows, or pairs rendered differently. A mapping of
    data sets is read source by source; a data set at its first, middle and last rows (a concatenation of sources
    rendered differently shows there; an `IterableDataset` is read at its first row only)."""
    if isinstance(data, Mapping):
        found = {rendering_of(dataset) for dataset in data.values()}
        return found.pop() if len(found) == 1 else None
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        rows = [data[index] for index in sorted({0, len(data) // 2, len(data) - 1})] if len(data) else []
    else:
        rows = [row for row, _ in zip(data, range(1))]
    found = {_rendering_of_row(row) for row in rows}
    return found.pop() if len(found) == 1 else None


def _rendering_of_row(row: Mapping[str, Any]) -> str | None:
    if "chosen" not in row:
        return None
    text = row["chosen"] if "prompt" not in row else row["prompt"]
    if isinstance(text, list):
        return "chat"
    return "hh" if all(tag in text for tag in _HH_TAGS) else "plain"


def warn_if_read_differently(
    model: Any,
    tokenizer: Any = None,
    *,
    where: str,
    max_length: int | None = None,
    truncation_mode: str | None = None,
    rendering: str | None = None,
) -> list[str]:
    """Log one warning when `model` is told to read differently from its record (see the module docstring): an
    explicit `max_length`, `truncation_mode` or `rendering` other than the recorded one, or a `tokenizer` whose EOS or
    pad token differs from the recorded ones. `where` names the scorer. Returns the differences (empty: none, or no
    record)."""
    settings = input_settings(model)
    differences = []
    if max_length is not None and settings.trained_max_length not in (None, max_length):
        differences.append(f"max_length={max_length} (trained with {settings.trained_max_length})")
    trained_mode = settings.trained_truncation_mode
    if truncation_mode is not None and trained_mode is not None and truncation_mode != trained_mode:
        differences.append(f"truncation_mode={truncation_mode!r} (trained with {trained_mode!r})")
    if rendering is not None and settings.rendering is not None and rendering != settings.rendering:
        differences.append(f"{_RENDERING_NAMES[rendering]} (trained on {_RENDERING_NAMES[settings.rendering]})")
    if tokenizer is not None and settings.eos_token is not None and tokenizer.eos_token != settings.eos_token:
        differences.append(
            f"the tokenizer's EOS token {tokenizer.eos_token!r} (trained with {settings.eos_token!r} appended to "
            "every plain-text pair)"
        )
    if tokenizer is not None and settings.pad_token is not None and tokenizer.pad_token != settings.pad_token:
        differences.append(
            f"the pad token {tokenizer.pad_token!r} (trained with {settings.pad_token!r}: the reward is read at the "
            "last token that is not padding, so another pad token can move it)"
        )
    if differences:
        logger.warning(
            f"{where}: the model is read differently from how it was trained: {'; '.join(differences)}. Leave these "
            "settings unset to read it as its record says (docs/preflight.md, 'How a model reads its input')."
        )
    return differences


def position_limit(model: Any) -> int | None:
    """The longest sequence `model` can number: its text config's `max_position_embeddings` less the positions the
    architecture reserves (RoBERTa-style embeddings start after their padding index); `None` when the config
    declares no `max_position_embeddings` (no known limit)."""
    model = _unwrapped(model)
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if positions is None:
        return None
    return positions - _reserved_positions(model)


def _reserved_positions(model: nn.Module) -> int:
    """Positions the position embeddings never give a token: RoBERTa-style embeddings (RoBERTa, XLM-R, MPNet,
    Longformer, ...) number a sequence's positions from `padding_idx + 1` on, the ones below are reserved."""
    for name, module in model.named_modules():
        if (
            name.endswith("position_embeddings")
            and isinstance(module, nn.Embedding)
            and module.padding_idx is not None
        ):
            return module.padding_idx + 1
    return 0


# Where a scorer's token limit is set besides `--max_length`, for the errors below.
_OTHER_SPELLINGS = "`max_length=` in Python, `reward_max_length` in rejection sampling"


@contextmanager
def length_errors_explained(model: Any, longest: int) -> Iterator[None]:
    """Around a forward pass over sequences of up to `longest` tokens: a failure that their length can explain (they
    exceed the model's position limit, or it declares none) becomes a `ValueError` naming `--max_length`, with the
    original error chained. Out-of-memory errors and failures on sequences within the limit pass unchanged."""
    try:
        yield
    except (RuntimeError, IndexError) as error:
        if isinstance(error, torch.OutOfMemoryError):
            raise
        limit = position_limit(model)
        if limit is not None and longest <= limit:
            raise
        if limit is None:
            message = (
                f"Scoring sequences of up to {longest} tokens failed (the {type(error).__name__} above). The model "
                "declares no position limit (`max_position_embeddings`), so nothing was truncated: if it cannot read "
                f"sequences this long, give a token limit with `--max_length N` ({_OTHER_SPELLINGS}), which truncates "
                "longer sequences."
            )
        else:
            message = (
                f"The model reads at most {limit} tokens (its position limit), but it was given sequences of up to "
                f"{longest}: score with `--max_length {limit}` or less ({_OTHER_SPELLINGS}), which truncates longer "
                "sequences, or leave it unset to use the model's own limit."
            )
        raise ValueError(message) from error


def _unwrapped(model: Any) -> Any:
    """The model inside a DDP or DeepSpeed wrapper (`.module`)."""
    return getattr(model, "module", model)
