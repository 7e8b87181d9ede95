"""RewardBench v1 and v2: the benchmark the field compares reward models on, scored as its leaderboard scores it.

- `load_rewardbench(path_or_hub_id, version)`: the data set, from the Hub (`allenai/reward-bench` split `filtered`,
  `allenai/reward-bench-2` split `test`) or a local json/jsonl/parquet file, with its schema checked.
- `score_v1` / `score_v2`: the scores from per-row rewards alone (numpy arrays, no model needed).
- `length_baselines`: the same scores when the reward is the response length ("longer wins") or its negative
  ("shorter wins"), which show the subsets that length alone solves.
- `score_rewardbench(model, tokenizer, dataset, version)`: scores a reward model on the data set.
- `RewardBenchCallback`: logs `rewardbench/<section>` and `rewardbench/overall` at every evaluation of a trainer.

This module runs a model; the scores from rewards alone, and the rules they follow, are in
`trl_more.metrics.rewardbench_scores` (exported here too). docs/evaluation.md#rewardbench has the rules with their
sources in the reference implementation.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..constants import check_choice
from .benchmark_scoring import TEMPLATES, BenchmarkCallback, column, score_sequences
from .rewardbench_scores import (
    HUB_DATASETS,
    PRIOR_SETS_SECTION,
    PRIOR_SETS_SUBSETS,
    PRIOR_SETS_WEIGHT,
    REQUIRED_COLUMNS,
    TIES_SUBSET,
    TIES_WEIGHTS,
    V1_EXAMPLE_COUNTS,
    V1_SECTION_WEIGHTS,
    V1_SECTIONS,
    V2_SUBSETS,
    RewardBenchResult,
    check_rewardbench_schema,
    length_baselines,
    load_rewardbench,
    overall_v1,
    score_v1,
    score_v2,
    ties_score,
)
from .temperature import reward_temperature


if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer


__all__ = [
    "HUB_DATASETS",
    "PRIOR_SETS_SECTION",
    "PRIOR_SETS_SUBSETS",
    "PRIOR_SETS_WEIGHT",
    "REQUIRED_COLUMNS",
    "TEMPLATES",
    "TIES_SUBSET",
    "TIES_WEIGHTS",
    "V1_EXAMPLE_COUNTS",
    "V1_SECTIONS",
    "V1_SECTION_WEIGHTS",
    "V2_SUBSETS",
    "RewardBenchCallback",
    "RewardBenchResult",
    "check_rewardbench_schema",
    "length_baselines",
    "load_rewardbench",
    "overall_v1",
    "score_rewardbench",
    "score_v1",
    "score_v2",
    "ties_score",
]


# ---------------------------------------------------------------------------------------------------------------------
# Scoring a model
# ---------------------------------------------------------------------------------------------------------------------


def score_rewardbench(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Any,
    version: int = 1,
    batch_size: int = 8,
    max_length: int | None = None,
    chat_template: str = "auto",
    prior_sets: bool = False,
    show_progress: bool = False,
) -> RewardBenchResult:
    """Score a reward model on RewardBench `version`, with the length baselines next to its scores.

    Every (prompt, response) is rendered as the reward model reads it and scored by
    `trl_more.metrics.benchmark_scoring.score_sequences`: with `chat_template="chat"` (the default `"auto"` when the
    tokenizer has a chat template) the prompt is a user message and the response an assistant message of the
    tokenizer's chat template; with `"hh"` it is the HH transcript `"\\n\\nHuman: {prompt}\\n\\nAssistant: {response}"`
    (stripped as trl-more's data sources are, plus the eos token, as TRL's reward trainer appends it); with `"plain"`
    the prompt as the data holds it. Sequences longer than `max_length` (by default the model's own limit) lose the
    start of their prompt and are counted in `num_truncated`. Rewards are divided by the model's stored temperature,
    if any (it changes ECE and margins only). See docs/evaluation.md#rewardbench.

    Args:
        model: a sequence-classification reward model (`logits[:, 0]` is the reward).
        tokenizer: its tokenizer; given its eos token as pad token if it has none.
        dataset: RewardBench data (`load_rewardbench`): a `Dataset`, a list of row dicts, or a path or Hub id.
        version: 1 or 2.
        batch_size: sequences per forward pass.
        max_length: token limit of a sequence; `None`: the model's own, the `max_length` it was trained with (recorded
            by trl-more's trainers) or else its position limit (`trl_more.input_settings.scoring_max_length`).
        chat_template: `"auto"`, `"chat"`, `"hh"` or `"plain"`.
        prior_sets: v1 only: score Prior Sets rows as the older leaderboard did (see `score_v1`).
        show_progress: show a progress bar over the batches.
    """
    if isinstance(dataset, str | os.PathLike):
        dataset = load_rewardbench(dataset, version)
    check_rewardbench_schema(dataset, version)
    prompts = column(dataset, "prompt")
    chosen, rejected = column(dataset, "chosen"), column(dataset, "rejected")
    if version == 1:
        sequence_prompts, responses = prompts + prompts, chosen + rejected
    else:
        sequence_prompts, responses = [], []
        for prompt, row_chosen, row_rejected in zip(prompts, chosen, rejected):
            sequence_prompts += [prompt] * (len(row_chosen) + len(row_rejected))
            responses += row_chosen + row_rejected
    scored = score_sequences(
        model, tokenizer, sequence_prompts, responses, batch_size, max_length, chat_template, show_progress
    )
    temperature = reward_temperature(model)
    rewards = scored.rewards / temperature

    subsets = column(dataset, "subset")
    if version == 1:
        result = score_v1(subsets, rewards[: len(chosen)], rewards[len(chosen) :], prior_sets)
    else:
        chosen_rewards, rejected_rewards, start = [], [], 0
        for row_chosen, row_rejected in zip(chosen, rejected):
            middle, end = start + len(row_chosen), start + len(row_chosen) + len(row_rejected)
            chosen_rewards.append(rewards[start:middle])
            rejected_rewards.append(rewards[middle:end])
            start = end
        result = score_v2(subsets, chosen_rewards, rejected_rewards, column(dataset, "id"))
    result.baselines = length_baselines(dataset, version, prior_sets)
    result.num_sequences, result.num_truncated = len(responses), scored.num_truncated
    result.max_length, result.template, result.temperature = scored.max_length, scored.template, temperature
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Training callback
# ---------------------------------------------------------------------------------------------------------------------


class RewardBenchCallback(BenchmarkCallback):
    """Score RewardBench at every evaluation of a reward trainer and log `rewardbench/<section>`, `rewardbench/overall`.

    Built like TRL's own callbacks, from the trainer (`trainer.add_callback(RewardBenchCallback(trainer, data))`):
    at `on_evaluate` it scores the data with `trainer.model` and `trainer.processing_class` and calls `trainer.log`,
    so the scores reach `trainer.state.log_history` and every reporter (TensorBoard, W&B, ...). Several eval sets
    evaluated at one step are scored once. Each process scores the whole data set (no gathering; fine on one
    process and under DDP). The latest `RewardBenchResult` is kept in `last_result`, and the model card of
    `MORERewardTrainer` shows it. See docs/evaluation.md.

    Args:
        trainer: the reward trainer (e.g. `trl_more.MORERewardTrainer` or `trl.RewardTrainer`).
        dataset: RewardBench data, or a path or Hub id for `load_rewardbench`; checked at once.
        version: 1 or 2.
        batch_size, max_length, chat_template, prior_sets: as for `score_rewardbench`.
        prefix: the prefix of the logged names.
    """

    def __init__(
        self,
        trainer: Trainer,
        dataset: Any,
        version: int = 1,
        batch_size: int = 8,
        max_length: int | None = None,
        chat_template: str = "auto",
        prior_sets: bool = False,
        prefix: str = "rewardbench",
    ):
        if isinstance(dataset, str | os.PathLike):
            dataset = load_rewardbench(dataset, version)
        check_rewardbench_schema(dataset, version)
        check_choice("chat_template", chat_template, TEMPLATES)
        super().__init__(trainer, prefix)
        self.title = f"RewardBench v{version}"
        self.dataset = dataset
        self.version = version
        self.batch_size = batch_size
        self.max_length = max_length
        self.chat_template = chat_template
        self.prior_sets = prior_sets

    def score(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> RewardBenchResult:
        return score_rewardbench(
            model,
            tokenizer,
            self.dataset,
            self.version,
            batch_size=self.batch_size,
            max_length=self.max_length,
            chat_template=self.chat_template,
            prior_sets=self.prior_sets,
        )
