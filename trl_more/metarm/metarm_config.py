"""Configuration of the MetaRM reward trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..more.more_config import MORERewardConfig


@dataclass
class MetaRMConfig(MORERewardConfig):
    r"""
    Configuration class for the [`MetaRMTrainer`]: [`MORERewardConfig`] (so TRL's [`~trl.RewardConfig`], MORE's
    reweighting and the denoising losses) plus the meta step of MetaRM (docs/metarm.md).

    Every `meta_step_every` optimizer steps, before the preference batch, the trainable parameters are moved up the
    gradient of the difference loss J on a meta batch (prompts with `meta_num_responses` unlabeled responses each,
    sampled from the policy being aligned): theta' = theta + meta_learning_rate * grad J(theta). The preference loss
    is then differentiated at theta', theta is restored, and the optimizer applies that gradient to theta.

    Parameters:
        meta_learning_rate (`float`, *optional*, defaults to `5e-6`):
            eta, the step of the meta ascent. Plain gradient ascent (no momentum, no normalisation), as in the paper,
            which uses eta = 5e-6 for 7B models: on a small model such a step may hardly move the parameters, so scale
            it with the model (docs/metarm.md). `0` gives exactly the training of [`MORERewardTrainer`].
        meta_num_responses (`int`, *optional*, defaults to `5`):
            k, the responses per prompt of the meta dataset (the paper: 5). Every row must have exactly k; at least 2.
        per_device_meta_batch_size (`int`, *optional*, defaults to `16`):
            Prompts of the meta dataset per device in one meta step (each with its k responses; the paper: 16).
        meta_step_every (`int`, *optional*, defaults to `1`):
            Run the meta step before every n-th optimizer step (the others are ordinary steps).
        meta_abs_epsilon (`float`, *optional*, defaults to `0.0`):
            How |r_i - r_j| in J is differentiated: `0` uses the absolute value itself (its subgradient is 0 for two
            equal rewards), a positive epsilon the smooth surrogate sqrt(d^2 + epsilon^2), whose gradient is defined
            everywhere.
        meta_responses_column (`str`, *optional*, defaults to `"responses"`):
            Column of the meta dataset holding every prompt's list of k responses (the prompt is in `"prompt"`).
    """

    meta_learning_rate: float = field(default=5e-6, metadata={"help": "eta: step of the meta ascent on J."})
    meta_num_responses: int = field(default=5, metadata={"help": "k: responses per prompt of the meta dataset."})
    per_device_meta_batch_size: int = field(default=16, metadata={"help": "Meta prompts per device per meta step."})
    meta_step_every: int = field(default=1, metadata={"help": "Run the meta step before every n-th optimizer step."})
    meta_abs_epsilon: float = field(
        default=0.0, metadata={"help": "0: |d| in J; > 0: the smooth surrogate sqrt(d^2 + epsilon^2)."}
    )
    meta_responses_column: str = field(
        default="responses", metadata={"help": "Column of the meta dataset with the k responses of every prompt."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.meta_learning_rate < 0:
            raise ValueError(
                f"`meta_learning_rate` must be >= 0, got {self.meta_learning_rate}: the meta step ascends J (a "
                "negative step would make the reward model worse at telling the policy's responses apart)."
            )
        if self.meta_num_responses < 2:
            raise ValueError(
                f"`meta_num_responses` must be at least 2, got {self.meta_num_responses}: J compares the responses "
                "of a prompt with each other."
            )
        if self.per_device_meta_batch_size < 1:
            raise ValueError(f"`per_device_meta_batch_size` must be positive, got {self.per_device_meta_batch_size}.")
        if self.meta_step_every < 1:
            raise ValueError(f"`meta_step_every` must be a positive integer, got {self.meta_step_every}.")
        if self.meta_abs_epsilon < 0:
            raise ValueError(f"`meta_abs_epsilon` must be >= 0, got {self.meta_abs_epsilon}.")
