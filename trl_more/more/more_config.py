"""Configuration of the MORE reward trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RewardConfig

from ..constants import (
    CONTRASTIVE_REPRESENTATIONS,
    PREFLIGHT_MODES,
    SOURCE_COLUMN,
    STRENGTH_COLUMN,
    TEXT_REGULARIZATIONS,
    TRUNCATION_MODES,
    check_choice,
)
from ..pair_encoding import PAIR_ENCODINGS
from ..trainer_utils import choose_mixed_precision


LAMBDA_METHODS = ("min_norm", "uniform")
GRADIENT_NORMALIZATIONS = ("l2", "none", "loss", "loss+")
CONTRASTIVE_LOSSES = ("simcse", "swav")


@dataclass
class MORERewardConfig(RewardConfig):
    r"""
    Configuration class for the [`MORERewardTrainer`]: TRL's [`~trl.RewardConfig`] plus the options of MORE
    (multi-objective reward learning on diversified preferences; docs/more.md) and of reward modelling on noisy
    preferences (denoising losses and contrastive learning; docs/noisy_preferences.md).

    Only the parameters specific to trl-more are listed here; see [`~trl.RewardConfig`] and
    [`~transformers.TrainingArguments`] for the others. With a single source (or no source column) every MORE option
    is inert, and with the denoising and contrastive options at their defaults the trainer behaves exactly like
    [`~trl.RewardTrainer`].

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

        train_sampling_strategy (`str`, *optional*, defaults to `"random"`):
            [`~transformers.TrainingArguments`]' option, which MORE reads so: `"random"` gives every micro-batch pairs
            in random order (source-balanced with K >= 2). `"group_by_length"` puts pairs of similar length in the
            same micro-batch (with one source or several), still balanced across sources and ranks, every pair used
            as often per epoch as with `"random"`, and deterministic in (seed, epoch), so resuming continues the
            same order: far less padding per step. The length is the pair's row under `pair_encoding`
            (`"shared_prompt"`: prompt + both responses; `"separate"`: the longer response sequence). Batches are
            then no longer i.i.d. in length (docs/more.md says when that matters). `"sequential"` and
            `"batch_rebalance"` apply with one source only; MORE's sampler replaces them otherwise.
        pair_encoding (`str`, *optional*, defaults to `"separate"`):
            `"separate"` encodes chosen and rejected as two sequences, as [`~trl.RewardTrainer`] does.
            `"shared_prompt"` (decoder models) puts each pair in one row, prompt + chosen + rejected, with an attention
            mask under which each response sees the prompt and never the other response, so the prompt is computed
            once and a batch pays less padding; the rewards equal those of separate encoding (docs/pair_encoding.md).
            `"packed"` also puts the rows of a micro-batch side by side in as few sequences as fit `pack_length`, each
            pair masked off from the others with its own positions, so a batch pays almost no padding (same rewards).
            Bidirectional encoders (BERT-style) keep separate encoding, with an info line.
        pack_length (`int` or `None`, *optional*, defaults to `None`):
            With `pair_encoding="packed"`: the most tokens of one packed sequence. `None` uses the micro-batch's longest
            pair row, so that no sequence is longer than unpacked and dense attention never costs more; a longer one
            packs more pairs per sequence, which pays with FlexAttention on GPUs (docs/pair_encoding.md). A pair is
            never split: a pair whose row is longer than `pack_length` gets a sequence of its own.
        preflight (`str`, *optional*, defaults to `"error"`):
            The pre-flight checks `train()` runs before the first step, on a small sample of every source (seconds;
            docs/preflight.md): where the reward is read, rewards that change with padding or the batch, a duplicated
            BOS, pairs made identical by truncation, truncated and empty sources, NaN margins, a LoRA score head that
            is not trained or saved. `"error"` raises on what makes training meaningless and logs the other findings
            as warnings, `"warn"` logs every finding and trains, `"off"` skips the checks.

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
        expected_global_batch_size (`int` or `None`, *optional*, defaults to `None`):
            If set, the global batch (`per_device_train_batch_size` x processes x `gradient_accumulation_steps`) this
            run must have: a launch with another is refused before the model is loaded, with the per-device batch to
            set. The recipes that reproduce a paper set it (MORE: 80 pairs); `None` runs any batch.

        > Parameters that control the losses for noisy preferences (they apply to the training set only)

        strength_column (`str`, *optional*, defaults to `"strength_mean"`):
            Column holding every pair's preference strength mu (the mean reward difference of a reward-model
            ensemble, see `trl_more.noisy_preferences.estimate_preference_strength`), read by the options below.
        flip_below_strength (`float` or `None`, *optional*, defaults to `None`):
            Swap chosen and rejected of every training pair whose strength is below this value (e.g. `0.0`: the pairs
            the ensemble prefers the other way); the flipped pair's strength becomes -mu. The number flipped per
            source is logged.
        flip_fraction (`float` or `None`, *optional*, defaults to `None`):
            Swap chosen and rejected of this fraction of every source's training pairs, those with the lowest
            strength (the paper flips the bottom 10-20%). Exclusive with `flip_below_strength`.
        label_smoothing (`float`, *optional*, defaults to `0.0`):
            Label smoothing alpha in [0, 0.5): the loss becomes -[(1 - alpha) log sigmoid(d) + alpha log sigmoid(-d)],
            trusting each label with probability 1 - alpha. At 0.5 the label carries no information: the loss
            is the same for either order and only pulls every reward difference towards 0.
        label_smoothing_below_strength (`float` or `None`, *optional*, defaults to `None`):
            Smooth only the pairs whose strength is below this value (the paper's "soft label + margin" smooths the
            pairs with mu < 0, i.e. `0.0`); `None` smooths every pair.
        adaptive_margin (`float`, *optional*, defaults to `0.0`):
            gamma of the adaptive margin: every pair's loss becomes -log sigmoid(d - m) with m = gamma * mu (added to
            TRL's own `margin` column when there is one). The paper uses gamma = 1 and advises a small margin.
        adaptive_margin_clip (`float` or `None`, *optional*, defaults to `None`):
            Clip the adaptive margin gamma * mu to [-clip, clip].

        > Parameters that control contrastive learning

        contrastive_loss (`str` or `None`, *optional*, defaults to `None`):
            An auxiliary contrastive loss on the reward head's input: `"simcse"` (in-batch negatives) or `"swav"`
            (online clustering against learned prototypes). Two views of every pair come from the training forward
            pass and an extra forward pass with dropout `contrastive_dropout` on the token embeddings (about twice the
            compute of a step, since both views are backpropagated).
        contrastive_representation (`str`, *optional*, defaults to `"pair"`):
            `"pair"`: the representations of the chosen and of the rejected response; `"difference"`: their
            difference f_chosen - f_rejected and its negative.
        contrastive_coefficient (`float`, *optional*, defaults to `1.0`):
            beta in L = L_reward + beta * L_contrastive (the paper: 1 for SimCSE, 0.5 for SwAV on differences, 0.1
            for SwAV on responses).
        contrastive_temperature (`float` or `None`, *optional*, defaults to `None`):
            tau of the cosine similarities (SimCSE) or prototype scores (SwAV); `None` takes SimCSE's usual 0.05 and
            SwAV's 0.1.
        contrastive_dropout (`float`, *optional*, defaults to `0.05`):
            Dropout probability on the token embeddings of the extra forward pass that makes the second view (the
            paper's 0.05, which it applies inside the model).
        swav_prototypes (`int`, *optional*, defaults to `20`):
            Number of SwAV prototypes (the paper: 20 on differences, 50 on responses).
        swav_sinkhorn_iterations (`int`, *optional*, defaults to `3`):
            Sinkhorn-Knopp iterations that turn prototype scores into balanced codes.
        swav_epsilon (`float`, *optional*, defaults to `0.05`):
            Entropy regularisation epsilon of the Sinkhorn codes.

        > Parameters that control the text regularisation of the hidden states (GRM)

        text_regularization_coefficient (`float`, *optional*, defaults to `0.0`):
            w in L = (1 - w) * L_reward + w * L_text ("Regularizing Hidden States Enables Learning Generalizable
            Reward Model", Yang et al., 2024; the paper uses 0.01), in [0, 1). `0.0` turns it off. Decoder reward
            models only: the base causal LM's language-model head is kept next to the reward head, reads the same
            hidden states, and is trained on the side with its own AdamW; the saved model is a plain
            sequence-classification model without it. L_reward is everything else the trainer optimises (the
            lambda-weighted pairwise loss, the contrastive term). MORE's lambda is unchanged, since L_text does not
            depend on the reward head (docs/robust_rewards.md).
        text_regularization (`str`, *optional*, defaults to `"sft"`):
            L_text: `"sft"`, the mean token negative log-likelihood of the chosen responses given their prompts (the
            tokens after those the chosen and rejected sequences share).
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
    train_sampling_strategy: str = field(
        default="random",
        metadata={
            "help": "`random` (source-balanced with several sources) or `group_by_length` (pairs of similar length "
            "share a micro-batch, still source-balanced; less padding, batches not i.i.d. in length). `sequential` "
            "and `batch_rebalance` apply with one source only.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    pair_encoding: str = field(
        default="separate",
        metadata={
            "help": "separate (TRL's), shared_prompt (one row per pair, the prompt encoded once; decoders) or packed "
            "(those rows packed into sequences: almost no padding).",
            "choices": list(PAIR_ENCODINGS),
        },
    )
    pack_length: int | None = field(
        default=None,
        metadata={"help": "With pair_encoding=packed: tokens per packed sequence (default: the longest pair row)."},
    )
    preflight: str = field(
        default="error",
        metadata={
            "help": "Pre-flight checks before the first step: `error` (raise on what makes training meaningless), "
            "`warn` (log every finding) or `off`.",
            "choices": list(PREFLIGHT_MODES),
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
    expected_global_batch_size: int | None = field(
        default=None,
        metadata={"help": "Refuse a launch whose global batch differs (recipes that reproduce a paper set it)."},
    )

    # Losses for noisy preferences
    strength_column: str = field(
        default=STRENGTH_COLUMN, metadata={"help": "Column holding every pair's preference strength mu."}
    )
    flip_below_strength: float | None = field(
        default=None, metadata={"help": "Swap chosen and rejected of the training pairs whose strength is below this."}
    )
    flip_fraction: float | None = field(
        default=None, metadata={"help": "Swap chosen and rejected of this fraction of every source's weakest pairs."}
    )
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing alpha in [0, 0.5)."})
    label_smoothing_below_strength: float | None = field(
        default=None, metadata={"help": "Smooth only the pairs whose strength is below this (None: every pair)."}
    )
    adaptive_margin: float = field(
        default=0.0, metadata={"help": "gamma: margin gamma * strength inside the sigmoid of every pair's loss."}
    )
    adaptive_margin_clip: float | None = field(
        default=None, metadata={"help": "Clip the adaptive margin to [-clip, clip]."}
    )

    # Contrastive learning
    contrastive_loss: str | None = field(
        default=None,
        metadata={
            "help": "Auxiliary contrastive loss on the head input: `simcse` or `swav`.",
            "choices": list(CONTRASTIVE_LOSSES),
        },
    )
    contrastive_representation: str = field(
        default="pair",
        metadata={
            "help": "`pair` (chosen and rejected) or `difference` (chosen - rejected).",
            "choices": list(CONTRASTIVE_REPRESENTATIONS),
        },
    )
    contrastive_coefficient: float = field(default=1.0, metadata={"help": "beta: weight of the contrastive loss."})
    contrastive_temperature: float | None = field(
        default=None, metadata={"help": "tau; None: 0.05 (SimCSE) or 0.1 (SwAV)."}
    )
    contrastive_dropout: float = field(default=0.05, metadata={"help": "Dropout of the second view's forward pass."})
    swav_prototypes: int = field(default=20, metadata={"help": "Number of SwAV prototypes."})
    swav_sinkhorn_iterations: int = field(default=3, metadata={"help": "Sinkhorn-Knopp iterations of SwAV."})
    swav_epsilon: float = field(default=0.05, metadata={"help": "Entropy regularisation of the Sinkhorn codes."})

    # Text regularisation of the hidden states (GRM)
    text_regularization_coefficient: float = field(
        default=0.0,
        metadata={
            "help": "w in (1 - w) * L_reward + w * L_text, in [0, 1) (GRM; the paper: 0.01); 0 turns it off. "
            "Decoder reward models; the language-model head is trained on the side and not saved."
        },
    )
    text_regularization: str = field(
        default="sft",
        metadata={
            "help": "L_text: `sft`, the token NLL of the chosen responses given their prompts.",
            "choices": list(TEXT_REGULARIZATIONS),
        },
    )

    def __post_init__(self):
        choose_mixed_precision(self)
        super().__post_init__()
        check_choice("lambda_method", self.lambda_method, LAMBDA_METHODS)
        check_choice("pair_encoding", self.pair_encoding, PAIR_ENCODINGS)
        if self.pack_length is not None and (self.pair_encoding != "packed" or self.pack_length < 1):
            raise ValueError(
                f"pack_length={self.pack_length} needs pair_encoding='packed' and a positive length; set "
                "pair_encoding='packed', or leave pack_length unset."
            )
        check_choice("preflight", self.preflight, PREFLIGHT_MODES)
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
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"`label_smoothing` must be in [0, 0.5), got {self.label_smoothing}: at 0.5 every label is a coin flip "
                "and the loss only pulls every reward difference to 0, above it the labels are inverted. Use "
                "`flip_below_strength` to invert labels."
            )
        if self.flip_below_strength is not None and self.flip_fraction is not None:
            raise ValueError("Give `flip_below_strength` or `flip_fraction`, not both.")
        if self.flip_fraction is not None and not 0.0 < self.flip_fraction < 1.0:
            raise ValueError(f"`flip_fraction` must be in (0, 1), got {self.flip_fraction}.")
        if self.adaptive_margin_clip is not None and not self.adaptive_margin_clip > 0:
            raise ValueError(f"`adaptive_margin_clip` must be positive, got {self.adaptive_margin_clip}.")
        if isinstance(self.contrastive_loss, str) and self.contrastive_loss.lower() in ("none", "null", ""):
            self.contrastive_loss = None
        if self.contrastive_loss is not None:
            check_choice("contrastive_loss", self.contrastive_loss, CONTRASTIVE_LOSSES)
        check_choice("contrastive_representation", self.contrastive_representation, CONTRASTIVE_REPRESENTATIONS)
        if not 0.0 <= self.contrastive_dropout < 1.0:
            raise ValueError(f"`contrastive_dropout` must be in [0, 1), got {self.contrastive_dropout}.")
        if self.contrastive_temperature is not None and not self.contrastive_temperature > 0:
            raise ValueError(f"`contrastive_temperature` must be positive, got {self.contrastive_temperature}.")
        check_choice("text_regularization", self.text_regularization, TEXT_REGULARIZATIONS)
        if not 0.0 <= self.text_regularization_coefficient < 1.0:
            raise ValueError(
                f"`text_regularization_coefficient` must be in [0, 1), got {self.text_regularization_coefficient}: it "
                "is w in (1 - w) * L_reward + w * L_text (0 turns the text loss off; at 1 the reward would not be "
                "trained). The GRM paper uses 0.01."
            )

    @property
    def uses_strength(self) -> bool:
        """Whether an option reads the strength column."""
        smoothing_by_strength = self.label_smoothing > 0 and self.label_smoothing_below_strength is not None
        flipping = self.flip_below_strength is not None or self.flip_fraction is not None
        return flipping or smoothing_by_strength or self.adaptive_margin != 0.0
