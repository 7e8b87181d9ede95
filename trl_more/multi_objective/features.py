"""Cached backbone features: one pass of the frozen backbone over tokenized sequences.

Both training stages of the multi-objective reward model keep the backbone frozen in the reference recipe, so its
hidden states can be computed once: stage 1 fits the regression layer on the last-token states (closed-form ridge),
stage 2 trains the gate on the last-prompt-token states and the regression outputs of the last-token states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .._compat import pad
from .modeling_multi_objective import MultiObjectiveRewardModel


__all__ = ["SequenceFeatures", "extract_features"]


@dataclass
class SequenceFeatures:
    """Backbone hidden states of N sequences, float32 on the CPU.

    Attributes:
        pooled: (N, hidden) hidden state of the last token (what the regression layer reads).
        prompt: (N, hidden) hidden state of the last prompt token (what the gate reads).
    """

    pooled: torch.Tensor
    prompt: torch.Tensor


@torch.inference_mode()
def extract_features(
    model: MultiObjectiveRewardModel,
    input_ids: Sequence[Sequence[int]],
    prompt_lengths: Sequence[int],
    batch_size: int = 16,
    description: str = "Caching backbone features",
    show_progress: bool = True,
) -> SequenceFeatures:
    """Run the backbone of `model` once over `input_ids` (lists of token ids, any lengths).

    Sequences are batched by length (less padding) and returned in their original order. The model is put in eval
    mode for the pass and restored afterwards.
    """
    if len(input_ids) != len(prompt_lengths):
        raise ValueError(f"Got {len(input_ids)} sequences but {len(prompt_lengths)} prompt lengths.")
    if len(input_ids) == 0:
        raise ValueError("No sequences to compute features for.")
    pad_token_id = model.config.get_text_config().pad_token_id
    pad_token_id = 0 if pad_token_id is None else pad_token_id  # padded positions are masked out anyway
    device = model.regression_layer.weight.device
    order = sorted(range(len(input_ids)), key=lambda index: len(input_ids[index]))
    pooled = torch.empty(len(input_ids), model.config.text_config.hidden_size)
    prompt = torch.empty_like(pooled)
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=description, disable=not show_progress):
            rows = order[start : start + batch_size]
            sequences = [torch.tensor(input_ids[row], dtype=torch.long) for row in rows]
            batch_ids = pad(sequences, padding_value=pad_token_id, padding_side="right").to(device)
            mask = pad([torch.ones_like(ids) for ids in sequences], padding_value=0, padding_side="right").to(device)
            lengths = torch.tensor([prompt_lengths[row] for row in rows], device=device)
            batch_pooled, batch_prompt = model.encode(batch_ids, mask, lengths)
            pooled[rows] = batch_pooled.float().cpu()
            prompt[rows] = batch_prompt.float().cpu()
    finally:
        model.train(was_training)
    return SequenceFeatures(pooled=pooled, prompt=prompt)
