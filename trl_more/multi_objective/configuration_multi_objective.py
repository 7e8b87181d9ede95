"""Configuration of the multi-objective reward model with gated scalarization (ArmoRM).

This file is copied next to the weights by `save_pretrained`, and loaded by
`AutoConfig.from_pretrained(path, trust_remote_code=True)` without trl-more installed: it imports only transformers,
version 5 or newer (its configuration classes, `PreTrainedConfig` and sub-config declarations, are not in 4.x).
"""

from typing import ClassVar

import transformers


MINIMUM_TRANSFORMERS_VERSION = "5.0"
if int(transformers.__version__.split(".")[0]) < int(MINIMUM_TRANSFORMERS_VERSION.split(".")[0]):
    raise ImportError(
        f"This multi-objective reward model needs transformers >= {MINIMUM_TRANSFORMERS_VERSION}, found "
        f"{transformers.__version__}: `pip install -U 'transformers>={MINIMUM_TRANSFORMERS_VERSION}'`."
    )

from transformers import AutoConfig, PreTrainedConfig  # noqa: E402 (after the version check, which names the fix)
from transformers.configuration_utils import SubConfigSpec  # noqa: E402


__all__ = ["MINIMUM_TRANSFORMERS_VERSION", "POOLING_CHOICES", "MultiObjectiveRewardModelConfig"]

POOLING_CHOICES = ("last", "mean")


class MultiObjectiveRewardModelConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MultiObjectiveRewardModel`]: a transformers backbone, a linear regression layer predicting k
    objectives from the hidden state of the last token, and a gating MLP on the hidden state of the last prompt
    token that weighs the (transformed) objectives into one score (docs/multi_objective.md in the trl-more repository).

    The score is `R = g(h_prompt) . (r @ M)`, where `r = W h_last` are the k objective rewards, `M` the reward
    transform (identity, or verbosity debiasing), and `g = beta * softmax(MLP(h_prompt) / temperature)`.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Configuration of the backbone, built with `AutoModel.from_config` (any decoder or encoder of
            transformers). Returned by `config.get_text_config()`, so TRL's trainers set its `pad_token_id`.
        objectives (`list[str]`):
            Names of the k objectives, in the order of the regression layer's outputs.
        gate_hidden_sizes (`list[int]`, *optional*, defaults to `[1024, 1024, 1024]`):
            Widths of the gate's hidden layers (the reference uses 3 x 1024). `[]` gives a linear gate.
        gate_activation (`str`, *optional*, defaults to `"relu"`):
            Activation between the gate's layers, a name of `transformers.activations.ACT2FN`.
        gate_dropout (`float`, *optional*, defaults to `0.2`):
            Dropout after every hidden activation of the gate, in training mode only. It is applied functionally, so
            TRL's `disable_dropout` (which zeroes `nn.Dropout` modules of the backbone) leaves it in place.
        gate_temperature (`float`, *optional*, defaults to `10.0`):
            Temperature of the gate's softmax.
        initial_beta (`float`, *optional*, defaults to `1.0`):
            Initial value of the learned scale beta of the gating weights (they sum to beta). The paper states 100,
            the released code starts at 1.
        reward_transform (`list[list[float]]`, *optional*):
            k x k matrix M applied as `rewards @ M` before gating (ArmoRM's convention); identity when `None`.
            Verbosity debiasing sets `M = I` with `M[v, i] -= lambda_i`.
        pooling (`str`, *optional*, defaults to `"last"`):
            Hidden state the regression layer reads. `"last"`: the last token's (the reference; right for decoders).
            `"mean"`: the mean over the response tokens (the tokens after `prompt_lengths`; all tokens when no prompt
            length is given), which suits encoders trained with mean pooling such as sentence-transformers models.
            With `"mean"`, pass `prompt_lengths` at inference too, or the mean also covers the prompt.
        regression_bias (`bool`, *optional*, defaults to `False`):
            Give the regression layer a bias. The reference has none; with small backbones and little rating data an
            intercept per objective (fitted by stage 1) predicts ratings much better.
        evaluation_results (`dict[str, dict[str, float]]`, *optional*):
            Evaluation tables written into the model card: `{table name: {column: value}}`.
        minimum_transformers_version (`str`, *optional*, defaults to `"5.0"`):
            The oldest transformers this model's code runs with, saved in config.json for users to see (the code
            checks it when it is imported).
    """

    model_type = "multi_objective_reward"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", optional=True)}
    # Per-token and hidden-state outputs are not predictions: the Trainer's evaluation loop should not gather them.
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["prompt_hidden_states", "pooled_hidden_states"]

    text_config: dict | PreTrainedConfig | None = None
    objectives: list[str] | None = None
    gate_hidden_sizes: list[int] | None = None
    gate_activation: str = "relu"
    gate_dropout: float = 0.2
    gate_temperature: float = 10.0
    initial_beta: float = 1.0
    reward_transform: list[list[float]] | None = None
    pooling: str = "last"
    regression_bias: bool = False
    evaluation_results: dict | None = None
    minimum_transformers_version: str = MINIMUM_TRANSFORMERS_VERSION

    def __post_init__(self, **kwargs):
        if self.id2label is None:
            kwargs.setdefault("num_labels", 1)  # one score per sequence, as TRL's reward trainers require
        super().__post_init__(**kwargs)
        if self.gate_hidden_sizes is None:
            self.gate_hidden_sizes = [1024, 1024, 1024]
        self.objectives = list(self.objectives) if self.objectives is not None else []
        self.gate_hidden_sizes = [int(size) for size in self.gate_hidden_sizes]
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"Objective names must be unique, got {self.objectives}.")
        if any(size <= 0 for size in self.gate_hidden_sizes):
            raise ValueError(f"`gate_hidden_sizes` must be positive integers, got {self.gate_hidden_sizes}.")
        if not 0.0 <= self.gate_dropout < 1.0:
            raise ValueError(f"`gate_dropout` must be in [0, 1), got {self.gate_dropout}.")
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"Unknown `pooling` {self.pooling!r}; choose one of {POOLING_CHOICES}.")
        if self.gate_temperature <= 0:
            raise ValueError(f"`gate_temperature` must be positive, got {self.gate_temperature}.")
        self.set_reward_transform(self.reward_transform)

    def set_reward_transform(self, transform: list[list[float]] | None) -> None:
        """Set the k x k reward transform (`None` for the identity), checking its shape."""
        if transform is not None:
            transform = [[float(value) for value in row] for row in transform]
            k = len(self.objectives)
            if len(transform) != k or any(len(row) != k for row in transform):
                raise ValueError(
                    f"`reward_transform` must be a {k} x {k} matrix (one row and column per objective), got "
                    f"{len(transform)} rows of lengths {[len(row) for row in transform]}."
                )
        self.reward_transform = transform

    @property
    def num_objectives(self) -> int:
        return len(self.objectives)

    def objective_index(self, name: str) -> int:
        """Position of an objective, with an error listing the known ones."""
        if name not in self.objectives:
            raise ValueError(f"Unknown objective {name!r}; this model's objectives are {self.objectives}.")
        return self.objectives.index(name)


MultiObjectiveRewardModelConfig.register_for_auto_class()
