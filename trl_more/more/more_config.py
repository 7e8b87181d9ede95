"""Configuration of the MORE reward trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RewardConfig

from ..constants import SOURCE_COLUMN, TRUNCATION_MODES, check_choice


LAMBDA_METHODS = ("min_norm", "uniform")
GRADIENT_NORMALIZATIONS = ("l2", "none", "loss", "loss+")


@dataclass
class MORERewardConfig(RewardConfig):
    r"""
    Configuration class for the [`MORERewardTrainer`]: TRL's [`~trl.RewardConfig`] plus the options of MORE
    (multi-objective reward learning on diversified preferences; the method is described in docs/more.md).

    Only the parameters specific to MORE are listed here; see [`~trl.RewardConfig`] and
    [`~transformers.TrainingArguments`] for the others. With a single source (or no source column) every MORE option
    is inert and the trainer behaves exactly like [`~trl.RewardTrainer`].

    Parameters:
        > Parameters that control the source mixture

        source_column (`str`, *optional*, defaults to `"source"`):
            Column of the training dataset that names the source of every pair (strings, or integers). Ignored when
            the training dataset is given as a dict / `DatasetDict` of `{source_name: dataset}`.
        samples_per_source (`int` or `None`, *optional*, defaults to `None`):
            If set, every source is resampled to exactly this many pairs after preprocessing, as the MORE reference
            does (larger sources are cut without replacement; smaller ones are over-sampled from repeated copies).
            With `None`, sources keep their natural sizes and an epoch lasts as long as the largest source needs;
            smaller sources are cycled within the epoch to keep every batch balanced.
        truncation_mode (`str` or `None`, *optional*, defaults to `None`):
            What to do with a pair whose chosen or rejected sequence is longer than `max_length`. `None` drops the
            pair, like [`~trl.RewardTrainer`], but reports how many pairs each source lost. `"keep_end"` keeps the
            last `max_length` tokens (the end of the response, where the reward is read) and `"keep_start"` the first
            ones, so no pair is lost.

        > Parameters that control lambda, the per-source loss weights

        lambda_method (`str`, *optional*, defaults to `"min_norm"`):
            `"min_norm"` (MORE) sets lambda to the minimum-norm point of the convex hull of the per-source reward-head
            gradients; `"uniform"` gives every source lambda = 1/K (the balanced MultiTask baseline).
        gradient_normalization (`str`, *optional*, defaults to `"l2"`):
            Normalisation of each source's (smoothed) head gradient before the min-norm solve: `"l2"` divides by its
            L2 norm, `"loss"` by the source's loss, `"loss+"` by both, `"none"` leaves it as is. Note that with two
            sources and `"l2"` the min-norm weights are always exactly (1/2, 1/2), i.e. MORE equals the balanced
            baseline; MORE's lambda differs from it with three or more sources or another normalisation.
        lambda_momentum (`float`, *optional*, defaults to `0.99`):
            Weight `a` of the newest head gradient in the exponential moving average that is solved over:
            `m_i <- (1 - a) * m_i + a * g_i`, with `m_i` starting at zero (the reference's value and convention).
            `1.0` disables smoothing; smaller values smooth over more steps. Must be in (0, 1].
        sync_lambda_across_processes (`bool`, *optional*, defaults to `True`):
            Average the K head gradients across processes (one all-reduce of K x hidden_size floats) before the
            solve, so that the weights are the same on every rank and equal to the single-process weights for the
            same global batch. With `False`, every rank solves on its own micro-batch, as the reference does.
    """

    source_column: str = field(
        default=SOURCE_COLUMN,
        metadata={"help": "Column of the training dataset that names the source of every pair."},
    )
    samples_per_source: int | None = field(
        default=None,
        metadata={
            "help": "If set, resample every source to exactly this many pairs (cut larger sources, over-sample "
            "smaller ones). `None` keeps natural sizes."
        },
    )
    truncation_mode: str | None = field(
        default=None,
        metadata={
            "help": "For sequences longer than `max_length`: `None` drops the pair (and reports it), `keep_end` or "
            "`keep_start` truncates it."
        },
    )
    lambda_method: str = field(
        default="min_norm",
        metadata={
            "help": "`min_norm` (MORE): lambda is the min-norm point of the per-source head gradients; `uniform`: 1/K "
            "(the MultiTask baseline).",
            "choices": list(LAMBDA_METHODS),
        },
    )
    gradient_normalization: str = field(
        default="l2",
        metadata={
            "help": "Normalisation of each source's head gradient before the min-norm solve.",
            "choices": list(GRADIENT_NORMALIZATIONS),
        },
    )
    lambda_momentum: float = field(
        default=0.99,
        metadata={"help": "Weight of the newest head gradient in m <- (1 - a) m + a g; 1.0 disables smoothing."},
    )
    sync_lambda_across_processes: bool = field(
        default=True,
        metadata={"help": "Average the per-source head gradients across processes before solving for lambda."},
    )

    def __post_init__(self):
        super().__post_init__()
        check_choice("lambda_method", self.lambda_method, LAMBDA_METHODS)
        check_choice("gradient_normalization", self.gradient_normalization, GRADIENT_NORMALIZATIONS)
        if isinstance(self.truncation_mode, str) and self.truncation_mode.lower() in ("none", "null", ""):
            self.truncation_mode = None  # the command line passes the value as a string
        if self.truncation_mode is not None:
            check_choice("truncation_mode", self.truncation_mode, TRUNCATION_MODES)
        if not 0.0 < self.lambda_momentum <= 1.0:
            raise ValueError(f"`lambda_momentum` must be in (0, 1], got {self.lambda_momentum}.")
        if self.samples_per_source is not None and self.samples_per_source <= 0:
            raise ValueError(
                f"`samples_per_source` must be a positive integer or None, got {self.samples_per_source}."
            )
