"""The meta dataset of MetaRM: prompts with k unlabeled responses each, tokenized, and its deterministic batches.

A meta dataset has a `prompt` column (plain text, or a conversation) and a column (default `responses`) holding the
k responses of every prompt, sampled from the policy being aligned. Responses are tokenized as the reward model scores
them (`trl_more.tokenization.tokenize_scored_response`, i.e. as TRL's `RewardTrainer` builds its pairs) and cut to
`max_length` keeping their end, where the reward is read.

Batches are a pure function of their number: batch n of process p holds `batch_size` prompts from a seeded
permutation of epoch `n // batches_per_epoch`, the processes taking disjoint slices. So the meta data position of a
resumed run follows from the global step alone, with nothing else to checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..rewards.batch_rewards import padded_inputs
from ..tokenization import fit_to_max_length, tokenize_scored_response


__all__ = ["MetaBatches", "tokenize_meta_dataset"]


def tokenize_meta_dataset(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    num_responses: int,
    responses_column: str = "responses",
    max_length: int | None = None,
) -> list[list[list[int]]]:
    """Token ids of every prompt's k responses: one list of k sequences per row."""
    missing = [column for column in ("prompt", responses_column) if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The meta dataset needs a `prompt` column and a `{responses_column}` column with the {num_responses} "
            f"responses of every prompt; it lacks {missing} (columns: {dataset.column_names}). Set "
            "`meta_responses_column` if the responses are in another column."
        )
    if len(dataset) == 0:
        raise ValueError("The meta dataset is empty: it needs prompts with responses sampled from the policy.")
    rows = []
    for index, example in enumerate(dataset):
        responses = example[responses_column]
        if not isinstance(responses, (list, tuple)) or len(responses) != num_responses:
            count = len(responses) if isinstance(responses, (list, tuple)) else type(responses).__name__
            raise ValueError(
                f"Row {index} of the meta dataset has {count} response(s) in `{responses_column}`, but "
                f"`meta_num_responses={num_responses}`: every prompt needs exactly that many responses (a list). "
                "Sample the same number for every prompt, or set `meta_num_responses`."
            )
        sequences = []
        for response in responses:
            if not isinstance(response, str) or not response:
                raise ValueError(
                    f"Row {index} of the meta dataset has a response that is not a non-empty string: {response!r}."
                )
            ids, prompt_length = tokenize_scored_response(tokenizer, example["prompt"], response)
            ids, _ = fit_to_max_length(ids, prompt_length, max_length, "keep_end", f"meta dataset row {index}")
            sequences.append(ids)
        rows.append(sequences)
    return rows


class MetaBatches:
    """Deterministic meta batches: `batch(n)` is this process's n-th batch of `batch_size` prompts."""

    def __init__(
        self,
        rows: list[list[list[int]]],
        batch_size: int,
        seed: int,
        pad_token_id: int,
        num_processes: int = 1,
        process_index: int = 0,
    ):
        global_batch = batch_size * num_processes
        if len(rows) < global_batch:
            raise ValueError(
                f"The meta dataset has {len(rows)} prompt(s), fewer than one meta batch of {batch_size} per device x "
                f"{num_processes} process(es) = {global_batch}. Sample more prompts, or lower "
                "`per_device_meta_batch_size`."
            )
        self.rows = rows
        self.batch_size = batch_size
        self.seed = seed
        self.pad_token_id = pad_token_id
        self.num_processes = num_processes
        self.process_index = process_index
        self.batches_per_epoch = len(rows) // global_batch

    def indices(self, number: int) -> list[int]:
        """The rows of this process's batch `number`."""
        epoch, position = divmod(number, self.batches_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        start = (position * self.num_processes + self.process_index) * self.batch_size
        return order[start : start + self.batch_size].tolist()

    def batch(self, number: int, device: torch.device | str = "cpu") -> dict[str, Any]:
        """`input_ids` and `attention_mask` of the batch's (batch_size * k) sequences, right-padded, prompt by
        prompt (the k responses of a prompt are consecutive rows), and `num_prompts`."""
        sequences = [ids for index in self.indices(number) for ids in self.rows[index]]
        inputs = padded_inputs(sequences, self.pad_token_id)
        return {
            "input_ids": inputs["input_ids"].to(device),
            "attention_mask": inputs["attention_mask"].to(device),
            "num_prompts": self.batch_size,
        }
