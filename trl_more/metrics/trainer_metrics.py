"""Accuracy, ECE and reward-difference statistics as `compute_metrics` of `trl.RewardTrainer` and `MORERewardTrainer`.

What the trainers hand to `compute_metrics`: for every evaluation batch of B pairs, TRL's `RewardTrainer` scores the
chosen sequences and then the rejected ones, so a batch's logits have shape (2B, 1), chosen rows first. The
`Trainer` gathers each batch across processes and concatenates the batches, and on the last batch accelerate's
`gather_for_metrics` keeps only the first `len(dataset) % total_batch_size` rows, counting pairs, not rows: on the
raw (2B, 1) logits it drops rejected rewards (even with a single process). Reshaping every batch to one row per pair,
(B, 2) = [chosen, rejected], *before* it is gathered makes every later step count pairs, whatever the batch sizes,
the number of processes or the padding of the last batch. That is what `PreferenceMetrics.preprocess_logits` does,
so it must be passed along with the metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .calibration import DEFAULT_OUTLIER_THRESHOLD, preference_metrics


__all__ = ["PreferenceMetrics"]


class PreferenceMetrics:
    """`compute_metrics` for reward trainers: the metrics of `preference_metrics` over every evaluation pair.

    Pass both the object and its `preprocess_logits` to the trainer (or `**metrics.trainer_kwargs()`):

    ```python
    >>> from trl_more.metrics import PreferenceMetrics
    >>> metrics = PreferenceMetrics(n_bins=10)
    >>> trainer = MORERewardTrainer(..., eval_dataset={"helpful": helpful_test, "harmless": harmless_test},
    ...                             **metrics.trainer_kwargs())
    >>> trainer.evaluate()  # {"eval_helpful_ece": ..., "eval_helpful_preference_accuracy": ..., "eval_harmless_ece": ...}
    ```

    Per-source metrics: give `eval_dataset` as a dict `{source: Dataset}`; the `Trainer` evaluates every entry on its
    own and prefixes its metrics with `eval_<source>_` (TRL's own loss-side metrics are also kept apart per source by
    `MORERewardTrainer`, while `trl.RewardTrainer` logs them under one `eval_` prefix). A single eval dataset gives
    the metrics over all its pairs, `eval_ece` etc. The keys are those of `preference_metrics`: `num_pairs`,
    `preference_accuracy`, `ece`, `ace`, `mce`, `margin_mean`, `margin_std` and the outlier statistics. Works with
    `batch_eval_metrics=True` (margins are accumulated until the last batch) and `eval_do_concat_batches=False`.

    Args:
        n_bins (`int`, defaults to `10`): bins of the calibration errors (MORE form, both orderings of every pair).
        outlier_threshold (`float`, defaults to `5.0`): reward differences beyond +-threshold count as outliers.
    """

    def __init__(self, n_bins: int = 10, outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD):
        self.n_bins = n_bins
        self.outlier_threshold = outlier_threshold
        self._batches: list[np.ndarray] = []

    @staticmethod
    def preprocess_logits(logits: Any, labels: Any = None) -> Any:
        """One row per pair: a batch's (2B, 1) logits, chosen rows first, become (B, 2) = [chosen, rejected]."""
        if isinstance(logits, (tuple, list)):  # models that also return other outputs put the logits first
            logits = logits[0]
        if logits.ndim != 2 or logits.shape[1] != 1 or logits.shape[0] % 2:
            raise ValueError(
                f"Expected the logits of a reward model batch, shape (2 * pairs, 1) with the chosen rows first, got "
                f"{tuple(logits.shape)}. The model must have a single output (`num_labels=1`)."
            )
        return logits.reshape(2, -1).T.contiguous()

    def trainer_kwargs(self) -> dict[str, Any]:
        """`compute_metrics` and `preprocess_logits_for_metrics` arguments for a reward trainer."""
        return {"compute_metrics": self, "preprocess_logits_for_metrics": self.preprocess_logits}

    def __call__(self, eval_prediction: Any, compute_result: bool | None = None) -> dict[str, float]:
        rewards = _pair_rewards(eval_prediction.predictions)
        if compute_result is None:  # the whole evaluation set at once
            return self._metrics(rewards)
        self._batches.append(rewards)  # batch_eval_metrics=True: one gathered batch per call
        if not compute_result:
            return {}
        rewards, self._batches = np.concatenate(self._batches), []
        return self._metrics(rewards)

    def _metrics(self, rewards: np.ndarray) -> dict[str, float]:
        return preference_metrics(rewards[:, 0] - rewards[:, 1], self.n_bins, self.outlier_threshold)


def _pair_rewards(predictions: Any) -> np.ndarray:
    if isinstance(predictions, list):  # eval_do_concat_batches=False: one array per batch
        predictions = np.concatenate([_pair_rewards(batch) for batch in predictions])
    if hasattr(predictions, "detach"):
        predictions = predictions.detach().cpu().double().numpy()
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape[1] != 2:
        raise ValueError(
            f"PreferenceMetrics received predictions of shape {predictions.shape}, not one (chosen, rejected) row per "
            "pair. Pass `preprocess_logits_for_metrics=metrics.preprocess_logits` to the trainer as well (or "
            "`**metrics.trainer_kwargs()`): without it the trainer's (2B, 1) logits cannot be paired reliably."
        )
    return predictions
