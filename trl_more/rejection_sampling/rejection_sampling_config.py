"""Configuration of the rejection-sampling (RJS / RAFT) trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

from ..constants import check_choice
from ..pair_encoding import PAIR_ENCODINGS
from ..rewards import ENSEMBLE_CALIBRATIONS, ENSEMBLE_MODES
from ..trainer_utils import choose_mixed_precision
from .selection import SELECTION_STRATEGIES


GENERATION_BACKENDS = ("transformers", "vllm")
# Samplers that read example lengths once, when the dataloader is built, would see the lengths of an empty iteration.
SUPPORTED_SAMPLING_STRATEGIES = ("random", "sequential")


@dataclass
class RejectionSamplingConfig(SFTConfig):
    r"""
    Configuration class for the [`RejectionSamplingTrainer`]: TRL's [`~trl.SFTConfig`] plus the options of rejection
    sampling fine-tuning (RJS / RAFT, docs/rejection_sampling.md).

    The run is `num_iterations` iterations of: take the next `prompts_per_iteration` prompts, sample
    `num_samples_per_prompt` responses per prompt with the current policy, score them with the reward model(s), select,
    and fine-tune on the selected responses (loss on the response tokens only) for `num_epochs_per_iteration` epochs.
    One iteration is one or more Trainer epochs of one `train()` call, so `num_train_epochs` is set from these fields
    and `max_steps` must stay unset. Only the parameters specific to rejection sampling are listed here; see
    [`~trl.SFTConfig`] and [`~transformers.TrainingArguments`] for the others.

    Parameters:
        > Parameters that control the iterations

        num_iterations (`int`, *optional*, defaults to `3`):
            Number of generate -> score -> select -> fine-tune rounds.
        prompts_per_iteration (`int`, *optional*, defaults to `2048`):
            Prompts sampled from in each iteration (RAFT's batch size b). Iteration `i` takes the prompts at positions
            `i * prompts_per_iteration ...` of the prompt dataset, wrapping around at its end.
        num_samples_per_prompt (`int`, *optional*, defaults to `4`):
            Responses sampled per prompt (the paper's N = 4).
        num_epochs_per_iteration (`int`, *optional*, defaults to `1`):
            Passes over each iteration's selected responses before the next iteration generates new ones.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            Prompts longer than this many tokens are left out of the prompt set (and counted in a warning), so that
            prompt + response fit the policy's context. `None` keeps every prompt.

        > Parameters that control generation

        generation_backend (`str`, *optional*, defaults to `"transformers"`):
            `"transformers"`: batched `model.generate` on the training model (left-padded, length-sorted batches, KV
            cache on, gradient checkpointing off, ZeRO-3 parameters gathered once per generation round).
            `"vllm"`: a vLLM engine colocated with every training process, its weights synced from the policy before
            each round (needs the `vllm` extra and a GPU).
        max_new_tokens (`int`, *optional*, defaults to `256`):
            Maximum number of tokens generated per response.
        temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature (RAFT uses 0.85-1.0). `0` means greedy decoding.
        top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus sampling threshold; `1.0` disables it.
        top_k (`int`, *optional*, defaults to `0`):
            Top-k sampling; `0` disables it.
        repetition_penalty (`float`, *optional*, defaults to `1.0`):
            Repetition penalty; `1.0` disables it.
        generation_batch_size (`int`, *optional*, defaults to `8`):
            Prompts per `generate` call (each call produces `generation_batch_size * num_samples_per_prompt`
            sequences). With the transformers backend it bounds the KV cache: about 0.5 MB per token per sequence for
            a 7B model.
        vllm_gpu_memory_utilization (`float`, *optional*, defaults to `0.3`):
            Fraction of GPU memory the colocated vLLM engine may take (vLLM backend only).
        vllm_max_model_length (`int` or `None`, *optional*, defaults to `None`):
            Context length of the vLLM engine (prompt + response); `None` takes the model's (vLLM backend only).

        > Parameters that control the reward models

        reward_model_init_kwargs (`dict[str, Any]` or `None`, *optional*, defaults to `None`):
            Keyword arguments for `AutoModelForSequenceClassification.from_pretrained` when reward models are given as
            paths (e.g. `{"dtype": "bfloat16"}`).
        reward_objective_weights (`dict[str, float]` or `None`, *optional*, defaults to `None`):
            Fixed objective weights for the multi-objective (gated) reward models, which then score with them
            instead of their gate, e.g. `{"helpfulness": 1.0, "verbosity": -0.5}`; objectives left out weigh 0.
            Other reward models of an ensemble are unaffected. `None` keeps the gate.
        reward_batch_size (`int`, *optional*, defaults to `16`):
            (prompt, response) pairs per reward-model forward pass; batches are sorted by length.
        reward_max_length (`int` or `None`, *optional*, defaults to `None`):
            Reward-model inputs longer than this lose the beginning of their prompt (the response, at whose end the
            reward is read, is kept whole); it also bounds MetaRM's updates of the reward model. Must exceed
            `max_new_tokens`. `None`: each reward model's own limit, the `max_length` it was trained with (recorded
            in its config by trl-more's trainers) or else its position limit (e.g. 512 for BERT-style encoders);
            nothing is cut for a model with neither.
        ensemble (`str`, *optional*, defaults to `"mean"`):
            How the rewards of several reward models are combined: `"mean"`, `"min"` (worst case) or
            `"mean_minus_std"` (uncertainty-weighted: mean - `ensemble_std_coef` x population standard deviation).
            With one reward model every mode gives its reward.
        ensemble_std_coef (`float`, *optional*, defaults to `1.0`):
            The k of `"mean_minus_std"`.
        reward_pair_encoding (`str`, *optional*, defaults to `"separate"`):
            `"shared_prompt"` scores the `num_samples_per_prompt` responses of a prompt in one row, the prompt computed
            once (decoder reward models with a linear head; the same rewards, docs/pair_encoding.md); `"packed"` also
            packs those rows into sequences no longer than a batch's longest row; `"separate"` scores every response
            as its own sequence.
        ensemble_calibration (`str`, *optional*, defaults to `"stored"`):
            With several reward models, `"stored"` puts each model's rewards on one scale before they are combined
            (the reward statistics stored in its config, else its temperature; docs/calibration.md) and refuses a
            model that stores neither; `"none"` combines raw rewards (a model with wider rewards then dominates).

        > Parameters that control the selection

        selection (`str`, *optional*, defaults to `"best_per_prompt"`):
            `"best_per_prompt"` keeps the highest-reward response of every prompt; `"top_fraction"` keeps the
            `top_fraction` highest-reward responses of the whole iteration.
        top_fraction (`float`, *optional*, defaults to `0.25`):
            Fraction of all sampled responses kept by `"top_fraction"` (0.25 with 4 samples per prompt keeps as many
            responses as `"best_per_prompt"`).
        min_reward (`float` or `None`, *optional*, defaults to `None`):
            If set, responses with a (combined) reward below it are never selected.

        > Parameters that control the reward model's updates (MetaRM, docs/metarm.md): each is `metarm_` followed by
        > the name of the same option in `MetaRMConfig` (its learning rate, batch sizes and meta-step settings)

        metarm (`bool`, *optional*, defaults to `False`):
            Before scoring an iteration's responses, update the reward model with MetaRM on them (the meta data: the
            iteration's prompts with their `num_samples_per_prompt` responses, unlabeled) and on the preference pairs
            it was trained on (`reward_train_dataset` of the trainer). Needs exactly one reward model with trainable
            parameters. The updated model of every iteration is saved in `iteration-XX/reward_model`.
        metarm_learning_rate (`float`, *optional*, defaults to `5e-6`):
            alpha, the learning rate of the reward model's AdamW (the paper: 5e-6).
        metarm_meta_learning_rate (`float`, *optional*, defaults to `5e-6`):
            eta, the step of the meta ascent on J (the paper: 5e-6).
        metarm_per_device_train_batch_size (`int`, *optional*, defaults to `16`):
            Preference pairs per device in one reward-model step (the paper: 16).
        metarm_per_device_meta_batch_size (`int`, *optional*, defaults to `16`):
            Prompts (each with its responses) per device in one meta step (the paper: 16).
        metarm_steps_per_iteration (`int` or `None`, *optional*, defaults to `None`):
            Reward-model steps per iteration; `None` makes one pass over the iteration's prompts (the paper's one
            epoch): `prompts_per_iteration // (metarm_per_device_meta_batch_size * processes)` steps.
        metarm_meta_abs_epsilon (`float`, *optional*, defaults to `0.0`):
            `0` differentiates |r_i - r_j| in J as it is, a positive epsilon the surrogate sqrt(d^2 + epsilon^2).

        > Parameters that control the batch

        expected_global_batch_size (`int` or `None`, *optional*, defaults to `None`):
            If set, the global batch (`per_device_train_batch_size` x processes x `gradient_accumulation_steps`) this
            run must have: a launch with another is refused before the models are loaded, with the per-device batch to
            set. The recipes that reproduce a paper set it (Alpaca fine-tuning: 128); `None` runs any batch.

        > Parameters that control resumption

        reuse_mismatched_iterations (`bool`, *optional*, defaults to `False`):
            A run reuses the `iteration-XX` folders it finds in `output_dir` only when they were produced by its own
            policy, reward models and settings (their `provenance.json`); a folder produced otherwise stops the run
            with the differences named. `True` trains on such folders anyway (with a warning).
    """

    _VALID_DICT_FIELDS = SFTConfig._VALID_DICT_FIELDS + ["reward_model_init_kwargs", "reward_objective_weights"]

    # Iterations
    num_iterations: int = field(
        default=3, metadata={"help": "Number of generate -> score -> select -> fine-tune rounds."}
    )
    prompts_per_iteration: int = field(default=2048, metadata={"help": "Prompts sampled from in each iteration."})
    num_samples_per_prompt: int = field(default=4, metadata={"help": "Responses sampled per prompt."})
    num_epochs_per_iteration: int = field(
        default=1, metadata={"help": "Passes over each iteration's selected responses."}
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Prompts longer than this many tokens are left out; None keeps all."}
    )

    # Generation
    generation_backend: str = field(
        default="transformers",
        metadata={
            "help": "`transformers` (model.generate) or `vllm` (colocated engine).",
            "choices": list(GENERATION_BACKENDS),
        },
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Maximum number of tokens generated per response."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; 0 means greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold; 1.0 disables it."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling; 0 disables it."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Repetition penalty; 1.0 disables it."})
    generation_batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "Fraction of GPU memory for the colocated vLLM engine."}
    )
    vllm_max_model_length: int | None = field(
        default=None, metadata={"help": "Context length of the vLLM engine; None takes the model's."}
    )

    # Reward models
    reward_model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments for from_pretrained when reward models are given as paths."},
    )
    reward_objective_weights: dict[str, float] | str | None = field(
        default=None,
        metadata={"help": "Fixed objective weights for multi-objective reward models, instead of their gate."},
    )
    reward_batch_size: int = field(default=16, metadata={"help": "Pairs per reward-model forward pass."})
    reward_max_length: int | None = field(
        default=None,
        metadata={
            "help": "Reward-model inputs are cut to this many tokens, from the left. Default: each reward model's "
            "training max_length, else its position limit."
        },
    )
    ensemble: str = field(
        default="mean",
        metadata={"help": "Combination of several reward models.", "choices": list(ENSEMBLE_MODES)},
    )
    reward_pair_encoding: str = field(
        default="separate",
        metadata={
            "help": "separate, shared_prompt (the samples of a prompt in one row, the prompt computed once) or packed "
            "(those rows packed into sequences).",
            "choices": list(PAIR_ENCODINGS),
        },
    )
    ensemble_calibration: str = field(
        default="stored",
        metadata={"help": "Put every reward model on one scale before combining (stored) or not (none)."},
    )
    ensemble_std_coef: float = field(default=1.0, metadata={"help": "k of `mean_minus_std`: mean - k * std."})

    # Selection
    selection: str = field(
        default="best_per_prompt",
        metadata={"help": "Which responses are trained on.", "choices": list(SELECTION_STRATEGIES)},
    )
    top_fraction: float = field(
        default=0.25, metadata={"help": "Fraction of all sampled responses kept by `top_fraction`."}
    )
    min_reward: float | None = field(
        default=None, metadata={"help": "Responses with a reward below this are never selected."}
    )

    # Reward-model updates (MetaRM)
    metarm: bool = field(default=False, metadata={"help": "Update the reward model with MetaRM every iteration."})
    metarm_learning_rate: float = field(default=5e-6, metadata={"help": "AdamW learning rate of the reward model."})
    metarm_meta_learning_rate: float = field(default=5e-6, metadata={"help": "eta: step of the meta ascent on J."})
    metarm_per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Preference pairs per device per MetaRM step."}
    )
    metarm_per_device_meta_batch_size: int = field(
        default=16, metadata={"help": "Meta prompts per device per MetaRM step."}
    )
    metarm_steps_per_iteration: int | None = field(
        default=None, metadata={"help": "MetaRM steps per iteration; None: one pass over the iteration's prompts."}
    )
    metarm_meta_abs_epsilon: float = field(
        default=0.0, metadata={"help": "0: |d| in J; > 0: the smooth surrogate sqrt(d^2 + epsilon^2)."}
    )

    # Batch
    expected_global_batch_size: int | None = field(
        default=None,
        metadata={"help": "Refuse a launch whose global batch differs (recipes that reproduce a paper set it)."},
    )

    # Resumption
    reuse_mismatched_iterations: bool = field(
        default=False,
        metadata={"help": "Reuse iteration folders produced by another policy, reward model or settings."},
    )

    def __post_init__(self):
        choose_mixed_precision(self)
        for name in ("num_iterations", "prompts_per_iteration", "num_samples_per_prompt", "num_epochs_per_iteration"):
            _check_positive(name, getattr(self, name))
        for name in ("max_new_tokens", "generation_batch_size", "reward_batch_size"):
            _check_positive(name, getattr(self, name))
        for name in ("metarm_per_device_train_batch_size", "metarm_per_device_meta_batch_size"):
            _check_positive(name, getattr(self, name))
        if self.metarm_steps_per_iteration is not None:
            _check_positive("metarm_steps_per_iteration", self.metarm_steps_per_iteration)
        if self.metarm and self.num_samples_per_prompt < 2:
            raise ValueError(
                "`metarm=True` compares the responses of a prompt with each other, so it needs "
                f"`num_samples_per_prompt >= 2` (got {self.num_samples_per_prompt})."
            )
        if self.metarm_meta_learning_rate < 0 or self.metarm_meta_abs_epsilon < 0:
            raise ValueError("`metarm_meta_learning_rate` and `metarm_meta_abs_epsilon` must be >= 0.")
        check_choice("generation_backend", self.generation_backend, GENERATION_BACKENDS)
        check_choice("ensemble", self.ensemble, ENSEMBLE_MODES)
        check_choice("ensemble_calibration", self.ensemble_calibration, ENSEMBLE_CALIBRATIONS)
        check_choice("reward_pair_encoding", self.reward_pair_encoding, PAIR_ENCODINGS)
        check_choice("selection", self.selection, SELECTION_STRATEGIES)
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"`top_fraction` must be in (0, 1], got {self.top_fraction}.")
        if self.reward_max_length is not None and self.reward_max_length <= self.max_new_tokens:
            raise ValueError(
                f"`reward_max_length={self.reward_max_length}` leaves no room for the prompt of a response of up to "
                f"`max_new_tokens={self.max_new_tokens}` tokens; raise it (or set it to None)."
            )
        if self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0 (0 means greedy decoding), got {self.temperature}.")
        if self.max_steps > 0:
            raise ValueError(
                f"`max_steps={self.max_steps}` cannot be combined with rejection sampling: the number of steps follows "
                "from `num_iterations`, `prompts_per_iteration` and the batch size. Leave `max_steps` unset."
            )
        if self.packing:
            raise ValueError(
                "`packing=True` is not supported by rejection sampling: every iteration's dataset must have a size "
                "known before its responses are generated. Set `packing=False`."
            )
        if self.dataloader_persistent_workers:
            raise ValueError(
                "`dataloader_persistent_workers=True` would keep the first iteration's examples in the workers. Set it "
                "to False (workers then restart every epoch and see the new iteration)."
            )
        if self.train_sampling_strategy not in SUPPORTED_SAMPLING_STRATEGIES:
            raise ValueError(
                f"`train_sampling_strategy={self.train_sampling_strategy!r}` reads example lengths before any "
                f"response is generated; use one of {', '.join(map(repr, SUPPORTED_SAMPLING_STRATEGIES))}."
            )
        # One Trainer epoch per pass over an iteration's selected responses; set before the parent resolves the
        # schedule.
        self.num_train_epochs = self.num_iterations * self.num_epochs_per_iteration
        super().__post_init__()


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value}.")
