"""Pieces shared by the training subcommands."""

from __future__ import annotations

from typing import Any

from accelerate import PartialState
from trl import ModelConfig, TrlParser

from ..more.more_config import MORERewardConfig


def training_tokenizer(
    model_name: str, revision: str | None = None, trust_remote_code: bool = False, eos_token: str | None = None
):
    """The tokenizer a training command gives its trainer: `load_tokenizer`'s, with a BERT-style encoder's [SEP] as
    its EOS token when it has none and `eos_token` (the config's) is not set, because TRL appends the EOS token to
    every plain-text pair."""
    from ..pretrained import load_tokenizer

    tokenizer = load_tokenizer(model_name, revision=revision, trust_remote_code=trust_remote_code)
    if tokenizer.eos_token is None and eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    return tokenizer


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


def reward_training_parser(script_arguments: type, prog: str | None, description: str) -> TrlParser:
    """The parser of a command that trains MORE reward models: `script_arguments`, `MORERewardConfig` and TRL's
    `ModelConfig`, with a per-device batch of 12 pairs instead of TRL's 8. Every micro-batch holds as many pairs from
    each source, and 12 is a multiple of 1, 2, 3, 4 and 6 sources: the default sources (3) and the demo's train
    without a batch flag."""
    parser = TrlParser((script_arguments, MORERewardConfig, ModelConfig), prog=prog, description=description)
    parser.set_defaults(per_device_train_batch_size=12)
    return parser
