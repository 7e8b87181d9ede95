"""GRM's text regularisation: an SFT loss on the chosen responses, from the reward model's own hidden states.

"Regularizing Hidden States Enables Learning Generalizable Reward Model" (Yang et al., 2024) keeps the language-model
head of the base model next to the reward head, both reading the same hidden states, and trains with
`(1 - w) * L_reward + w * L_sft`, where `L_sft` is the mean token negative log-likelihood of the chosen response given
its prompt (w = 0.01 in the paper's runs). The language model keeps the hidden states able to generate text, which
makes the reward generalise better out of distribution.

Here the language-model head is a copy of the base causal LM's output layer (its `lm_head` weight, or its input
embeddings when the two are tied), kept next to the reward model and trained with its own AdamW after every optimizer
step of the trainer, like the SwAV prototypes: it is not part of the reward model, so the saved model is a plain
sequence-classification model. The hidden states are the reward head's input (per token, from the same forward pass
that computes the rewards), so the SFT gradient reaches the backbone (or its LoRA adapters) through them.

The chosen response's tokens are those after the tokens the chosen and rejected sequences share (the prompt, found as
the shared-prompt encoding finds it, `trl_more.pair_encoding.shared_prompt_length`); a first token both responses
start with therefore counts as prompt.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._compat import cached_checkpoint_file, parameter_shape
from .side_parameter import SideParameter


__all__ = [
    "LM_HEAD_KEYS",
    "LanguageModelHead",
    "chosen_response_nll",
    "language_model_head_weight",
]

# Names of the output layer's weight in the checkpoints of transformers' causal LMs (most; GPT-NeoX).
LM_HEAD_KEYS = ("lm_head.weight", "embed_out.weight")


def chosen_response_nll(
    hidden_states: torch.Tensor,
    input_ids: torch.Tensor,
    first: torch.Tensor,
    start: torch.Tensor,
    last: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """Mean token negative log-likelihood of the chosen responses under the language-model head, and the number of
    tokens it averages.

    Args:
        hidden_states: (rows, length, hidden), per-token hidden states of rows that hold a chosen response.
        input_ids: (rows, length), their tokens.
        first: (rows,), the index of each row's first token of the sequence (after any left padding).
        start: (rows,), the first response token, counted from `first` (the prompt's length); at least 1 is used, since
            the first token of a row has nothing to be predicted from.
        last: (rows,), the index of each row's last response token.
        weight: (vocabulary, hidden), the language-model head.

    The token at position p (start <= p - first, p <= last) is predicted from the hidden state at p - 1, as a causal
    LM predicts the next token. Computed in float32.
    """
    rows, length = input_ids.shape
    targets = torch.arange(1, length, device=input_ids.device)[None, :]  # positions predicted from the one before
    begin = first.to(input_ids.device) + start.to(input_ids.device).clamp(min=1)
    selected = (targets >= begin[:, None]) & (targets <= last.to(input_ids.device)[:, None])
    count = int(selected.sum())
    if count == 0:
        return hidden_states.sum() * 0.0, 0  # keeps the graph (and DDP's bookkeeping) when no token is selected
    predictors = hidden_states[:, :-1][selected.to(hidden_states.device)].float()
    logits = predictors @ weight.float().t()
    labels = input_ids[:, 1:][selected].to(logits.device)
    return F.cross_entropy(logits, labels, reduction="mean"), count


def language_model_head_weight(model: nn.Module, revision: str | None = None, gather: Any = None) -> torch.Tensor:
    """The base causal LM's output layer for a decoder reward model: its input embeddings when the config ties them
    (the same matrix), else the `lm_head` weight read from the checkpoint the model was loaded from
    (`config.name_or_path`, safetensors). A copy, detached, in float32 on the embeddings' device.

    `gather(parameters)` makes partitioned (DeepSpeed ZeRO-3) parameters whole for the duration of a block
    (`trl_more._compat.gather_parameters(accelerator)`); under ZeRO-3 every process must call this function.
    """
    config = model.config.get_text_config()
    embeddings = model.get_input_embeddings().weight
    if getattr(config, "tie_word_embeddings", False):
        with gather([embeddings]) if gather is not None else contextlib.nullcontext():
            if embeddings.numel() == 0:
                raise ValueError(
                    "The token embeddings are partitioned (DeepSpeed ZeRO-3), so the language-model head tied to them "
                    "cannot be copied without gathering them: pass `gather=trl_more._compat.gather_parameters("
                    "accelerator)`."
                )
            return embeddings.detach().float().clone()
    source = model.config.name_or_path
    weight = _checkpoint_lm_head(source, revision) if source else None
    if weight is None:
        raise ValueError(
            f"Text regularisation keeps the language-model head of the base causal LM, but none was found in "
            f"{source or 'the model (it was not loaded from a checkpoint)'!r}: its config does not tie the head to the "
            f"token embeddings and the checkpoint has no {' or '.join(LM_HEAD_KEYS)} in safetensors. Start from the "
            "base causal LM's checkpoint (a model name or folder), not from a sequence-classification model."
        )
    if tuple(weight.shape) != tuple(parameter_shape(embeddings)):
        raise ValueError(
            f"The language-model head in {source!r} has shape {tuple(weight.shape)}, but the model's token embeddings "
            f"have {tuple(parameter_shape(embeddings))}: they do not belong to the same model."
        )
    return weight.float().to(embeddings.device)


def _checkpoint_lm_head(source: str, revision: str | None) -> torch.Tensor | None:
    from safetensors import safe_open

    index_file = cached_checkpoint_file(source, "model.safetensors.index.json", revision)
    if index_file is not None:
        with open(index_file, encoding="utf-8") as handle:
            weight_map: dict[str, str] = json.load(handle)["weight_map"]
        key = next((key for key in LM_HEAD_KEYS if key in weight_map), None)
        if key is None:
            return None
        path = cached_checkpoint_file(source, weight_map[key], revision)
    else:
        path = cached_checkpoint_file(source, "model.safetensors", revision)
        key = None
    if path is None:
        return None
    with safe_open(path, framework="pt") as checkpoint:
        keys = set(checkpoint.keys())
        key = key or next((key for key in LM_HEAD_KEYS if key in keys), None)
        return checkpoint.get_tensor(key) if key in keys else None


class LanguageModelHead(SideParameter):
    """GRM's language-model head, a copy of the base model's (`language_model_head_weight`), trained next to the reward
    model with the trainer's learning rate and weight decay (see `SideParameter`)."""
