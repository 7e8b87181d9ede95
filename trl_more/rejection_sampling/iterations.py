"""The files and the training set of rejection-sampling iterations, and what produced each iteration.

Every iteration is written to `output_dir/iteration-XX/` (temporary name, then rename: whole or not at all):
`samples.jsonl` (every sample with its rewards and whether it was selected), `selected.jsonl`, `metrics.json`,
`reward_model/` when the reward model is updated every iteration (MetaRM), and `provenance.json`, the record of what produced it: the fingerprints of the initial policy, of the policy that
generated it and of every reward model, the prompts, and the generation, scoring and selection settings. A run that
finds an iteration folder reuses it only when that record equals its own; a folder written with other settings is
refused with the differences named, unless `reuse_mismatched_iterations=True`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .diversity import distinct_n


__all__ = [
    "IterationDataset",
    "IterationStore",
    "iteration_metrics",
    "provenance_differences",
    "settings_provenance",
]

# The config fields that shape an iteration, recorded in its provenance by group (`settings_provenance`).
GENERATION_SETTINGS = (
    "generation_backend",
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "num_samples_per_prompt",
    "seed",
)
SCORING_SETTINGS = (
    "ensemble",
    "ensemble_std_coef",
    "ensemble_calibration",
    "reward_max_length",
    "reward_objective_weights",
)
METARM_SETTINGS = (
    "metarm_learning_rate",
    "metarm_meta_learning_rate",
    "metarm_per_device_train_batch_size",
    "metarm_per_device_meta_batch_size",
    "metarm_steps_per_iteration",
    "metarm_meta_abs_epsilon",
)
TRAINING_SETTINGS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "optim",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_iterations",
    "num_epochs_per_iteration",
    "max_length",
    "data_seed",
)


class IterationDataset(torch.utils.data.Dataset):
    """The current iteration's tokenized training examples, padded to a fixed length with examples that carry no loss.

    The length never changes, so the Trainer can size the run once; the content is replaced at every iteration.
    """

    def __init__(self, length: int, pad_token_id: int):
        self.length = length
        self.filler = {"input_ids": [pad_token_id], "labels": [-100]}
        self.examples: list[dict[str, list[int]]] = []

    def set_examples(self, examples: list[dict[str, list[int]]]) -> None:
        if len(examples) > self.length:
            raise ValueError(f"{len(examples)} examples do not fit an iteration of {self.length}.")
        self.examples = examples

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.examples[index] if index < len(self.examples) else self.filler


def iteration_metrics(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Statistics of one iteration's samples: reward of all and of the selected ones, length, diversity, filtering.

    `rjs/fraction_filtered` counts the samples the response filter or `min_reward` made ineligible. Watch the mean
    reward of the selected responses against that of all samples, the response length and distinct-2 for reward
    hacking (e.g. a token spreading through the selected responses).
    """
    if not samples:
        return {}
    rewards = np.array([sample["reward"] for sample in samples], dtype=np.float64)
    selected = [sample for sample in samples if sample["selected"]]
    metrics = {
        "rjs/reward_mean": float(rewards.mean()),
        "rjs/reward_max": float(rewards.max()),
        "rjs/response_length": float(np.mean([len(sample["response_ids"]) for sample in samples])),
        "rjs/distinct_2": distinct_n([sample["response"] for sample in samples], 2),
        "rjs/fraction_filtered": float(np.mean([not sample["eligible"] for sample in samples])),
        "rjs/num_selected": float(len(selected)),
    }
    if selected:
        metrics["rjs/reward_selected_mean"] = float(np.mean([sample["reward"] for sample in selected]))
        metrics["rjs/selected_response_length"] = float(np.mean([len(sample["response_ids"]) for sample in selected]))
    per_model = np.array([sample["rewards"] for sample in samples], dtype=np.float64)
    if per_model.shape[1] > 1:
        for model_index, mean in enumerate(per_model.mean(axis=0)):
            metrics[f"rjs/reward_mean/model_{model_index}"] = float(mean)
        # Disagreement: the population std across the models (on their common scale) of every sample's reward.
        metrics["rjs/ensemble_std"] = float(per_model.std(axis=1).mean())
        if selected:
            chosen = np.array([sample["rewards"] for sample in selected], dtype=np.float64)
            metrics["rjs/ensemble_std_selected"] = float(chosen.std(axis=1).mean())
    return metrics


def settings_provenance(args: Any, iteration: int, response_filter: str | None, world_size: int) -> dict[str, Any]:
    """The settings part of iteration `iteration`'s provenance (the trainer adds the fingerprints): generation, scoring
    and selection; MetaRM's reward-model updates when on; and, from the second iteration on, the training settings
    that shaped the policy (as strings), with the number of processes."""
    provenance = {
        "generation": {name: getattr(args, name) for name in GENERATION_SETTINGS},
        "scoring": {name: getattr(args, name) for name in SCORING_SETTINGS},
        "selection": {
            "selection": args.selection,
            "top_fraction": args.top_fraction,
            "min_reward": args.min_reward,
            "response_filter": response_filter,
        },
    }
    if args.metarm:
        provenance["reward_model_updates"] = {name: getattr(args, name) for name in METARM_SETTINGS}
    if iteration > 0:
        provenance["training"] = {name: str(getattr(args, name)) for name in TRAINING_SETTINGS}
        provenance["training"]["world_size"] = str(world_size)
    return provenance


def provenance_differences(found: dict[str, Any] | None, expected: dict[str, Any], global_step: int) -> list[str]:
    """The entries in which an iteration's recorded provenance differs from what this run would use.

    The policy that generated the iteration is compared only when this run is at the step at which it was
    generated (a run resumed from a checkpoint inside the iteration has since trained on it).
    """
    if found is None:
        return ["the folder has no provenance.json (written by an older version, or not by this trainer)"]
    differences = []
    for key, value in expected.items():
        if key in ("policy", "global_step"):
            continue
        if found.get(key) != value:
            differences.append(f"{key}: {found.get(key)!r} there, {value!r} here")
    if found.get("global_step") == global_step and found.get("policy") != expected.get("policy"):
        differences.append(f"policy: generated by weights {found.get('policy')}, this run's are {expected['policy']}")
    return differences


class IterationStore:
    """`output_dir/iteration-XX/` folders, each written whole (temporary name, then rename) or not at all."""

    SAMPLES = "samples.jsonl"
    SELECTED = "selected.jsonl"
    METRICS = "metrics.json"
    PROVENANCE = "provenance.json"

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = Path(output_dir)

    def path(self, iteration: int) -> Path:
        return self.output_dir / f"iteration-{iteration:02d}"

    def is_complete(self, iteration: int) -> bool:
        return (self.path(iteration) / self.SAMPLES).is_file()

    def staging(self, iteration: int) -> Path:
        """The temporary folder an iteration is written to before it is renamed into place."""
        final = self.path(iteration)
        return final.with_name(final.name + ".tmp")

    def begin(self, iteration: int) -> Path:
        """An empty staging folder for the iteration (one left over by a crash while writing is removed)."""
        staging = self.staging(iteration)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def write(
        self,
        iteration: int,
        samples: list[dict[str, Any]],
        metrics: dict[str, float],
        provenance: dict[str, Any] | None = None,
        begun: bool = False,
    ) -> Path:
        """Write the iteration's files and move the folder into place. `begun`: the staging folder was made with
        `begin` and already holds files of other writers (the updated reward model)."""
        final = self.path(iteration)
        staging = self.staging(iteration) if begun else self.begin(iteration)
        _write_jsonl(staging / self.SAMPLES, samples)
        selected = [
            {key: sample[key] for key in ("prompt_index", "sample_index", "prompt", "response", "reward")}
            for sample in samples
            if sample["selected"]
        ]
        _write_jsonl(staging / self.SELECTED, selected)
        (staging / self.METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
        if provenance is not None:
            (staging / self.PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        staging.rename(final)  # atomic: the folder appears complete or not at all
        return final

    def read(self, iteration: int) -> list[dict[str, Any]]:
        with open(self.path(iteration) / self.SAMPLES, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.strip()]

    def read_provenance(self, iteration: int) -> dict[str, Any] | None:
        path = self.path(iteration) / self.PROVENANCE
        return json.loads(path.read_text()) if path.is_file() else None


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
