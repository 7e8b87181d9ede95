"""Pre-flight checks: the reward-model failures users hit most, caught before the first training step.

The reward read at the wrong token, rewards that change with the batch, a duplicated BOS, pairs that truncation makes
identical, a LoRA score head that is neither trained nor saved, sources that are empty, all ties or carry NaN margins:
each silently wastes a run. `preflight_checks` finds them on a small sample of every source in seconds, with an
untrained model; every reward trainer of trl-more runs it at the start of `train()` (`preflight="error"`, `"warn"`
or `"off"` in its config), and `trl-more doctor` runs it, with the post-training audits, on any model and data.
docs/preflight.md lists the checks, what each finding means and what they cost.

Example:
    >>> from trl_more.preflight import pair_sample, preflight_checks
    >>> samples = {"helpful": pair_sample(tokenized_helpful)}  # columns chosen_ids / rejected_ids
    >>> report = preflight_checks(model, tokenizer, samples, max_length=512, truncation_mode="keep_end")
    >>> print(report.to_markdown())
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from .checks import MODEL_SAMPLE, TOKEN_SAMPLE, PairSample, check_pairs, check_reading, model_pairs, pair_sample
from .peft_checks import check_peft
from .report import Finding, PreflightError, PreflightReport, act_on


__all__ = [
    "MODEL_SAMPLE",
    "TOKEN_SAMPLE",
    "Finding",
    "PairSample",
    "PreflightError",
    "PreflightReport",
    "act_on",
    "default_tolerance",
    "pair_sample",
    "preflight_checks",
]


# Largest reward change the invariance checks allow, in reward standard deviations: float32 rounding stays far below
# the first; 16-bit arithmetic (bf16 or fp16 weights, or mixed-precision autocast) reaches a few 1e-3 on an untrained
# model's narrow rewards. A pooling or padding bug moves rewards by about one standard deviation or more.
FLOAT32_TOLERANCE = 1e-3
HALF_PRECISION_TOLERANCE = 5e-2


def default_tolerance(model: Any, mixed_precision: bool = False) -> float:
    """The invariance checks' tolerance for `model`: `HALF_PRECISION_TOLERANCE` when it computes in 16 bits (16-bit
    floating-point weights, or `mixed_precision`), else `FLOAT32_TOLERANCE`."""
    half = {torch.bfloat16, torch.float16}
    if mixed_precision or any(parameter.dtype in half for parameter in model.parameters()):
        return HALF_PRECISION_TOLERANCE
    return FLOAT32_TOLERANCE


def preflight_checks(
    model: Any,
    tokenizer: Any,
    samples: Mapping[str, PairSample],
    *,
    max_length: int | None,
    truncation_mode: str | None,
    tolerance: float | None = None,
    run_model: bool = True,
) -> PreflightReport:
    """Every pre-flight check of `model` and `tokenizer` on `samples` (`{source: PairSample}`, token ids before
    truncation), with pairs truncated to `max_length` as `truncation_mode` says (`None`: longer pairs dropped, as
    `trl.RewardTrainer` does). `tolerance` bounds the reward changes of the invariance checks, in reward standard
    deviations (`None`: `default_tolerance(model)`). `run_model=False` runs only the data and tokenization checks (no forward pass)."""
    start = time.perf_counter()
    tolerance = default_tolerance(model) if tolerance is None else tolerance
    report = PreflightReport()
    check_pairs(samples, report, max_length, truncation_mode, tokenizer.bos_token_id)
    if run_model:
        pairs = model_pairs(samples, max_length, truncation_mode)
        check_reading(model, tokenizer, pairs, report, tolerance)
        if tokenizer.pad_token_id is not None:
            check_peft(model, [ids for pair in pairs for ids in pair], tokenizer.pad_token_id, report, tolerance)
    report.seconds = time.perf_counter() - start
    return report
