"""Cached backbone features: one pass of the frozen backbone over tokenized sequences.

Both training stages of the multi-objective reward model keep the backbone frozen in the reference recipe, so its
hidden states can be computed once: stage 1 fits the regression layer on the last-token states (closed-form ridge),
stage 2 trains the gate on the last-prompt-token states and the regression outputs of the last-token states.
For preference pairs, `extract_pair_features` computes the prompt once per pair (shared-prompt layout,
docs/pair_encoding.md), with the same result for causal decoders.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..pair_encoding import encode_shared_prompt, encodes_bidirectionally, shared_prompt_length
from ..rewards.batch_rewards import attention_dtype, padded_inputs
from .modeling_multi_objective import MultiObjectiveRewardModel


__all__ = ["SequenceFeatures", "extract_features", "extract_pair_features"]


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
    pad_token_id = _pad_token_id(model)
    device = model.regression_layer.weight.device
    order = sorted(range(len(input_ids)), key=lambda index: len(input_ids[index]))
    pooled = torch.empty(len(input_ids), model.config.text_config.hidden_size)
    prompt = torch.empty_like(pooled)
    with _eval_mode(model):
        for start in tqdm(range(0, len(order), batch_size), desc=description, disable=not show_progress):
            rows = order[start : start + batch_size]
            inputs = padded_inputs([input_ids[row] for row in rows], pad_token_id)
            batch_ids, mask = inputs["input_ids"].to(device), inputs["attention_mask"].to(device)
            lengths = torch.tensor([prompt_lengths[row] for row in rows], device=device)
            batch_pooled, batch_prompt = model.encode(batch_ids, mask, lengths)
            pooled[rows] = batch_pooled.float().cpu()
            prompt[rows] = batch_prompt.float().cpu()
    return SequenceFeatures(pooled=pooled, prompt=prompt)


@torch.inference_mode()
def extract_pair_features(
    model: MultiObjectiveRewardModel,
    chosen_ids: Sequence[Sequence[int]],
    rejected_ids: Sequence[Sequence[int]],
    chosen_prompt_lengths: Sequence[int],
    rejected_prompt_lengths: Sequence[int],
    batch_size: int = 16,
    description: str = "Caching backbone features (shared prompts)",
    show_progress: bool = True,
    packed: bool = False,
    pack_length: int | None = None,
) -> tuple[SequenceFeatures, SequenceFeatures]:
    """`extract_features` of the chosen and of the rejected sequences, from one backbone pass per pair in which the
    prompt is computed once: each pair is one row `[prompt | chosen | rejected]` whose attention mask keeps the two
    responses apart (docs/pair_encoding.md). For a causal decoder the features equal those of separate passes;
    bidirectional encoders (BERT-style) are refused, since sharing the row would change their hidden states.

    `packed=True` packs the rows of each batch into sequences of at most `pack_length` tokens (`None`: its longest
    row; docs/pair_encoding.md): the same features with less padding.

    Returns:
        `(chosen, rejected)` features, in the order of the pairs; `batch_size` pairs per pass.
    """
    if encodes_bidirectionally(model):
        raise ValueError(
            "Shared-prompt features need a causal decoder backbone; this one attends in both directions "
            f"({model.config.text_config.model_type}). Use `extract_features` on each side."
        )
    sides = (chosen_ids, rejected_ids)
    prompt_lengths = (chosen_prompt_lengths, rejected_prompt_lengths)
    if len({len(column) for column in (*sides, *prompt_lengths)}) != 1:
        raise ValueError("Every pair needs its chosen and rejected ids and both prompt lengths.")
    if len(chosen_ids) == 0:
        raise ValueError("No pairs to compute features for.")
    pad_token_id = _pad_token_id(model)
    device = model.regression_layer.weight.device
    dtype = attention_dtype(model.backbone, device)
    order = sorted(range(len(chosen_ids)), key=lambda pair: len(chosen_ids[pair]) + len(rejected_ids[pair]))
    hidden_size = model.config.text_config.hidden_size
    features = [
        SequenceFeatures(torch.empty(len(order), hidden_size), torch.empty(len(order), hidden_size)) for _ in sides
    ]
    with _eval_mode(model):
        for start in tqdm(range(0, len(order), batch_size), desc=description, disable=not show_progress):
            pairs = order[start : start + batch_size]
            groups = [[side[pair] for side in sides] for pair in pairs]
            batch = encode_shared_prompt(groups, pad_token_id, dtype=dtype, packed=packed, pack_length=pack_length)
            hidden_states = model.backbone(
                **{key: value.to(device) for key, value in batch.model_inputs().items()}, use_cache=False
            ).last_hidden_state
            for index, (pair, group) in enumerate(zip(pairs, groups)):
                row, start = batch.reward_rows[index], batch.group_starts[index]
                prefix = shared_prompt_length(group)
                offset = 0  # where the current response's own tokens start in the group's row, minus `prefix`
                for side, ids in enumerate(group):
                    row_index = torch.arange(len(ids), device=hidden_states.device)
                    row_index = torch.where(row_index < prefix, row_index, row_index + offset) + start
                    prompt_length = prompt_lengths[side][pair]
                    response = hidden_states[row, row_index[prompt_length:]]
                    pooled = response[-1] if model.config.pooling == "last" else response.mean(0)
                    features[side].pooled[pair] = pooled.float().cpu()
                    features[side].prompt[pair] = hidden_states[row, row_index[prompt_length - 1]].float().cpu()
                    offset += len(ids) - prefix
    return features[0], features[1]


def _pad_token_id(model: MultiObjectiveRewardModel) -> int:
    pad_token_id = model.config.get_text_config().pad_token_id
    return 0 if pad_token_id is None else pad_token_id  # padded positions are masked out anyway


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode for a feature pass, its training mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
