"""MetaRM: a reward trainer whose every step first sharpens the model on the policy's new, unlabeled responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from accelerate.logging import get_logger
from datasets import Dataset
from transformers import TrainerCallback
from trl import RewardConfig

from .._compat import before_deepspeed_optimizer_step, trainer_metrics
from ..losses import pairwise_loss
from ..more.model_card import RewardModelCard
from ..more.more_trainer import MORERewardTrainer
from ..trainer_utils import convert_config, default_output_dir
from .meta_ascent import MetaAscent, unchanged_random_state
from .meta_data import MetaBatches, tokenize_meta_dataset
from .metarm_config import MetaRMConfig


logger = get_logger(__name__)


class MetaRMTrainer(MORERewardTrainer):
    """
    Reward trainer with MetaRM's meta step ("Secrets of RLHF in Large Language Models Part II", Section 4;
    docs/metarm.md): it keeps a reward model able to tell apart the responses of the policy being aligned, whose
    distribution drifts away from the preference data.

    Every `meta_step_every` optimizer steps, before the step's first micro-batch:

    1. theta' = theta + eta * grad J(theta; meta batch), with J the difference loss of the meta batch's prompts
       (`per_device_meta_batch_size` prompts with k responses each, see `trl_more.metarm.difference_loss`);
    2. the preference loss (everything [`MORERewardTrainer`] computes: MORE's lambda, the denoising and contrastive
       losses) is differentiated at theta', over all micro-batches of the step;
    3. theta is restored and the optimizer applies that gradient to it.

    This is the first-order form the paper states (no second derivatives). It works with LoRA, gradient checkpointing
    (non-reentrant, transformers' default), DDP and DeepSpeed ZeRO-1/2/3: every rank moves by the process-averaged
    grad J, so the replicas stay identical. The meta batch of a step is a function of the global step (see
    [`MetaBatches`]), so a resumed run continues with the meta batch an uninterrupted run would have used.

    Logged: `meta/difference` (J at theta, every meta step) and, on logging steps, `meta/difference_after` (J at
    theta'), `meta/loss_before` and `meta/loss_after` (the Bradley-Terry loss of the step's first preference
    micro-batch at theta and at theta').

    Args:
        meta_dataset ([`~datasets.Dataset`]):
            The meta data: a `prompt` column and a column (`args.meta_responses_column`) with `args.meta_num_responses`
            responses of every prompt, sampled from the current policy. No labels.
        Other arguments: as for [`MORERewardTrainer`]. `args` is a [`MetaRMConfig`]; a [`MORERewardConfig`] or a
        plain [`~trl.RewardConfig`] is converted (MetaRM's fields at their defaults).
    """

    _tag_names = ["trl", "reward-trainer", "trl-more", "metarm"]
    _name = "MetaRM"

    def __init__(self, model, args: MetaRMConfig | RewardConfig | None = None, *, meta_dataset: Dataset, **kwargs):
        if args is None:
            args = MetaRMConfig(default_output_dir(model, "MetaRM"))
        args = convert_config(args, MetaRMConfig, RewardConfig)
        if meta_dataset is None:
            raise ValueError(
                "MetaRM needs a `meta_dataset`: prompts with responses sampled from the policy being aligned (a "
                "`prompt` column and a list of responses per prompt)."
            )
        if not isinstance(model, str):
            check_trainable_reward_model(model)
        super().__init__(model, args, **kwargs)
        module = self.accelerator.unwrap_model(self.model)
        check_trainable_reward_model(module)
        checkpointing = self.args.gradient_checkpointing_kwargs or {}
        if self.args.gradient_checkpointing and checkpointing.get("use_reentrant", False):
            raise ValueError(
                "MetaRM differentiates J with `torch.autograd.grad`, which reentrant gradient checkpointing does not "
                "support (TRL forces `use_reentrant=True` for PEFT under DeepSpeed ZeRO-3). Set "
                "`gradient_checkpointing_kwargs={'use_reentrant': False}`, or turn gradient checkpointing off."
            )
        rows = tokenize_meta_dataset(
            meta_dataset, self.processing_class, args.meta_num_responses, args.meta_responses_column, args.max_length
        )
        self.meta_batches = MetaBatches(
            rows,
            args.per_device_meta_batch_size,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            pad_token_id=self.processing_class.pad_token_id,
            num_processes=self.accelerator.num_processes,
            process_index=self.accelerator.process_index,
        )
        # A meta forward holds as many sequences as a training micro-batch (2 per pair).
        prompts_per_forward = max(1, 2 * args.per_device_train_batch_size // args.meta_num_responses)
        self.meta_ascent = MetaAscent(module, args.meta_learning_rate, args.meta_abs_epsilon, prompts_per_forward)
        self._meta_step_taken_at: int | None = None
        self._deepspeed_hooked = False
        self.add_callback(_RestoreBeforeOptimizerStep(self))

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        if step % self.args.meta_step_every == 0 and self._meta_step_taken_at != step:
            self._meta_step(inputs, step)
        return super().training_step(model, inputs, num_items_in_batch)

    def _meta_step(self, inputs: Mapping[str, Any], step: int) -> None:
        """Step 1 of MetaRM, at the first micro-batch of optimizer step `step` (steps 2 and 3 follow from training)."""
        if self.is_deepspeed_enabled and not self._deepspeed_hooked:
            before_deepspeed_optimizer_step(self.model_wrapped, self.meta_ascent.restore)
            self._deepspeed_hooked = True
        self._meta_step_taken_at = step
        self.model.train()  # as the training step will be (an evaluation may have just switched it off)
        batch = self.meta_batches.batch(step // self.args.meta_step_every, self.args.device)
        logged = self.args.logging_strategy == "steps" and (step + 1) % max(self.state.logging_steps, 1) == 0
        loss_before = self._preference_loss(inputs) if logged else None
        difference = self.meta_ascent.ascend(batch, self.accelerator)
        metrics = trainer_metrics(self, "train")
        metrics["meta/difference"].append(difference)
        if logged:
            values = torch.tensor(
                [self.meta_ascent.difference(batch), loss_before, self._preference_loss(inputs)],
                device=self.args.device,
            )
            if self.accelerator.num_processes > 1:
                values = self.accelerator.reduce(values, reduction="mean")
            for name, value in zip(("difference_after", "loss_before", "loss_after"), values.tolist()):
                metrics[f"meta/{name}"].append(value)

    def _preference_loss(self, inputs: Mapping[str, Any]) -> float:
        """The Bradley-Terry loss of a preference micro-batch at the current parameters, without gradients."""
        with torch.no_grad(), unchanged_random_state(inputs["input_ids"].device):
            logits = self.pair_rewards(self.meta_ascent.model, inputs)
        return pairwise_loss(logits.squeeze(-1).float()).mean().item()

    def model_card_data(self, evaluation=None) -> RewardModelCard:
        card = super().model_card_data(evaluation)
        args = self.args
        card.settings["MetaRM meta step"] = (
            f"eta {args.meta_learning_rate:g}, {args.per_device_meta_batch_size} prompts x "
            f"{args.meta_num_responses} responses per device, every {args.meta_step_every} step(s), |d| "
            + (f"smoothed (epsilon {args.meta_abs_epsilon:g})" if args.meta_abs_epsilon > 0 else "exact")
        )
        return card


def check_trainable_reward_model(module) -> None:
    """Refuse reward models MetaRM cannot train by gradient steps on a scalar reward."""
    from ..multi_objective import MultiObjectiveRewardModel

    if isinstance(module, MultiObjectiveRewardModel):
        raise ValueError(
            "MetaRM trains a reward model with one scalar reward by gradient steps; the multi-objective reward model "
            "is fitted by ridge regression and a gate (`MultiObjectiveRewardTrainer`) and cannot be trained this "
            "way. Use a sequence-classification reward model with `num_labels=1`."
        )
    if getattr(getattr(module, "config", None), "num_labels", 1) != 1:
        raise ValueError(
            f"MetaRM needs a reward model with one output (`num_labels=1`), got {module.config.num_labels}."
        )


class _RestoreBeforeOptimizerStep(TrainerCallback):
    """Step 3 of MetaRM: theta back before the optimizer applies the gradient taken at theta' (under DeepSpeed the
    same restore runs inside the engine's step, which comes first; the second call is then a no-op)."""

    def __init__(self, trainer: MetaRMTrainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.meta_ascent.restore()
