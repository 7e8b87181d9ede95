"""Which sampled responses rejection sampling trains on."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..constants import check_choice


SELECTION_STRATEGIES = ("best_per_prompt", "top_fraction")


def select_samples(
    prompt_indices: Sequence[int],
    rewards: Sequence[float],
    eligible: Sequence[bool],
    strategy: str = "best_per_prompt",
    top_fraction: float = 0.25,
) -> list[int]:
    """Indices of the selected samples, in increasing order.

    Args:
        prompt_indices: The index of the prompt each sample answers (samples of one prompt share it).
        rewards: Reward of each sample.
        eligible: Whether each sample may be selected (it passed the user's filter and the minimum reward).
        strategy: `"best_per_prompt"`: the eligible sample with the highest reward of every prompt (none for a prompt
            without eligible samples). `"top_fraction"`: the `ceil(top_fraction * len(rewards))` eligible samples with
            the highest rewards of the whole set (fewer if fewer are eligible); the count is a fraction of all samples,
            so filtering never pulls worse samples in.
        top_fraction: Fraction kept by `"top_fraction"`.

    Ties go to the earlier sample, so the result is deterministic.
    """
    if not len(prompt_indices) == len(rewards) == len(eligible):
        raise ValueError(
            f"`prompt_indices`, `rewards` and `eligible` must have the same length, got {len(prompt_indices)}, {len(rewards)} "
            f"and {len(eligible)}."
        )
    check_choice("selection", strategy, SELECTION_STRATEGIES, option=False)
    candidates = [index for index in range(len(rewards)) if eligible[index]]
    if strategy == "best_per_prompt":
        best: dict[int, int] = {}
        for index in candidates:
            current = best.get(prompt_indices[index])
            if current is None or rewards[index] > rewards[current]:
                best[prompt_indices[index]] = index
        return sorted(best.values())
    count = max_selected(strategy, len(rewards), 1, top_fraction)  # "top_fraction"
    ranked = sorted(candidates, key=lambda index: (-rewards[index], index))
    return sorted(ranked[:count])


def max_selected(strategy: str, num_prompts: int, samples_per_prompt: int, top_fraction: float = 0.25) -> int:
    """The most samples `select_samples` can select from `num_prompts` prompts with `samples_per_prompt` samples each."""
    check_choice("selection", strategy, SELECTION_STRATEGIES, option=False)
    if strategy == "best_per_prompt":
        return num_prompts
    return math.ceil(round(top_fraction * num_prompts * samples_per_prompt, 9))  # "top_fraction"
