"""MORE: a drop-in `trl.RewardTrainer` that balances sources in every batch and reweights their losses."""

from __future__ import annotations

import copy
import os
import textwrap
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils import DistributedType
from datasets import Dataset, IterableDataset
from transformers import DataCollator, PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_utils import EvalPrediction
from trl import RewardConfig, RewardTrainer
from trl.trainer.utils import get_config_model_id

from .._compat import keep_4bit_weights_trainable
from ..data.resampling import resample_sources
from ..data.sources import SOURCE_ID_COLUMN, attach_source_ids
from ..hub import HubUploadError, upload_failure_message
from ..metrics.trainer_metrics import PreferenceMetrics
from .lambdas import MinNormSourceWeighting
from .model_card import fill_trl_card_gaps, model_id_of, more_model_card
from .more_config import MORERewardConfig
from .reward_head import RewardHeadInputCapture, pairwise_reward_loss, per_source_head_gradients, per_source_mean
from .sampler import SourceGroupedSampler, check_batch_size_fits_sources


logger = get_logger(__name__)

MORE_STATE_NAME = "more_state_rank{rank}.pt"


class DataCollatorWithSourceIds:
    """Wraps a preference collator so that the `source_id` of every example reaches the batch as `source_ids`."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if not examples or SOURCE_ID_COLUMN not in examples[0]:
            return self.collator(examples)
        source_ids = torch.tensor([example[SOURCE_ID_COLUMN] for example in examples], dtype=torch.long)
        batch = self.collator([{k: v for k, v in example.items() if k != SOURCE_ID_COLUMN} for example in examples])
        batch["source_ids"] = source_ids
        return batch


class MORERewardTrainer(RewardTrainer):
    """
    Reward trainer for preference data from several sources, with MORE's source-balanced batches and min-norm
    reweighting of the per-source losses ("On Diversified Preferences of Large Language Model Alignment").

    A drop-in replacement for [`~trl.RewardTrainer`]: same arguments, same data formats, same outputs. What changes
    when the training set has K >= 2 sources:

    - every micro-batch holds `per_device_train_batch_size / K` pairs of each source (see [`SourceGroupedSampler`]);
    - the loss is `sum_i lambda_i * mean loss of source i`, where lambda is the min-norm point of the (smoothed,
      normalised) per-source gradients of the reward head, computed in closed form from the head's input
      (`reweighting="uniform"` uses 1/K instead: the balanced MultiTask baseline);
    - `lambda/<source>`, `loss/<source>` and `accuracy/<source>` are logged next to TRL's metrics.

    With one source, or no source column, it behaves exactly like [`~trl.RewardTrainer`]. Its model card (written on
    every checkpoint, by `create_model_card` and by `push_to_hub`) is TRL's plus the sources and their sizes, the
    method, the per-source accuracy and ECE, the lambda plot and how to load the model; a failed `push_to_hub` raises
    `HubUploadError` and leaves the saved output in place.

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
            Configuration. A plain [`~trl.RewardConfig`] is accepted and gets MORE's defaults.
        train_dataset ([`~datasets.Dataset`], [`~datasets.IterableDataset`] or `dict[str, Dataset]`):
            Preference data in any format [`~trl.RewardTrainer`] accepts, either with a source column
            (`args.source_column`, names or integers) or as a dict / `DatasetDict` of `{source_name: Dataset}`.
    """

    _tag_names = ["trl", "reward-trainer", "trl-more", "more"]
    _name = "MORE Reward"
    _paper = {
        "title": "On Diversified Preferences of Large Language Model Alignment",
        "id": "2312.07401",
        "citation": textwrap.dedent(
            """\
            @inproceedings{zeng2024diversified,
                title     = {{On Diversified Preferences of Large Language Model Alignment}},
                author    = {Dun Zeng and Yong Dai and Pengyu Cheng and Longyue Wang and Tianhao Hu and Wanshun Chen and Nan Du and Zenglin Xu},
                booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2024},
                pages     = {9194--9210},
                year      = 2024,
            }"""
        ),
    }

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
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = MORERewardConfig(f"{model_name.split('/')[-1]}-MORE-Reward")
        elif not isinstance(args, MORERewardConfig):
            args = _with_more_defaults(args)
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")

        self.source_names: list[str] = []
        if isinstance(train_dataset, (Mapping, Dataset, IterableDataset)):  # other types get TRL's own error
            train_dataset, self.source_names = attach_source_ids(train_dataset, args.source_column)
        self.num_sources = len(self.source_names)
        if args.samples_per_source is not None and not self.source_names:
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

        if self.accelerator.num_processes > 1 and self.accelerator.distributed_type == DistributedType.NO:
            raise ValueError(
                f"{self.accelerator.num_processes} processes were launched but accelerate runs without a distributed "
                "backend, so gradients and lambda would not be shared between them. On CPU, set `use_cpu=True` "
                "(DDP over gloo) or, with DeepSpeed, `ddp_backend='gloo'`."
            )
        self._eval_sets_prefix: str | None = None  # set while a dict of eval sets is evaluated set by set
        self._eval_set_name: str | None = None
        self._head_capture: RewardHeadInputCapture | None = None
        self._weighting: MinNormSourceWeighting | None = None
        if self.num_sources < 2:
            logger.info(
                f"MORE: the training set has {self.num_sources or 'no'} source(s) (no `{args.source_column}` column "
                "with several values), so this trainer behaves exactly like trl.RewardTrainer."
            )
            return
        if args.train_sampling_strategy != "random":
            logger.warning(
                f"`train_sampling_strategy={args.train_sampling_strategy!r}` is ignored: MORE builds source-balanced "
                "batches with its own sampler."
            )
        self.data_collator = DataCollatorWithSourceIds(self.data_collator)
        if args.reweighting == "more":
            self._head_capture = RewardHeadInputCapture(self.model)
            self._weighting = MinNormSourceWeighting(
                self.num_sources, momentum=args.lambda_momentum, normalization=args.gradient_normalization
            )
        logger.info(
            f"MORE: {self.num_sources} sources ({', '.join(self.source_names)}), "
            f"{args.per_device_train_batch_size // self.num_sources} pairs of each per micro-batch, "
            f"{args.reweighting} weighting."
        )

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
        # TRL silently drops pairs longer than `max_length`; MORE applies the limit itself, to report the loss per
        # source (and to truncate instead, when `truncation_mode` is set).
        max_length, args.max_length = args.max_length, None
        try:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        finally:
            args.max_length = max_length
        if max_length is not None:
            dataset = self._fit_to_max_length(dataset, max_length, args.truncation_mode, dataset_name)
        if dataset_name == "train" and args.samples_per_source is not None and isinstance(dataset, Dataset):
            dataset = self._resample_sources(dataset, args.samples_per_source, args.seed)
        return dataset

    def _fit_to_max_length(
        self, dataset: Dataset | IterableDataset, max_length: int, truncation_mode: str | None, dataset_name: str
    ) -> Dataset | IterableDataset:
        def is_short(example):
            return len(example["chosen_ids"]) <= max_length and len(example["rejected_ids"]) <= max_length

        if truncation_mode is not None:
            keep = slice(-max_length, None) if truncation_mode == "keep_end" else slice(0, max_length)

            def truncate(example):
                return {"chosen_ids": example["chosen_ids"][keep], "rejected_ids": example["rejected_ids"][keep]}

            return dataset.map(truncate)
        if isinstance(dataset, IterableDataset):
            return dataset.filter(is_short)
        kept = dataset.filter(is_short, desc=f"Filtering {dataset_name} >{max_length} tokens")
        if len(kept) < len(dataset):
            self._report_dropped(dataset, kept, max_length, dataset_name)
        return kept

    def _report_dropped(self, before: Dataset, after: Dataset, max_length: int, dataset_name: str) -> None:
        message = (
            f"{len(before) - len(after)} of {len(before)} pairs of the {dataset_name} set are longer than "
            f"max_length={max_length} tokens and were dropped"
        )
        if SOURCE_ID_COLUMN in before.column_names and self.source_names:
            counts_before = np.bincount(before[SOURCE_ID_COLUMN], minlength=self.num_sources)
            counts_after = np.bincount(after[SOURCE_ID_COLUMN], minlength=self.num_sources)
            per_source = ", ".join(
                f"{name}: {b - a} of {b}" for name, b, a in zip(self.source_names, counts_before, counts_after)
            )
            message += f" ({per_source})"
            empty = [name for name, count in zip(self.source_names, counts_after) if count == 0]
            if empty:
                raise ValueError(
                    f"{message}, which leaves no pairs for source(s) {empty}. Raise `max_length` or set "
                    "`truncation_mode='keep_end'` to truncate instead of dropping."
                )
        logger.warning(f"{message}. Set `truncation_mode='keep_end'` to truncate them instead.")

    def _resample_sources(self, dataset: Dataset, samples_per_source: int, seed: int) -> Dataset:
        source_ids = dataset[SOURCE_ID_COLUMN]
        counts = np.bincount(source_ids, minlength=max(self.num_sources, 1))
        resampled = dataset.select(resample_sources(source_ids, samples_per_source, seed))
        sizes = ", ".join(f"{name}: {count} -> {samples_per_source}" for name, count in zip(self.source_names, counts))
        logger.info(f"MORE: resampled every source to {samples_per_source} pairs ({sizes}).")
        return resampled

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.num_sources > 1 and SOURCE_ID_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, SOURCE_ID_COLUMN]

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> torch.utils.data.Sampler | None:
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.num_sources < 2:
            return super()._get_train_sampler(train_dataset)
        return SourceGroupedSampler(
            train_dataset[SOURCE_ID_COLUMN],
            batch_size=self._train_batch_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            num_sources=self.num_sources,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Loss
    # ----------------------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        source_ids = inputs.pop("source_ids", None)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if source_ids is not None and self.model.training:
            loss = self._source_weighted_loss(outputs.logits, inputs, source_ids)
        return (loss, outputs) if return_outputs else loss

    def _source_weighted_loss(
        self, logits: torch.Tensor, inputs: dict[str, torch.Tensor], source_ids: torch.Tensor
    ) -> torch.Tensor:
        rewards = logits.squeeze(-1)
        margin = inputs.get("margin")
        center = self.args.center_rewards_coefficient
        pair_losses = pairwise_reward_loss(rewards, margin)
        if center is not None:
            pair_losses = pair_losses + center * rewards.view(2, -1).sum(0) ** 2
        source_losses = per_source_mean(pair_losses, source_ids, self.num_sources)

        if self._weighting is None:
            weights = torch.full_like(source_losses, 1.0 / self.num_sources)
        else:
            features = self._head_capture.pooled_features(inputs["input_ids"], logits)
            gradients = per_source_head_gradients(features, rewards, source_ids, self.num_sources, margin, center)
            losses = source_losses.detach().float()
            if self.args.sync_lambda_across_processes and self.accelerator.num_processes > 1:
                packed = self.accelerator.reduce(torch.cat([gradients, losses[:, None]], dim=1), reduction="mean")
                gradients, losses = packed[:, :-1], packed[:, -1]
            weights = self._weighting(gradients, losses).to(source_losses.dtype)

        self._log_source_metrics(weights, source_losses.detach(), rewards.detach(), source_ids)
        return (weights * source_losses).sum()

    def _log_source_metrics(
        self, weights: torch.Tensor, source_losses: torch.Tensor, rewards: torch.Tensor, source_ids: torch.Tensor
    ) -> None:
        rewards_chosen, rewards_rejected = rewards.chunk(2)
        accuracy = per_source_mean((rewards_chosen > rewards_rejected).float(), source_ids, self.num_sources)
        stats = torch.stack([weights.float(), source_losses.float(), accuracy])
        if self.accelerator.num_processes > 1:
            stats = self.accelerator.reduce(stats, reduction="mean")
        for name, (weight, loss, acc) in zip(self.source_names, stats.T.tolist()):
            self._metrics["train"][f"lambda/{name}"].append(weight)
            self._metrics["train"][f"loss/{name}"].append(loss)
            self._metrics["train"][f"accuracy/{name}"].append(acc)

    # ----------------------------------------------------------------------------------------------------------------
    # Evaluation and logging
    # ----------------------------------------------------------------------------------------------------------------

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        # Trainer evaluates a dict of eval sets one by one, calling `evaluate` again with the prefix `<prefix>_<name>`.
        # Remember the name, so that the metrics collected in `compute_loss` (which TRL logs as `eval_<metric>`) get
        # it too instead of overwriting each other; a single eval set keeps TRL's names.
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

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if not self.model.training and self._eval_set_name:
            self._metrics["eval"] = defaultdict(
                list, {f"{self._eval_set_name}_{key}": values for key, values in self._metrics["eval"].items()}
            )
        super().log(logs, start_time)

    # ----------------------------------------------------------------------------------------------------------------
    # Model card and Hub upload
    # ----------------------------------------------------------------------------------------------------------------

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, evaluation=None):
        """TRL's reward-model card, followed by MORE's sections (see `more_model_card`): sources and their sizes,
        method, per-source accuracy and ECE (`evaluation`, a `RewardEvaluation`, or else the per-source metrics
        logged in evaluation), the lambda plot (`lambda.png`, written next to the card) and how to load the model."""
        model_id = model_id_of(self)
        super().create_model_card(
            model_name=model_name or os.path.basename(os.path.normpath(model_id)), dataset_name=dataset_name, tags=tags
        )
        card = Path(self.args.output_dir, "README.md")
        if self.is_world_process_zero() and card.is_file():
            base_model = get_config_model_id(self.accelerator.unwrap_model(self.model).config)
            text = fill_trl_card_gaps(card.read_text(encoding="utf-8"), base_model, model_id)
            card.write_text(text + "\n" + more_model_card(self, evaluation), encoding="utf-8")

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

    # ----------------------------------------------------------------------------------------------------------------
    # Checkpoints: the moving averages of the head gradients are part of the optimiser state
    # ----------------------------------------------------------------------------------------------------------------

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self._weighting is not None:
            path = os.path.join(output_dir, MORE_STATE_NAME.format(rank=self.args.process_index))
            torch.save(self._weighting.state_dict(), f"{path}.tmp")
            os.replace(f"{path}.tmp", path)  # a crash mid-write never leaves a truncated state file behind

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or self._weighting is None:
            return
        path = os.path.join(checkpoint, MORE_STATE_NAME.format(rank=self.args.process_index))
        if os.path.isfile(path):
            self._weighting.load_state_dict(torch.load(path, weights_only=True))
        else:
            logger.warning(
                f"No MORE state in {checkpoint} ({os.path.basename(path)}): the moving averages of the head gradients "
                "restart from zero, so lambda will differ from an uninterrupted run for the first steps."
            )


def _with_more_defaults(args: RewardConfig) -> MORERewardConfig:
    """A `MORERewardConfig` with the settings of a plain `RewardConfig` and MORE's defaults for the rest."""
    more_args = copy.copy(args)
    more_args.__class__ = MORERewardConfig
    inherited = {field.name for field in fields(RewardConfig)}
    for field in fields(MORERewardConfig):
        if field.name not in inherited:
            setattr(more_args, field.name, field.default)
    return more_args
