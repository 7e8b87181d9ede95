"""How a reward model reads its input: recorded with the model by trl-more's trainers, read back by every scorer.

A reward model scores well only the sequences it can read the way it was trained to. trl-more's reward trainers
record in the model's config the token limit and the truncation mode they trained with (`record_input_settings`;
the config attributes `training_max_length` and `training_truncation_mode`), so the record is saved with the model
and travels with it. `input_settings(model)` reads it back, with the model's own limit as the fallback.

Every scorer (`trl-more evaluate` and its audits, RewardBench, `trl-more strength`, the rejection-sampling scorer,
`trl-more serve`) takes its default token limit from `scoring_max_length(model, max_length)`:

1. the `max_length` the user gave, when given;
2. else the `max_length` the model was trained with, at most its position limit;
3. else its position limit: `max_position_embeddings` less the positions the architecture reserves (RoBERTa-style
   embeddings number a sequence's positions from `padding_idx + 1` on: 514 positions read 512 tokens);
4. else none: nothing is truncated.

A forward pass that fails because its sequences are longer than the model can read is re-raised as an error naming
`--max_length` (`length_errors_explained`), never as the raw tensor-size error of the embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .constants import TRAINING_MAX_LENGTH_ATTRIBUTE, TRAINING_TRUNCATION_MODE_ATTRIBUTE


__all__ = [
    "InputSettings",
    "input_settings",
    "length_errors_explained",
    "position_limit",
    "record_input_settings",
    "scoring_max_length",
]


@dataclass(frozen=True)
class InputSettings:
    """How a reward model reads its input: what its trainer recorded, and the limit of its position embeddings.

    Attributes:
        trained_max_length: the `max_length` it was trained with (`None`: not recorded, or trained without a limit).
        trained_truncation_mode: how longer sequences were cut in training (`None`: not recorded, or longer pairs
            were dropped).
        position_limit: the longest sequence the model can read (`None`: no known limit; see `position_limit`).
    """

    trained_max_length: int | None
    trained_truncation_mode: str | None
    position_limit: int | None

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


def record_input_settings(model: Any, max_length: int | None, truncation_mode: str | None) -> None:
    """Record in `model.config` the `max_length` and `truncation_mode` it is trained with; `save_pretrained` saves
    them and `input_settings` reads them back."""
    config = model.config
    setattr(config, TRAINING_MAX_LENGTH_ATTRIBUTE, max_length)
    setattr(config, TRAINING_TRUNCATION_MODE_ATTRIBUTE, truncation_mode)


def input_settings(model: Any) -> InputSettings:
    """How `model` reads its input: the record of its trainer (`record_input_settings`) and its position limit."""
    config = _unwrapped(model).config
    return InputSettings(
        trained_max_length=getattr(config, TRAINING_MAX_LENGTH_ATTRIBUTE, None),
        trained_truncation_mode=getattr(config, TRAINING_TRUNCATION_MODE_ATTRIBUTE, None),
        position_limit=position_limit(model),
    )


def scoring_max_length(model: Any, max_length: int | None = None) -> int | None:
    """The token limit to score `model` with: `max_length` when given (the user's choice wins), else the model's
    own (`input_settings(model).max_length`; see the module docstring)."""
    return max_length if max_length is not None else input_settings(model).max_length


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
