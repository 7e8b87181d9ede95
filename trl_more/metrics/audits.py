"""Sanity audits of a reward model and of the pipeline that scores it, per source.

Evaluations fail silently in a few well-known ways: rewards read at the wrong position under another padding side,
rewards that change with the batch they are computed in, chosen and rejected columns swapped somewhere, sequences cut
at `max_length` before the response, ties and identical pairs counted as data, and accuracies that only measure a
preference for longer answers. `audit_reward_model` checks each on the evaluation sources and says what a failure
means and its likely cause (docs/evaluation.md).

Checks per source:

- swap: the accuracy after swapping chosen and rejected must be 1 - accuracy - ties (every pair's margin changes
  sign); otherwise the scoring depends on where a sequence sits in the batch;
- padding side and batch size: the rewards scored one sequence at a time, and in batches padded on the left, must
  equal those of right-padded batches (to `tolerance`, relative to the rewards' spread);
- length: accuracy within bins of the length difference (chosen minus rejected, in tokens) and the Spearman
  correlation of reward with length over all responses;
- data: the pairs truncated at `max_length` (by default the model's own limit, see
  `trl_more.input_settings.scoring_max_length`), and the share tied (equal rewards) or with chosen identical to
  rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import spearmanr

from ..constants import TRUNCATION_MODES, check_choice
from ..reports import json_text, markdown_row, markdown_table
from .evaluation import truncation_note


if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


__all__ = ["TRUNCATED_SHARE_WARNING", "AuditReport", "audit_reward_model", "sequence_rewards"]

LENGTH_BINS = (-np.inf, -64, -16, -1, 0, 16, 64, np.inf)  # edges of the (chosen - rejected) length difference
LENGTH_CORRELATION_WARNING = 0.3
TRUNCATED_SHARE_WARNING = 0.05  # a larger share of truncated pairs is reported


@dataclass
class AuditReport:
    """Audit results per source: `checks[source]` holds the measured values, `failures[source]` the failed checks
    with what they mean; `max_length` and `truncation_mode` are how the pairs were truncated (`num_truncated` of
    every source counts the pairs cut)."""

    checks: dict[str, dict[str, Any]]
    failures: dict[str, list[str]] = field(default_factory=dict)
    tolerance: float = 1e-3
    max_length: int | None = None
    truncation_mode: str = "keep_end"

    @property
    def passed(self) -> bool:
        return not any(self.failures.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "max_length": self.max_length,
            "truncation_mode": self.truncation_mode,
            "passed": self.passed,
            "checks": self.checks,
            "failures": self.failures,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        return json_text(self.to_dict(), path, default=float)

    def to_markdown(self) -> str:
        header = [
            "source",
            "pairs",
            "accuracy (%)",
            "swapped (%)",
            "ties (%)",
            "identical (%)",
            "truncated: n (%)",
            "max reward change: batch 1 / left padding",
            "reward-length Spearman",
            "status",
        ]
        lines = markdown_table(header)
        for source, row in self.checks.items():
            cells = [
                source,
                str(row["pairs"]),
                f"{100 * row['accuracy']:.2f}",
                f"{100 * row['swapped_accuracy']:.2f}",
                f"{100 * row['tie_share']:.2f}",
                f"{100 * row['identical_share']:.2f}",
                f"{row['num_truncated']} ({100 * row['truncated_share']:.2f})",
                f"{row['batch_size_change']:.2e} / {row['padding_side_change']:.2e}",
                f"{row['length_correlation']:.3f}",
                "ok" if not self.failures.get(source) else "FAILED: " + "; ".join(self.failures[source]),
            ]
            lines.append(markdown_row(cells))
        bins = ["source", *(row["label"] for row in next(iter(self.checks.values()))["length_bins"])]
        lines += ["", "Accuracy (%) by length difference, chosen minus rejected, in tokens (pairs):", ""]
        lines += markdown_table(bins)
        for source, row in self.checks.items():
            cells = [
                f"{100 * cell['accuracy']:.1f} ({cell['pairs']})" if cell["pairs"] else "-"
                for cell in row["length_bins"]
            ]
            lines.append(markdown_row([source, *cells]))
        return (
            "\n".join(lines)
            + f"\n\nReward changes are relative to each source's reward std; tolerance {self.tolerance:g}; "
            + f"{truncation_note(self.max_length, self.truncation_mode)}.\n"
        )


def audit_reward_model(
    model: PreTrainedModel,
    processing_class: PreTrainedTokenizerBase,
    datasets: Mapping[str, Dataset],
    batch_size: int = 8,
    max_length: int | None = None,
    tolerance: float = 1e-3,
    show_progress: bool = False,
    truncation_mode: str | None = None,
) -> AuditReport:
    """Run every audit on every source (see the module docstring) and return the report.

    Pairs are tokenized and truncated as in `evaluate_reward_model`: sequences longer than `max_length` (`None`: the
    model's own limit, see `trl_more.input_settings.scoring_max_length`) are cut as `truncation_mode` says (`None`:
    as the model was trained, else `"keep_end"`), and counted. `tolerance` bounds the reward changes of the invariance checks, relative to the standard deviation of
    the source's rewards (1e-3 suits float32; bf16 models need about 1e-2).
    """
    import torch

    from ..input_settings import scoring_max_length, scoring_truncation_mode
    from ..tokenization import model_pad_token_id
    from .evaluation import _tokenized_pairs

    truncation_mode = scoring_truncation_mode(model, truncation_mode)
    check_choice("truncation_mode", truncation_mode, TRUNCATION_MODES)
    pad_token_id = model_pad_token_id(model, processing_class)
    max_length = scoring_max_length(model, max_length)
    was_training = model.training
    model.eval()
    checks, failures = {}, {}
    try:
        with torch.no_grad():
            for source, dataset in datasets.items():
                chosen, rejected, truncated = _tokenized_pairs(
                    dataset, processing_class, str(source), max_length, truncation_mode
                )
                sequences = chosen + rejected
                rewards = sequence_rewards(model, sequences, pad_token_id, batch_size, "right")
                one_by_one = sequence_rewards(model, sequences, pad_token_id, 1, "right")
                left = sequence_rewards(model, sequences, pad_token_id, batch_size, "left")
                swapped = sequence_rewards(model, rejected + chosen, pad_token_id, batch_size, "right")
                checks[str(source)] = _source_checks(chosen, rejected, rewards, one_by_one, left, swapped, truncated)
                failures[str(source)] = _failures(checks[str(source)], tolerance, max_length, truncation_mode)
    finally:
        model.train(was_training)
    return AuditReport(checks, failures, tolerance, max_length, truncation_mode)


def sequence_rewards(
    model, sequences: list[list[int]], pad_token_id: int, batch_size: int, padding_side: str
) -> np.ndarray:
    """The reward of every sequence, in batches of `batch_size` in the given order, padded on `padding_side`."""
    from ..rewards.batch_rewards import rewards_of, sequence_outputs

    device = next(model.parameters()).device
    rewards = np.empty(len(sequences), dtype=np.float64)
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        output = sequence_outputs(model, batch, pad_token_id, device, padding_side, use_cache=False)
        rewards[start : start + len(batch)] = rewards_of(output.logits).numpy()
    return rewards


def _source_checks(chosen, rejected, rewards, one_by_one, left, swapped, truncated) -> dict[str, Any]:
    pairs = len(chosen)
    margins = rewards[:pairs] - rewards[pairs:]
    swapped_margins = swapped[:pairs] - swapped[pairs:]  # rejected scored in the chosen's place
    spread = max(float(rewards.std()), 1e-12)
    lengths = np.array([len(ids) for ids in chosen + rejected])
    differences = lengths[:pairs] - lengths[pairs:]
    length_bins = []
    for low, high in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:]):
        inside = (differences > low) & (differences <= high)
        label = f"({low:g}, {high:g}]".replace("inf", "∞")
        length_bins.append(
            {
                "label": label,
                "pairs": int(inside.sum()),
                "accuracy": float((margins[inside] > 0).mean()) if inside.any() else float("nan"),
            }
        )
    correlation = spearmanr(rewards, lengths).statistic if np.ptp(lengths) > 0 and np.ptp(rewards) > 0 else 0.0
    return {
        "pairs": pairs,
        "accuracy": float((margins > 0).mean()),
        "swapped_accuracy": float((swapped_margins > 0).mean()),
        "tie_share": float((margins == 0).mean()),
        "identical_share": float(np.mean([a == b for a, b in zip(chosen, rejected)])),
        "num_truncated": int(truncated.sum()),
        "truncated_share": float(truncated.mean()),
        "batch_size_change": float(np.abs(one_by_one - rewards).max() / spread),
        "padding_side_change": float(np.abs(left - rewards).max() / spread),
        "length_correlation": float(correlation),
        "length_bins": length_bins,
    }


def _failures(row: dict[str, Any], tolerance: float, max_length: int | None, truncation_mode: str) -> list[str]:
    """What failed, what it means, and its likely cause."""
    failures = []
    if abs(row["accuracy"] + row["swapped_accuracy"] + row["tie_share"] - 1) > 1 / max(row["pairs"], 1):
        failures.append(
            "swap: accuracy with chosen and rejected swapped is not 1 - accuracy - ties, so a reward depends on where "
            "its sequence sits in the batch (a collator or model reading across rows)"
        )
    if row["batch_size_change"] > tolerance:
        failures.append(
            "batch size: rewards change with the batch they are scored in (padding read as content: a missing "
            "attention mask or pad_token_id in the model config)"
        )
    if row["padding_side_change"] > tolerance:
        failures.append(
            "padding side: left padding changes the rewards (the reward is read at a fixed position, or absolute "
            "positions shift with the padding): score with right padding, as the model was trained"
        )
    if row["identical_share"] > 0 or row["tie_share"] > row["identical_share"]:
        failures.append(
            f"ties: {100 * row['tie_share']:.1f}% of the pairs have equal rewards ({100 * row['identical_share']:.1f}% "
            "identical chosen and rejected sequences): they count as errors; clean the data or report them apart"
        )
    if row["truncated_share"] > TRUNCATED_SHARE_WARNING:
        lost = (
            "their beginning; raise max_length if the prompts matter"
            if truncation_mode == "keep_end"
            else "their end, where the reward is read; use truncation_mode keep_end or raise max_length"
        )
        failures.append(
            f"truncation: {100 * row['truncated_share']:.1f}% of the pairs exceed max_length={max_length} and lose "
            + lost
        )
    if abs(row["length_correlation"]) > LENGTH_CORRELATION_WARNING:
        failures.append(
            f"length: the reward correlates with the response length (Spearman {row['length_correlation']:.2f}); "
            "compare the accuracy across the length bins before trusting it"
        )
    return failures
