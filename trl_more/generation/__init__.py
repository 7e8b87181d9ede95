"""Sampling responses from a policy behind one small interface: `transformers` generate or a colocated vLLM engine.

`VLLMGenerationBackend` imports `vllm` only when it is built, so this package works without the `vllm` extra.
"""

from .base import GenerationBackend, SamplingSettings, truncate_after_eos
from .batching import length_sorted_batches, shard_for_process
from .diversity import distinct_n, is_degenerate_response
from .transformers_backend import TransformersGenerationBackend
from .vllm_backend import VLLMGenerationBackend


__all__ = [
    "GenerationBackend",
    "SamplingSettings",
    "TransformersGenerationBackend",
    "VLLMGenerationBackend",
    "distinct_n",
    "is_degenerate_response",
    "length_sorted_batches",
    "shard_for_process",
    "truncate_after_eos",
]
