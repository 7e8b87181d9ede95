"""Scoring preference data with a reward model, and the per-source table of accuracy, calibration and reward margins."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..constants import PAIR_ENCODINGS, TRUNCATION_MODES, check_choice
from ..reports import json_text, markdown_row, markdown_table
from .calibration import DEFAULT_OUTLIER_THRESHOLD, as_margins, preference_metrics
from .temperature import reward_temperature


if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


__all__ = ["RewardEvaluation", "Truncation", "evaluate_reward_model"]

AVERAGED_METRICS = ("preference_accuracy", "ece", "ace", "mce")


@dataclass(frozen=True)
class Truncation:
    """The token limit pairs were scored with, and how many pairs of every source had a sequence cut to it.

    Attributes:
        max_length: the limit (`None`: none, nothing was cut).
        truncation_mode: `"keep_end"` (the start was cut) or `"keep_start"` (the end was cut).
        num_truncated: `{source: pairs whose chosen or rejected sequence was longer than max_length}`.
    """

    max_length: int | None
    truncation_mode: str
    num_truncated: dict[str, int]


class TokenizedPairs(NamedTuple):
    """The token ids of a source's chosen and rejected sequences, fitted to a token limit, and which pairs were cut."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    truncated: np.ndarray


@dataclass
class RewardEvaluation:
    """Metrics of a reward model per source, with the raw reward margins they were computed from.

    Attributes:
        metrics: `{source: preference_metrics(...)}`: `num_pairs`, `preference_accuracy`, `ece`, `ace`, `mce`,
            `margin_mean`, `margin_std` and the outlier statistics (see `trl_more.metrics.preference_metrics`).
        margins: `{source: array of r(chosen) - r(rejected)}`, in the order of the source's rows, already divided by
            `temperature`.
        n_bins: bins of the calibration errors.
        outlier_threshold: reward differences beyond +-this count as outliers.
        temperature: the temperature the rewards were divided by (1.0 when none was applied).
        rewards: `{source: raw rewards of every scored response}` (the chosen responses, then the rejected ones,
            before the temperature), when the evaluation scored a model; e.g. for the reward statistics that put
            several reward models on one scale (`trl_more.rewards.fit_reward_statistics`). Not saved by `to_json`.
        truncation: the token limit the pairs were scored with and the truncated pairs per source, when known
            (`evaluate_reward_model` sets it); `to_dict` writes the count of every source as its `num_truncated`.
    """

    metrics: dict[str, dict[str, float]]
    margins: dict[str, np.ndarray]
    n_bins: int = 10
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD
    temperature: float = 1.0
    rewards: dict[str, np.ndarray] | None = None
    truncation: Truncation | None = None

    @classmethod
    def from_margins(
        cls,
        margins: Mapping[str, Any],
        n_bins: int = 10,
        outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
        temperature: float = 1.0,
        truncation: Truncation | None = None,
    ) -> RewardEvaluation:
        """The table of `{source: margins}` (already divided by `temperature`, which is only recorded, as is the
        `truncation` they were scored with)."""
        if not margins:
            raise ValueError("No sources given: pass at least one `{source: margins}` entry.")
        margins = {str(source): as_margins(values) for source, values in margins.items()}
        metrics = {source: preference_metrics(values, n_bins, outlier_threshold) for source, values in margins.items()}
        return cls(metrics, margins, n_bins, outlier_threshold, temperature, truncation=truncation)

    def average(self) -> dict[str, float]:
        """Unweighted mean over the sources of accuracy, ECE, ACE and MCE (how the paper averages its sources)."""
        return {key: float(np.mean([row[key] for row in self.metrics.values()])) for key in AVERAGED_METRICS}

    def to_dict(self, include_margins: bool = True) -> dict[str, Any]:
        """Plain Python types only (JSON-ready); a NaN (e.g. the mean of no outliers) becomes `None`."""
        result = {
            "n_bins": self.n_bins,
            "outlier_threshold": self.outlier_threshold,
            "temperature": self.temperature,
            "sources": {source: {k: _plain(v) for k, v in row.items()} for source, row in self.metrics.items()},
            "average": self.average(),
        }
        if self.truncation is not None:
            result.update(max_length=self.truncation.max_length, truncation_mode=self.truncation.truncation_mode)
            for source, row in result["sources"].items():
                row["num_truncated"] = self.truncation.num_truncated[source]
        if include_margins:
            result["margins"] = {source: values.tolist() for source, values in self.margins.items()}
        return result

    def to_json(self, path: str | Path | None = None, include_margins: bool = True) -> str:
        """The `to_dict` result as JSON text, also written to `path` when given."""
        return json_text(self.to_dict(include_margins), path)

    @classmethod
    def from_json(cls, path: str | Path) -> RewardEvaluation:
        """Read back a result saved with `to_json(path)` (which must include the margins)."""
        data = json.loads(Path(path).read_text())
        if "margins" not in data:
            raise ValueError(f"{path} holds no reward margins; save it with `to_json(path, include_margins=True)`.")
        truncation = None
        if "truncation_mode" in data:
            counts = {source: row["num_truncated"] for source, row in data["sources"].items()}
            truncation = Truncation(data["max_length"], data["truncation_mode"], counts)
        return cls.from_margins(
            data["margins"], data["n_bins"], data["outlier_threshold"], data["temperature"], truncation
        )

    def to_markdown(self) -> str:
        """A Markdown table, one row per source (and their average when there are several), with the truncated pairs
        when they are known."""
        threshold = f"{self.outlier_threshold:g}"
        truncation = self.truncation
        header = [
            "source",
            "pairs",
            *(["truncated"] if truncation else []),
            "accuracy (%)",
            "ECE",
            "ACE",
            "MCE",
            "margin mean",
            "margin std",
            f"margins > +{threshold}: n (mean)",
            f"margins < -{threshold}: n (mean)",
        ]
        lines = markdown_table(header)
        for source, row in self.metrics.items():
            cells = [
                source,
                str(row["num_pairs"]),
                *([str(truncation.num_truncated[source])] if truncation else []),
                f"{100 * row['preference_accuracy']:.2f}",
                f"{row['ece']:.4f}",
                f"{row['ace']:.4f}",
                f"{row['mce']:.4f}",
                f"{row['margin_mean']:.3f}",
                f"{row['margin_std']:.3f}",
                _outlier_cell(row["positive_outliers"], row["positive_outlier_mean"]),
                _outlier_cell(row["negative_outliers"], row["negative_outlier_mean"]),
            ]
            lines.append(markdown_row(cells))
        if len(self.metrics) > 1:
            mean = self.average()
            cells = ["average", "", *([""] if truncation else []), f"{100 * mean['preference_accuracy']:.2f}"]
            cells += [f"{mean[key]:.4f}" for key in ("ece", "ace", "mce")] + [""] * 4
            lines.append(markdown_row(cells))
        notes = f"ECE/ACE/MCE with {self.n_bins} bins over both orderings of every pair"
        if self.temperature != 1.0:
            notes += f"; rewards divided by the temperature {self.temperature:.4g}"
        if truncation is not None:
            notes += f"; {truncation_note(truncation.max_length, truncation.truncation_mode)}"
        return "\n".join(lines) + f"\n\n{notes}.\n"


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _outlier_cell(count: int, mean: float) -> str:
    return f"{count} ({mean:.2f})" if count else "0"


def truncation_note(max_length: int | None, truncation_mode: str) -> str:
    """What the truncated pairs of a report are, for its notes."""
    if max_length is None:
        return "no token limit, nothing truncated"
    cut = "start" if truncation_mode == "keep_end" else "end"
    return (
        f"truncated: pairs with a sequence longer than max_length={max_length} tokens, which lost its {cut} "
        f"({truncation_mode})"
    )


def evaluate_reward_model(
    model: PreTrainedModel,
    processing_class: PreTrainedTokenizerBase,
    datasets: Mapping[str, Dataset] | Dataset,
    batch_size: int = 8,
    max_length: int | None = None,
    truncation_mode: str | None = None,
    n_bins: int = 10,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
    temperature: float | None = None,
    show_progress: bool = True,
    pair_encoding: str = "separate",
) -> RewardEvaluation:
    """Score every pair of every source with a reward model and tabulate accuracy, calibration and reward margins.

    Pairs are tokenized exactly as `trl.RewardTrainer` tokenizes them (any of TRL's preference formats: explicit or
    implicit prompt, standard or conversational; already tokenized `chosen_ids`/`rejected_ids` are used as they are)
    and padded as TRL's preference collator pads them, so the scores equal what the trainer sees. Batches are sorted by length
    (longest first, so an out-of-memory error shows at once) and run under `torch.no_grad()` in eval mode.
    Under several processes, call it on every process: the tokenization is TRL's dataset preparation, which lets the
    main process go first and so waits for the others. Like
    `trl.RewardTrainer`, a model config without a `pad_token_id` gets the tokenizer's pad (else EOS) token id.

    Args:
        model: a sequence-classification reward model with one output (`num_labels=1`).
        processing_class: its tokenizer (with a chat template for conversational data).
        datasets: `{source: Dataset}` (e.g. a `DatasetDict` of test splits), or one `Dataset` (source `"eval"`).
        batch_size: pairs per forward pass (each pass holds 2 * batch_size sequences).
        max_length: longer sequences are truncated to this many tokens (no pair is dropped) and the pairs counted in
            `.truncation`. `None`: the model's own limit, the `max_length` it was trained with (recorded by
            trl-more's trainers) or else its position limit (`trl_more.input_settings.scoring_max_length`).
        truncation_mode: `"keep_end"` keeps the last tokens (where the reward is read), `"keep_start"` the first.
            `None`: the one the model was trained with, else `"keep_end"` (`scoring_truncation_mode`).
        n_bins: bins of the calibration errors.
        outlier_threshold: reward differences beyond +-this count as outliers.
        temperature: rewards are divided by it; `None` uses `model.config.reward_temperature` when a temperature was
            stored with `trl_more.metrics.set_reward_temperature`, else 1.
        show_progress: show a progress bar per source.
        pair_encoding: `"shared_prompt"` scores each pair in one row, prompt + chosen + rejected, the prompt computed
            once (decoders; the same rewards, docs/pair_encoding.md); `"packed"` also packs a batch's rows into
            sequences no longer than its longest row; bidirectional encoders are scored separately.

    Returns:
        A `RewardEvaluation`: `.metrics[source]`, `.margins[source]`, `.truncation`, `.to_dict()`, `.to_json()`,
        `.to_markdown()`.
    """
    import torch

    from ..input_settings import scoring_max_length, scoring_truncation_mode

    if isinstance(datasets, Mapping):
        datasets = dict(datasets)
    elif hasattr(datasets, "column_names"):
        datasets = {"eval": datasets}
    else:
        raise TypeError(f"`datasets` must be a dict of `{{source: Dataset}}` or a Dataset, not {type(datasets)}.")
    if not datasets:
        raise ValueError("`datasets` is empty: give at least one `{source: Dataset}` entry.")
    truncation_mode = scoring_truncation_mode(model, truncation_mode)
    check_choice("truncation_mode", truncation_mode, TRUNCATION_MODES)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
    temperature = reward_temperature(model) if temperature is None else float(temperature)
    if not temperature > 0:
        raise ValueError(f"The temperature must be positive, got {temperature}.")
    max_length = scoring_max_length(model, max_length)

    from ..pair_encoding import encodes_bidirectionally
    from ..tokenization import model_pad_token_id

    pad_token_id = model_pad_token_id(model, processing_class)
    check_choice("pair_encoding", pair_encoding, PAIR_ENCODINGS)
    # Bidirectional encoders see the whole row, so they keep separate encoding.
    encoding = "separate" if encodes_bidirectionally(model) else pair_encoding
    was_training = model.training
    model.eval()
    rewards, num_truncated = {}, {}
    try:
        with torch.no_grad():
            for source, dataset in datasets.items():
                if len(dataset) == 0:
                    raise ValueError(f"Source {source!r} has no pairs.")
                pairs = _tokenized_pairs(dataset, processing_class, str(source), max_length, truncation_mode)
                num_truncated[str(source)] = int(pairs.truncated.sum())
                rewards[source] = _score(
                    model, pad_token_id, encoding, pairs.chosen, pairs.rejected, batch_size, source, show_progress
                )
    finally:
        model.train(was_training)
    evaluation = RewardEvaluation.from_margins(
        {source: (chosen - rejected) / temperature for source, (chosen, rejected) in rewards.items()},
        n_bins,
        outlier_threshold,
        temperature,
        Truncation(max_length, truncation_mode, num_truncated),
    )
    evaluation.rewards = {str(source): np.concatenate(pair) for source, pair in rewards.items()}
    return evaluation


def _tokenized_pairs(
    dataset: Dataset,
    processing_class: PreTrainedTokenizerBase,
    name: str,
    max_length: int | None,
    truncation_mode: str,
) -> TokenizedPairs:
    """Token ids of the chosen and rejected sequences, from `trl.RewardTrainer`'s own preprocessing, truncated to
    `max_length` as `truncation_mode` says, and which pairs lost tokens."""
    from trl import is_conversational

    from .._compat import prepare_reward_dataset
    from ..tokenization import truncate

    if processing_class.eos_token is None and not is_conversational(dataset[0]):
        raise ValueError(
            f"The tokenizer has no EOS token, which `trl.RewardTrainer` appends to plain-text pairs (source {name!r}). "
            "Set the one the model was trained with, e.g. `tokenizer.eos_token = '[SEP]'` for a BERT-style encoder "
            "(`RewardConfig(eos_token=...)` in training, `--eos_token` for `trl-more evaluate`)."
        )
    tokenized = prepare_reward_dataset(dataset, processing_class, name)
    chosen, rejected = tokenized["chosen_ids"], tokenized["rejected_ids"]
    longest = np.array([max(len(ids), len(other)) for ids, other in zip(chosen, rejected)], dtype=np.int64)
    return TokenizedPairs(
        [truncate(ids, max_length, truncation_mode) for ids in chosen],
        [truncate(ids, max_length, truncation_mode) for ids in rejected],
        longest > max_length if max_length is not None else np.zeros(len(chosen), dtype=bool),
    )


def _score(
    model: PreTrainedModel,
    pad_token_id: int,
    pair_encoding: str,
    chosen: list[list[int]],
    rejected: list[list[int]],
    batch_size: int,
    source: str,
    show_progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The raw rewards of the chosen and of the rejected sequences, in batches of pairs as TRL's preference collator
    builds them (chosen rows, then rejected rows), or each pair in one shared-prompt row (`"shared_prompt"`), the rows
    packed into sequences with `"packed"`."""
    from ..batching import length_sorted_batches
    from ..rewards.batch_rewards import rewards_of, sequence_outputs, shared_prompt_logits

    device = next(model.parameters()).device
    chosen_rewards = np.empty(len(chosen), dtype=np.float64)
    rejected_rewards = np.empty(len(chosen), dtype=np.float64)
    batches = length_sorted_batches([max(len(c), len(r)) for c, r in zip(chosen, rejected)], batch_size)
    for rows in tqdm(batches, desc=f"Scoring {source}", unit="batch", disable=not show_progress):
        if pair_encoding != "separate":
            groups = [[chosen[i], rejected[i]] for i in rows]
            packed = pair_encoding == "packed"
            logits = shared_prompt_logits(model, groups, pad_token_id, device, packed=packed, use_cache=False)
        else:
            sequences = [chosen[i] for i in rows] + [rejected[i] for i in rows]
            logits = sequence_outputs(model, sequences, pad_token_id, device, use_cache=False).logits
        if logits.ndim != 2 or logits.shape[1] != 1:
            raise ValueError(
                f"A reward model has one output per sequence (`num_labels=1`); got {tuple(logits.shape)}."
            )
        rewards_chosen, rewards_rejected = rewards_of(logits).chunk(2)
        chosen_rewards[rows] = rewards_chosen.numpy()
        rejected_rewards[rows] = rewards_rejected.numpy()
    return chosen_rewards, rejected_rewards
