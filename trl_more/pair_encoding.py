"""Shared-prompt encoding: the responses to one prompt in one row, the prompt computed once.

TRL encodes a preference pair as two full sequences, prompt + chosen and prompt + rejected, padded to one length: the
prompt is computed twice and every pair pays the padding of the batch's longest sequence. Here a group of responses
to the same prompt (a pair: chosen and rejected; in rejection sampling: the N samples of a prompt) becomes one row

    [prompt | response_1 | response_2 | ... | response_k]

with an additive 4D attention mask under which every response token sees the prompt and the earlier tokens of its
own response, never another response, and position ids that restart every response at the end of the prompt. Each
response's reward is read at its last token. For a causal decoder this gives exactly the hidden states, hence the
rewards, of separate encoding (tested to float32 round-off on Llama, Qwen2 and GPT-NeoX, eager and SDPA attention).
Bidirectional encoders (BERT-style) see the whole row: sharing would change their result, so they keep separate
encoding. docs/pair_encoding.md has the details and the measured speed-ups.

Packing (`packed=True`) goes one step further: several such rows share one sequence, each group with its own
prompt, masked off from the other groups (block-diagonal) and with its own positions, so that a batch pays almost no
padding. `reward_rows` then says which sequence holds each group.

The mask is a dense (rows, 1, length, length) tensor, which every attention implementation of transformers accepts;
`flex_attention_mask` builds the equivalent FlexAttention block mask for GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .constants import PAIR_ENCODINGS


__all__ = [
    "NUM_TOKENS_KEY",
    "PAIR_ENCODINGS",
    "REWARD_POSITIONS_KEY",
    "REWARD_ROWS_KEY",
    "GROUP_STARTS_KEY",
    "DataCollatorForSharedPrompt",
    "SharedPromptBatch",
    "encode_shared_prompt",
    "encodes_bidirectionally",
    "flex_attention_mask",
    "pair_row_lengths",
    "rewards_at",
    "shared_prompt_length",
    "shared_prompt_mask_mod",
]


def shared_prompt_length(sequences: Sequence[Sequence[int]]) -> int:
    """Leading tokens all `sequences` share, leaving every sequence at least one token of its own (so each has a
    reward position after the shared part)."""
    shortest = min(len(ids) for ids in sequences)
    length = 0
    for tokens in zip(*sequences):
        if any(token != tokens[0] for token in tokens[1:]):
            break
        length += 1
    return max(0, min(length, shortest - 1))


def pair_row_lengths(
    chosen_ids: Sequence[Sequence[int]], rejected_ids: Sequence[Sequence[int]], shared_prompt: bool
) -> list[int]:
    """The length every pair is padded by: its row's length under shared-prompt encoding (chosen + rejected - the
    shared prompt), or under TRL's separate encoding the longer of its two sequences (both rows of every pair are
    padded to the batch's longest sequence)."""
    if shared_prompt:
        return [
            len(chosen) + len(rejected) - shared_prompt_length([chosen, rejected])
            for chosen, rejected in zip(chosen_ids, rejected_ids)
        ]
    return [max(len(chosen), len(rejected)) for chosen, rejected in zip(chosen_ids, rejected_ids)]


@dataclass
class SharedPromptBatch:
    """A batch of groups in shared-prompt layout, one group per row or (packed) several per row.

    Attributes:
        input_ids: (rows, length), right-padded.
        attention_mask: (rows, 1, length, length), additive (0 where a query may attend to a key, the dtype's
            minimum elsewhere).
        position_ids: (rows, length), restarting at 0 with every group.
        reward_positions: (groups, k), the index of the last token of each response in its group's row.
        reward_rows: (groups,), the row holding each group (`arange(groups)` unless packed).
        group_starts: (groups,), where each group starts in its row (0 unless packed).
        key_mask: (rows, length), 1 for real tokens (what a FlexAttention or varlen kernel needs besides the layout).
        segments: (rows, length), 0 for a prompt, i for response i of its group, -1 for padding.
        group_ids: (rows, length), the group of the row a token belongs to (0, 1, ... in the row's order), -1 for
            padding; all 0 unless packed.
        num_tokens: tokens the same responses take when encoded separately (prompt repeated), for TRL's token count.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    reward_positions: torch.Tensor
    reward_rows: torch.Tensor
    group_starts: torch.Tensor
    key_mask: torch.Tensor
    segments: torch.Tensor
    group_ids: torch.Tensor
    num_tokens: int

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}


def encode_shared_prompt(
    groups: Sequence[Sequence[Sequence[int]]],
    pad_token_id: int,
    dtype: torch.dtype = torch.float32,
    packed: bool = False,
    pack_length: int | None = None,
) -> SharedPromptBatch:
    """Rows of groups of full sequences (each prompt + response, as separate encoding would feed them), every group
    sharing its common prefix. Every group has the same number k of sequences.

    Unpacked, each group is one row. `packed=True` places the groups' rows in as few sequences of at most
    `pack_length` tokens as first-fit decreasing finds (`None`: the longest group's row, so no sequence is longer than
    it would be unpacked and the dense attention never costs more); a group is never split across sequences, so a
    group's row longer than `pack_length` is a sequence of its own.
    """
    if not groups:
        raise ValueError("No groups to encode.")
    k = len(groups[0])
    if any(len(group) != k for group in groups):
        raise ValueError("Every group of a shared-prompt batch needs the same number of responses.")
    layouts = [_group_layout(group) for group in groups]
    longest = max(len(layout.ids) for layout in layouts)
    if packed:
        packs = _first_fit_decreasing([len(layout.ids) for layout in layouts], pack_length or longest)
    else:
        packs = [[index] for index in range(len(groups))]
    length = max(sum(len(layouts[index].ids) for index in pack) for pack in packs)
    input_ids = torch.full((len(packs), length), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((len(packs), length), dtype=torch.long)
    segment_ids = torch.full((len(packs), length), -1, dtype=torch.long)
    group_ids = torch.full((len(packs), length), -1, dtype=torch.long)
    reward_positions = torch.zeros((len(groups), k), dtype=torch.long)
    reward_rows = torch.zeros(len(groups), dtype=torch.long)
    group_starts = torch.zeros(len(groups), dtype=torch.long)
    for row, pack in enumerate(packs):
        offset = 0
        for slot, index in enumerate(pack):
            layout = layouts[index]
            span = slice(offset, offset + len(layout.ids))
            input_ids[row, span] = torch.tensor(layout.ids)
            position_ids[row, span] = torch.tensor(layout.positions)
            segment_ids[row, span] = torch.tensor(layout.segments)
            group_ids[row, span] = slot
            reward_positions[index] = torch.tensor(layout.ends) + offset
            reward_rows[index], group_starts[index] = row, offset
            offset += len(layout.ids)
    allowed = _allowed(segment_ids, group_ids)
    attention_mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return SharedPromptBatch(
        input_ids=input_ids,
        attention_mask=attention_mask[:, None],
        position_ids=position_ids,
        reward_positions=reward_positions,
        reward_rows=reward_rows,
        group_starts=group_starts,
        key_mask=(segment_ids >= 0).long(),
        segments=segment_ids,
        group_ids=group_ids,
        num_tokens=sum(len(ids) for group in groups for ids in group),
    )


@dataclass
class _GroupLayout:
    """One group's row: its tokens, positions, segments and the last position of every response."""

    ids: list[int]
    positions: list[int]
    segments: list[int]
    ends: list[int]


def _group_layout(group: Sequence[Sequence[int]]) -> _GroupLayout:
    prefix = shared_prompt_length(group)
    layout = _GroupLayout(list(group[0][:prefix]), list(range(prefix)), [0] * prefix, [])
    for index, ids in enumerate(group, start=1):
        response = list(ids[prefix:])
        layout.ids += response
        layout.positions += range(prefix, prefix + len(response))
        layout.segments += [index] * len(response)
        layout.ends.append(len(layout.ids) - 1)
    return layout


def _first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` in bins of at most `capacity`: longest first, each into the first bin with room (a length
    above `capacity` fills a bin of its own). Deterministic (ties in input order); each bin lists its indices in input
    order."""
    bins: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        target = next((b for b, free in enumerate(room) if free >= lengths[index]), None)
        if target is None:
            bins.append([])
            room.append(max(capacity, lengths[index]))
            target = len(bins) - 1
        bins[target].append(index)
        room[target] -= lengths[index]
    return [sorted(indices) for indices in bins]


def _allowed(segments: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """(rows, length, length) bool: query i may attend key j when j <= i, j is real, j is in i's group, and j is in
    that group's prompt or in i's own response. A padding query attends to itself only (its output is never read; no
    row is empty)."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    query, key = segments[:, :, None], segments[:, None, :]
    same_group = group_ids[:, :, None] == group_ids[:, None, :]
    same_or_prompt = (key == 0) | (key == query)
    allowed = causal & same_group & same_or_prompt & (key >= 0) & (query >= 0)
    return allowed | torch.eye(length, dtype=torch.bool)


def shared_prompt_mask_mod(segments: torch.Tensor, group_ids: torch.Tensor | None = None):
    """The shared-prompt rule as a FlexAttention `mask_mod(row, head, query, key) -> bool`, from the batch's
    `segments` and, when packed, `group_ids` (the same rule as the dense mask)."""
    if group_ids is None:
        group_ids = (segments >= 0).long() - 1  # one group per row: 0 for real tokens, -1 for padding

    def mask_mod(row, head, query, key):
        query_segment, key_segment = segments[row, query], segments[row, key]
        visible = (key <= query) & (key_segment >= 0) & (query_segment >= 0)
        visible = visible & (group_ids[row, query] == group_ids[row, key])
        return (visible & ((key_segment == 0) | (key_segment == query_segment))) | (query == key)

    return mask_mod


def flex_attention_mask(batch: SharedPromptBatch, device: torch.device | str = "cuda"):
    """The shared-prompt layout as a FlexAttention `BlockMask` (`torch.nn.attention.flex_attention`), for
    `attn_implementation="flex_attention"` on GPUs: the same rule as the dense mask without materialising it, so that
    memory grows with the number of tokens rather than its square. The construction is tested on CPU; the attention
    kernel itself is untested here, having no GPU (docs/pair_encoding.md)."""
    from torch.nn.attention.flex_attention import create_block_mask

    segments, group_ids = batch.segments.to(device), batch.group_ids.to(device)
    rows, length = segments.shape
    return create_block_mask(
        shared_prompt_mask_mod(segments, group_ids), B=rows, H=None, Q_LEN=length, KV_LEN=length, device=device
    )


def encodes_bidirectionally(model: torch.nn.Module) -> bool:
    """Whether a model attends in both directions (BERT-style encoders), for which sharing the prompt would change
    the result: its model type has a masked-language-model head in transformers and it is not set up as a decoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    config = getattr(model, "module", model).config.get_text_config()
    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)


REWARD_POSITIONS_KEY = "reward_positions"
REWARD_ROWS_KEY = "reward_rows"
GROUP_STARTS_KEY = "group_starts"
NUM_TOKENS_KEY = "num_tokens"


class DataCollatorForSharedPrompt:
    """Preference pairs (TRL's tokenized `chosen_ids` / `rejected_ids`, optional `margin`) collated in shared-prompt
    layout: `input_ids`, the 4D `attention_mask`, `position_ids`, `reward_positions` (pairs, 2) and `num_tokens`
    (what TRL's collator would have counted), plus `margin` when the pairs have one. `packed=True` packs the pairs'
    rows into sequences of at most `pack_length` tokens and adds `reward_rows` and `group_starts` (pairs,): see
    `encode_shared_prompt`."""

    def __init__(self, pad_token_id: int, packed: bool = False, pack_length: int | None = None):
        self.pad_token_id = pad_token_id
        self.packed = packed
        self.pack_length = pack_length

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = encode_shared_prompt(
            [[example["chosen_ids"], example["rejected_ids"]] for example in examples],
            self.pad_token_id,
            packed=self.packed,
            pack_length=self.pack_length,
        )
        collated = {
            **batch.model_inputs(),
            REWARD_POSITIONS_KEY: batch.reward_positions,
            NUM_TOKENS_KEY: torch.tensor(batch.num_tokens),
        }
        if self.packed:
            collated[REWARD_ROWS_KEY] = batch.reward_rows
            collated[GROUP_STARTS_KEY] = batch.group_starts
        if examples and "margin" in examples[0]:
            collated["margin"] = torch.tensor([example["margin"] for example in examples], dtype=torch.float)
        return collated


def rewards_at(
    per_token: torch.Tensor, reward_positions: torch.Tensor, reward_rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Values of a (rows, length, ...) per-token tensor at the reward positions (groups, k) of the rows `reward_rows`
    (groups,) (`None`: group g in row g), response-major: all groups' first responses, then all second ones (for
    pairs: TRL's layout, chosen rows first), shape (k * groups, ...)."""
    if reward_rows is None:
        rows = torch.arange(reward_positions.shape[0], device=per_token.device)
    else:
        rows = reward_rows.to(per_token.device)
    positions = reward_positions.to(per_token.device)
    return torch.cat([per_token[rows, positions[:, index]] for index in range(positions.shape[1])])
