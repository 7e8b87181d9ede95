"""Short hashes that tell whether two runs used the same data, settings or model weights.

Used where a result written earlier may be reused only if it was produced the same way: rejection-sampling iterations
(`trl_more.rejection_sampling.iterations`) and the per-model scores of a preference-strength estimate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import torch
from torch import nn


__all__ = ["fingerprint", "model_fingerprint"]

# Values read per parameter for a model's fingerprint: enough to tell any two trained models apart, cheap for 7B.
_VALUES_PER_PARAMETER = 4096


def fingerprint(value: Any) -> str:
    """A short hash of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def model_fingerprint(model: nn.Module, gather: Any = None, exclude: str | None = None) -> str:
    """A hash of every parameter's name, shape and dtype and of a strided sample of its values.

    `gather(parameters)` is a context manager that makes partitioned (DeepSpeed ZeRO-3) parameters whole, e.g.
    `trl_more._compat.gather_parameters(accelerator)`; under ZeRO-3 every process must call this function. Parameters
    whose name contains `exclude` are left out.
    """
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        if exclude is not None and exclude in name:
            continue
        with gather([parameter]) if gather is not None else contextlib.nullcontext():
            values = parameter.detach().reshape(-1)
            stride = max(1, values.numel() // _VALUES_PER_PARAMETER)
            sample = values[::stride].to(device="cpu", dtype=torch.float64)
            digest.update(f"{name}:{tuple(parameter.shape)}:{parameter.dtype}".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]
