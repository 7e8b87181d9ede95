"""The one place where trl-more reaches into TRL, transformers and bitsandbytes beyond their public, top-level APIs.

Two kinds of dependency live here:

- Internals trl-more *calls* or *reads* (underscore names, and names TRL keeps in sub-modules rather than at its top
  level). Each is wrapped in a small function below, and only these functions are used elsewhere.
- Internal *hooks* trl-more's trainers override: `Trainer` and TRL methods with an underscore that are nonetheless
  the places a subclass has to change (how a dataset is prepared, which sampler or columns are used, what a checkpoint
  holds). `OVERRIDDEN_HOOKS` lists each with the parameters trl-more's override expects.

`tests/test_compat.py` checks every entry against the installed versions, so that an upgrade that renames or changes
one fails there, with a message naming it, instead of deep inside a training run. setup.cfg pins the TRL and
transformers versions CI has tested.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from trl.models.utils import prepare_deepspeed, unwrap_model_for_generation
from trl.trainer.reward_trainer import DataCollatorForPreference
from trl.trainer.utils import ensure_master_addr_port, pad


__all__ = [
    "OVERRIDDEN_HOOKS",
    "DataCollatorForPreference",
    "before_deepspeed_optimizer_step",
    "cached_checkpoint_file",
    "dataset_column_names",
    "ensure_master_addr_port",
    "gather_parameters",
    "keep_4bit_weights_trainable",
    "keep_batch_columns",
    "pad",
    "parameter_shape",
    "parameter_storage",
    "prepare_deepspeed",
    "prepare_reward_dataset",
    "prepare_sft_dataset",
    "read_tokenizer_config",
    "save_model_without_push",
    "trainer_metrics",
    "unwrap_model_for_generation",
    "without_length_filter",
    "zero3_init_paused",
]


# ---------------------------------------------------------------------------------------------------------------------
# TRL (`prepare_deepspeed`, `unwrap_model_for_generation`, `DataCollatorForPreference`, `pad` and
# `ensure_master_addr_port` are imported above from the sub-modules TRL keeps them in)
# ---------------------------------------------------------------------------------------------------------------------


def dataset_column_names(dataset: Any) -> list[str]:
    """The column names of a `Dataset` or `IterableDataset` (read from the first row when it declares none)."""
    from trl.data_utils import get_dataset_column_names

    return get_dataset_column_names(dataset)


def gather_parameters(accelerator: Any):
    """TRL's context manager that gathers (ZeRO-3) parameters on every process for the duration of a block."""
    from trl.distributed import DistributedBackend

    return DistributedBackend(accelerator).gather_params


def prepare_reward_dataset(dataset: Any, processing_class: Any, name: str, dataset_num_proc: int | None = None) -> Any:
    """Tokenize preference pairs exactly as `trl.RewardTrainer` does (EOS, explicit prompts, chat templates), with
    no length filter, outside a trainer (for evaluation and scoring)."""
    from types import SimpleNamespace

    from trl import RewardTrainer

    # `RewardTrainer._prepare_dataset` reads no trainer state, only these two fields of its args.
    args = without_length_filter(SimpleNamespace(dataset_num_proc=dataset_num_proc, max_length=None))
    return RewardTrainer._prepare_dataset(None, dataset, processing_class, args, name)


def without_length_filter(args: Any) -> Any:
    """A shallow copy of `args` with `max_length=None`, for `RewardTrainer._prepare_dataset`: it then tokenizes
    without dropping the pairs longer than `max_length`, which trl-more's trainers truncate or report themselves."""
    args = copy.copy(args)
    args.max_length = None
    return args


def prepare_sft_dataset(trainer: Any, dataset: Any, name: str) -> Any:
    """`SFTTrainer`'s own preparation of a tokenized dataset (labels from the completion mask, truncation to
    `max_length`, examples left without a completion token dropped), with the trainer's tokenizer and config."""
    return trainer._prepare_dataset(dataset, trainer.processing_class, trainer.args, False, None, name)


def trainer_metrics(trainer: Any, mode: str) -> dict[str, list[float]]:
    """The per-mode metric lists TRL's trainers average and log at every logging step (`trainer._metrics[mode]`)."""
    return trainer._metrics[mode]


# ---------------------------------------------------------------------------------------------------------------------
# transformers
# ---------------------------------------------------------------------------------------------------------------------


def keep_batch_columns(trainer: Any, columns: list[str]) -> None:
    """Keep dataset `columns` through the Trainer's removal of the columns the model's forward does not take (call
    from `_set_signature_columns_if_needed`, after the parent has set the list)."""
    kept = trainer._signature_columns
    trainer._signature_columns = [*kept, *(column for column in columns if column not in kept)]


def save_model_without_push(trainer: Any, output_dir: str) -> None:
    """`trainer.save_model(output_dir)` without the Hub upload that `push_to_hub=True` would start (the caller
    uploads later, once the model card is complete)."""
    trainer.save_model(output_dir, _internal_call=True)


@contextmanager
def zero3_init_paused() -> Iterator[None]:
    """Within the block, `from_pretrained` loads a model whole on this process although a DeepSpeed ZeRO-3 config is
    active (transformers would otherwise partition it with `zero.Init` as it loads)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    active = hf_deepspeed._hf_deepspeed_config_weak_ref  # transformers can unset the config, but not restore it
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = active


def cached_checkpoint_file(name_or_path: str | os.PathLike, filename: str, revision: str | None = None) -> str | None:
    """The local path of a file of a model folder or Hub repository (downloaded if needed), or `None` when it has no
    such file."""
    from transformers.utils import cached_file

    return cached_file(
        os.fspath(name_or_path),
        filename,
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )


def read_tokenizer_config(name_or_path: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """The `tokenizer_config.json` of a folder or Hub repository as a dict (empty when it has none)."""
    from transformers.models.auto.tokenization_auto import get_tokenizer_config

    return get_tokenizer_config(os.fspath(name_or_path), revision=revision)


# Internal methods trl-more's trainers override, with the parameters (after `self`) the overrides take.
OVERRIDDEN_HOOKS: dict[str, dict[str, tuple[str, ...]]] = {
    "transformers.Trainer": {
        "_get_train_sampler": ("train_dataset",),
        "_set_signature_columns_if_needed": (),
        "_save_optimizer_and_scheduler": ("output_dir",),
        "_load_optimizer_and_scheduler": ("checkpoint",),
    },
    "trl.RewardTrainer": {"_prepare_dataset": ("dataset", "processing_class", "args", "dataset_name")},
    "trl.SFTTrainer": {
        "_prepare_dataset": ("dataset", "processing_class", "args", "packing", "formatting_func", "dataset_name")
    },
}


# ---------------------------------------------------------------------------------------------------------------------
# bitsandbytes
# ---------------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------------
# DeepSpeed (the attributes ZeRO-3 puts on a partitioned parameter: `ds_tensor`, `ds_shape`, `ds_process_group`)
# ---------------------------------------------------------------------------------------------------------------------


def parameter_shape(param: nn.Parameter) -> torch.Size:
    """The full shape of a parameter, also when ZeRO-3 has partitioned it (its own shape is then (0,))."""
    return getattr(param, "ds_shape", param.shape)


def parameter_storage(param: nn.Parameter, full: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Where the values of `param` live on this process, each with the matching values of `full` (a tensor of the
    parameter's full shape), for editing the parameter in place.

    A plain parameter: itself. Under DeepSpeed ZeRO-3: this rank's partition (`ds_tensor`, elements
    [rank * n, (rank + 1) * n) of the flattened parameter, zero-padded at the end), plus the full parameter when it is
    materialised on this rank (parameters below `stage3_param_persistence_threshold` are kept whole on every rank).
    """
    shard = getattr(param, "ds_tensor", None)
    if shard is None:
        return [(param.data, full)]
    import torch.distributed as dist

    size = shard.ds_numel
    start = size * dist.get_rank(group=param.ds_process_group)
    flat = full.reshape(-1)
    part = torch.zeros(size, dtype=shard.dtype, device=shard.device)
    available = max(0, min(size, flat.numel() - start))
    part[:available] = flat[start : start + available].to(part)
    storage = [(shard.data.view(-1), part)]
    if param.data.numel() == flat.numel():
        storage.append((param.data, full.to(param.data)))
    return storage


def before_deepspeed_optimizer_step(engine: Any, callback: Any) -> None:
    """Run `callback()` right before every optimizer step of a DeepSpeed engine.

    Under DeepSpeed, accelerate takes the optimizer step inside `accelerator.backward` (`engine.backward` then
    `engine.step` at gradient-accumulation boundaries), before the Trainer's `on_pre_optimizer_step` callbacks run:
    this is the only point between the last backward pass and the update.
    """
    step = engine.step

    def step_after_callback(*args: Any, **kwargs: Any) -> Any:
        if engine.is_gradient_accumulation_boundary():
            callback()
        return step(*args, **kwargs)

    engine.step = step_after_callback
