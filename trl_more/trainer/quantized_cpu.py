"""Training 4-bit (bitsandbytes) models on CPU between no-grad passes: evaluation, or RJS generation."""

from __future__ import annotations

from torch import nn


def keep_4bit_weights_trainable(model: nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) rewrites a `Linear4bit` weight into an inference-only layout on its
    first no-grad forward pass in eval mode and keeps it there, so a model that was just evaluated (or generated) can
    no longer be trained ("a view of a leaf Variable ... in-place operation"). Trainers that alternate the two keep
    the repacking off. GPUs never take this path.
    """
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
