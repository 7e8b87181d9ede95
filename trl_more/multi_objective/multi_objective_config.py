"""Configuration of stage 2 of the multi-objective reward model: training the gate on preference pairs."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RewardConfig

from ..constants import PAIR_ENCODINGS, PREFLIGHT_MODES, TRUNCATION_MODES, check_choice
from ..trainer_utils import choose_mixed_precision


@dataclass
class MultiObjectiveRewardConfig(RewardConfig):
    r"""
    Configuration class for the [`MultiObjectiveRewardTrainer`]: TRL's [`~trl.RewardConfig`] with the learning rate
    and schedule of ArmoRM's stage 2 (docs/multi_objective.md) and the options of gate training. The reference's
    other settings (e.g. its batch of 1024 pairs and its number of steps) are not defaults here: they depend on the
    hardware and data, and the ArmoRM recipe sets them.

    Only the gate (and its scale beta) trains; the backbone, the regression layer and the reward transform stay
    frozen. The gate's architecture, dropout (0.2 in training), temperature (10) and initial beta are fields of the
    model's configuration ([`~trl_more.multi_objective.MultiObjectiveRewardModelConfig`]). TRL's `disable_dropout` (default
    `True`) zeroes the backbone's dropout modules; the gate's dropout is functional and stays active in training.

    Parameters:
        cache_features (`bool`, *optional*, defaults to `False`):
            Run the frozen backbone once over the training and evaluation pairs (batches of
            `per_device_eval_batch_size`, with a progress bar) and train the gate on the cached hidden states, instead
            of a backbone forward pass per step. Much faster (the reference trains this way); the cache holds four
            vectors of the backbone's hidden size per pair in CPU memory, and every process computes the whole cache.
        pair_encoding (`str`, *optional*, defaults to `"separate"`):
            How the cached feature pass encodes a pair: `"separate"` (two sequences, as TRL), `"shared_prompt"` (one
            row per pair, the prompt computed once; the same features for causal decoders, docs/pair_encoding.md) or
            `"packed"` (those rows packed into sequences no longer than a batch's longest row: less padding, the same
            features). Needs `cache_features=True`; a bidirectional encoder (BERT-style) keeps separate encoding, with
            one info line.
        truncation_mode (`str`, *optional*, defaults to `"keep_start"`):
            How a pair longer than `max_length` is shortened: `"keep_start"` cuts the end of the response (the gate
            still sees the whole prompt; a prompt longer than `max_length` is an error), `"keep_end"` cuts the start
            of the prompt. No pair is dropped.
        preflight (`str`, *optional*, defaults to `"error"`):
            The pre-flight checks `train()` runs before the first step on a sample of the training pairs (seconds;
            docs/preflight.md): rewards that change with padding or the batch, a duplicated BOS, pairs made identical
            by truncation, truncated pairs, NaN margins. `"error"` raises on what makes training meaningless and
            logs the other findings as warnings, `"warn"` logs every finding and trains, `"off"` skips the checks.

    > [!NOTE]
    > These parameters have default values different from [`~trl.RewardConfig`]:
    > - `learning_rate`: `1e-3` (AdamW on the gate, as the reference).
    > - `lr_scheduler_type`: `"cosine"`.
    > - `gradient_checkpointing` / `activation_checkpointing`: off (the backbone is frozen, nothing to recompute).
    """

    learning_rate: float = field(
        default=1e-3,
        metadata={"help": "The initial learning rate for AdamW on the gate (the reference uses 1e-3)."},
    )
    lr_scheduler_type: str = field(
        default="cosine",
        metadata={"help": "The learning-rate schedule (the reference uses cosine)."},
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of `activation_checkpointing` (off by default: the backbone is frozen)."},
    )
    cache_features: bool = field(
        default=False,
        metadata={
            "help": "Compute the frozen backbone's hidden states once and train the gate on them (much faster) "
            "instead of a backbone forward pass per step."
        },
    )
    pair_encoding: str = field(
        default="separate",
        metadata={
            "help": "Cached feature pass: `separate` (TRL's), `shared_prompt` (one row per pair, the prompt "
            "computed once; decoders) or `packed` (those rows packed: less padding).",
            "choices": list(PAIR_ENCODINGS),
        },
    )
    truncation_mode: str = field(
        default="keep_start",
        metadata={
            "help": "For pairs longer than `max_length`: `keep_start` cuts the end of the response, `keep_end` the "
            "start of the prompt.",
            "choices": list(TRUNCATION_MODES),
        },
    )

    preflight: str = field(
        default="error",
        metadata={
            "help": "Pre-flight checks before the first step: `error` (raise on what makes training meaningless), "
            "`warn` (log every finding) or `off`.",
            "choices": list(PREFLIGHT_MODES),
        },
    )

    def __post_init__(self):
        choose_mixed_precision(self)
        super().__post_init__()
        check_choice("truncation_mode", self.truncation_mode, TRUNCATION_MODES)
        check_choice("preflight", self.preflight, PREFLIGHT_MODES)
        check_choice("pair_encoding", self.pair_encoding, PAIR_ENCODINGS)
        if self.pair_encoding != "separate" and not self.cache_features:
            raise ValueError(
                f"`pair_encoding={self.pair_encoding!r}` applies to the cached feature pass: set `cache_features=True`, "
                "or keep `pair_encoding='separate'`."
            )
        if self.train_sampling_strategy not in ("random", "sequential"):
            # transformers' length grouping reads an `input_ids` column, which preference pairs do not have.
            raise ValueError(
                f"`train_sampling_strategy={self.train_sampling_strategy!r}` is not supported by the gate trainer "
                "(its pairs have no single length; with `cache_features=True` a step costs the same for every pair). "
                "Use 'random' or 'sequential'."
            )
