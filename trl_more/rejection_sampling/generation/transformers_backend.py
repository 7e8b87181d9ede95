"""Generation with `model.generate` on the training model itself: batched, left-padded, length-sorted."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm
from transformers import GenerationConfig

from ..._compat import pad, unwrap_model_for_generation
from ...batching import length_sorted_batches
from .base import GenerationBackend, SamplingSettings, truncate_after_eos


class TransformersGenerationBackend(GenerationBackend):
    """Samples with `transformers`' `generate` on the (unwrapped) training model.

    One `generate` call of this backend is one generation round: the model is unwrapped once for the whole round
    with TRL's `unwrap_model_for_generation`, which under DeepSpeed ZeRO-3 gathers the partitioned parameters once
    (instead of once per layer per token) and turns gradient checkpointing off; the KV cache is on and the model is in
    eval mode while sampling. Prompts are sorted by length and batched `batch_size` at a time, left-padded, and every
    `model.generate` call samples `num_samples` sequences per prompt. The number of `model.generate` calls depends only
    on the number of prompts, so processes given equally many prompts stay in step (transformers synchronises the
    decoding steps of all processes under ZeRO-3).

    Args:
        accelerator: The trainer's accelerator (used to unwrap the model and to gather ZeRO-3 parameters).
        settings: Sampling settings.
        pad_token_id: Id used to left-pad prompts.
        eos_token_ids: Ids that end a response.
        batch_size: Prompts per `model.generate` call.
        sort_by_length: Batch prompts of similar length together (on by default; off only for benchmarks).
        gradient_checkpointing_kwargs: Passed back when gradient checkpointing is turned on again after generation.
        show_progress: Show a progress bar over the batches.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        settings: SamplingSettings,
        pad_token_id: int,
        eos_token_ids: Collection[int],
        batch_size: int = 8,
        sort_by_length: bool = True,
        gradient_checkpointing_kwargs: dict | None = None,
        show_progress: bool = True,
    ):
        self.accelerator = accelerator
        self.settings = settings
        self.pad_token_id = pad_token_id
        self.eos_token_ids = set(eos_token_ids)
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self.gradient_checkpointing_kwargs = gradient_checkpointing_kwargs
        self.show_progress = show_progress

    def generation_config(self) -> GenerationConfig:
        settings = self.settings
        sampling = settings.temperature > 0
        return GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            do_sample=sampling,
            temperature=settings.temperature if sampling else None,
            top_p=settings.top_p if sampling else None,
            top_k=settings.top_k if sampling else None,
            repetition_penalty=settings.repetition_penalty,
            pad_token_id=self.pad_token_id,
            eos_token_id=sorted(self.eos_token_ids),
            use_cache=True,
            disable_compile=True,
        )

    def generate(
        self, model: nn.Module, prompt_ids: Sequence[Sequence[int]], num_samples: int, seed: int
    ) -> list[list[list[int]]]:
        # Sampled from torch's generator, seeded for this round inside a fork: the training's random state is the
        # same afterwards as before.
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self._generate(model, prompt_ids, num_samples)

    def _generate(
        self, model: nn.Module, prompt_ids: Sequence[Sequence[int]], num_samples: int
    ) -> list[list[list[int]]]:
        generation_config = self.generation_config()
        batches = length_sorted_batches([len(ids) for ids in prompt_ids], self.batch_size, sort=self.sort_by_length)
        results: list[list[list[int]] | None] = [None] * len(prompt_ids)
        with (
            unwrap_model_for_generation(
                model, self.accelerator, gradient_checkpointing_kwargs=self.gradient_checkpointing_kwargs
            ) as unwrapped_model,
            _eval_mode(unwrapped_model),
            torch.no_grad(),
            self.accelerator.autocast(),
        ):
            progress = tqdm(
                batches,
                desc="Generating",
                unit="batch",
                disable=not (self.show_progress and self.accelerator.is_local_main_process),
            )
            for batch in progress:
                prompts = [torch.tensor(list(prompt_ids[index]), dtype=torch.long) for index in batch]
                input_ids = pad(prompts, padding_value=self.pad_token_id, padding_side="left")
                attention_mask = pad([torch.ones_like(ids) for ids in prompts], padding_value=0, padding_side="left")
                # Every prompt repeated `num_samples` times (what `num_return_sequences` does, but valid for greedy
                # decoding too).
                sequences = unwrapped_model.generate(
                    input_ids=input_ids.repeat_interleave(num_samples, dim=0).to(self.accelerator.device),
                    attention_mask=attention_mask.repeat_interleave(num_samples, dim=0).to(self.accelerator.device),
                    generation_config=generation_config,
                )
                responses = sequences[:, input_ids.shape[1] :].cpu().view(len(batch), num_samples, -1).tolist()
                for index, samples in zip(batch, responses):
                    results[index] = [truncate_after_eos(sample, self.eos_token_ids) for sample in samples]
        return results


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout while sampling), restoring the previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
