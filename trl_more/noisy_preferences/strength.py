"""Preference strength: how strongly an ensemble of reward models prefers every pair's chosen response.

For pair i and reward model m, d_im = r_m(x_i, y_chosen) - r_m(x_i, y_rejected). The strength mean mu_i and std
sigma_i are the mean and population standard deviation of d_im over the models that scored the pair. A low or
negative mu marks a pair the ensemble would label the other way (possibly mislabelled), a high sigma one it disagrees
on (ambiguous). docs/noisy_preferences.md describes the method and both modes:

- `"seeds"` (the paper's): M models, each trained on every pair with its own seed, score every pair (in-sample: a
  model that memorised a wrong label scores it as right, which hides the noise);
- `"cross_fit"` (the default): repeated cross-fitting. The pairs of every source are split into F folds, R = M / F
  times with different splits; each model trains on F - 1 folds and scores the held-out one. Every pair is scored by
  R >= 2 models that never trained on it.

Models are trained with `MORERewardTrainer` (any model, PEFT, MORE or uniform weighting, the usual config), one at a
time with a progress bar. Each model's scores are written (temporary file, then rename) to
`<output_dir>/model-XX/scores.json` as soon as it is done, with a fingerprint of the data, the settings and what the
model starts from (name, or class, config and initial weights; PEFT config; tokenizer): an interrupted estimate
started again reuses the finished models, and scores from other data, settings or models are refused.

With `save_models=True` every member's weights are kept too (`<output_dir>/model-XX/`, a normal reward model folder
with its tokenizer, or its LoRA adapter), so that they can be weight-averaged into one reward model (WARM,
`trl_more.rewards.average_reward_models`). WARM averages only models that start from the same weights, reward head
included, so the members then share their initialisation: each is loaded and its head drawn with `args.seed`, and
member m gets its own data order from `data_seed = (args.data_seed or args.seed) + m` instead of its own seed. Each
saved member records a fingerprint of its initial weights in `config.training_initialisation`, which averaging checks.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import set_seed

from .._compat import save_model_without_push
from ..constants import (
    SOURCE_COLUMN,
    SOURCE_INDEX_COLUMN,
    STRENGTH_COLUMN,
    STRENGTH_DIFFERENCES_COLUMN,
    STRENGTH_STD_COLUMN,
    TRAINING_INITIALISATION_ATTRIBUTE,
    check_choice,
)
from ..data.sources import attach_source_indices
from ..fingerprints import fingerprint, model_fingerprint
from ..reports import json_text, markdown_row, markdown_table
from ..trainer_utils import config_with, write_atomically


__all__ = ["STRENGTH_MODES", "PreferenceStrength", "estimate_preference_strength", "strength_summary"]

STRENGTH_MODES = ("cross_fit", "seeds")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Fields of the training config that change the trained models (the rest only changes where files and logs go).
_IRRELEVANT_SETTINGS = ("dir", "hub", "report_to", "logging", "save", "push", "run_name", "disable_tqdm", "print")


@dataclass
class PreferenceStrength:
    """The pairs with their strength, and how it was estimated.

    Attributes:
        dataset: the input pairs with `strength_mean` (mu), `strength_std` (sigma, population std) and
            `strength_differences` (the reward differences of the models that scored the pair) columns, and a
            `source` column.
        mode: `"cross_fit"` or `"seeds"`.
        num_models: models trained.
        evaluations: with an `eval_dataset`, every model's `RewardEvaluation` of it (accuracy, ECE, margins per
            source), in model order; else empty.
    """

    dataset: Dataset
    mode: str
    num_models: int
    evaluations: list[Any] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per source: pairs, the share with mu < 0, and the quantiles of mu and sigma (see `strength_summary`)."""
        return strength_summary(self.dataset)

    def to_markdown(self) -> str:
        summary = self.summary()
        header = ["source", "pairs", "mu < 0 (%)", *(f"mu q{int(q * 100)}" for q in QUANTILES)]
        header += [f"sigma q{int(q * 100)}" for q in QUANTILES]
        lines = markdown_table(header)
        for source, row in summary.items():
            cells = [source, str(int(row["pairs"])), f"{100 * row['share_negative']:.1f}"]
            cells += [f"{row[f'mu_q{int(q * 100)}']:.3f}" for q in QUANTILES]
            cells += [f"{row[f'sigma_q{int(q * 100)}']:.3f}" for q in QUANTILES]
            lines.append(markdown_row(cells))
        return "\n".join(lines) + f"\n\nStrength from {self.num_models} reward models, mode {self.mode}.\n"

    def save(self, output_dir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
        """Write `strength.jsonl`, `strength.parquet`, `strength_summary.json`/`.md` and (with `plots`)
        `strength.png` to `output_dir`; returns their paths."""
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "jsonl": folder / "strength.jsonl",
            "parquet": folder / "strength.parquet",
            "summary_json": folder / "strength_summary.json",
            "summary_md": folder / "strength_summary.md",
        }
        write_atomically(paths["jsonl"], lambda path: self.dataset.to_json(path, lines=True, force_ascii=False))
        write_atomically(paths["parquet"], lambda path: self.dataset.to_parquet(path))
        json_text(self.summary(), paths["summary_json"])
        paths["summary_md"].write_text(self.to_markdown())
        if plots:
            from ..plots import plot_preference_strength

            paths["plot"] = plot_preference_strength(self.dataset, folder / "strength.png")
        return paths


def strength_summary(dataset: Dataset) -> dict[str, dict[str, float]]:
    """Per source (and `"all"` when there are several): `pairs`, `share_negative` (mu < 0) and the quantiles
    `mu_q5` ... `mu_q95`, `sigma_q5` ... `sigma_q95`."""
    mu = np.asarray(dataset[STRENGTH_COLUMN], dtype=np.float64)
    sigma = np.asarray(dataset[STRENGTH_STD_COLUMN], dtype=np.float64)
    sources = np.asarray(dataset[SOURCE_COLUMN]) if SOURCE_COLUMN in dataset.column_names else np.full(len(mu), "all")
    groups = {str(name): sources == name for name in dict.fromkeys(sources.tolist())}
    if len(groups) > 1:
        groups["all"] = np.ones(len(mu), dtype=bool)
    summary = {}
    for name, rows in groups.items():
        row = {"pairs": float(rows.sum()), "share_negative": float((mu[rows] < 0).mean())}
        for q in QUANTILES:
            row[f"mu_q{int(q * 100)}"] = float(np.quantile(mu[rows], q))
            row[f"sigma_q{int(q * 100)}"] = float(np.quantile(sigma[rows], q))
        summary[name] = row
    return summary


def _fold_plan(
    source_index: np.ndarray, mode: str, num_models: int, num_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For every model, (rows it trains on, rows it scores)."""
    everything = np.arange(len(source_index))
    if mode == "seeds":
        return [(everything, everything)] * num_models
    plan = []
    for repeat in range(num_models // num_folds):
        rng = np.random.default_rng([seed, repeat])
        fold = np.empty(len(source_index), dtype=np.int64)
        for source in np.unique(source_index):  # stratified: every model trains on every source
            rows = np.flatnonzero(source_index == source)
            fold[rows[rng.permutation(len(rows))]] = np.arange(len(rows)) % num_folds
        plan.extend(
            (np.flatnonzero(fold != held_out), np.flatnonzero(fold == held_out)) for held_out in range(num_folds)
        )
    return plan


def _settings_fingerprint(dataset: Dataset, args: Any, mode: str, num_models: int, num_folds: int) -> str:
    relevant = {
        key: value for key, value in args.to_dict().items() if not any(part in key for part in _IRRELEVANT_SETTINGS)
    }
    texts = [list(dataset[column]) for column in ("prompt", "chosen", "rejected") if column in dataset.column_names]
    return fingerprint(
        {"data": fingerprint(texts), "settings": relevant, "mode": mode, "M": num_models, "F": num_folds}
    )


def _start_identity(model: Any) -> str:
    """What a member starts from: the model's name, or its class, config and initial weights. Left out, as they do not
    change the model: the transformers version and the folder the config was read from."""
    if isinstance(model, str):
        return model
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("transformers_version", "_name_or_path")}
    return json.dumps([type(model).__name__, config, model_fingerprint(model)], sort_keys=True, default=_jsonable)


def _setup_identity(peft_config: Any, processing_class: Any) -> str:
    """What every member is trained with besides the config: the PEFT config, and the tokenizer's vocabulary, special
    tokens, sides and chat template."""
    peft = peft_config.to_dict() if hasattr(peft_config, "to_dict") else peft_config
    tokenizer = None
    if processing_class is not None:
        tokenizer = [
            fingerprint(sorted(processing_class.get_vocab().items())),
            processing_class.special_tokens_map,
            processing_class.padding_side,
            processing_class.truncation_side,
            processing_class.chat_template,
        ]
    return json.dumps([peft, tokenizer], sort_keys=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """JSON for what it lacks, stable across runs: sorted sets (PEFT's module names), str() for the rest (dtypes)."""
    return sorted(value) if isinstance(value, set | frozenset) else str(value)


def estimate_preference_strength(
    model: str | Callable[[], Any],
    train_dataset: Dataset | Mapping[str, Dataset],
    args: Any,
    *,
    num_models: int = 4,
    mode: str = "cross_fit",
    num_folds: int = 2,
    processing_class: Any = None,
    peft_config: Any = None,
    eval_dataset: Dataset | Mapping[str, Dataset] | None = None,
    score_batch_size: int | None = None,
    show_progress: bool = True,
    save_models: bool = False,
) -> PreferenceStrength:
    """Train `num_models` reward models and score every pair with them (see the module docstring).

    Args:
        model: a model name or path (each model starts from its weights), or a function returning a fresh model. The
            function is called once per member after `transformers.set_seed(args.seed + m)`, also for a member whose
            saved scores are reused (to check that they come from a model that started from the same weights: a
            reused member costs one model load).
        train_dataset: preference pairs in any format `MORERewardTrainer` takes (a source column, or a dict of
            sources); the strength is computed for every one of them.
        args: the `MORERewardConfig` every model is trained with (`output_dir` holds one folder per model; the seed
            of model m is `args.seed + m`; checkpoints are not written).
        num_models: M; in `"cross_fit"` mode a multiple of `num_folds` with M / F >= 2.
        mode: `"cross_fit"` (out-of-sample, the default) or `"seeds"` (the paper's, in-sample).
        num_folds: F of `"cross_fit"`.
        processing_class, peft_config: as for `MORERewardTrainer`.
        eval_dataset: held-out pairs (a Dataset, or `{source: Dataset}`) every model also scores, e.g. to see how
            accurate the ensemble's members are; their evaluations are in `PreferenceStrength.evaluations`.
        score_batch_size: pairs per scoring pass (default: `args.per_device_eval_batch_size`). Every model scores
            with the token limit it was trained with (`args.max_length`, recorded in its config; at most its position
            limit, which is the limit when `args.max_length` is None), truncating longer sequences as
            `args.truncation_mode` says (`keep_end` when it is None, which drops long pairs only in training).
        show_progress: a progress bar over the models.
        save_models: keep every member's weights in `<output_dir>/model-XX/`, all members starting from one
            initialisation, for weight averaging (see the module docstring). A member whose scores were saved without
            its weights is trained again.
    """
    from ..metrics import RewardEvaluation, evaluate_reward_model
    from ..more import MORERewardTrainer

    check_choice("mode", mode, STRENGTH_MODES)
    if mode == "cross_fit" and (num_folds < 2 or num_models % num_folds or num_models // num_folds < 2):
        raise ValueError(
            f"`cross_fit` needs num_folds >= 2 and num_models a multiple of num_folds with at least two repeats, so "
            f"that every pair is scored by two or more models that never saw it; got num_models={num_models}, "
            f"num_folds={num_folds} (e.g. 4 models, 2 folds)."
        )
    if mode == "seeds" and num_models < 2:
        raise ValueError(f"`seeds` needs at least two models for a standard deviation, got {num_models}.")
    dataset, sources = attach_source_indices(train_dataset, args.source_column)
    if not isinstance(dataset, Dataset):
        raise ValueError("The strength of every pair needs a map-style `Dataset` (not an `IterableDataset`).")
    if not sources:  # one source: every pair belongs to it
        dataset = dataset.add_column(SOURCE_INDEX_COLUMN, [0] * len(dataset))
        sources = ["all"]
    if SOURCE_COLUMN not in dataset.column_names:
        dataset = dataset.add_column(SOURCE_COLUMN, [sources[index] for index in dataset[SOURCE_INDEX_COLUMN]])
    source_index = np.asarray(dataset[SOURCE_INDEX_COLUMN])
    pairs = dataset.remove_columns(SOURCE_INDEX_COLUMN)
    plan = _fold_plan(source_index, mode, num_models, num_folds, args.seed)
    settings = fingerprint(
        [
            _settings_fingerprint(pairs, args, mode, num_models, num_folds),
            _setup_identity(peft_config, processing_class),
        ]
    )
    held_out = eval_dataset if eval_dataset is None or isinstance(eval_dataset, Mapping) else {"eval": eval_dataset}
    if save_models:  # the members share their initialisation, which changes them: other scores are not reused
        settings = fingerprint([settings, "shared initialisation"])
    if held_out is not None:
        settings = fingerprint(
            [settings, {name: [list(data[c]) for c in ("chosen", "rejected")] for name, data in held_out.items()}]
        )
    evaluations = []
    output_dir = Path(args.output_dir)
    differences: list[list[float]] = [[] for _ in range(len(pairs))]

    for index, (train_rows, score_rows) in enumerate(tqdm(plan, desc="Strength models", disable=not show_progress)):
        record_path = output_dir / f"model-{index:02d}" / "scores.json"
        # Kept for averaging, members share their initialisation (seed) and differ in their data order (data_seed).
        seeds = (
            {"seed": args.seed, "data_seed": (args.data_seed if args.data_seed is not None else args.seed) + index}
            if save_models
            else {"seed": args.seed + index}
        )
        set_seed(seeds["seed"])  # a factory that draws a new head from the global generator draws the same one
        initial = model() if callable(model) else model
        member = fingerprint([settings, _start_identity(initial)])
        record = _read_record(record_path, member)
        if record is not None and save_models and not _has_saved_model(record_path.parent):
            record = None
        if record is None:
            model_args = config_with(args, output_dir=str(record_path.parent), save_strategy="no", **seeds)
            trainer = MORERewardTrainer(
                model=initial,
                args=model_args,
                train_dataset=pairs.select(train_rows),
                processing_class=copy.deepcopy(processing_class),
                peft_config=copy.deepcopy(peft_config),  # PEFT and TRL fill in its fields in place
            )
            if save_models:  # LoRA's random A factors left out: with B = 0 they add nothing to the initial model
                initialisation = model_fingerprint(trainer.model, exclude="lora_")
            trainer.train()
            if save_models:
                setattr(trainer.model.config, TRAINING_INITIALISATION_ATTRIBUTE, initialisation)
                save_model_without_push(trainer, str(record_path.parent))
            scored = evaluate_reward_model(
                trainer.model,
                trainer.processing_class,
                {"pairs": pairs.select(score_rows), **(held_out or {})},
                batch_size=score_batch_size or args.per_device_eval_batch_size,
                truncation_mode=args.truncation_mode,  # None: as recorded in training, else keep_end
                show_progress=False,
            )
            margins = {name: values.tolist() for name, values in scored.margins.items()}
            record = {"settings": member, "rows": score_rows.tolist(), "differences": margins.pop("pairs")}
            record["held_out"] = margins
            record_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(record_path, lambda path, record=record: Path(path).write_text(json.dumps(record)))
            del trainer
        del initial
        gc.collect()
        for row, difference in zip(record["rows"], record["differences"]):
            differences[row].append(difference)
        if record["held_out"]:
            evaluations.append(RewardEvaluation.from_margins(record["held_out"]))

    means = [float(np.mean(values)) for values in differences]
    stds = [float(np.std(values)) for values in differences]  # population std (divisor: the number of models)
    result = pairs.add_column(STRENGTH_COLUMN, means).add_column(STRENGTH_STD_COLUMN, stds)
    result = result.add_column(STRENGTH_DIFFERENCES_COLUMN, differences)
    return PreferenceStrength(result, mode, num_models, evaluations)


def _has_saved_model(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("config.json", "adapter_config.json"))


def _read_record(path: Path, expected: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("settings") != expected:
        raise ValueError(
            f"{path} holds the scores of a model trained on other data, with other settings or from another model "
            "(weights, PEFT config or tokenizer) than this estimate. "
            "Use a new `output_dir`, or delete the model-XX folders to train them again."
        )
    if any(not math.isfinite(value) for value in record["differences"]):
        raise ValueError(f"{path} holds reward differences that are not finite numbers; delete it to score again.")
    return record
