"""`trl-more evaluate`: score preference sources with a saved reward model; write the metrics table and the plots.

Example:
    trl-more evaluate --model runs/more-pythia --output_dir runs/more-pythia/evaluation \\
        --sources hh-helpful=../shared/data/hh_rlhf/helpful-base.test.jsonl.gz mine=data/my_pairs.jsonl \\
        --calibration_sources held_out=data/held_out_pairs.jsonl

Writes `metrics.json` (metrics per source, their average, and the raw reward margins; reload it with
`RewardEvaluation.from_json`), `metrics.md`, `reliability.png`, `reward_differences.png`, and `lambda.png` when the
model folder holds the log of a MORE training run. With `--calibration_sources` it also fits a temperature on those
pairs and writes `temperature.json` and the calibrated table and diagram (`*_calibrated.*`), and the mean and std of
the model's rewards there (`reward_statistics.json`: the scale on which it is combined with other reward models).
Benchmarks write their own files: `--rewardbench` (`rewardbench.*`), `--rmbench` (`rmbench.*`) and `--best_of_n`
with `--gold_model` (`best_of_n.*` and the scored samples, `best_of_n_samples.jsonl`); docs/evaluation.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from trl import TrlParser

from ..constants import TRUNCATION_MODES, check_choice
from ..metrics import DEFAULT_OUTLIER_THRESHOLD, RewardEvaluation, evaluate_reward_model, fit_temperature
from ..metrics.benchmark_scoring import TEMPLATES
from ..rewards.calibration import ENSEMBLE_CALIBRATIONS, fit_reward_statistics, set_reward_statistics


@dataclass
class EvaluateConfig:
    r"""
    Options of `trl-more evaluate`.

    Parameters:
        model (`str`):
            Folder of a saved reward model (`AutoModelForSequenceClassification` with one output) and its tokenizer.
        sources (`list[str]`):
            Preference sources to score, each as `NAME=PATH` or `NAME`. With a known source name (see
            `trl_more.data.known_source_names()`, e.g. `hh-helpful`, `oasst1`, `webgpt`), `PATH` is a local file in
            that source's raw format, converted by `trl_more.data.load_preference_source`, and a bare `NAME` loads
            the source's `split` from the Hub (or its cache). Any other `NAME` labels a local file already in TRL's
            preference format (`chosen`/`rejected`, with or without `prompt`, plain text or conversational, or
            tokenized `chosen_ids`/`rejected_ids`), read as mixtures read such files
            (`trl_more.data.load_trl_preferences`), as one source whatever its `source` column. Files: `.json`,
            `.jsonl`, `.parquet`, `.csv`, or gzipped `.jsonl.gz`, `.json.gz`, `.csv.gz`.
        output_dir (`str`, *optional*, defaults to `"evaluation"`):
            Folder for the table, the plots and (with `save_calibrated_model`) the calibrated model.
        split (`str`, *optional*, defaults to `"test"`):
            Split of the known sources given without a path.
        max_pairs_per_source (`int` or `None`, *optional*, defaults to `None`):
            Score only the first this many pairs of every source (a quick look); `None` scores them all.
        batch_size (`int`, *optional*, defaults to `8`):
            Pairs per forward pass.
        max_length (`int` or `None`, *optional*, defaults to `None`):
            Truncate longer sequences to this many tokens (no pair is dropped); the pairs with a truncated sequence are
            counted per source (`num_truncated` in `metrics.json` and the audit, the `truncated` column of the
            tables). `None`: the model's own limit, the `max_length` it was trained with (recorded in its config by
            trl-more's trainers) or else its position limit (e.g. 512 for BERT-style encoders); nothing is truncated
            only for a model with neither.
        truncation_mode (`str` or `None`, *optional*, defaults to `None`):
            `keep_end` keeps the last `max_length` tokens (where the reward is read), `keep_start` the first. `None`:
            the one the model was trained with (its reading record, docs/preflight.md), else `keep_end`. A
            `max_length` or `truncation_mode` other than the recorded one is used, with a warning.
        n_bins (`int`, *optional*, defaults to `10`):
            Bins of the calibration errors (ECE, ACE, MCE).
        outlier_threshold (`float`, *optional*, defaults to `5.0`):
            Reward differences beyond +-this count as outliers.
        calibration_sources (`list[str]`, *optional*, defaults to `[]`):
            Held-out pairs (same syntax as `sources`) to fit a temperature on; the evaluation sources are then also
            reported with their rewards divided by it.
        save_calibrated_model (`bool`, *optional*, defaults to `False`):
            With `calibration_sources`, save the model and tokenizer to `<output_dir>/calibrated_model` with the
            temperature in `config.reward_temperature` (apply it as `rewards / config.reward_temperature`) and the
            reward statistics in `config.reward_mean` / `config.reward_std` (used to combine it with other models).
        ensemble_models (`list[str]`, *optional*, defaults to `[]`):
            More reward models (folders or Hub ids) that form an ensemble with `model`: every member scores the
            `sources`, and `uncertainty.json` / `uncertainty.md` report, per source, the accuracy of the members' mean
            margin, the accuracy by quantile of the spread of their margins, and the AUROC of the spread for the wrong
            pairs (`trl_more.metrics.uncertainty_metrics`): how well the ensemble's uncertainty predicts its errors.
        ensemble_calibration (`str`, *optional*, defaults to `"stored"`):
            How the members' margins are put on one scale before the mean and spread: `stored` (each model's stored
            reward statistics, else its temperature; refuses a model with neither) or `none` (raw margins).
        plots (`bool`, *optional*, defaults to `True`):
            Draw the PNG plots (needs matplotlib: `pip install trl-more[plots]`).
        eos_token (`str` or `None`, *optional*, defaults to `None`):
            EOS token to set on the tokenizer when it has none (e.g. `[SEP]` for BERT-style encoders), as
            `RewardConfig.eos_token` does in training: TRL appends it to plain-text pairs.
        dtype (`str`, *optional*, defaults to `"float32"`):
            Dtype to load the model in (`float32`, `bfloat16`, `float16` or `auto`).
        device (`str` or `None`, *optional*, defaults to `None`):
            Device to score on; `None` picks `cuda` when available, else `cpu`.
        rewardbench (`str` or `None`, *optional*, defaults to `None`):
            Also score RewardBench: a local json/jsonl/parquet file in the Hub schema, or the Hub id
            (`allenai/reward-bench`, `allenai/reward-bench-2`); writes `rewardbench.json`, `rewardbench.md` and
            `rewardbench.png` (docs/evaluation.md).
        rewardbench_version (`int`, *optional*, defaults to `1`):
            1 (pairs, four sections) or 2 (best of four, six subsets).
        rewardbench_template (`str`, *optional*, defaults to `"auto"`):
            How a RewardBench prompt and response reach the model: `chat` (its chat template), `hh` (the HH
            transcript format), `plain` (the prompt text as given, then the response) or `auto` (the rendering the
            model was trained on, when its reading record has one; else the chat template when the tokenizer has one,
            else `hh`).
        rewardbench_prior_sets (`bool`, *optional*, defaults to `False`):
            Add the older leaderboard's Prior Sets section at half weight to the v1 overall score.
        rmbench (`str` or `None`, *optional*, defaults to `None`):
            Also score RM-Bench: a local json/jsonl/parquet file in the published schema (`total_dataset.json`, or
            one of the repository's per-domain files, e.g. `chat_filtered.json`), or the Hub id `THU-KEG/RM-Bench`;
            writes `rmbench.json`, `rmbench.md` and `rmbench.png` (the style matrix of every domain as a heat map;
            docs/evaluation.md#rm-bench).
        rmbench_template (`str`, *optional*, defaults to `"auto"`):
            How an RM-Bench prompt and response reach the model, as `rewardbench_template`.
        best_of_n (`str` or `None`, *optional*, defaults to `None`):
            Also draw best-of-N curves against a gold reward (docs/evaluation.md#best-of-n-against-a-gold-reward): a
            local json/jsonl/parquet/csv file of prompts with their sampled responses (`prompt`, `responses`: as many
            for every prompt; optionally `gold_rewards`), or of prompts alone with `best_of_n_policy`. The model is the
            proxy; writes `best_of_n.json`, `best_of_n.md`, `best_of_n.png` and `best_of_n_samples.jsonl` (the samples
            with every reward).
        gold_model (`str` or `None`, *optional*, defaults to `None`):
            The gold reward of `best_of_n`: a reward model (folder or Hub id), or a Python function of (prompt,
            response) texts as `module:function` (e.g. `trl_more.synthetic:gold_reward`), which reads the texts as
            decoded by the model's tokenizer. Not needed when the samples have `gold_rewards`.
        best_of_n_policy (`str` or `None`, *optional*, defaults to `None`):
            A causal language model (folder or Hub id) to sample `best_of_n_num_samples` responses per prompt of the
            `best_of_n` file with (rejection sampling's transformers generation backend).
        best_of_n_num_samples (`int`, *optional*, defaults to `16`):
            Responses sampled per prompt with `best_of_n_policy` (N goes 1, 2, 4, ... up to it).
        best_of_n_max_new_tokens (`int`, *optional*, defaults to `256`):
            Token limit of a sampled response.
        best_of_n_temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature.
        best_of_n_top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus sampling threshold (1: off).
        best_of_n_ensemble_models (`list[str]`, *optional*, defaults to `[]`):
            More reward models (folders or Hub ids) that form an ensemble proxy with `model`: the proxy's pick is the
            highest mean reward, and the lower-bound pick (mean - `best_of_n_std_coef` x std) is drawn too.
        best_of_n_std_coef (`float`, *optional*, defaults to `1.0`):
            The k of the ensemble's lower bound.
        best_of_n_ensemble_calibration (`str`, *optional*, defaults to `"stored"`):
            How the ensemble's rewards are put on one scale: `stored` (each model's stored reward statistics or
            temperature; `--calibration_sources ... --save_calibrated_model` stores them) or `none` (raw rewards).
        best_of_n_template (`str`, *optional*, defaults to `"auto"`):
            How a sample's prompt and response reach the reward models, as `rewardbench_template`; `plain` passes the
            prompt as the file holds it (a gold function always reads it so).
        best_of_n_bootstrap (`int`, *optional*, defaults to `1000`):
            Bootstrap resamples of the prompts for the intervals.
        best_of_n_seed (`int`, *optional*, defaults to `0`):
            Seed of the sampling and of the bootstrap.
        audit (`bool`, *optional*, defaults to `False`):
            Also run the sanity audits on every source (swap test, batch-size and padding-side invariance, accuracy by
            length difference, ties, identical and truncated pairs; docs/evaluation.md) and write `audit.json` and
            `audit.md`; a failed audit is printed with what it means.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Run code shipped inside the model folder or repository (e.g. the multi-objective model's modeling file
            where trl-more's classes are not registered). Only for folders whose code you have read.
    """

    model: str = field(metadata={"help": "Folder of a saved reward model and its tokenizer."})
    sources: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Sources to score: NAME=PATH (a known source's raw file, or any other label for a file in TRL's "
            "preference format) or a known source NAME (loaded from the Hub split `--split`)."
        },
    )
    output_dir: str = field(default="evaluation", metadata={"help": "Folder for the table and the plots."})
    split: str = field(default="test", metadata={"help": "Split of the known sources given without a path."})
    max_pairs_per_source: int | None = field(
        default=None, metadata={"help": "Score only the first this many pairs of every source."}
    )
    batch_size: int = field(default=8, metadata={"help": "Pairs per forward pass."})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Truncate longer sequences to this many tokens (no pair is dropped; truncated pairs are counted). "
            "Default: the max_length the model was trained with, else its position limit."
        },
    )
    truncation_mode: str | None = field(
        default=None,
        metadata={
            "help": "keep_end (the end, where the reward is read) or keep_start. Default: the one the model was "
            "trained with, else keep_end."
        },
    )
    n_bins: int = field(default=10, metadata={"help": "Bins of the calibration errors."})
    outlier_threshold: float = field(
        default=DEFAULT_OUTLIER_THRESHOLD, metadata={"help": "Reward differences beyond +-this are outliers."}
    )
    calibration_sources: list[str] = field(
        default_factory=list, metadata={"help": "Held-out pairs to fit a temperature on (same syntax as --sources)."}
    )
    save_calibrated_model: bool = field(
        default=False,
        metadata={"help": "Save the model with the fitted temperature to <output_dir>/calibrated_model."},
    )
    ensemble_models: list[str] = field(
        default_factory=list,
        metadata={
            "help": "More reward models forming an ensemble with --model: report how its spread predicts errors."
        },
    )
    ensemble_calibration: str = field(
        default="stored",
        metadata={
            "help": "Put the members' margins on one scale (stored) or not (none).",
            "choices": list(ENSEMBLE_CALIBRATIONS),
        },
    )
    plots: bool = field(default=True, metadata={"help": "Draw the PNG plots (needs matplotlib)."})
    eos_token: str | None = field(
        default=None, metadata={"help": "EOS token to set on the tokenizer (e.g. [SEP]), as in RewardConfig."}
    )
    dtype: str = field(
        default="float32",
        metadata={"help": "Dtype to load the model in.", "choices": ["float32", "bfloat16", "float16", "auto"]},
    )
    device: str | None = field(default=None, metadata={"help": "Device to score on (default: cuda if available)."})
    rewardbench: str | None = field(
        default=None, metadata={"help": "Also score RewardBench: a local file in the Hub schema, or the Hub id."}
    )
    rewardbench_version: int = field(default=1, metadata={"help": "RewardBench version.", "choices": [1, 2]})
    rewardbench_template: str = field(
        default="auto",
        metadata={"help": "chat, hh, plain or auto (chat when there is a template).", "choices": list(TEMPLATES)},
    )
    rewardbench_prior_sets: bool = field(
        default=False, metadata={"help": "Add the Prior Sets section at half weight (older leaderboard)."}
    )
    rmbench: str | None = field(
        default=None, metadata={"help": "Also score RM-Bench: a local file in the published schema, or the Hub id."}
    )
    rmbench_template: str = field(
        default="auto",
        metadata={"help": "chat, hh, plain or auto (chat when there is a template).", "choices": list(TEMPLATES)},
    )
    best_of_n: str | None = field(
        default=None,
        metadata={"help": "Also draw best-of-N curves: a file of prompts with sampled responses (or prompts alone)."},
    )
    gold_model: str | None = field(
        default=None, metadata={"help": "Gold reward of --best_of_n: a reward model, or module:function."}
    )
    best_of_n_policy: str | None = field(
        default=None, metadata={"help": "A causal LM to sample the --best_of_n prompts' responses with."}
    )
    best_of_n_num_samples: int = field(default=16, metadata={"help": "Responses sampled per prompt."})
    best_of_n_max_new_tokens: int = field(default=256, metadata={"help": "Token limit of a sampled response."})
    best_of_n_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    best_of_n_top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1: off)."})
    best_of_n_ensemble_models: list[str] = field(
        default_factory=list, metadata={"help": "More reward models forming an ensemble proxy with --model."}
    )
    best_of_n_std_coef: float = field(default=1.0, metadata={"help": "The k of the ensemble's mean - k std."})
    best_of_n_ensemble_calibration: str = field(
        default="stored",
        metadata={"help": "stored (each model's reward scale) or none.", "choices": list(ENSEMBLE_CALIBRATIONS)},
    )
    best_of_n_template: str = field(
        default="auto",
        metadata={"help": "chat, hh, plain or auto (chat when there is a template).", "choices": list(TEMPLATES)},
    )
    best_of_n_bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples of the prompts."})
    best_of_n_seed: int = field(default=0, metadata={"help": "Seed of the sampling and of the bootstrap."})
    audit: bool = field(default=False, metadata={"help": "Also run the sanity audits and write audit.json/.md."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped inside the model folder (only if you have read it)."}
    )

    def __post_init__(self):
        if self.truncation_mode is not None:
            check_choice("truncation_mode", self.truncation_mode, TRUNCATION_MODES)
        if not self.sources and self.rewardbench is None and self.rmbench is None and self.best_of_n is None:
            raise ValueError(
                "Give preference sources to score (`--sources NAME=PATH ...`), a benchmark (`--rewardbench`, "
                "`--rmbench`, `--best_of_n`), or several."
            )
        best_of_n_options = {
            "--gold_model": self.gold_model,
            "--best_of_n_policy": self.best_of_n_policy,
            "--best_of_n_ensemble_models": self.best_of_n_ensemble_models,
        }
        given = [flag for flag, value in best_of_n_options.items() if value]
        if self.best_of_n is None and given:
            raise ValueError(f"{', '.join(given)} apply to `--best_of_n` (the file of samples or prompts): give it.")
        if self.audit and not self.sources:
            raise ValueError("`--audit` checks the `--sources` pairs: give some.")
        if self.save_calibrated_model and not self.calibration_sources:
            raise ValueError("`--save_calibrated_model` needs `--calibration_sources` to fit the temperature on.")


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser(EvaluateConfig, prog=prog, description=__doc__.split("\n\n")[0])


def load_evaluation_sources(specs: list[str], split: str, max_pairs: int | None = None) -> dict:
    """`{label: Dataset}` in TRL's preference format from `NAME=PATH` / `NAME` specifications (see `EvaluateConfig`)."""
    from ..data import known_source_names, load_preference_source, load_trl_preferences

    known = set(known_source_names())
    parsed = [spec.partition("=") for spec in specs]
    for spec, (name, has_path, path) in zip(specs, parsed):
        if not name or (has_path and not path):
            raise ValueError(f"Bad source {spec!r}: write NAME=PATH, or a known source NAME.")
    names = [name for name, _, _ in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Source(s) {repeated} given twice; give every source its own name.")
    sources = {}
    for name, has_path, path in parsed:
        if name in known:
            dataset = load_preference_source(name, path=path or None, split=split).dataset  # logs rows it drops
            if "chosen" not in dataset.column_names:
                raise ValueError(
                    f"Source {name!r} is a rating set (columns {dataset.column_names}), not preference pairs: score "
                    "pairs, of a known source or in TRL's preference format."
                )
        elif has_path:  # the whole file is one source, named NAME; the reader names the file in its errors
            dataset = load_trl_preferences(name, path, source_column=None)[name].dataset
        else:
            raise ValueError(
                f"{name!r} is not a known source ({', '.join(sorted(known))}); give a local file as {name}=PATH."
            )
        if max_pairs is not None and len(dataset) > max_pairs:
            print(f"{name}: scoring the first {max_pairs} of {len(dataset)} pairs (--max_pairs_per_source).")
            dataset = dataset.select(range(max_pairs))
        sources[name] = dataset
    return sources


def load_scored_model(
    path: str, dtype: Any, device: str, eos_token: str | None = None, trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """A saved reward model (one output) on `device` and its tokenizer, with `eos_token` set on the tokenizer when
    given (e.g. `[SEP]` for BERT-style encoders, as `RewardConfig.eos_token` does in training)."""
    from transformers import AutoModelForSequenceClassification

    from ..pretrained import load_tokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        path, dtype=dtype, trust_remote_code=trust_remote_code
    ).to(device)
    if model.config.num_labels != 1:
        raise ValueError(f"{path} has {model.config.num_labels} outputs; a reward model has one (`num_labels=1`).")
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    if eos_token is not None:
        if eos_token not in tokenizer.get_vocab():
            raise ValueError(f"`--eos_token {eos_token}` is not in the vocabulary of {path}.")
        tokenizer.eos_token = eos_token
    return model, tokenizer


def main(config: EvaluateConfig) -> RewardEvaluation | None:
    import torch

    from ..input_settings import input_settings, rendering_of, warn_if_read_differently
    from ..metrics import set_reward_temperature
    from ..pretrained import check_model_reference

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:  # every process would score everything on one device and write the same files
        raise ValueError(
            f"`trl-more evaluate` scores in one process, but it was launched in {world_size}. Run it with "
            "`trl-more evaluate ...` (or `accelerate launch --num_processes 1 -m trl_more.cli evaluate ...`)."
        )
    check_model_reference(config.model)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    eval_sources = load_evaluation_sources(config.sources, config.split, config.max_pairs_per_source)
    calibration_sources = load_evaluation_sources(config.calibration_sources, config.split)
    best_of_n_rows = load_best_of_n_input(config)  # checked before any model is loaded

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)
    model, tokenizer = load_scored_model(config.model, dtype, device, config.eos_token, config.trust_remote_code)
    if config.max_length is None:
        print(f"Scoring with {input_settings(model).describe_max_length()} (set --max_length to change it).")
    warn_if_read_differently(
        model,
        tokenizer,
        where="trl-more evaluate",
        max_length=config.max_length,
        truncation_mode=config.truncation_mode,
        rendering=rendering_of(eval_sources) if eval_sources else None,
    )

    def evaluate(sources: dict, temperature: float | None = None, scored: tuple | None = None) -> RewardEvaluation:
        return evaluate_reward_model(
            *(scored or (model, tokenizer)),
            sources,
            batch_size=config.batch_size,
            max_length=config.max_length,
            truncation_mode=config.truncation_mode,
            n_bins=config.n_bins,
            outlier_threshold=config.outlier_threshold,
            temperature=temperature,
        )

    if config.rewardbench is not None:
        score_rewardbench_into(model, tokenizer, config, output_dir)
    if config.rmbench is not None:
        score_rmbench_into(model, tokenizer, config, output_dir)
    if config.best_of_n is not None:
        score_best_of_n_into(model, tokenizer, best_of_n_rows, config, output_dir, device, dtype)
    if not eval_sources:
        print(f"Results written to {output_dir}")
        return None
    result = evaluate(eval_sources)
    write_evaluation(result, output_dir, plots=config.plots, training_log=Path(config.model))
    print(result.to_markdown())
    if config.ensemble_models:
        members = [(model, tokenizer)] + [
            load_scored_model(path, dtype, device, config.eos_token, config.trust_remote_code)
            for path in config.ensemble_models
        ]
        evaluations = [result] + [evaluate(eval_sources, scored=member) for member in members[1:]]
        report = ensemble_uncertainty([member for member, _ in members], evaluations, config.ensemble_calibration)
        (output_dir / "uncertainty.json").write_text(json.dumps(report, indent=2) + "\n")
        (output_dir / "uncertainty.md").write_text(uncertainty_markdown(report))
        print(uncertainty_markdown(report))
    if config.audit:
        from ..metrics.audits import audit_reward_model

        report = audit_reward_model(
            model,
            tokenizer,
            eval_sources,
            config.batch_size,
            config.max_length,
            truncation_mode=config.truncation_mode,
        )
        report.to_json(output_dir / "audit.json")
        (output_dir / "audit.md").write_text(report.to_markdown())
        print(report.to_markdown())
        print("All audits passed." if report.passed else "Some audits FAILED: see the status column above.")

    if calibration_sources:
        held_out = evaluate(calibration_sources)
        fit = fit_temperature(np.concatenate(list(held_out.margins.values())), config.n_bins)
        (output_dir / "temperature.json").write_text(json.dumps(asdict(fit), indent=2) + "\n")
        temperature = result.temperature * fit.temperature  # the model's stored temperature, refined
        calibrated = RewardEvaluation.from_margins(
            {source: margins / fit.temperature for source, margins in result.margins.items()},
            config.n_bins,
            config.outlier_threshold,
            temperature,
            result.truncation,
        )
        write_evaluation(calibrated, output_dir, plots=config.plots, suffix="_calibrated")
        print(
            f"Temperature {temperature:.4g} fitted on {fit.num_pairs} held-out pairs: ECE there "
            f"{fit.ece_before:.4f} -> {fit.ece_after:.4f}, accuracy unchanged at {100 * fit.accuracy:.2f}%.\n"
        )
        print(calibrated.to_markdown())
        # The scale on which this model is combined with others in an ensemble (trl_more.rewards.calibration).
        mean, std = fit_reward_statistics(np.concatenate(list(held_out.rewards.values())))
        (output_dir / "reward_statistics.json").write_text(json.dumps({"mean": mean, "std": std}, indent=2) + "\n")
        print(f"Reward statistics on the held-out responses: mean {mean:.4g}, std {std:.4g}.")
        if config.save_calibrated_model:
            set_reward_temperature(model, temperature)
            set_reward_statistics(model, mean, std)
            model.save_pretrained(output_dir / "calibrated_model")
            tokenizer.save_pretrained(output_dir / "calibrated_model")
    print(f"Results written to {output_dir}")
    return result


def ensemble_uncertainty(models: list, evaluations: list[RewardEvaluation], calibration: str) -> dict[str, Any]:
    """Per source (and `"all"` pooled): `uncertainty_metrics` of the members' margins, each member's rewards put on
    the ensemble's common scale first (`trl_more.rewards.ensemble_scales`)."""
    from ..metrics import uncertainty_metrics
    from ..rewards import ensemble_scales

    scales = ensemble_scales(models, calibration)
    margins: dict[str, list[np.ndarray]] = {}
    for evaluation, scale in zip(evaluations, scales):
        for source, rewards in evaluation.rewards.items():
            scaled = rewards if scale is None else scale.apply(rewards)
            margins.setdefault(source, []).append(scaled[: len(scaled) // 2] - scaled[len(scaled) // 2 :])
    per_source = {source: np.stack(columns, axis=1) for source, columns in margins.items()}
    if len(per_source) > 1:
        per_source["all"] = np.concatenate(list(per_source.values()))
    return {source: uncertainty_metrics(values) for source, values in per_source.items()}


def uncertainty_markdown(report: dict[str, Any]) -> str:
    """The report of `ensemble_uncertainty` as a table: accuracy, AUROC, mean spread, accuracy by spread quarter."""
    quantiles = len(next(iter(report.values()))["by_quantile"])
    header = ["source", "pairs", "accuracy (%)", "AUROC of spread for errors", "spread: right / wrong"]
    header += [f"accuracy, spread q{index + 1} (%)" for index in range(quantiles)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for source, row in report.items():
        cells = [
            source,
            str(sum(group["pairs"] for group in row["by_quantile"])),
            f"{100 * row['accuracy']:.1f}",
            f"{row['auroc']:.3f}",
            f"{row['spread_mean_right']:.3f} / {row['spread_mean_wrong']:.3f}",
            *(f"{100 * group['accuracy']:.1f}" for group in row["by_quantile"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n".join(lines)
        + "\n\nThe ensemble's margin is the members' mean on one scale, its uncertainty their spread (population std); "
        "q1 holds the pairs with the lowest spread. AUROC: the probability that a wrong pair has a larger spread than "
        "a right one (0.5: the spread says nothing about errors).\n"
    )


def score_rewardbench_into(model, tokenizer, config: EvaluateConfig, output_dir: Path) -> None:
    """Score RewardBench (`config.rewardbench`) and write `rewardbench.json`, `.md` and, with plots, `.png`."""
    from ..metrics.rewardbench import load_rewardbench, score_rewardbench

    dataset = load_rewardbench(config.rewardbench, config.rewardbench_version)
    result = score_rewardbench(
        model,
        tokenizer,
        dataset,
        version=config.rewardbench_version,
        batch_size=config.batch_size,
        max_length=config.max_length,
        chat_template=config.rewardbench_template,
        prior_sets=config.rewardbench_prior_sets,
        show_progress=True,
    )
    result.to_json(output_dir / "rewardbench.json")
    (output_dir / "rewardbench.md").write_text(result.to_markdown())
    if config.plots:
        from ..plots import plot_rewardbench

        plot_rewardbench(result, output_dir / "rewardbench.png")
    print(result.to_markdown())


def score_rmbench_into(model, tokenizer, config: EvaluateConfig, output_dir: Path) -> None:
    """Score RM-Bench (`config.rmbench`) and write `rmbench.json`, `.md` and, with plots, `.png`."""
    from ..metrics.rmbench import load_rmbench, score_rmbench

    result = score_rmbench(
        model,
        tokenizer,
        load_rmbench(config.rmbench),
        batch_size=config.batch_size,
        max_length=config.max_length,
        chat_template=config.rmbench_template,
        show_progress=True,
    )
    result.to_json(output_dir / "rmbench.json")
    (output_dir / "rmbench.md").write_text(result.to_markdown())
    if config.plots:
        from ..plots import plot_rmbench

        plot_rmbench(result, output_dir / "rmbench.png")
    print(result.to_markdown())


def load_best_of_n_input(config: EvaluateConfig) -> list | None:
    """The `--best_of_n` file, checked: samples (rows with `prompt` and `responses`), or prompts with
    `--best_of_n_policy`; and the gold function of `--gold_model`, if one is named, importable."""
    from ..metrics.benchmark_scoring import column_names
    from ..metrics.best_of_n import check_gold_source, load_best_of_n_samples, load_prompts

    if config.best_of_n is None:
        return None
    if config.gold_model is not None and is_function_reference(config.gold_model):
        import_function(config.gold_model)
    if config.best_of_n_policy is not None:
        check_gold_source(False, config.gold_model is not None)
        return load_prompts(config.best_of_n)
    rows = load_best_of_n_samples(config.best_of_n)
    check_gold_source("gold_rewards" in column_names(rows), config.gold_model is not None)
    return rows


def is_function_reference(name: str) -> bool:
    """Whether `--gold_model` names a Python function (`module:function`) rather than a model folder or Hub id."""
    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", name) is not None and not Path(name).exists()


def import_function(reference: str) -> Callable[[str, str], float]:
    """The function `module:function` names (a dotted attribute path after the colon is followed)."""
    import importlib

    module_name, _, attribute = reference.partition(":")
    try:
        value = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"`--gold_model {reference}`: cannot import {module_name!r} ({error}).") from error
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"`--gold_model {reference}`: {module_name!r} has no {attribute!r}.")
        value = getattr(value, part)
    if not callable(value):
        raise ValueError(f"`--gold_model {reference}` is not a function of (prompt, response).")
    return value


def score_best_of_n_into(
    model, tokenizer, rows: list, config: EvaluateConfig, output_dir: Path, device, dtype
) -> None:
    """Best-of-N curves with `model` (and `--best_of_n_ensemble_models`) as the proxy against `--gold_model`,
    sampling the responses first with `--best_of_n_policy`; writes `best_of_n.json`, `.md`, `.png` (with plots) and
    `best_of_n_samples.jsonl` (prompts, responses and every reward)."""
    from ..metrics.best_of_n import sample_best_of_n, score_best_of_n
    from ..pretrained import check_model_reference, load_tokenizer
    from ..rewards.scoring import load_reward_model

    init_kwargs = {"dtype": dtype, "trust_remote_code": config.trust_remote_code}
    if config.best_of_n_policy is not None:
        from transformers import AutoModelForCausalLM

        from ..rejection_sampling.generation import SamplingSettings

        check_model_reference(config.best_of_n_policy)
        policy = AutoModelForCausalLM.from_pretrained(config.best_of_n_policy, **init_kwargs).to(device)
        settings = SamplingSettings(
            max_new_tokens=config.best_of_n_max_new_tokens,
            temperature=config.best_of_n_temperature,
            top_p=config.best_of_n_top_p,
        )
        rows = sample_best_of_n(
            policy,
            load_tokenizer(config.best_of_n_policy, trust_remote_code=config.trust_remote_code),
            rows,
            config.best_of_n_num_samples,
            settings,
            batch_size=config.batch_size,
            seed=config.best_of_n_seed,
            show_progress=True,
        )
        del policy
    models, tokenizers = [model], [tokenizer]
    for name in config.best_of_n_ensemble_models:
        check_model_reference(name)
        member, member_tokenizer = load_reward_model(name, init_kwargs)
        models.append(member.to(device))
        tokenizers.append(member_tokenizer)
    gold, gold_tokenizer = None, None
    if config.gold_model is not None and is_function_reference(config.gold_model):
        gold = import_function(config.gold_model)
    elif config.gold_model is not None:
        check_model_reference(config.gold_model)
        gold, gold_tokenizer = load_reward_model(config.gold_model, init_kwargs)
        gold = gold.to(device)
    result = score_best_of_n(
        models,
        tokenizers,
        rows,
        gold=gold,
        gold_tokenizer=gold_tokenizer,
        std_coef=config.best_of_n_std_coef,
        calibration=config.best_of_n_ensemble_calibration,
        batch_size=config.batch_size,
        max_length=config.max_length,
        chat_template=config.best_of_n_template,
        bootstrap_samples=config.best_of_n_bootstrap,
        seed=config.best_of_n_seed,
        show_progress=True,
    )
    result.to_json(output_dir / "best_of_n.json")
    (output_dir / "best_of_n.md").write_text(result.to_markdown())
    with open(output_dir / "best_of_n_samples.jsonl", "w", encoding="utf-8") as handle:
        for index, row in enumerate(rows):
            scored = {
                "prompt": row["prompt"],
                "responses": row["responses"],
                "proxy_rewards": result.proxy_rewards[index].tolist(),
                "gold_rewards": result.gold_rewards[index].tolist(),
            }
            if result.lower_bound_rewards is not None:
                scored["lower_bound_rewards"] = result.lower_bound_rewards[index].tolist()
            handle.write(json.dumps(scored, ensure_ascii=False) + "\n")
    if config.plots:
        from ..plots import plot_best_of_n

        plot_best_of_n(result, output_dir / "best_of_n.png")
    print(result.to_markdown())


def write_evaluation(
    result: RewardEvaluation,
    output_dir: str | Path,
    plots: bool = True,
    suffix: str = "",
    training_log: Any = None,
) -> None:
    """Write `metrics<suffix>.json`/`.md` and, with `plots`, the reliability diagrams, the reward-difference boxes
    (uncalibrated results only: a temperature only rescales them) and, when `training_log` (anything
    `trl_more.plots.load_log_history` reads) holds MORE's lambda, `lambda.png`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    result.to_json(output_dir / f"metrics{suffix}.json")
    (output_dir / f"metrics{suffix}.md").write_text(result.to_markdown())
    if not plots:
        return
    from ..constants import LAMBDA_METRIC_PREFIX
    from ..plots import (
        load_log_history,
        plot_lambda_history,
        plot_reliability_diagrams,
        plot_reward_differences,
    )

    plot_reliability_diagrams(result, output_dir / f"reliability{suffix}.png", n_bins=result.n_bins)
    if not suffix:
        plot_reward_differences(result, output_dir / "reward_differences.png")
    if training_log is not None:
        try:
            history = load_log_history(training_log)
        except FileNotFoundError:
            return
        if any(key.startswith(LAMBDA_METRIC_PREFIX) for entry in history for key in entry):
            plot_lambda_history(history, output_dir / "lambda.png")
