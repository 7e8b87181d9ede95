"""Sampling responses from a policy behind one small interface: `transformers` generate or a colocated vLLM engine.

`VLLMGenerationBackend` imports `vllm` only when it is built, so this package works without the `vllm` extra.
"""

from .base import GenerationBackend, SamplingSettings, eos_token_ids, truncate_after_eos
from .transformers_backend import TransformersGenerationBackend
from .vllm_backend import VLLMGenerationBackend


__all__ = [
    "GenerationBackend",
    "SamplingSettings",
    "TransformersGenerationBackend",
    "VLLMGenerationBackend",
    "eos_token_ids",
    "truncate_after_eos",
]
