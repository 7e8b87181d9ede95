"""Pieces shared by the training subcommands."""

from __future__ import annotations

from typing import Any

from accelerate import PartialState
from trl import ModelConfig


def model_init_kwargs(model_args: ModelConfig, training_args: Any) -> dict[str, Any]:
    """`from_pretrained` keyword arguments from TRL's `ModelConfig`, as TRL's own scripts build them; the training
    config's `model_init_kwargs` take precedence."""
    return {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }


def leave_process_group() -> None:
    """Wait until every process is here, then leave the process group: a process that exits while another still
    writes the final model, or still holds gloo connections to it, can abort the other at exit (`accelerate`'s
    `end_training` destroys the group without this barrier)."""
    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()
