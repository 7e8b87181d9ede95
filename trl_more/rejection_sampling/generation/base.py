"""The interface every generation backend implements, and the sampling settings they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class SamplingSettings:
    """How responses are sampled; the same meaning in every backend.

    `temperature=0` means greedy decoding; `top_p=1.0`, `top_k=0` and `repetition_penalty=1.0` disable those filters.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0


class GenerationBackend(ABC):
    """Samples several responses per prompt from the current policy.

    The rejection-sampling loop only calls `generate`, so backends are interchangeable. Under DeepSpeed ZeRO-3 every
    process must call `generate` with the same number of prompts (the trainer pads each process's shard), because the
    transformers backend gathers parameters and synchronises the decoding steps across processes.
    """

    @abstractmethod
    def generate(
        self, model: nn.Module, prompt_ids: Sequence[Sequence[int]], num_samples: int, seed: int
    ) -> list[list[list[int]]]:
        """For every prompt, `num_samples` sampled responses as token ids.

        Args:
            model: The training model as the trainer holds it (possibly wrapped by DDP or DeepSpeed).
            prompt_ids: Token ids of each prompt, without padding.
            num_samples: Responses per prompt.
            seed: Seed of this round's sampling. The same seed and prompts on the same weights give the same
                responses, whatever ran before (the training's own random state is left untouched), so that a
                resumed run samples what the uninterrupted one did.

        Returns:
            `result[i][j]` is the j-th response to prompt i: its token ids up to and including the first end-of-sequence
            token (when the response finished within `max_new_tokens`), nothing after it.
        """


def truncate_after_eos(token_ids: Sequence[int], eos_token_ids: Collection[int]) -> list[int]:
    """The ids up to and including the first end-of-sequence token (everything after it is padding)."""
    for position, token_id in enumerate(token_ids):
        if token_id in eos_token_ids:
            return list(token_ids[: position + 1])
    return list(token_ids)


def eos_token_ids(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The ids that end a response of `model`: its tokenizer's eos token and those of its generation config."""
    eos_ids = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    eos_ids.update(configured if isinstance(configured, list) else [configured])
    return {token_id for token_id in eos_ids if token_id is not None}
