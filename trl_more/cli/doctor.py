"""`trl-more doctor`: the pre-flight checks and the audits of any reward model on any preference data, no training.

Example:
    trl-more doctor --model runs/more-pythia --output_dir runs/more-pythia/doctor \\
        --sources hh-helpful=../shared/data/hh_rlhf/helpful-base.test.jsonl.gz mine=data/my_pairs.jsonl

Runs on a sample of every source (`--sample_size` pairs) the checks a trainer runs before its first step
(`trl_more.preflight`: where the reward is read, rewards that change with padding or the batch, a duplicated BOS,
pairs made identical by truncation, truncated and empty sources, NaN margins, a LoRA head that is not saved) and the
audits of `trl-more evaluate --audit` (`trl_more.metrics.audits`: swap test, batch-size and padding-side invariance,
accuracy by length difference, ties). Pairs are read as the model's reading record says (docs/preflight.md). Writes
`doctor.md` and `doctor.json`, and exits with status 1 when a check finds an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from trl import TrlParser

from ..constants import TRUNCATION_MODES, check_choice
from ..preflight import TOKEN_SAMPLE


@dataclass
class DoctorConfig:
    r"""
    Options of `trl-more doctor`.

    Parameters:
        model (`str`):
            Folder or Hub id of a reward model (`AutoModelForSequenceClassification` with one output, trained or not)
            and its tokenizer.
        sources (`list[str]`):
            Preference sources to check, as for `trl-more evaluate`: `NAME=PATH` or a known source `NAME`.
        output_dir (`str`, *optional*, defaults to `"doctor"`):
            Folder for `doctor.md` and `doctor.json`.
        split (`str`, *optional*, defaults to `"test"`):
            Split of the known sources given without a path.
        sample_size (`int`, *optional*, defaults to `512`):
            Pairs drawn at random from every source (fewer when it has fewer): the token checks and the audits run on
            them, the checks that run the model on 8 of them in all (`trl_more.preflight.MODEL_SAMPLE`), taken in
            turn from every source.
        batch_size (`int`, *optional*, defaults to `8`):
            Pairs per forward pass of the audits.
        max_length (`int` or `None`, *optional*, defaults to `None`):
            Token limit the pairs are truncated to. `None`: the one the model was trained with (its reading record),
            else its position limit.
        truncation_mode (`str` or `None`, *optional*, defaults to `None`):
            `keep_end` or `keep_start`. `None`: the one the model was trained with, else `keep_end`.
        tolerance (`float` or `None`, *optional*, defaults to `None`):
            Largest reward change allowed by the invariance checks, in reward standard deviations. `None`: 1e-3 for a
            float32 model, 5e-2 for a 16-bit one (`trl_more.preflight.default_tolerance`).
        audit (`bool`, *optional*, defaults to `True`):
            Also run the audits of `trl-more evaluate --audit` on the sampled pairs (meaningful for a trained model).
        eos_token (`str` or `None`, *optional*, defaults to `None`):
            EOS token to set on the tokenizer when it has none (e.g. `[SEP]`), as `RewardConfig.eos_token` does.
        dtype (`str`, *optional*, defaults to `"float32"`):
            Dtype to load the model in (`float32`, `bfloat16`, `float16` or `auto`).
        device (`str` or `None`, *optional*, defaults to `None`):
            Device to run on; `None` picks `cuda` when available, else `cpu`.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Run code shipped inside the model folder (only for folders whose code you have read).
    """

    model: str = field(metadata={"help": "Folder or Hub id of a reward model and its tokenizer."})
    sources: list[str] = field(
        default_factory=list,
        metadata={"help": "Sources to check: NAME=PATH, or a known source NAME (as for trl-more evaluate)."},
    )
    output_dir: str = field(default="doctor", metadata={"help": "Folder for doctor.md and doctor.json."})
    split: str = field(default="test", metadata={"help": "Split of the known sources given without a path."})
    sample_size: int = field(default=TOKEN_SAMPLE, metadata={"help": "Pairs drawn from every source."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per forward pass of the audits."})
    max_length: int | None = field(
        default=None, metadata={"help": "Token limit. Default: the model's trained limit, else its position limit."}
    )
    truncation_mode: str | None = field(
        default=None, metadata={"help": "keep_end or keep_start. Default: as trained, else keep_end."}
    )
    tolerance: float | None = field(
        default=None, metadata={"help": "Largest reward change of the invariance checks (std). Default: by dtype."}
    )
    audit: bool = field(default=True, metadata={"help": "Also run the audits of trl-more evaluate --audit."})
    eos_token: str | None = field(default=None, metadata={"help": "EOS token to set on the tokenizer (e.g. [SEP])."})
    dtype: str = field(
        default="float32",
        metadata={"help": "Dtype to load the model in.", "choices": ["float32", "bfloat16", "float16", "auto"]},
    )
    device: str | None = field(default=None, metadata={"help": "Device (default: cuda if available)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped inside the model folder (only if you have read it)."}
    )

    def __post_init__(self):
        if not self.sources:
            raise ValueError("Give preference sources to check: `--sources NAME=PATH ...`.")
        if self.truncation_mode is not None:
            check_choice("truncation_mode", self.truncation_mode, TRUNCATION_MODES)
        if self.sample_size < 1:
            raise ValueError(f"`--sample_size` must be at least 1, got {self.sample_size}.")


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser(DoctorConfig, prog=prog, description=__doc__.split("\n\n")[0])


def main(config: DoctorConfig) -> dict[str, Any]:
    """Run the checks, write `doctor.md` and `doctor.json`, and return what `doctor.json` holds; exits with status 1
    when a pre-flight check finds an error."""
    import torch

    from ..input_settings import (
        input_settings,
        rendering_of,
        scoring_max_length,
        scoring_truncation_mode,
        warn_if_read_differently,
    )
    from ..metrics.audits import audit_reward_model
    from ..metrics.evaluation import _tokenized_pairs
    from ..preflight import PairSample, default_tolerance, preflight_checks
    from ..preflight.checks import sample_rows
    from ..pretrained import check_model_reference
    from .evaluate import load_evaluation_sources, load_scored_model

    check_model_reference(config.model)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    sources = load_evaluation_sources(config.sources, config.split)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)
    model, tokenizer = load_scored_model(config.model, dtype, device, config.eos_token, config.trust_remote_code)
    warn_if_read_differently(
        model,
        tokenizer,
        where="trl-more doctor",
        max_length=config.max_length,
        truncation_mode=config.truncation_mode,
        rendering=rendering_of(sources),
    )
    max_length = scoring_max_length(model, config.max_length)
    tolerance = default_tolerance(model) if config.tolerance is None else config.tolerance
    truncation_mode = scoring_truncation_mode(model, config.truncation_mode)

    sampled, samples = {}, {}
    for name, dataset in sources.items():
        sampled[name] = dataset.select(sample_rows(len(dataset), config.sample_size))
        if len(dataset) == 0:
            samples[name] = PairSample([], [], None, 0)
            continue
        pairs = _tokenized_pairs(sampled[name], tokenizer, name, None, truncation_mode)  # before truncation
        margins = (
            np.asarray(sampled[name]["margin"], dtype=np.float64) if "margin" in sampled[name].column_names else None
        )
        samples[name] = PairSample(pairs.chosen, pairs.rejected, margins, len(dataset))
    report = preflight_checks(
        model, tokenizer, samples, max_length=max_length, truncation_mode=truncation_mode, tolerance=tolerance
    )
    reading = input_settings(model)
    result = {"model": config.model, "reading": reading.to_dict(), "preflight": report.to_dict()}
    markdown = [f"# trl-more doctor: {config.model}", "", f"How the model reads its input: {reading.describe()}.", ""]
    markdown += ["## Pre-flight checks", "", report.to_markdown()]
    audited = {name: dataset for name, dataset in sampled.items() if len(dataset)}
    if config.audit and audited:
        audit = audit_reward_model(
            model, tokenizer, audited, config.batch_size, max_length, tolerance, truncation_mode=truncation_mode
        )
        result["audit"] = audit.to_dict()
        markdown += ["## Audits (`trl-more evaluate --audit`)", "", audit.to_markdown()]
    (output_dir / "doctor.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (output_dir / "doctor.md").write_text("\n".join(markdown))
    print("\n".join(markdown))
    print(f"Report written to {output_dir / 'doctor.md'} and {output_dir / 'doctor.json'}.")
    if report.errors:
        raise SystemExit(
            f"trl-more doctor: {len(report.errors)} error(s) that would make training meaningless; see {output_dir}."
        )
    return result
