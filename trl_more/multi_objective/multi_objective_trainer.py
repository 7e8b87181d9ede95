"""Stage 2 of the multi-objective reward model: a `trl.RewardTrainer` that trains only the gate (and beta)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.logging import get_logger
from datasets import Dataset, IterableDataset
from transformers import DataCollator, PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.trainer_utils import EvalPrediction
from trl import RewardConfig, RewardTrainer, is_conversational

from .._compat import (
    DataCollatorForPreference,
    dataset_column_names,
    keep_batch_columns,
    trainer_metrics,
    without_length_filter,
)
from ..input_settings import record_input_settings, rendering_of
from ..losses import pairwise_loss, split_rewards
from ..pair_encoding import encodes_bidirectionally
from ..preflight.training import preflight_before_training
from ..tokenization import fit_to_max_length, prompt_length_of, tokenize_prompt
from ..trainer_utils import CheckpointingMixin, convert_config, default_output_dir
from .features import SequenceFeatures, extract_features, extract_pair_features
from .multi_objective_config import MultiObjectiveRewardConfig


logger = get_logger(__name__)

PROMPT_LENGTH_COLUMNS = ("chosen_prompt_length", "rejected_prompt_length")
FEATURE_KEYS = ("chosen_pooled", "chosen_prompt", "rejected_pooled", "rejected_prompt")


@dataclass
class DataCollatorForMultiObjectivePreference(DataCollatorForPreference):
    """TRL's preference collator plus `prompt_lengths` (chosen sequences first, then rejected ones, like the ids)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        lengths = [example[column] for column in PROMPT_LENGTH_COLUMNS for example in examples]
        batch["prompt_lengths"] = torch.tensor(lengths, dtype=torch.long)
        return batch


class PreferenceFeatures(torch.utils.data.Dataset):
    """Cached backbone hidden states of preference pairs (see `MultiObjectiveRewardConfig.cache_features`)."""

    def __init__(self, chosen: SequenceFeatures, rejected: SequenceFeatures, margins: list[float] | None = None):
        self.chosen, self.rejected, self.margins = chosen, rejected, margins

    def __len__(self) -> int:
        return self.chosen.pooled.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        tensors = (self.chosen.pooled, self.chosen.prompt, self.rejected.pooled, self.rejected.prompt)
        item = {key: tensor[index] for key, tensor in zip(FEATURE_KEYS, tensors)}
        if self.margins is not None:
            item["margin"] = self.margins[index]
        return item


def collate_preference_features(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Batch of cached features, in the model's keyword arguments (chosen first, then rejected)."""

    def stacked(first: str, second: str) -> torch.Tensor:
        return torch.stack([example[first] for example in examples] + [example[second] for example in examples])

    batch = {
        "pooled_hidden_states": stacked("chosen_pooled", "rejected_pooled"),
        "prompt_hidden_states": stacked("chosen_prompt", "rejected_prompt"),
    }
    if "margin" in examples[0]:
        batch["margin"] = torch.tensor([example["margin"] for example in examples], dtype=torch.float)
    return batch


class MultiObjectiveRewardTrainer(CheckpointingMixin, RewardTrainer):
    """
    Stage 2 of the multi-objective reward model (ArmoRM, docs/multi_objective.md): trains the gate, and its scale beta, with
    the Bradley-Terry loss on preference pairs; the backbone, the regression layer and the reward transform stay
    frozen (the backbone also stays in eval mode).

    Accepts the data [`~trl.RewardTrainer`] accepts (explicit or implicit prompt, plain text or conversational, or
    already tokenized with `chosen_ids`/`rejected_ids`). Every sequence gets its prompt length, so the gate reads the
    hidden state of the last prompt token: for explicit prompts the common prefix of the tokenized prompt and the
    sequence, for implicit ones the common prefix of chosen and rejected (see `trl_more.tokenization`). With
    `cache_features=True` the frozen backbone runs once over the data and training steps only run the gate.

    Logs TRL's reward metrics plus `beta` and the mean gating weight of every objective (`gate/<objective>`), and
    records the evaluation accuracy and loss in the model's configuration, whose model card shows them, as well as
    how it is trained to read its input (`trl_more.input_settings`: the scorers' defaults). `train()` first runs the
    pre-flight checks of `args.preflight` on a sample of the training pairs (docs/preflight.md).

    Example:

    ```python
    >>> from trl_more import MultiObjectiveRewardConfig, MultiObjectiveRewardTrainer
    >>> from trl_more.multi_objective import MultiObjectiveRewardModel

    >>> model = MultiObjectiveRewardModel.from_pretrained("stage1-model")  # regression layer fitted in stage 1
    >>> trainer = MultiObjectiveRewardTrainer(
    ...     model=model,
    ...     args=MultiObjectiveRewardConfig("armo-gate", cache_features=True, per_device_train_batch_size=256),
    ...     train_dataset=load_dataset("trl-lib/ultrafeedback_binarized", split="train"),
    ... )
    >>> trainer.train()
    ```

    Args:
        model ([`~trl_more.multi_objective.MultiObjectiveRewardModel`] or `str`):
            The model, or a path / Hub id of a saved one (loaded with `AutoModelForSequenceClassification`; set
            `args.trust_remote_code=True` where trl-more's classes are not registered).
        args ([`MultiObjectiveRewardConfig`], *optional*):
            Configuration. A plain [`~trl.RewardConfig`] is converted (its fields kept, the gate's new fields at
            their defaults; a warning names the fields whose defaults differ, such as the learning rate).
        data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks, optimizers,
        optimizer_cls_and_kwargs, preprocess_logits_for_metrics:
            As for [`~trl.RewardTrainer`] (the default collator adds `prompt_lengths`).
    """

    _tag_names = ["trl", "reward-trainer", "trl-more", "multi-objective", "armorm"]
    _name = "Multi-Objective Reward (gating)"

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: MultiObjectiveRewardConfig | None = None,
        data_collator: DataCollator | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | IterableDataset | Mapping[str, Dataset | IterableDataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ):
        if args is None:
            args = MultiObjectiveRewardConfig(default_output_dir(model, "gate"))
        args = convert_config(args, MultiObjectiveRewardConfig, RewardConfig)
        rendering = rendering_of(train_dataset) if isinstance(train_dataset, Dataset) else None
        self.preflight_report = None  # set by `train()` (see `trl_more.preflight`)
        self._untruncated_train: Dataset | None = None  # what the pre-flight checks sample
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        )
        _check_is_multi_objective(self.model)
        # How the model reads its input, saved with it and read back by every scorer (trl_more.input_settings).
        record_input_settings(self.model, self.processing_class, args.max_length, args.truncation_mode, rendering)
        self._num_train_tokens = 0
        self.model.set_trainable(backbone=False, regression=False, gate=True)
        if data_collator is None:
            self.data_collator = DataCollatorForMultiObjectivePreference(
                pad_token_id=self.processing_class.pad_token_id, pad_to_multiple_of=args.pad_to_multiple_of
            )
        if args.cache_features:
            self.train_dataset = self._cached_features(self.train_dataset, "train")
            if self.eval_dataset is not None:
                self.eval_dataset = self._cached_features(self.eval_dataset, "eval")
            self.data_collator = collate_preference_features

    # ----------------------------------------------------------------------------------------------------------------
    # Data
    # ----------------------------------------------------------------------------------------------------------------

    def _prepare_dataset(
        self,
        dataset: Dataset | IterableDataset,
        processing_class: PreTrainedTokenizerBase,
        args: MultiObjectiveRewardConfig,
        dataset_name: str,
    ) -> Dataset | IterableDataset:
        column_names = dataset_column_names(dataset)
        if all(column in column_names for column in PROMPT_LENGTH_COLUMNS):
            return dataset  # already prepared by this trainer
        explicit_prompt = "prompt" in column_names and "chosen_ids" not in column_names
        if explicit_prompt:
            dataset = dataset.map(
                _tokenize_prompt_column, fn_kwargs={"tokenizer": processing_class}, **_map_options(dataset, "prompts")
            )
        # TRL drops pairs longer than `max_length`; this trainer truncates them (or fails clearly) instead.
        dataset = super()._prepare_dataset(dataset, processing_class, without_length_filter(args), dataset_name)
        if dataset_name == "train":
            self._untruncated_train = dataset
        return dataset.map(
            _with_prompt_lengths,
            with_indices=True,
            fn_kwargs={"max_length": args.max_length, "truncation_mode": args.truncation_mode, "name": dataset_name},
            remove_columns=["prompt_ids"] if explicit_prompt else None,
            **_map_options(dataset, f"Finding prompt lengths of {dataset_name} pairs"),
        )

    def prepared_pairs(self, dataset: Dataset, name: str) -> Dataset | PreferenceFeatures:
        """Preference pairs other than the training and evaluation sets (e.g. the verbosity-debiasing reference set)
        prepared as the training pairs are: tokenized with prompt lengths, and cached features with `cache_features`."""
        if self.args.cache_features:
            return self._cached_features(dataset, name)
        return self._prepare_dataset(dataset, self.processing_class, self.args, name)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None):
        """`Trainer.train`, after the pre-flight checks of `args.preflight` (docs/preflight.md); their report is kept
        in `preflight_report`."""
        self.preflight_report = preflight_before_training(self, self._untruncated_train)
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        keep_batch_columns(self, [*PROMPT_LENGTH_COLUMNS, *FEATURE_KEYS])

    def _cached_features(
        self, dataset: Dataset | PreferenceFeatures | Mapping[str, Dataset], name: str
    ) -> PreferenceFeatures | dict[str, PreferenceFeatures]:
        if isinstance(dataset, PreferenceFeatures):
            return dataset
        if isinstance(dataset, Mapping):
            return {key: self._cached_features(value, key) for key, value in dataset.items()}
        if not isinstance(dataset, Dataset):
            raise ValueError(
                f"`cache_features=True` needs a map-style `datasets.Dataset`, got {type(dataset).__name__} for the "
                f"{name} set; set `cache_features=False` to stream it through the backbone."
            )
        dataset = self._prepare_dataset(dataset, self.processing_class, self.args, name)
        model = self.accelerator.unwrap_model(self.model)
        batch_size = self.args.per_device_eval_batch_size
        margins = dataset["margin"] if "margin" in dataset.column_names else None
        if self.args.pair_encoding != "separate":
            if not encodes_bidirectionally(model):
                chosen, rejected = extract_pair_features(
                    model,
                    dataset["chosen_ids"],
                    dataset["rejected_ids"],
                    dataset["chosen_prompt_length"],
                    dataset["rejected_prompt_length"],
                    batch_size=batch_size,
                    description=f"Caching {name} features (shared prompts)",
                    show_progress=self.is_local_process_zero(),
                    packed=self.args.pair_encoding == "packed",
                )
                return PreferenceFeatures(chosen, rejected, margins)
            logger.info(
                f"pair_encoding={self.args.pair_encoding!r}: the backbone attends in both directions, so the features "
                f"of the {name} set are computed with separate encoding."
            )
        chosen, rejected = (
            extract_features(
                model,
                dataset[f"{side}_ids"],
                dataset[f"{side}_prompt_length"],
                batch_size=batch_size,
                description=f"Caching {name} features ({side})",
                show_progress=self.is_local_process_zero(),
            )
            for side in ("chosen", "rejected")
        )
        return PreferenceFeatures(chosen, rejected, margins)

    # ----------------------------------------------------------------------------------------------------------------
    # Loss, metrics, evaluation
    # ----------------------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        unwrapped = self.accelerator.unwrap_model(model)
        if unwrapped.training:
            unwrapped.backbone.eval()  # frozen: no dropout, whatever `disable_dropout` says
        margin = inputs.pop("margin", None)
        outputs = model(**inputs)
        rewards = outputs.logits.squeeze(-1)
        loss = pairwise_loss(rewards, margin).mean()
        rewards_chosen, rewards_rejected = split_rewards(rewards)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
        self._record_metrics(mode, inputs, outputs, rewards_chosen, rewards_rejected, unwrapped)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _record_metrics(self, mode, inputs, outputs, rewards_chosen, rewards_rejected, model) -> None:
        metrics = trainer_metrics(self, mode)
        if "attention_mask" in inputs:  # cached features have no tokens
            if mode == "train":
                self._num_train_tokens += (
                    self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                )
            metrics["num_tokens"] = [self._num_train_tokens]
        all_rewards = self.accelerator.gather(outputs.logits)
        metrics["min_reward"].append(all_rewards.min().item())
        metrics["mean_reward"].append(all_rewards.mean().item())
        metrics["max_reward"].append(all_rewards.max().item())
        accuracy = (rewards_chosen > rewards_rejected).float().mean()
        metrics["accuracy"].append(self.accelerator.gather_for_metrics(accuracy).mean().item())
        margin = (rewards_chosen - rewards_rejected).mean()
        metrics["margin"].append(self.accelerator.gather_for_metrics(margin).mean().item())
        metrics["beta"].append(model.gate.beta.item())
        gating = self.accelerator.gather_for_metrics(outputs.gating_weights.mean(0, keepdim=True)).mean(0)
        for name, weight in zip(model.config.objectives, gating.tolist()):
            metrics[f"gate/{name}"].append(weight)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if self.args.cache_features and eval_dataset is not None and not isinstance(eval_dataset, str):
            # RewardTrainer.evaluate would tokenize again; the features are already what the model needs.
            eval_dataset = self._cached_features(eval_dataset, metric_key_prefix)
            metrics = Trainer.evaluate(self, eval_dataset, ignore_keys, metric_key_prefix)
        else:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        self._record_evaluation(metrics, metric_key_prefix)
        return metrics

    def _record_evaluation(self, metrics: dict[str, float], prefix: str) -> None:
        # Kept in the model's configuration, so the model card of the saved or pushed model shows it.
        row = {name: metrics[f"{prefix}_{name}"] for name in ("accuracy", "loss") if f"{prefix}_{name}" in metrics}
        if row:
            config = self.accelerator.unwrap_model(self.model).config
            config.evaluation_results = {**(config.evaluation_results or {}), f"preferences ({prefix})": row}

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        card = os.path.join(self.args.output_dir, "README.md")
        if self.is_world_process_zero() and os.path.isfile(card):
            with open(card, "a", encoding="utf-8") as handle:
                handle.write("\n" + self.accelerator.unwrap_model(self.model).model_card(metadata=False))


def _check_is_multi_objective(model: PreTrainedModel) -> None:
    # Duck-typed, so that the class loaded from a saved folder with trust_remote_code (a different Python class) works.
    if not all(hasattr(model, attribute) for attribute in ("gate", "regression_layer", "encode", "set_trainable")):
        raise TypeError(
            f"MultiObjectiveRewardTrainer trains the gate of a MultiObjectiveRewardModel, got {type(model).__name__}. "
            "Build one with `MultiObjectiveRewardModel.from_backbone(...)` and fit its regression layer (stage 1)."
        )


def _map_options(dataset: Dataset | IterableDataset, description: str) -> dict[str, Any]:
    return {"desc": description} if isinstance(dataset, Dataset) else {}  # IterableDataset.map has no `desc`


def _tokenize_prompt_column(example: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> dict[str, list[int]]:
    chat_template_kwargs = {"tools": example.get("tools"), **(example.get("chat_template_kwargs") or {})}
    if not is_conversational(example):
        chat_template_kwargs = {}
    return {"prompt_ids": tokenize_prompt(tokenizer, example["prompt"], **chat_template_kwargs)}


def _with_prompt_lengths(
    example: dict[str, Any], index: int, max_length: int | None, truncation_mode: str, name: str
) -> dict[str, Any]:
    sequences = [example["chosen_ids"], example["rejected_ids"]]
    prompt_length = prompt_length_of(sequences, example.get("prompt_ids"))
    output = {}
    for side, ids in zip(("chosen", "rejected"), sequences):
        where = f"pair {index} of the {name} set ({side})"
        output[f"{side}_ids"], output[f"{side}_prompt_length"] = fit_to_max_length(
            ids, prompt_length, max_length, truncation_mode, where
        )
    return output
