"""Scoring a reward model against the world's known answers."""

from __future__ import annotations

import numpy as np

from ..rewards.function_reward import FunctionRewardModel
from .world import gold_reward


__all__ = ["gold_accuracy", "gold_reward_model"]


def gold_accuracy(predicted_margins: np.ndarray, gold_margins: np.ndarray) -> float:
    """Share of pairs a reward model orders as the gold reward does: predicted margin r(chosen) - r(rejected) of the
    same sign as the gold margin, over the pairs whose gold rewards differ (a predicted tie counts as wrong)."""
    predicted, gold = np.asarray(predicted_margins, dtype=float), np.asarray(gold_margins, dtype=float)
    if predicted.shape != gold.shape:
        raise ValueError(f"Got {predicted.shape} predicted margins for {gold.shape} gold margins.")
    decided = gold != 0
    if not decided.any():
        raise ValueError("Every pair is a gold tie: the gold order says nothing about them.")
    return float(np.mean(np.sign(predicted[decided]) == np.sign(gold[decided])))


def gold_reward_model(tokenizer, source: str = "neutral") -> FunctionRewardModel:
    """The world's gold reward (of `source`) as a reward model: it selects samples in rejection sampling, or is the
    gold of an evaluation, like any trained model."""
    return FunctionRewardModel(
        lambda prompt, response: gold_reward(prompt, response, source), tokenizer, f"gold-{source}"
    )
