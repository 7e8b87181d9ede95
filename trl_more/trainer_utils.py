"""What every trainer of trl-more shares: its config rule, and checkpoints that resume exactly or not at all.

Configs. Each trainer takes its own config class (`MORERewardConfig`, `MultiObjectiveRewardConfig`,
`RejectionSamplingConfig`, ...). Given instead a config of the TRL class that one extends (a plain `RewardConfig` or
`SFTConfig`, as an unchanged TRL script passes), it converts it: every field keeps its value, the new fields take
their defaults, and fields whose value differs from the trainer's own default are named in a warning. Any other type
is an error.

Checkpoints. A checkpoint folder is complete once `trainer_state.json` is in it: transformers writes that file last,
and trl-more's trainers write their own state (e.g. MORE's moving averages) before it, all processes included. A run
killed while writing a checkpoint leaves a folder without it; `resume_from_checkpoint=True` then resumes from the
latest complete checkpoint (with a warning naming the skipped ones) instead of crashing on the partial one, and an
explicit path to a partial checkpoint is refused with the missing files named. The command line's
`--resume_from_checkpoint true` means `True`, not a folder called "true".
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate.logging import get_logger
from accelerate.utils import DistributedType
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available
from trl.trainer.utils import get_config_model_id


__all__ = [
    "TRAINER_STATE_NAME",
    "CheckpointedState",
    "CheckpointingMixin",
    "choose_mixed_precision",
    "complete_checkpoints",
    "config_with",
    "convert_config",
    "resolve_resume_checkpoint",
    "write_atomically",
]

logger = get_logger(__name__)
# Configs are built before accelerate's state exists (which its logger needs): they log through the standard logger.
config_logger = logging.getLogger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"
STATE_FILE = "trl_more_state_rank{rank}.pt"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


# ---------------------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------------------


def write_atomically(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call `write(temporary_path)`, then rename the file to `path`: a crash never leaves a truncated file under the
    final name (which a resumed run would read back)."""
    temporary = f"{os.fspath(path)}.tmp"
    write(temporary)
    os.replace(temporary, path)


def default_output_dir(model: Any, suffix: str) -> str:
    """The `output_dir` of the config a trainer makes when given none, as `trl.RewardTrainer` names it
    (`"<model name>-Reward"`): the last part of the model's name or path (TRL's `get_config_model_id` for a model
    object), `"model"` for a model without one, then `-<suffix>`."""
    name = model if isinstance(model, str) else get_config_model_id(model.config)
    return f"{str(name).rstrip('/').split('/')[-1] or 'model'}-{suffix}"


class ProcessLayoutError(ValueError, RuntimeError):
    """accelerate and torch.distributed disagree on the processes of a launch (a `ValueError` as MORE raised it, a
    `RuntimeError` as rejection sampling did)."""


def check_process_layout(accelerator: Any, consequence: str) -> None:
    """Refuse a launch where accelerate and torch.distributed disagree on the processes, or where several processes
    run without a distributed backend: each process would train on its own, and `consequence` says what breaks."""
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if world_size != accelerator.num_processes or (
        accelerator.num_processes > 1 and accelerator.distributed_type == DistributedType.NO
    ):
        raise ProcessLayoutError(
            f"The launch is inconsistent: torch.distributed runs {world_size} process(es), accelerate sees "
            f"{accelerator.num_processes} with distributed type {accelerator.distributed_type}, so {consequence}. "
            "On CPU, set `use_cpu=True` (DDP over gloo) or, with DeepSpeed, `ddp_backend='gloo'`."
        )


def choose_mixed_precision(args: Any) -> None:
    """Set `args.bf16` from the hardware when the user left it unset (`None`), before the config's own checks run.

    TRL's configs default `bf16` to True whenever `fp16` is off, which stops every run on a machine without a bf16
    accelerator ("Your setup doesn't support bf16/gpu"). Here an unset `bf16` means bf16 where the accelerator
    supports it (as TRL), fp32 otherwise; one info line says which. An explicit `bf16=True` without such an
    accelerator (and without `use_cpu`, under which transformers runs bf16 autocast on the CPU) is refused with the
    ways out.
    """
    supported = is_torch_bf16_gpu_available() or is_torch_xla_available()
    if args.bf16 is None:
        args.bf16 = supported and not args.fp16 and not args.use_cpu
        reason = "the accelerator supports it" if args.bf16 else "fp16 is set" if args.fp16 else "no bf16 accelerator"
        config_logger.info(f"Mixed precision: {'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'} ({reason}).")
    elif args.bf16 and not (supported or args.use_cpu):
        raise ValueError(
            "`bf16=True`, but this machine has no accelerator with bf16 support (an Ampere or newer NVIDIA GPU, a TPU, "
            "an Intel XPU or an Ascend NPU). Leave `bf16` unset to choose the precision from the hardware (fp32 here), "
            "set `--bf16 false`, or add `--use_cpu true` for bf16 autocast on the CPU (slow on most CPUs)."
        )


def convert_config(args: Any, config_class: type, parent_class: type) -> Any:
    """`args` as a `config_class`: unchanged if it is one, converted if it is a `parent_class` (see the module
    docstring), refused otherwise."""
    if isinstance(args, config_class):
        return args
    if not isinstance(args, parent_class):
        raise TypeError(
            f"`args` must be a {config_class.__name__} (or a {parent_class.__name__}, which is converted), got "
            f"{type(args).__name__}."
        )
    values = _config_values(args)
    ours, theirs = _field_defaults(config_class), _field_defaults(parent_class)
    kept = sorted(
        name
        for name, default in ours.items()
        if name in theirs and default != theirs[name] and values.get(name, default) != default
    )
    converted = config_class(**values)
    logger.info(f"Converted the {parent_class.__name__} to a {config_class.__name__} (new fields at their defaults).")
    if kept:
        logger.warning(
            f"The {parent_class.__name__} passed sets {', '.join(kept)}, whose defaults differ in "
            f"{config_class.__name__}; its values are kept. Pass a {config_class.__name__} to get its defaults."
        )
    return converted


def config_with(args: Any, **changes: Any) -> Any:
    """A copy of a training config with some fields changed, built afresh (so that its checks run again)."""
    return type(args)(**{**_config_values(args), **changes})


def _config_values(args: Any) -> dict[str, Any]:
    """The init fields of a training config, as `to_dict` gives them but with the `*_token` fields it masks."""
    values = args.to_dict()
    values.update({name: getattr(args, name) for name in values if name.endswith("_token")})
    return values


def _field_defaults(config_class: type) -> dict[str, Any]:
    return {
        field.name: field.default
        for field in dataclasses.fields(config_class)
        if field.init and field.default is not dataclasses.MISSING
    }


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def check_global_batch_size(args: Any, num_processes: int) -> None:
    """Refuse a launch whose global batch differs from `args.expected_global_batch_size` (set by the recipes that
    reproduce a paper), naming the per-device batch that gives it with this many processes."""
    expected = getattr(args, "expected_global_batch_size", None)
    if expected is None:
        return
    accumulation = args.gradient_accumulation_steps
    actual = args.per_device_train_batch_size * num_processes * accumulation
    if actual == expected:
        return
    if expected % (num_processes * accumulation) == 0:
        fix = f"set `per_device_train_batch_size={expected // (num_processes * accumulation)}`"
    else:
        counts = [count for count in (1, 2, 4, 8, 16) if expected % (count * accumulation) == 0]
        fix = f"launch {', '.join(map(str, counts))} processes (a divisor of {expected // accumulation})"
    raise ValueError(
        f"This launch trains with a global batch of {args.per_device_train_batch_size} per device x {num_processes} "
        f"process(es) x {accumulation} accumulation step(s) = {actual}, but the configuration reproduces a global "
        f"batch of {expected} (`expected_global_batch_size`): {fix}. To train with another batch knowingly, set "
        "`expected_global_batch_size` to None (`--expected_global_batch_size none`)."
    )


def _step(folder: Path) -> int:
    return int(_CHECKPOINT.match(folder.name).group(1))


def _missing_files(folder: Path, required: tuple[str, ...]) -> list[str]:
    return [name for name in (TRAINER_STATE_NAME, *required) if not (folder / name).is_file()]


def complete_checkpoints(output_dir: str | os.PathLike, required: tuple[str, ...] = ()) -> list[Path]:
    """The complete `checkpoint-<step>` folders of `output_dir` (with `trainer_state.json` and `required` files),
    oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    checkpoints = sorted((path for path in folder.iterdir() if _CHECKPOINT.match(path.name)), key=_step)
    return [path for path in checkpoints if not _missing_files(path, required)]


def resolve_resume_checkpoint(
    resume_from_checkpoint: str | bool | None, output_dir: str | os.PathLike, required: tuple[str, ...] = ()
) -> str | None:
    """The checkpoint folder to resume from, or `None` to start afresh (see the module docstring).

    Raises:
        ValueError: for an explicit folder that is not a complete checkpoint, or for `True` when `output_dir` holds no
            checkpoint at all (as transformers does).
    """
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.strip().lower() in ("true", "false", ""):
        resume_from_checkpoint = resume_from_checkpoint.strip().lower() == "true"
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is not True:
        folder = Path(resume_from_checkpoint)
        if not folder.is_dir():
            raise ValueError(f"`resume_from_checkpoint={resume_from_checkpoint}`: no such checkpoint folder.")
        missing = _missing_files(folder, required)
        if missing:
            raise ValueError(
                f"{folder} is an incomplete checkpoint (missing {', '.join(missing)}): the run was interrupted while "
                "writing it. Resume from an earlier checkpoint, or with `resume_from_checkpoint=True`, which picks "
                "the latest complete one."
            )
        return str(folder)
    output = Path(output_dir)
    partial = [
        path
        for path in (output.iterdir() if output.is_dir() else ())
        if _CHECKPOINT.match(path.name) and _missing_files(path, required)
    ]
    complete = complete_checkpoints(output_dir, required)
    if complete and partial:
        skipped = [path.name for path in partial if _step(path) > _step(complete[-1])]
        if skipped:
            logger.warning(
                f"Skipping incomplete checkpoint(s) {', '.join(skipped)} (interrupted while being written); "
                f"resuming from {complete[-1].name}."
            )
    if complete:
        return str(complete[-1])
    if partial:
        logger.warning(
            f"{output_dir} holds only incomplete checkpoints ({', '.join(sorted(path.name for path in partial))}), "
            "interrupted while being written: training starts from the beginning."
        )
        return None
    raise ValueError(f"No valid checkpoint found in output directory ({output_dir}) to resume from.")


class CheckpointedState(Protocol):
    """Anything with `state_dict()` / `load_state_dict(state)` that a trainer saves in its checkpoints."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class CheckpointingMixin:
    """Mixin for a `transformers.Trainer` subclass: resumes only from complete checkpoints, and saves and restores
    the trainer's own state objects (`checkpointed_state()`) with every checkpoint, per process.

    The state of every process is written (temporary file, then rename) before transformers writes
    `trainer_state.json`, and all processes wait for each other there, so a checkpoint with that file holds every
    process's state.
    """

    def checkpointed_state(self) -> Mapping[str, CheckpointedState]:
        """The objects whose state belongs in a checkpoint, by name (none by default)."""
        return {}

    def _state_file_name(self) -> str:
        return STATE_FILE.format(rank=self.args.process_index)

    def _required_checkpoint_files(self) -> tuple[str, ...]:
        return (self._state_file_name(),) if self.checkpointed_state() else ()

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None):
        checkpoint = resolve_resume_checkpoint(
            resume_from_checkpoint, self.args.output_dir, self._required_checkpoint_files()
        )
        return super().train(resume_from_checkpoint=checkpoint, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        states = self.checkpointed_state()
        if states:
            path = os.path.join(output_dir, self._state_file_name())
            state_dicts = {name: state.state_dict() for name, state in states.items()}
            write_atomically(path, lambda temporary: torch.save(state_dicts, temporary))
        self.accelerator.wait_for_everyone()  # every process's state is on disk before trainer_state.json

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        states = self.checkpointed_state()
        if checkpoint is None or not states:
            return
        saved = torch.load(os.path.join(checkpoint, self._state_file_name()), weights_only=True)
        for name, state in states.items():
            if name not in saved:
                raise ValueError(f"{checkpoint} holds no `{name}` state; it was saved by a run with other settings.")
            state.load_state_dict(saved[name])
