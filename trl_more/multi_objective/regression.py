"""Stage 1 of the multi-objective reward model: regress k objective ratings from the last-token hidden state.

Rated responses (`prompt`, `response`, one column per objective, NaN where an objective is not rated, as
`trl_more.data` converts HelpSteer and Topical-Chat) are scaled to [0, 1] per objective from each column's declared
scale, tokenized with their prompt length, and fitted in one of two ways (docs/multi_objective.md):

- linear probing: `extract_features` once over the frozen backbone, then `fit_regression_layer` (closed-form ridge,
  alpha chosen per objective by validation MSE);
- end-to-end fine-tuning of backbone and regression layer: `regression_trainer(...)` returns a `transformers.Trainer`
  whose loss is the model's masked MSE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.trainer_utils import EvalPrediction

from ..rewards.batch_rewards import padded_inputs
from ..solvers.ridge import DEFAULT_ALPHAS, RidgeFit, fit_ridge
from ..tokenization import fit_to_max_length, tokenize_prompt_response
from .modeling_multi_objective import MultiObjectiveRewardModel


__all__ = [
    "DataCollatorForRatings",
    "fit_regression_layer",
    "prepare_rating_dataset",
    "r2_per_objective",
    "rating_targets",
    "regression_trainer",
]


def rating_targets(
    dataset: Dataset, objectives: Sequence[str], scales: Mapping[str, tuple[float, float]]
) -> np.ndarray:
    """(n, k) ratings scaled linearly to [0, 1] per objective with `(rating - low) / (high - low)`; NaN if missing.

    Booleans count as 0 / 1. Raises a `ValueError` for a missing column, an objective without a declared scale, a
    rating outside its scale, or an objective with no rating at all.
    """
    missing = [name for name in objectives if name not in dataset.column_names]
    if missing:
        raise ValueError(f"Rating column(s) {missing} are missing; the dataset has columns {dataset.column_names}.")
    unscaled = [name for name in objectives if name not in scales]
    if unscaled:
        raise ValueError(
            f"No rating scale declared for {unscaled}: pass `scales={{objective: (low, high)}}` (e.g. "
            "`trl_more.data.RATING_SCALES['helpsteer']`)."
        )
    targets = np.empty((len(dataset), len(objectives)))
    for column, name in enumerate(objectives):
        low, high = (float(bound) for bound in scales[name])
        if not low < high:
            raise ValueError(f"The scale of {name!r} must have low < high, got ({low}, {high}).")
        values = np.array([np.nan if value is None else float(value) for value in dataset[name]])
        outside = np.flatnonzero(~np.isnan(values) & ((values < low) | (values > high)))
        if outside.size:
            examples = ", ".join(f"row {row}: {values[row]:g}" for row in outside[:5])
            raise ValueError(
                f"{outside.size} rating(s) of {name!r} lie outside its declared scale [{low:g}, {high:g}] ({examples}). "
                "Fix the data or the declared scale."
            )
        if np.isnan(values).all():
            raise ValueError(f"Objective {name!r} has no rating at all in this dataset; drop it or add rated rows.")
        targets[:, column] = (values - low) / (high - low)
    return targets


def prepare_rating_dataset(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    objectives: Sequence[str],
    scales: Mapping[str, tuple[float, float]],
    max_length: int | None = None,
    truncation_mode: str = "keep_start",
    response_column: str = "response",
) -> Dataset:
    """Tokenize rated responses: columns `input_ids`, `prompt_length` and `labels` (k scaled ratings, NaN if missing).

    `prompt` and `response_column` may be plain text or conversations; see `trl_more.tokenization` for how the
    prompt length is found and how `max_length` / `truncation_mode` apply (errors, never silent drops).
    """
    for column in ("prompt", response_column):
        if column not in dataset.column_names:
            raise ValueError(f"The rating dataset needs a {column!r} column; it has {dataset.column_names}.")
    labels = rating_targets(dataset, objectives, scales)

    def tokenize(example: dict[str, Any], index: int) -> dict[str, Any]:
        ids, prompt_length = tokenize_prompt_response(tokenizer, example["prompt"], example[response_column])
        ids, prompt_length = fit_to_max_length(ids, prompt_length, max_length, truncation_mode, where=f"row {index}")
        return {"input_ids": ids, "prompt_length": prompt_length}

    tokenized = dataset.map(
        tokenize, with_indices=True, remove_columns=dataset.column_names, desc="Tokenizing rated responses"
    )
    return tokenized.add_column("labels", labels.tolist())


@dataclass
class DataCollatorForRatings:
    """Pads `input_ids` (right) into a batch with `attention_mask`, `prompt_lengths` and float `labels` (NaN kept)."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            **padded_inputs([example["input_ids"] for example in examples], self.pad_token_id),
            "prompt_lengths": torch.tensor([example["prompt_length"] for example in examples], dtype=torch.long),
            "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.float32),
        }


def _as_array(values: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def fit_regression_layer(
    model: MultiObjectiveRewardModel,
    train_features: torch.Tensor | np.ndarray,
    train_labels: Sequence | np.ndarray,
    validation_features: torch.Tensor | np.ndarray,
    validation_labels: Sequence | np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> RidgeFit:
    """Linear probing: fit the regression layer on cached last-token features by closed-form ridge regression.

    Every objective is fitted on its labelled training rows, with its alpha chosen from `alphas` by MSE on its
    labelled validation rows. An intercept is fitted when the model's regression layer has a bias
    (`regression_bias=True`). The layer's weights are overwritten; the `RidgeFit` (alphas, validation MSE) is
    returned.
    """
    layer = model.regression_layer
    fit = fit_ridge(
        _as_array(train_features),
        _as_array(train_labels),
        _as_array(validation_features),
        _as_array(validation_labels),
        alphas=alphas,
        fit_intercept=layer.bias is not None,
        objective_names=model.config.objectives,
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(fit.weights))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(fit.intercepts))
    return fit


def r2_per_objective(
    predictions: torch.Tensor | np.ndarray,
    labels: Sequence | np.ndarray,
    reference_labels: Sequence | np.ndarray,
    objectives: Sequence[str],
) -> dict[str, float]:
    """Coefficient of determination of every objective against the per-objective mean of `reference_labels`.

    `1 - SSE(predictions) / SSE(mean of the reference labels)` on the labelled rows: above 0 means better than
    predicting the (training) mean rating.
    """
    predictions, labels = _as_array(predictions), _as_array(labels)
    means = np.nanmean(_as_array(reference_labels), axis=0)
    scores = {}
    for column, name in enumerate(objectives):
        labelled = ~np.isnan(labels[:, column])
        errors = predictions[labelled, column] - labels[labelled, column]
        baseline = means[column] - labels[labelled, column]
        scores[name] = float(1.0 - (errors**2).sum() / (baseline**2).sum())
    return scores


def regression_trainer(
    model: MultiObjectiveRewardModel,
    args: TrainingArguments,
    train_dataset: Dataset,
    eval_dataset: Dataset | None = None,
    train_backbone: bool = True,
    **trainer_kwargs,
) -> Trainer:
    """A `transformers.Trainer` for end-to-end stage 1: the masked MSE of the model's objective rewards.

    `train_dataset`/`eval_dataset` come from `prepare_rating_dataset`. The gate is frozen; the backbone trains with the
    regression layer unless `train_backbone=False`. Evaluation reports `mse/<objective>` per objective.
    """
    model.set_trainable(backbone=train_backbone, regression=True, gate=False)
    args.remove_unused_columns = False  # `prompt_length` is read by the collator, not by the model's signature
    pad_token_id = model.config.get_text_config().pad_token_id
    trainer_kwargs.setdefault("data_collator", DataCollatorForRatings(0 if pad_token_id is None else pad_token_id))
    trainer_kwargs.setdefault("compute_metrics", _objective_mse_metrics(model.config.objectives))
    return Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **trainer_kwargs)


def _objective_mse_metrics(objectives: Sequence[str]):
    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        rewards = np.asarray(prediction.predictions[1])  # model outputs: logits, rewards, ...
        labels = np.asarray(prediction.label_ids)
        metrics = {}
        for column, name in enumerate(objectives):
            labelled = ~np.isnan(labels[:, column])
            metrics[f"mse/{name}"] = float(np.mean((rewards[labelled, column] - labels[labelled, column]) ** 2))
        return metrics

    return compute_metrics
