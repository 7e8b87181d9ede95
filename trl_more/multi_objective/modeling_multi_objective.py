"""Multi-objective reward model with gated scalarization (ArmoRM): backbone, k-objective regression layer, gating MLP.

This file is copied next to the weights by `save_pretrained` and loaded by
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` without trl-more installed: it
imports only torch, transformers and the configuration file next to it.

Where the gate reads the prompt. The gate conditions on the hidden state of the last prompt token, taken from the same
forward pass as the response (docs/multi_objective.md in the trl-more repository). The caller passes `prompt_lengths`: the number of prompt tokens at the
start of every sequence, counted over attended tokens, so left or right padding does not matter. Without
`prompt_lengths` (e.g. when TRL's `GRPOTrainer` scores whole texts with `model(**tokenizer(texts)).logits[:, 0]`), the
gate reads the last token instead: the score is still defined, but the gate then sees the response too (and with
`pooling="mean"` the regression layer averages over the prompt as well).
"""

import contextlib
import inspect
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from .configuration_multi_objective import MINIMUM_TRANSFORMERS_VERSION, MultiObjectiveRewardModelConfig


__all__ = ["GatingNetwork", "MultiObjectiveRewardModel", "MultiObjectiveRewardOutput", "masked_mse_loss"]

ObjectiveWeights = torch.Tensor | Sequence[float] | Mapping[str, float]


@dataclass
class MultiObjectiveRewardOutput(ModelOutput):
    """Output of [`MultiObjectiveRewardModel`].

    Args:
        loss: masked MSE of `rewards` against `labels` (stage 1), when labels are given.
        logits: (batch, 1) scores `sum_i gating_weights_i * transformed_rewards_i`, as TRL reads `logits[:, 0]`.
        rewards: (batch, k) objective rewards predicted by the regression layer (ratings scaled to [0, 1]).
        transformed_rewards: (batch, k) `rewards @ reward_transform` (e.g. verbosity-debiased).
        gating_weights: (batch, k) weights of the objectives: the gate's output (summing to beta) or the fixed
            steering weights.
        prompt_hidden_states: (batch, hidden) hidden state the gate read (last prompt token).
        pooled_hidden_states: (batch, hidden) hidden state the regression layer read (last token, or the mean of the
            response tokens with `pooling="mean"`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    rewards: torch.FloatTensor | None = None
    transformed_rewards: torch.FloatTensor | None = None
    gating_weights: torch.FloatTensor | None = None
    prompt_hidden_states: torch.FloatTensor | None = None
    pooled_hidden_states: torch.FloatTensor | None = None


class GatingNetwork(nn.Module):
    """MLP from a hidden state to k objective weights: `beta * softmax(MLP(h) / temperature)`, which sum to beta."""

    def __init__(
        self,
        in_features: int,
        num_objectives: int,
        hidden_sizes: Sequence[int],
        activation: str,
        dropout: float,
        temperature: float,
        initial_beta: float,
    ):
        super().__init__()
        sizes = [in_features, *hidden_sizes, num_objectives]
        self.layers = nn.ModuleList(nn.Linear(inputs, outputs) for inputs, outputs in zip(sizes[:-1], sizes[1:]))
        self.activation = ACT2FN[activation]
        self.dropout = dropout
        self.temperature = temperature
        self.beta = nn.Parameter(torch.full((1,), float(initial_beta)))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            hidden_states = F.dropout(self.activation(layer(hidden_states)), p=self.dropout, training=self.training)
        logits = self.layers[-1](hidden_states)
        return torch.softmax(logits.float() / self.temperature, dim=-1).to(logits.dtype) * self.beta


def masked_mse_loss(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the labelled entries of `labels` (NaN marks a missing rating)."""
    labelled = ~torch.isnan(labels)
    errors = torch.where(labelled, predictions.float() - torch.nan_to_num(labels.float()), 0.0)
    return (errors**2).sum() / labelled.sum().clamp(min=1)


def prompt_token_mask(attention_mask: torch.Tensor, prompt_lengths: torch.Tensor) -> torch.Tensor:
    """(batch, length) mask of the prompt tokens: the first `prompt_lengths` attended tokens, whatever the padding."""
    lengths = attention_mask.sum(-1)
    prompt_lengths = prompt_lengths.to(lengths.device).long().reshape(-1)
    if prompt_lengths.shape[0] != lengths.shape[0]:
        raise ValueError(f"Got {prompt_lengths.shape[0]} `prompt_lengths` for {lengths.shape[0]} sequences.")
    if bool(((prompt_lengths < 1) | (prompt_lengths > lengths)).any()):
        raise ValueError(
            "Every `prompt_lengths` value must be between 1 and the number of attended tokens of its sequence; got "
            f"prompt lengths {prompt_lengths.tolist()} for sequence lengths {lengths.tolist()}."
        )
    return attention_mask.bool() & (attention_mask.long().cumsum(-1) <= prompt_lengths[:, None])


def last_true_positions(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True entry of every row (the last attended token, or the last prompt token)."""
    return mask.shape[-1] - 1 - mask.flip(-1).int().argmax(-1)


class MultiObjectiveRewardModel(PreTrainedModel):
    """
    Reward model with k interpretable objectives and a prompt-conditioned gate (ArmoRM).

    `model(input_ids, attention_mask, prompt_lengths=...)` returns a [`MultiObjectiveRewardOutput`] whose `logits`
    (batch, 1) is the score, so the model works wherever TRL expects a sequence-classification reward model.

    Steering: pass `objective_weights` (a tensor of k weights or (batch, k), a list, or `{objective: weight}` with
    missing objectives at 0) to score with fixed weights instead of the gate, or use `with model.steer(weights):`
    to do so in code that calls the model itself (e.g. `GRPOTrainer`). `score_breakdown(outputs)` gives the
    contribution of every objective to every score.

    Training stages: stage 1 fits the regression layer (`labels` (batch, k) in [0, 1], NaN for missing ratings, give
    a masked MSE `loss`); stage 2 trains only the gate with the Bradley-Terry loss.
    """

    config_class = MultiObjectiveRewardModelConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config: MultiObjectiveRewardModelConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if config.text_config is None:
            raise ValueError(
                "The configuration has no `text_config` (the backbone's configuration). Build the model around a "
                "backbone with `MultiObjectiveRewardModel.from_backbone(...)`."
            )
        if not config.objectives:
            raise ValueError("The configuration lists no `objectives`; give the names of the k objectives.")
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.text_config)
        config.text_config = self.backbone.config  # one object, so that pad_token_id set by TRL reaches the backbone
        hidden_size = config.text_config.hidden_size
        self.regression_layer = nn.Linear(hidden_size, config.num_objectives, bias=config.regression_bias)
        self.gate = GatingNetwork(
            hidden_size,
            config.num_objectives,
            config.gate_hidden_sizes,
            config.gate_activation,
            config.gate_dropout,
            config.gate_temperature,
            config.initial_beta,
        )
        self._steering_weights: torch.Tensor | None = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, GatingNetwork):
            init.constant_(module.beta, self.config.initial_beta)

    def set_trainable(self, backbone: bool, regression: bool, gate: bool) -> None:
        """Choose which parts train: stage 1 trains the backbone and/or the regression layer, stage 2 only the gate
        (with beta). The reward transform is not a parameter and never trains."""
        for module, trainable in ((self.backbone, backbone), (self.regression_layer, regression), (self.gate, gate)):
            module.requires_grad_(trainable)

    @classmethod
    def from_backbone(
        cls, backbone: "str | os.PathLike | PreTrainedModel", objectives: Sequence[str], **config_kwargs
    ) -> "MultiObjectiveRewardModel":
        """Build the model around pretrained backbone weights, with a fresh regression layer and gate.

        Args:
            backbone: A path or Hub id loaded with `AutoModel.from_pretrained`, or a model (a base model, or a
                `*ForCausalLM` / `*ForSequenceClassification` model whose base model is used).
            objectives: Names of the k objectives.
            **config_kwargs: Other fields of [`MultiObjectiveRewardModelConfig`] (gate sizes, beta, ...).
        """
        if isinstance(backbone, str | os.PathLike):
            backbone = AutoModel.from_pretrained(backbone)
        elif getattr(backbone, "base_model", backbone) is not backbone:
            backbone = backbone.base_model
        config_kwargs.setdefault("attn_implementation", backbone.config._attn_implementation)  # keep the backbone's
        config = cls.config_class(text_config=backbone.config, objectives=list(objectives), **config_kwargs)
        config.name_or_path = backbone.config.name_or_path
        return cls(config, backbone=backbone).to(backbone.dtype)

    # ----------------------------------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------------------------------

    def encode(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_lengths: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **backbone_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone pass: the pooled hidden state the regression layer reads (last token, or mean of the response
        tokens, per `config.pooling`) and the hidden state of the last prompt token the gate reads (the last token
        when `prompt_lengths` is None), each (batch, hidden)."""
        if attention_mask is None:
            attention_mask = self._attention_mask_from_padding(input_ids, inputs_embeds)
        backbone_kwargs.pop("return_dict", None)
        backbone_kwargs.pop("use_cache", None)
        accepted = inspect.signature(self.backbone.forward).parameters
        if "use_cache" in accepted:
            backbone_kwargs["use_cache"] = False  # only the hidden states are needed
        if "position_ids" in accepted and backbone_kwargs.get("position_ids") is None:
            # Count positions over attended tokens, so that left padding does not shift them.
            backbone_kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden_states = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **backbone_kwargs
        ).last_hidden_state
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        attended = attention_mask.to(hidden_states.device).bool()
        last = hidden_states[rows, last_true_positions(attended)]
        if prompt_lengths is None:
            prompt, response = last, attended
        else:
            in_prompt = prompt_token_mask(attended, prompt_lengths)
            prompt, response = hidden_states[rows, last_true_positions(in_prompt)], attended & ~in_prompt
        if self.config.pooling == "last":
            return last, prompt
        weights = response.to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1), prompt

    def _attention_mask_from_padding(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.FloatTensor | None
    ) -> torch.Tensor:
        # Without a mask, padding is found as transformers' sequence-classification models find it: every token up to
        # the rightmost non-padding one is attended.
        if input_ids is None:
            return torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        pad_token_id = self.config.get_text_config().pad_token_id
        if pad_token_id is None:
            return torch.ones_like(input_ids)
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        last = (positions * (input_ids != pad_token_id)).argmax(-1)
        return (positions[None] <= last[:, None]).long()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_lengths: torch.Tensor | None = None,
        objective_weights: ObjectiveWeights | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        pooled_hidden_states: torch.Tensor | None = None,
        prompt_hidden_states: torch.Tensor | None = None,
        **backbone_kwargs,
    ) -> MultiObjectiveRewardOutput:
        r"""
        Args:
            input_ids, attention_mask, inputs_embeds: as for the backbone; left or right padding.
            prompt_lengths (`torch.Tensor` of shape `(batch,)`, *optional*):
                Number of prompt tokens at the start of every sequence (padding not counted). The gate reads the
                hidden state of the last of them; without it, the last token's.
            objective_weights (*optional*):
                Fixed weights used instead of the gate: a tensor of shape `(k,)` or `(batch, k)`, a list of k
                numbers, or a mapping `{objective: weight}` (other objectives get 0).
            labels (`torch.Tensor` of shape `(batch, k)`, *optional*):
                Ratings scaled to [0, 1], NaN where missing: the output then has the masked MSE `loss` of `rewards`.
            pooled_hidden_states, prompt_hidden_states (`torch.Tensor` of shape `(batch, hidden)`, *optional*):
                Cached backbone features (see `encode`): with them the backbone does not run.
        """
        if pooled_hidden_states is None:
            pooled_hidden_states, prompt_hidden_states = self.encode(
                input_ids, attention_mask, prompt_lengths, inputs_embeds, **backbone_kwargs
            )
        elif prompt_hidden_states is None:
            prompt_hidden_states = pooled_hidden_states
        rewards = self.regression_layer(pooled_hidden_states)
        transformed_rewards = rewards @ self.reward_transform_matrix(rewards)
        if objective_weights is None and self._steering_weights is not None:
            objective_weights = self._steering_weights
        if objective_weights is None:
            gating_weights = self.gate(prompt_hidden_states)
        else:
            gating_weights = self.objective_weights_tensor(objective_weights, like=rewards).expand_as(rewards)
        scores = (gating_weights * transformed_rewards).sum(-1, keepdim=True)
        return MultiObjectiveRewardOutput(
            loss=masked_mse_loss(rewards, labels.to(rewards.device)) if labels is not None else None,
            logits=scores,
            rewards=rewards,
            transformed_rewards=transformed_rewards,
            gating_weights=gating_weights,
            prompt_hidden_states=prompt_hidden_states,
            pooled_hidden_states=pooled_hidden_states,
        )

    def reward_transform_matrix(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """The k x k reward transform M (rewards are used as `rewards @ M`), as a tensor."""
        device = like.device if like is not None else self.regression_layer.weight.device
        dtype = like.dtype if like is not None else self.regression_layer.weight.dtype
        if self.config.reward_transform is None:
            return torch.eye(self.config.num_objectives, device=device, dtype=dtype)
        return torch.tensor(self.config.reward_transform, device=device, dtype=dtype)

    def set_reward_transform(self, transform: torch.Tensor | Sequence[Sequence[float]] | None) -> None:
        """Set the k x k reward transform (`None` for the identity); it is saved in the configuration."""
        self.config.set_reward_transform(
            None if transform is None else torch.as_tensor(transform, dtype=torch.float64).tolist()
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Steering and explanations
    # ----------------------------------------------------------------------------------------------------------------

    def objective_weights_tensor(self, weights: ObjectiveWeights, like: torch.Tensor | None = None) -> torch.Tensor:
        """Objective weights as a tensor of shape (k,) or (batch, k), from a tensor, a list or `{objective: weight}`."""
        if isinstance(weights, Mapping):
            vector = [0.0] * self.config.num_objectives
            for name, weight in weights.items():
                vector[self.config.objective_index(name)] = float(weight)
            weights = vector
        tensor = torch.as_tensor(weights)
        if like is not None:
            tensor = tensor.to(device=like.device, dtype=like.dtype)
        if tensor.shape[-1] != self.config.num_objectives or tensor.dim() not in (1, 2):
            raise ValueError(
                f"Objective weights must have shape (k,) or (batch, k) with k = {self.config.num_objectives} "
                f"({', '.join(self.config.objectives)}), got shape {tuple(tensor.shape)}."
            )
        return tensor

    @contextlib.contextmanager
    def steer(self, objective_weights: ObjectiveWeights | None) -> Iterator["MultiObjectiveRewardModel"]:
        """Within the block, every forward pass scores with these fixed objective weights instead of the gate.

        For code that calls the model itself, e.g. `with model.steer({"helpfulness": 1.0}): grpo_trainer.train()`.
        `None` restores the gate inside the block.
        """
        previous = self._steering_weights
        self.set_steering(objective_weights)
        try:
            yield self
        finally:
            self._steering_weights = previous

    def set_steering(self, objective_weights: ObjectiveWeights | None) -> None:
        """From now on, score with these fixed objective weights instead of the gate (`None`: the gate again).

        For a model handed to code that calls it itself, e.g. as a reward model of `RejectionSamplingTrainer` (see
        its `reward_objective_weights`); `steer` does the same for one block.
        """
        self._steering_weights = (
            None if objective_weights is None else self.objective_weights_tensor(objective_weights)
        )

    def score_breakdown(self, outputs: MultiObjectiveRewardOutput) -> list[dict[str, float]]:
        """Contribution `gating_weight_i * transformed_reward_i` of every objective to every score.

        Returns one `{objective: contribution}` dict per sequence; the contributions of a sequence sum to its score
        (`outputs.logits[i, 0]`).
        """
        contributions = (outputs.gating_weights * outputs.transformed_rewards).detach().float().cpu()
        return [dict(zip(self.config.objectives, row.tolist())) for row in contributions]

    # ----------------------------------------------------------------------------------------------------------------
    # Saving and sharing
    # ----------------------------------------------------------------------------------------------------------------

    def save_pretrained(
        self, save_directory: str | os.PathLike, *args, tokenizer=None, push_to_hub: bool = False, **kwargs
    ) -> None:
        """`PreTrainedModel.save_pretrained`, plus the tokenizer (when given) and a model card (README.md).

        The modeling and configuration files are copied and `auto_map` written into config.json, so the folder loads
        with `AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`. With
        `push_to_hub=True` the folder is then uploaded (`repo_id`, `commit_message`, `private`, `token`,
        `create_pr`, `revision`, `commit_description` are accepted as for transformers).
        """
        hub_options = {
            name: kwargs.pop(name)
            for name in ("repo_id", "commit_message", "private", "create_pr", "revision", "commit_description")
            if name in kwargs
        }
        tags = kwargs.pop("tags", None)
        os.makedirs(save_directory, exist_ok=True)
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            if tokenizer is not None:
                tokenizer.save_pretrained(save_directory)
            with open(os.path.join(save_directory, "README.md"), "w", encoding="utf-8") as card:
                card.write(self.model_card(tags=tags))
        if push_to_hub:
            repo_id = hub_options.pop("repo_id", os.path.basename(os.path.normpath(save_directory)))
            self._upload_folder(save_directory, repo_id, token=kwargs.get("token"), **hub_options)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        tokenizer=None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
    ):
        """Upload weights, configuration, modeling code, tokenizer (when given) and this model's card to the Hub."""
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, tokenizer=tokenizer, max_shard_size=max_shard_size, tags=tags)
            return self._upload_folder(
                folder,
                repo_id,
                token=token,
                commit_message=commit_message or "Upload multi-objective reward model",
                commit_description=commit_description,
                private=private,
                revision=revision,
                create_pr=create_pr,
            )

    @staticmethod
    def _upload_folder(folder, repo_id, token=None, private=None, commit_message=None, **commit_options):
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload multi-objective reward model",
            **commit_options,
        )

    def model_card(self, tags: Sequence[str] | None = None, metadata: bool = True) -> str:
        """The model card: objectives, transform, gate and evaluation tables, and how to load and use the model.

        `metadata=False` leaves out the YAML header, to append the card to another one (e.g. a trainer's).
        """
        config = self.config
        tags = sorted({"reward-model", "multi-objective", "armorm", *(self.model_tags or []), *(tags or [])})
        base_model = config.text_config.name_or_path
        header = ["---", "library_name: transformers", "pipeline_tag: text-classification", "tags:"]
        header += [f"- {tag}" for tag in tags]
        if base_model and not os.path.isdir(base_model):
            header.append(f"base_model: {base_model}")
        header.append("---")
        transform = self.reward_transform_matrix().float().cpu()
        objectives = ["| # | objective | transform column (r' = r @ M) |", "|---|---|---|"]
        for index, name in enumerate(config.objectives):
            column = ", ".join(f"{value:.4g}" for value in transform[:, index].tolist())
            objectives.append(f"| {index} | {name} | {column} |")
        gate = (
            f"Gate: MLP {config.text_config.hidden_size} -> {' -> '.join(map(str, config.gate_hidden_sizes))}"
            f"{' -> ' if config.gate_hidden_sizes else ''}{config.num_objectives} ({config.gate_activation}, dropout "
            f"{config.gate_dropout} in training), softmax at temperature {config.gate_temperature}, scaled by beta = "
            f"{self.gate.beta.item():.4g} (initial {config.initial_beta})."
        )
        sections = [
            *(["\n".join(header)] if metadata else []),
            f"# Multi-objective reward model ({config.num_objectives} objectives, gated scalarization)",
            f"Backbone: `{base_model or config.text_config.model_type}` ({config.text_config.model_type}). The score "
            f"is `sum_i g_i(prompt) * r'_i`, with `r = W h` the objective rewards (ratings scaled to [0, 1]) from the "
            f"{'last token' if config.pooling == 'last' else 'mean of the response tokens'} `h`, "
            "`r' = r @ M` the transformed rewards and `g` the gate's weights, computed from the hidden state of "
            "the last prompt token.",
            "## Objectives\n\n" + "\n".join(objectives),
            "## Gate\n\n" + gate,
        ]
        if config.evaluation_results:
            sections.append("## Evaluation\n\n" + _markdown_table(config.evaluation_results))
        sections.extend(
            [
                "## Requirements\n\n"
                f"transformers >= {MINIMUM_TRANSFORMERS_VERSION}. The model's code ships in this repository "
                "(`modeling_multi_objective.py`, `configuration_multi_objective.py`; torch and transformers only): load the "
                "model with `trust_remote_code=True`, or without it where trl-more is installed and imported. The "
                "tokenizer has no custom code: load it with `trust_remote_code=False` (transformers reads `config.json` "
                "first and would otherwise ask whether to run the model's code).",
                "## Usage\n\n```python\nimport torch\nfrom transformers import AutoModelForSequenceClassification, "
                "AutoTokenizer\n\nmodel = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)"
                "\ntokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)\nprompt = tokenizer(prompt_text)['input_ids']\n"
                "inputs = tokenizer(prompt_text + response_text, return_tensors='pt')\n"
                "outputs = model(**inputs, prompt_lengths=torch.tensor([len(prompt)]))\nscore = outputs.logits[0, 0]\n"
                "print(model.score_breakdown(outputs)[0])  # contribution of every objective\n"
                f"steered = model(**inputs, objective_weights={{{config.objectives[0]!r}: 1.0}})\n```",
            ]
        )
        return "\n\n".join(sections) + "\n"


def _markdown_table(tables: Mapping[str, Mapping[str, float]]) -> str:
    """One small table per evaluation: its name, then a row of column names and a row of values."""
    blocks = []
    for name, row in tables.items():
        header = "| " + " | ".join(row) + " |"
        values = "| " + " | ".join(f"{float(value):.4g}" for value in row.values()) + " |"
        blocks.append(f"**{name}**\n\n{header}\n|{'---|' * len(row)}\n{values}")
    return "\n\n".join(blocks)


MultiObjectiveRewardModel.register_for_auto_class("AutoModelForSequenceClassification")
