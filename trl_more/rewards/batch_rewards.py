"""One forward pass of a reward model over a batch of token sequences: the one place that pads, masks, shares prompts
and reads the reward.

Every part of trl-more that scores with a model it holds (`RewardModelScorer`, hence rejection sampling, RewardBench
and strength; evaluation and its audits; the server) builds its batches here, so the padding, the attention mask and
its dtype, the shared-prompt layout and the reading `logits[:, 0]` are the same everywhere. The callers keep only
their own batching order and what they do with the rewards. Training batches that are padded by hand (MetaRM's,
the multi-objective model's ratings and features) use `padded_inputs` and `attention_dtype` too, so a reward model
reads the same batch layout in training and in scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._compat import pad
from ..input_settings import length_errors_explained
from ..pair_encoding import encode_shared_prompt, rewards_at
from ..reward_head import RewardHeadInputCapture


__all__ = ["attention_dtype", "padded_inputs", "rewards_of", "sequence_outputs", "shared_prompt_logits"]


def padded_inputs(
    sequences: Sequence[Sequence[int]], pad_token_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` of token sequences padded to one length, as TRL's preference collator pads
    them: `pad_token_id` and mask 0 on `padding_side`, both `torch.long`."""
    tensors = [torch.tensor(ids, dtype=torch.long) for ids in sequences]
    return {
        "input_ids": pad(tensors, padding_value=pad_token_id, padding_side=padding_side),
        "attention_mask": pad([torch.ones_like(ids) for ids in tensors], padding_value=0, padding_side=padding_side),
    }


@torch.no_grad()
def sequence_outputs(
    model: nn.Module,
    sequences: Sequence[Sequence[int]],
    pad_token_id: int,
    device: torch.device | str,
    padding_side: str = "right",
    prompt_lengths: Sequence[int] | None = None,
    **model_kwargs: Any,
) -> Any:
    """The model's output on one batch of sequences, each its own row (`padded_inputs`).

    `prompt_lengths` go to models whose forward takes them (the multi-objective model's gate reads the last prompt
    token); `model_kwargs` (e.g. `use_cache=False`, steering weights) go to the forward as they are. A failure that
    the sequences' length explains names `--max_length` (`length_errors_explained`).
    """
    inputs = padded_inputs(sequences, pad_token_id, padding_side)
    if prompt_lengths is not None:
        inputs["prompt_lengths"] = torch.tensor(list(prompt_lengths))
    with length_errors_explained(model, inputs["input_ids"].shape[1]):
        return model(**{name: tensor.to(device) for name, tensor in inputs.items()}, **model_kwargs)


@torch.no_grad()
def shared_prompt_logits(
    model: nn.Module,
    groups: Sequence[Sequence[Sequence[int]]],
    pad_token_id: int,
    device: torch.device | str,
    packed: bool = False,
    **model_kwargs: Any,
) -> torch.Tensor:
    """The reward-head outputs (k * rows, num_labels) of groups of k sequences sharing a prompt, each group in one
    shared-prompt row (`trl_more.pair_encoding`; `packed`: the rows packed into sequences no longer than the longest
    one), response-major: all groups' first sequences, then all second ones.

    The rewards are read from the head's per-token outputs at each response's last token (the model's pooled logits
    are not the rewards of this layout). The attention mask is built in `attention_dtype`.
    """
    encoded = encode_shared_prompt(groups, pad_token_id, attention_dtype(model, device), packed=packed)
    capture = RewardHeadInputCapture(model)
    longest = max(len(ids) for group in groups for ids in group)
    with capture.attached(), length_errors_explained(model, longest):  # every response has its own positions
        model(**{name: tensor.to(device) for name, tensor in encoded.model_inputs().items()}, **model_kwargs)
        _, per_token = capture.read()
    return rewards_at(per_token, encoded.reward_positions, encoded.reward_rows)


def rewards_of(logits: torch.Tensor) -> torch.Tensor:
    """The reward of every row, `logits[:, 0]` as float32 on the CPU: a scalar reward model's output, or the
    multi-objective model's (batch, 1) score."""
    return logits[:, 0].float().cpu()


def attention_dtype(model: nn.Module, device: torch.device | str) -> torch.dtype:
    """The dtype attention runs in, for an additive attention mask: autocast's when it is on, else the model's."""
    device_type = torch.device(device).type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return next(getattr(model, "module", model).parameters()).dtype
