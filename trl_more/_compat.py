"""The one place where trl-more reaches into TRL and transformers beyond their public, top-level APIs.

Everything here is an internal or a sub-module name of TRL or transformers that trl-more depends on. Each is reached
through this module only, and `tests/test_compat.py` checks every one of them against the installed versions, so that
an upgrade that renames or changes one fails there with a message that names it, instead of deep inside a training
run. The versions CI tests are pinned in setup.cfg.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn


def read_tokenizer_config(name_or_path: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """The `tokenizer_config.json` of a folder or Hub repository as a dict (empty when it has none)."""
    from transformers.models.auto.tokenization_auto import get_tokenizer_config

    return get_tokenizer_config(os.fspath(name_or_path), revision=revision)


# ---------------------------------------------------------------------------------------------------------------
# bitsandbytes
# ---------------------------------------------------------------------------------------------------------------


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
