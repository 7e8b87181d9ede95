"""MORE: a drop-in `trl.RewardTrainer` that balances sources in every batch and weights their losses by lambda."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from datasets import Dataset, IterableDataset
from transformers import DataCollator, PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer_utils import EvalPrediction
from trl import RewardConfig, RewardTrainer

from .._compat import (
    gather_parameters,
    keep_4bit_weights_trainable,
    keep_batch_columns,
    trainer_metrics,
    without_length_filter,
)
from ..constants import LAMBDA_METRIC_PREFIX, SOURCE_INDEX_COLUMN
from ..data.sources import attach_source_indices
from ..hub import HubUploadError, upload_failure_message
from ..input_settings import record_input_settings, rendering_of
from ..losses import pairwise_loss, split_rewards
from ..losses.contrastive import (
    SwAVPrototypes,
    embedding_dropout,
    representations,
    simcse_loss,
    swav_loss,
)
from ..losses.denoising import PairLossTerms, check_strengths, flip_weak_pairs
from ..losses.side_parameter import SideParameter
from ..losses.text_regularization import LanguageModelHead, chosen_response_nll, language_model_head_weight
from ..metrics import PreferenceMetrics, RewardEvaluation
from ..pair_encoding import (
    GROUP_STARTS_KEY,
    NUM_TOKENS_KEY,
    REWARD_POSITIONS_KEY,
    REWARD_ROWS_KEY,
    DataCollatorForSharedPrompt,
    encodes_bidirectionally,
    pair_row_lengths,
    rewards_at,
    shared_prompt_length,
)
from ..preflight.training import preflight_before_training
from ..reward_head import RewardHeadInputCapture
from ..rewards.calibration import fit_reward_statistics, set_reward_statistics
from ..trainer_utils import (
    CheckpointedState,
    CheckpointingMixin,
    check_global_batch_size,
    check_process_layout,
    convert_config,
    default_output_dir,
)
from .data_checks import (
    check_rows,
    check_tied_pairs,
    fit_to_max_length,
    per_source_counts,
    resample_to,
    row_location,
    warn_about_cycling,
)
from .lambdas import MinNormLambda
from .model_card import LAMBDA_PLOT_NAME, RewardModelCard, trainer_model_card
from .more_config import MORERewardConfig
from .reward_head import per_source_head_gradients, per_source_mean
from .sampler import SourceGroupedSampler, check_batch_size_fits_sources


logger = get_logger(__name__)

STRENGTH_BATCH_KEY = "strength"
# Where each training pair's chosen response starts (text regularisation): a column of the training set and batch key.
CHOSEN_START_COLUMN = "chosen_response_start"


class DataCollatorWithPairColumns:
    """Wraps a preference collator so that per-pair columns (the source index, the preference strength) reach the
    batch as tensors: `{column: (batch key, dtype)}`. Columns an example does not have are left out."""

    def __init__(
        self,
        collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
        columns: Mapping[str, tuple[str, torch.dtype]],
    ):
        self.collator = collator
        self.columns = dict(columns)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        present = {column: spec for column, spec in self.columns.items() if examples and column in examples[0]}
        batch = self.collator([{k: v for k, v in example.items() if k not in present} for example in examples])
        for column, (key, dtype) in present.items():
            batch[key] = torch.tensor([example[column] for example in examples], dtype=dtype)
        return batch


class MORERewardTrainer(CheckpointingMixin, RewardTrainer):
    """
    Reward trainer for preference data from several sources, with MORE's source-balanced batches and per-source
    losses weighted by lambda ("On Diversified Preferences of Large Language Model Alignment", docs/more.md).

    A drop-in replacement for [`~trl.RewardTrainer`]: same arguments, same data formats, same outputs. What changes
    when the training set has K >= 2 sources:

    - every micro-batch holds `per_device_train_batch_size / K` pairs of each source (see [`SourceGroupedSampler`]);
    - the loss is `sum_i lambda_i * mean loss of source i`, where lambda is the min-norm point of the (smoothed,
      normalised) per-source gradients of the reward head, computed in closed form from the head's input
      (`lambda_method="uniform"` uses 1/K instead: the balanced MultiTask baseline);
    - `lambda/<source>`, `loss/<source>` and `accuracy/<source>` are logged next to TRL's metrics.

    With one source, or no source column, it behaves exactly like [`~trl.RewardTrainer`]. Checkpoints hold lambda's
    moving averages (resuming reproduces the uninterrupted run), and a partially written checkpoint is never
    resumed from. The model card (written on every checkpoint, by `create_model_card` and by `push_to_hub`) shows
    the sources and their sizes, the method, the per-source accuracy and ECE, the latest result of every benchmark
    callback (`RewardBenchCallback`, `RMBenchCallback`, `BestOfNCallback`), the lambda plot and how to load the
    model; a failed `push_to_hub` raises `HubUploadError` and leaves the saved output in place. The model's config
    records how it is trained to read its input (`max_length`, `truncation_mode`, rendering, EOS and pad tokens,
    padding side, pooling rule: `trl_more.input_settings`), so every scorer of trl-more reads the saved model that way
    by default. `train()` first runs the pre-flight checks of `args.preflight` on a sample of every source
    (docs/preflight.md) and keeps their report in `preflight_report`. Every `evaluate()` stores the mean and std of
    the rewards it scored in the model's config, as `reward_mean` / `reward_std` and as the `mean` / `std` that
    OpenRLHF's `normalize_reward` reads (saved with the model). With `args.text_regularization_coefficient > 0`, a
    decoder's hidden states are also trained with GRM's SFT loss on the chosen responses through the base model's
    language-model head, kept on the side in `text_head` (docs/robust_rewards.md).

    Example:

    ```python
    >>> from datasets import load_dataset
    >>> from trl_more import MORERewardConfig, MORERewardTrainer

    >>> sources = {
    ...     "helpful": load_dataset("Anthropic/hh-rlhf", data_dir="helpful-base", split="train"),
    ...     "harmless": load_dataset("Anthropic/hh-rlhf", data_dir="harmless-base", split="train"),
    ...     "ultrafeedback": load_dataset("trl-lib/ultrafeedback_binarized", split="train"),
    ... }
    >>> trainer = MORERewardTrainer(
    ...     model="Qwen/Qwen2.5-0.5B-Instruct",
    ...     args=MORERewardConfig("Qwen2.5-0.5B-MORE", per_device_train_batch_size=24),
    ...     train_dataset=sources,
    ... )
    >>> trainer.train()
    ```

    Args:
        model, data_collator, eval_dataset, processing_class, compute_metrics, callbacks, optimizers,
        optimizer_cls_and_kwargs, preprocess_logits_for_metrics, quantization_config, peft_config:
            As for [`~trl.RewardTrainer`]. A [`~trl_more.metrics.PreferenceMetrics`] as `compute_metrics` brings its
            own `preprocess_logits_for_metrics` unless one is given.
        args ([`MORERewardConfig`], *optional*):
            Configuration. A plain [`~trl.RewardConfig`] is converted (its fields kept, MORE's at their defaults).
        train_dataset ([`~datasets.Dataset`], [`~datasets.IterableDataset`] or `dict[str, Dataset]`):
            Preference data in any format [`~trl.RewardTrainer`] accepts, either with a source column
            (`args.source_column`, names or integers) or as a dict / `DatasetDict` of `{source_name: Dataset}`.
            Sources are numbered in the order they first appear (a dict: its order).
    """

    _tag_names = ["trl", "reward-trainer", "trl-more", "more"]
    _name = "MORE Reward"

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: MORERewardConfig | RewardConfig | None = None,
        data_collator: DataCollator | None = None,
        train_dataset: Dataset | IterableDataset | Mapping[str, Dataset] | None = None,
        eval_dataset: Dataset | IterableDataset | Mapping[str, Dataset | IterableDataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        quantization_config=None,
        peft_config=None,
    ):
        if isinstance(compute_metrics, PreferenceMetrics) and preprocess_logits_for_metrics is None:
            # It needs one row per pair before the batches are gathered (see `PreferenceMetrics`).
            preprocess_logits_for_metrics = compute_metrics.preprocess_logits
        if args is None:
            args = MORERewardConfig(default_output_dir(model, "MORE-Reward"))
        args = convert_config(args, MORERewardConfig, RewardConfig)
        check_global_batch_size(args, args.world_size)
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")

        rendering = rendering_of(train_dataset) if isinstance(train_dataset, (Mapping, Dataset)) else None
        self.sources: list[str] = []
        self.preflight_report = None  # set by `train()` (see `trl_more.preflight`)
        self._untruncated_train: Dataset | IterableDataset | None = None  # what the pre-flight checks sample
        self.flipped_pairs: dict[str, int] = {}  # training pairs flipped per source (the noisy-preference option)
        if isinstance(train_dataset, (Mapping, Dataset, IterableDataset)):  # other types get TRL's own error
            train_dataset, self.sources = attach_source_indices(train_dataset, args.source_column)
        self.num_sources = len(self.sources)
        if args.samples_per_source is not None and not self.sources:
            raise ValueError(
                f"`samples_per_source={args.samples_per_source}` resamples every source, but the training set has no "
                f"`{args.source_column}` column. Add one (or pass a dict of datasets keyed by source), or set "
                "`samples_per_source=None`."
            )
        if self.num_sources > 1:
            check_batch_size_fits_sources(args.per_device_train_batch_size, self.num_sources)
            if args.accelerator_config.split_batches:
                raise ValueError(
                    "`accelerator_config.split_batches=True` splits each batch across processes, which breaks the "
                    "per-rank source balance MORE needs. Set it to False and choose `per_device_train_batch_size`."
                )
            if args.auto_find_batch_size:
                raise ValueError(
                    "`auto_find_batch_size=True` would change the batch size below the per-source balance MORE needs. "
                    "Set it to False and choose `per_device_train_batch_size` (a multiple of the number of sources)."
                )

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
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        keep_4bit_weights_trainable(self.model)  # training resumes after every evaluation
        # How the model reads its input, saved with it and read back by every scorer (trl_more.input_settings).
        record_input_settings(self.model, self.processing_class, args.max_length, args.truncation_mode, rendering)

        check_process_layout(self.accelerator, "gradients and lambda would not be shared between the processes")
        self._eval_sets_prefix: str | None = None  # set while a dict of eval sets is evaluated set by set
        self._evaluated_rewards: list[torch.Tensor] | None = None  # the rewards scored while `evaluate` runs
        self._eval_set_name: str | None = None
        self.head_capture: RewardHeadInputCapture | None = None
        self.min_norm_lambda: MinNormLambda | None = None
        self.swav_prototypes: SwAVPrototypes | None = None
        self.pair_loss_terms = PairLossTerms(
            args.label_smoothing, args.label_smoothing_below_strength, args.adaptive_margin, args.adaptive_margin_clip
        )
        self.shared_prompt = self._uses_shared_prompt(args, data_collator)
        if self.shared_prompt:
            self.data_collator = DataCollatorForSharedPrompt(
                self.data_collator.pad_token_id, packed=args.pair_encoding == "packed", pack_length=args.pack_length
            )
        pair_columns = {SOURCE_INDEX_COLUMN: (SOURCE_INDEX_COLUMN, torch.long)} if self.num_sources > 1 else {}
        if args.uses_strength:
            pair_columns[args.strength_column] = (STRENGTH_BATCH_KEY, torch.float32)
        self.text_head: LanguageModelHead | None = None  # GRM's language-model head, trained on the side
        self._token_features: torch.Tensor | None = None  # the hidden states of the step's rows, for its loss
        if args.text_regularization_coefficient > 0:
            self.text_head = self._language_model_head(args)
            pair_columns[CHOSEN_START_COLUMN] = (CHOSEN_START_COLUMN, torch.long)
            self.add_callback(_SideParameterStep(self, self.text_head))
        if pair_columns:
            self.data_collator = DataCollatorWithPairColumns(self.data_collator, pair_columns)
        min_norm = self.num_sources > 1 and args.lambda_method == "min_norm"
        if min_norm or args.contrastive_loss is not None or self.shared_prompt or self.text_head is not None:
            self.head_capture = RewardHeadInputCapture(
                self.model,
                keep_graph=args.contrastive_loss is not None or self.text_head is not None,
                keep_output_graph=self.shared_prompt,
            )
        if args.contrastive_loss == "swav":
            self.swav_prototypes = SwAVPrototypes(
                args.swav_prototypes, self.head_capture.hidden_size, args.learning_rate, args.seed, self.args.device
            )
            self.add_callback(_SideParameterStep(self, self.swav_prototypes))
        if self.num_sources < 2:
            logger.info(
                f"MORE: the training set has {self.num_sources or 'no'} source(s) (no `{args.source_column}` column "
                "with several values), so MORE's options have no effect."
            )
            return
        if args.train_sampling_strategy not in ("random", "group_by_length"):
            logger.warning(
                f"`train_sampling_strategy={args.train_sampling_strategy!r}` is ignored: MORE builds source-balanced "
                "batches with its own sampler."
            )
        if min_norm:
            self.min_norm_lambda = MinNormLambda(
                self.sources, momentum=args.lambda_momentum, normalization=args.gradient_normalization
            )
        logger.info(
            f"MORE: {self.num_sources} sources ({', '.join(self.sources)}), "
            f"{args.per_device_train_batch_size // self.num_sources} pairs of each per micro-batch, lambda "
            f"{args.lambda_method}."
        )

    def _language_model_head(self, args: MORERewardConfig) -> LanguageModelHead:
        """GRM's language-model head, from the base causal LM's (`text_regularization_coefficient`)."""
        if encodes_bidirectionally(self.model):
            model_type = self.model.config.get_text_config().model_type
            raise ValueError(
                f"`text_regularization_coefficient={args.text_regularization_coefficient}` trains the hidden states "
                f"with a language-model (next-token) loss, which needs a decoder reward model; this {model_type!r} "
                "model attends in both directions and has no such head. Set `text_regularization_coefficient=0`, or "
                "train a decoder (causal LM) reward model."
            )
        revision = (args.model_init_kwargs or {}).get("revision")
        weight = language_model_head_weight(self.model, revision, gather_parameters(self.accelerator))
        return LanguageModelHead(weight.to(self.args.device), args.learning_rate, args.weight_decay)

    def _uses_shared_prompt(self, args: MORERewardConfig, data_collator: DataCollator | None) -> bool:
        """Whether batches use shared-prompt encoding (packed or not): asked for, and the model is a decoder."""
        if args.pair_encoding == "separate":
            return False
        if encodes_bidirectionally(self.model):
            logger.info(
                f"pair_encoding={args.pair_encoding!r} needs a causal decoder; this model attends in both directions, "
                "so pairs are encoded separately."
            )
            return False
        if data_collator is not None:
            raise ValueError(
                f"pair_encoding={args.pair_encoding!r} builds its own batches (one row per pair), so it cannot be "
                "combined with a custom `data_collator`. Drop the collator, or use pair_encoding='separate'."
            )
        return True

    # ----------------------------------------------------------------------------------------------------------------
    # Data
    # ----------------------------------------------------------------------------------------------------------------

    def _prepare_dataset(
        self,
        dataset: Dataset | IterableDataset,
        processing_class: PreTrainedTokenizerBase,
        args: MORERewardConfig,
        dataset_name: str,
    ) -> Dataset | IterableDataset:
        if isinstance(dataset, Dataset):
            check_rows(dataset, dataset_name, self.sources)
            if dataset_name == "train" and args.uses_strength:
                check_strengths(
                    dataset, args.strength_column, dataset_name, lambda row: row_location(dataset, row, self.sources)
                )
        # TRL silently drops pairs longer than `max_length`; MORE applies the limit itself, to report the loss per
        # source (and to truncate instead, when `truncation_mode` is set).
        dataset = super()._prepare_dataset(dataset, processing_class, without_length_filter(args), dataset_name)
        if dataset_name == "train":
            self._untruncated_train = dataset
        if args.max_length is not None:
            dataset = fit_to_max_length(dataset, args.max_length, args.truncation_mode, dataset_name, self.sources)
        if dataset_name == "train" and isinstance(dataset, Dataset):
            check_tied_pairs(dataset, self.sources, args.truncation_mode)
            if args.flip_below_strength is not None or args.flip_fraction is not None:
                dataset = self._flip_weak_pairs(dataset, args)
            if args.samples_per_source is not None:
                dataset = resample_to(dataset, self.sources, args.samples_per_source, args.seed)
            elif self.num_sources > 1:
                warn_about_cycling(dataset, self.sources)
        if dataset_name == "train" and args.text_regularization_coefficient > 0:
            dataset = dataset.map(
                lambda example: {
                    CHOSEN_START_COLUMN: shared_prompt_length([example["chosen_ids"], example["rejected_ids"]])
                }
            )
        return dataset

    def _flip_weak_pairs(self, dataset: Dataset, args: MORERewardConfig) -> Dataset:
        dataset, self.flipped_pairs = flip_weak_pairs(
            dataset, args.strength_column, self.sources, args.flip_below_strength, args.flip_fraction
        )
        counts = per_source_counts(dataset, self.num_sources) if self.sources else [len(dataset)]
        report = ", ".join(f"{name}: {n} of {total}" for (name, n), total in zip(self.flipped_pairs.items(), counts))
        logger.info(f"Flipped the weakest training pairs (chosen and rejected swapped): {report}.")
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        keep_batch_columns(self, list(getattr(self.data_collator, "columns", {})))

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> torch.utils.data.Sampler | None:
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        group_by_length = self.args.train_sampling_strategy == "group_by_length"
        if self.num_sources < 2 and not (group_by_length and isinstance(train_dataset, Dataset)):
            return super()._get_train_sampler(train_dataset)
        lengths = None
        if group_by_length:
            # The length a pair is padded by in the encoding this run uses (tokenized pairs; not `length_column_name`).
            lengths = pair_row_lengths(train_dataset["chosen_ids"], train_dataset["rejected_ids"], self.shared_prompt)
        multi_source = self.num_sources > 1
        return SourceGroupedSampler(
            train_dataset[SOURCE_INDEX_COLUMN] if multi_source else [0] * len(train_dataset),
            batch_size=self.args.per_device_train_batch_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            num_sources=self.num_sources if multi_source else 1,
            lengths=lengths,
            num_processes=self.args.world_size,
        )

    def _get_eval_sampler(self, eval_dataset: Dataset) -> torch.utils.data.Sampler | None:
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        # transformers would group the evaluation set by an `input_ids` column that pairs do not have; the order of
        # evaluation does not change its results, so it stays the dataset's (as with `"random"`).
        if eval_dataset is None or not hasattr(eval_dataset, "__len__") or self.args.world_size > 1:
            return None
        return torch.utils.data.SequentialSampler(eval_dataset)

    # ----------------------------------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None):
        """`Trainer.train`, after the pre-flight checks of `args.preflight` (docs/preflight.md); their report is kept
        in `preflight_report`."""
        self.preflight_report = preflight_before_training(self, self._untruncated_train, self.sources)
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)

    # ----------------------------------------------------------------------------------------------------------------
    # Loss
    # ----------------------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        source_index = inputs.pop(SOURCE_INDEX_COLUMN, None)
        strength = inputs.pop(STRENGTH_BATCH_KEY, None)
        chosen_start = inputs.pop(CHOSEN_START_COLUMN, None)
        training = self.model.training
        custom = training and (
            source_index is not None
            or self.pair_loss_terms.active
            or self.args.contrastive_loss is not None
            or self.text_head is not None
        )
        if not custom and not self.shared_prompt:  # TRL's own loss: evaluation, or no option of trl-more in use
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            return self._finish(loss, outputs, return_outputs)
        # The hook is on the reward head only during this step: the model carries none otherwise.
        with self.head_capture.attached() if self.head_capture is not None else contextlib.nullcontext():
            if custom and self.args.contrastive_loss is not None:
                loss, outputs, features, second_view = self._two_view_forward(model, inputs, num_items_in_batch)
            else:
                loss, outputs, features = self._one_view_forward(model, inputs, num_items_in_batch, custom)
            if not custom:
                return self._finish(loss, outputs, return_outputs)
            loss = self._training_loss(outputs.logits, inputs, source_index, strength, features)
            if self.args.contrastive_loss is not None:
                loss = loss + self.args.contrastive_coefficient * self._contrastive_loss(features, second_view)
            if self.text_head is not None:
                weight = self.args.text_regularization_coefficient
                loss = (1 - weight) * loss + weight * self._text_regularization_loss(inputs, chosen_start)
        return self._finish(loss, outputs, return_outputs)

    def _finish(self, loss, outputs, return_outputs):
        if self._evaluated_rewards is not None and not self.model.training:  # the statistics `evaluate` stores
            # `gather`, as TRL gathers its reward metrics: `gather_for_metrics` would cut the last batch to the number
            # of pairs left, but a batch holds two rows (rewards) per pair.
            self._evaluated_rewards.append(self.accelerator.gather(outputs.logits.detach().float()).cpu())
        return (loss, outputs) if return_outputs else loss

    def _one_view_forward(self, model, inputs, num_items_in_batch, with_features: bool):
        """TRL's loss and metrics on one forward pass, and the head inputs of the pooled tokens (TRL's layout, chosen
        rows first) when `with_features` and a capture is attached."""
        if not self.shared_prompt:
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            features = None
            if with_features and self.head_capture is not None:
                captured = self.head_capture.read()
                self._keep_token_features(captured[0])
                features = self.head_capture.pooled_features(inputs["input_ids"], outputs.logits, captured)
            return loss, outputs, features
        model(**self._model_inputs(inputs), use_cache=False)  # its pooled logits are not the rewards of this layout
        per_token_features, per_token_rewards = self.head_capture.read()
        if with_features:
            self._keep_token_features(per_token_features)
        logits = rewards_at(per_token_rewards, *self._reward_index(inputs))
        loss, outputs = self._trl_loss(logits, inputs, num_items_in_batch)
        features = rewards_at(per_token_features, *self._reward_index(inputs)) if with_features else None
        return loss, outputs, features

    def pair_rewards(self, model, inputs) -> torch.Tensor:
        """The rewards (2N, 1) of a collated batch of N pairs in TRL's layout (chosen rows first), in either pair
        encoding; `model` is the reward model or its unwrapped module."""
        if not self.shared_prompt:
            return model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
            ).logits
        with self.head_capture.attached():
            model(**self._model_inputs(inputs), use_cache=False)
            _, per_token_rewards = self.head_capture.read()
        return rewards_at(per_token_rewards, *self._reward_index(inputs))

    @staticmethod
    def _reward_index(inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Where a shared-prompt batch's rewards are: the positions of its pairs' responses and, packed, their rows."""
        return inputs[REWARD_POSITIONS_KEY], inputs.get(REWARD_ROWS_KEY)

    @staticmethod
    def _model_inputs(inputs) -> dict[str, torch.Tensor]:
        return {key: inputs[key] for key in ("input_ids", "attention_mask", "position_ids") if key in inputs}

    def _trl_loss(self, logits: torch.Tensor, inputs, num_items_in_batch):
        """TRL's loss, token count and reward metrics for rewards already computed (TRL's layout, (2N, 1))."""
        outputs = SequenceClassifierOutput(logits=logits)
        # TRL counts the tokens of `attention_mask`: in shared-prompt layout, those the pairs take when separate.
        counted = {"attention_mask": inputs.get(NUM_TOKENS_KEY, inputs["attention_mask"])}
        if "margin" in inputs:
            counted["margin"] = inputs["margin"]
        return super().compute_loss(lambda **_: outputs, counted, True, num_items_in_batch)

    def _two_view_forward(self, model, inputs, num_items_in_batch):
        """One forward pass of the batch twice over, the second copy with dropout on its token embeddings: TRL's loss
        and metrics on the first copy, the head inputs of both (a single pass, as DDP and ZeRO-3 expect)."""
        model_inputs = self._model_inputs(inputs)
        rows = model_inputs["input_ids"].shape[0]
        doubled = {key: torch.cat([value, value]) for key, value in model_inputs.items()}
        with embedding_dropout(self.accelerator.unwrap_model(model), self.args.contrastive_dropout, rows):
            both = model(**doubled, use_cache=False)
        if self.shared_prompt:
            per_token_features, per_token_rewards = self.head_capture.read()
            self._keep_token_features(per_token_features[:rows])
            index = self._reward_index(inputs)
            logits = rewards_at(per_token_rewards[:rows], *index)
            features = rewards_at(per_token_features[:rows], *index)
            second_view = rewards_at(per_token_features[rows:], *index)
        else:
            logits = both.logits[:rows]
            captured = self.head_capture.read()
            self._keep_token_features(captured[0][:rows])
            features, second_view = self.head_capture.pooled_features(
                doubled["input_ids"], both.logits, captured
            ).split(rows)
        loss, outputs = self._trl_loss(logits, inputs, num_items_in_batch)
        return loss, outputs, features, second_view

    def _keep_token_features(self, per_token_features: torch.Tensor) -> None:
        """Keep the per-token hidden states of the step's rows (the reward head's input) for the text loss."""
        if self.text_head is not None:
            self._token_features = per_token_features

    def _text_regularization_loss(self, inputs, chosen_start: torch.Tensor | None) -> torch.Tensor:
        """GRM's SFT loss: the mean token NLL of the batch's chosen responses under the language-model head, from the
        hidden states of the same forward pass (`trl_more.losses.text_regularization`), over the tokens of every
        process (the processes hold different numbers of tokens). Logged as `loss/text`."""
        hidden, self._token_features = self._token_features, None
        if hidden is None or chosen_start is None or hidden.dim() != 3:
            raise RuntimeError(
                "Text regularisation needs the per-token hidden states of the step and where each chosen response "
                "starts; the batch has no `chosen_response_start` or the reward head saw one vector per sequence."
            )
        input_ids = inputs["input_ids"]
        if self.shared_prompt:  # a row per pair (prompt, chosen, rejected, padding), or packed rows of several pairs
            last = inputs[REWARD_POSITIONS_KEY][:, 0]
            if REWARD_ROWS_KEY in inputs:
                rows = inputs[REWARD_ROWS_KEY]
                hidden, input_ids, first = hidden[rows], input_ids[rows], inputs[GROUP_STARTS_KEY]
            else:
                first = torch.zeros_like(chosen_start)
        else:  # TRL's layout: the chosen sequences are the first half of the rows
            pairs = input_ids.shape[0] // 2
            hidden, input_ids = hidden[:pairs], input_ids[:pairs]
            mask = inputs["attention_mask"][:pairs].long()
            first = mask.argmax(-1)
            last = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)
        loss, count = chosen_response_nll(hidden, input_ids, first, chosen_start, last, self.text_head.weight)
        processes = self.accelerator.num_processes
        if processes > 1:  # the token mean over every process's tokens, as one process on the whole batch computes it
            counts = self.accelerator.gather(torch.tensor([count], device=loss.device))
            loss = loss * (count * processes / counts.sum().clamp(min=1))  # DDP and ZeRO average over processes
        logged = self.accelerator.gather(loss.detach()[None]).mean().item()
        trainer_metrics(self, "train")["loss/text"].append(logged)
        return loss

    def _training_loss(self, logits, inputs, source_index, strength, features) -> torch.Tensor:
        """The pairwise loss with the denoising terms, lambda-weighted over the sources when there are several."""
        rewards = logits.squeeze(-1)
        margin = self.pair_loss_terms.margin(inputs.get("margin"), strength)
        smoothing = self.pair_loss_terms.smoothing(strength)
        center = self.args.center_rewards_coefficient
        pair_losses = pairwise_loss(rewards, margin, smoothing)
        if center is not None:
            rewards_chosen, rewards_rejected = split_rewards(rewards)
            pair_losses = pair_losses + center * (rewards_chosen + rewards_rejected) ** 2
        if source_index is None:
            return pair_losses.mean()
        source_losses = per_source_mean(pair_losses, source_index, self.num_sources)
        lambdas = self._lambdas(rewards, features, source_index, margin, smoothing, source_losses)
        self._log_source_metrics(lambdas, source_losses.detach(), rewards.detach(), source_index)
        return (lambdas * source_losses).sum()

    def _lambdas(self, rewards, features, source_index, margin, smoothing, source_losses) -> torch.Tensor:
        """lambda for this batch: 1/K (MultiTask), or MORE's min-norm solve over the per-source head gradients."""
        if self.min_norm_lambda is None:
            return torch.full_like(source_losses, 1.0 / self.num_sources)
        gradients = per_source_head_gradients(
            features, rewards, source_index, self.num_sources, margin, self.args.center_rewards_coefficient, smoothing
        )
        losses = source_losses.detach().float()
        if self.args.sync_lambda_across_processes and self.accelerator.num_processes > 1:
            packed = self.accelerator.reduce(torch.cat([gradients, losses[:, None]], dim=1), reduction="mean")
            gradients, losses = packed[:, :-1], packed[:, -1]
        return self.min_norm_lambda(gradients, losses).to(source_losses.dtype)

    def _contrastive_loss(self, features: torch.Tensor, second_view: torch.Tensor) -> torch.Tensor:
        """SimCSE or SwAV between the head inputs of the two views (see `trl_more.losses.contrastive`)."""
        args = self.args
        view_a = representations(features, args.contrastive_representation)
        view_b = representations(second_view, args.contrastive_representation)
        if args.contrastive_loss == "simcse":
            value = simcse_loss(view_a, view_b, args.contrastive_temperature or 0.05)
        else:
            value = swav_loss(
                view_a,
                view_b,
                self.swav_prototypes.weight,
                args.contrastive_temperature or 0.1,
                args.swav_epsilon,
                args.swav_sinkhorn_iterations,
            )
        logged = self.accelerator.gather_for_metrics(value.detach()).mean().item()
        trainer_metrics(self, "train")["loss/contrastive"].append(logged)
        return value

    def _log_source_metrics(
        self, lambdas: torch.Tensor, source_losses: torch.Tensor, rewards: torch.Tensor, source_index: torch.Tensor
    ) -> None:
        rewards_chosen, rewards_rejected = split_rewards(rewards)
        accuracy = per_source_mean((rewards_chosen > rewards_rejected).float(), source_index, self.num_sources)
        stats = torch.stack([lambdas.float(), source_losses.float(), accuracy])
        if self.accelerator.num_processes > 1:
            stats = self.accelerator.reduce(stats, reduction="mean")
        metrics = trainer_metrics(self, "train")
        for name, (weight, loss, acc) in zip(self.sources, stats.T.tolist()):
            metrics[f"{LAMBDA_METRIC_PREFIX}{name}"].append(weight)
            metrics[f"loss/{name}"].append(loss)
            metrics[f"accuracy/{name}"].append(acc)

    # ----------------------------------------------------------------------------------------------------------------
    # Evaluation and logging
    # ----------------------------------------------------------------------------------------------------------------

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        # Trainer evaluates a dict of eval sets one by one, calling `evaluate` again with the prefix `<prefix>_<name>`.
        # Remember the name, so that the metrics collected in `compute_loss` (which TRL logs as `eval_<metric>`) get
        # it too instead of overwriting each other; a single eval set keeps TRL's names.
        if self._evaluated_rewards is None:  # the outermost call: the statistics of every eval set's rewards
            self._evaluated_rewards = []
            try:
                return self.evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            finally:
                self._store_reward_statistics(self._evaluated_rewards)
                self._evaluated_rewards = None
        eval_sets = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(eval_sets, Mapping) and self._eval_sets_prefix is None:
            self._eval_sets_prefix = f"{metric_key_prefix}_"
            try:
                return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
            finally:
                self._eval_sets_prefix = None
        if self._eval_sets_prefix is not None and metric_key_prefix.startswith(self._eval_sets_prefix):
            self._eval_set_name = metric_key_prefix.removeprefix(self._eval_sets_prefix)
        try:
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        finally:
            self._eval_set_name = None

    def _store_reward_statistics(self, rewards: list[torch.Tensor]) -> None:
        """Store the mean and std of the rewards of an evaluation (every chosen and rejected response) in the model's
        config, as trl-more's `reward_mean` / `reward_std` and as OpenRLHF's `mean` / `std` (saved with the model;
        `trl_more.rewards.set_reward_statistics`), as OpenRLHF's reward trainer does after every evaluation. An
        evaluation that scored fewer than 2 responses, or only equal rewards, leaves them as they were."""
        values = torch.cat(rewards).reshape(-1).numpy() if rewards else np.empty(0)
        try:
            mean, std = fit_reward_statistics(values)
        except ValueError as error:
            logger.info(f"Reward statistics not updated after this evaluation: {error}")
            return
        set_reward_statistics(self.accelerator.unwrap_model(self.model), mean, std)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if not self.model.training and self._eval_set_name:
            metrics = trainer_metrics(self, "eval")
            renamed = {f"{self._eval_set_name}_{key}": values for key, values in metrics.items()}
            metrics.clear()
            metrics.update(renamed)
        super().log(logs, start_time)

    # ----------------------------------------------------------------------------------------------------------------
    # Checkpoints: lambda's moving averages belong to the optimiser state
    # ----------------------------------------------------------------------------------------------------------------

    def checkpointed_state(self) -> dict[str, CheckpointedState]:
        states = {
            "min_norm_lambda": self.min_norm_lambda,
            "swav_prototypes": self.swav_prototypes,
            "text_regularization_head": self.text_head,
        }
        return {name: state for name, state in states.items() if state is not None}

    # ----------------------------------------------------------------------------------------------------------------
    # Model card and Hub upload
    # ----------------------------------------------------------------------------------------------------------------

    def model_card_data(self, evaluation: RewardEvaluation | None = None) -> RewardModelCard:
        """What the model card shows, from this trainer (after training): see `trainer_model_card`.

        Args:
            evaluation: the per-source evaluation to show (e.g. the one `trl-more reward` computes); `None` uses the
                latest per-source metrics logged during evaluation (with `PreferenceMetrics`), if any.
        """
        return trainer_model_card(self, evaluation)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, evaluation=None):
        """Write the model card (README.md, see `model_card_data`) and the lambda plot next to it, from the main
        process. `model_name`, `dataset_name` and `tags` are TRL's arguments; only `tags` is used."""
        if not self.is_world_process_zero():
            return
        card = self.model_card_data(evaluation)
        card.tags = [*card.tags, *([tags] if isinstance(tags, str) else tags or [])]
        os.makedirs(self.args.output_dir, exist_ok=True)
        if card.lambda_plot is not None:
            try:
                from ..plots import plot_lambda_history
            except ImportError:  # matplotlib is an optional extra
                card.lambda_plot = None
                card.lambda_note = "The plot of lambda over training needs matplotlib: `pip install trl-more[plots]`."
            else:
                plot_lambda_history(self.state.log_history, os.path.join(self.args.output_dir, LAMBDA_PLOT_NAME))
        Path(self.args.output_dir, "README.md").write_text(card.render(), encoding="utf-8")

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, **kwargs):
        """`Trainer.push_to_hub`: save to `output_dir`, write the model card (`evaluation=` is passed on to
        `create_model_card`), upload the folder. A failed upload raises `HubUploadError`, which says where the
        local copy is and how to retry; nothing local is removed. (With `blocking=False` the upload runs in the
        background and its errors come from the returned future.)"""
        try:
            return super().push_to_hub(commit_message=commit_message, blocking=blocking, **kwargs)
        except Exception as error:
            if not self.is_world_process_zero():
                raise
            message = upload_failure_message(error, self.hub_model_id or self.args.hub_model_id, self.args.output_dir)
            raise HubUploadError(message) from error


class _SideParameterStep(TrainerCallback):
    """After every optimizer step of the reward model, a parameter trained on the side (SwAV's prototypes, GRM's
    language-model head) takes its own, at the learning rate the schedule gave that step (warm-up and decay included)."""

    def __init__(self, trainer: MORERewardTrainer, parameter: SideParameter):
        self.trainer, self.parameter = trainer, parameter

    def on_optimizer_step(self, args, state, control, **kwargs):
        scheduler = self.trainer.lr_scheduler  # not stepped yet: its last rate is the one this step used
        scale = 1.0
        if scheduler is not None and args.learning_rate > 0:
            scale = scheduler.get_last_lr()[0] / args.learning_rate
        self.parameter.step(self.trainer.accelerator, scale)
