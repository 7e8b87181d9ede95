"""The pre-flight checks of the data, the tokenization and the way a reward model reads its input.

Every check runs on a small sample of every source (`PairSample`: token ids before truncation), so that the whole set
takes seconds: the token checks on up to `TOKEN_SAMPLE` pairs per source, the checks that run the model on
`MODEL_SAMPLE` pairs in all, taken in turn from every source (a few forward passes on one small batch). None of them
needs a trained model:

- data: an empty source, margins that are NaN or infinite, a source whose pairs are all identical (ties);
- tokenization: a BOS token twice at the start of a sequence (a chat template that adds one to text that already
  has it), pairs whose chosen and rejected sequences become identical once truncated to `max_length` (with the
  `max_length` and the `truncation_mode` that would keep them apart), the share of pairs longer than `max_length`;
- reading: the position each sequence's reward is read at (decoders: the last token that is not padding, never the
  padding or the prompt; with the pad token equal to the EOS token, the token before the final EOS), and the same
  pairs' rewards in a right-padded batch (as the trainers' collators pad), in a left-padded one, and alone (the
  `ALONE_SAMPLE` shortest sequences: the most padded ones).

The PEFT checks live in `trl_more.preflight.peft_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..metrics.audits import TRUNCATED_SHARE_WARNING, sequence_rewards
from ..tokenization import common_prefix_length, truncate
from .report import Finding, PreflightReport


__all__ = [
    "MODEL_SAMPLE",
    "TOKEN_SAMPLE",
    "PairSample",
    "check_pairs",
    "check_reading",
    "model_pairs",
    "pair_sample",
    "sample_rows",
]

TOKEN_SAMPLE = 512  # pairs per source for the token checks
# Pairs in all for the checks that run the model, taken in turn from every source: one batch of 16 sequences, small
# enough for a large model at its full max_length next to the memory training will need.
MODEL_SAMPLE = 8
ALONE_SAMPLE = 4  # of their sequences, scored one at a time as well
# A source with at least this share of its pairs made identical by truncation is an error (most of it teaches
# nothing), from the second share on a warning; below it a note (a few pairs without gradient).
IDENTICAL_SHARE_ERROR = 0.5
IDENTICAL_SHARE_WARNING = 0.01


@dataclass
class PairSample:
    """Some pairs of one source as token ids, before any truncation.

    Attributes:
        chosen, rejected: the token ids of the sampled pairs' sequences (as `trl.RewardTrainer` tokenizes them).
        margins: their `margin` column, if the source has one.
        size: how many pairs the source has in all (0: an empty source).
    """

    chosen: list[list[int]]
    rejected: list[list[int]]
    margins: np.ndarray | None
    size: int


def sample_rows(total: int, size: int = TOKEN_SAMPLE, seed: int = 0) -> list[int]:
    """Up to `size` of `total` row indices drawn at random without replacement (`seed`), in increasing order."""
    return np.sort(np.random.default_rng(seed).choice(total, size=min(size, total), replace=False)).tolist()


def pair_sample(dataset: Any, size: int = TOKEN_SAMPLE, seed: int = 0) -> PairSample:
    """Up to `size` pairs drawn at random (`sample_rows`) from a tokenized preference data set (columns `chosen_ids`
    and `rejected_ids`, optionally `margin`)."""
    total = len(dataset)
    sample = dataset.select(sample_rows(total, size, seed))
    margins = np.asarray(sample["margin"], dtype=np.float64) if "margin" in sample.column_names else None
    return PairSample(list(sample["chosen_ids"]), list(sample["rejected_ids"]), margins, total)


# ---------------------------------------------------------------------------------------------------------------------
# Data and tokenization
# ---------------------------------------------------------------------------------------------------------------------


def check_pairs(
    samples: Mapping[str, PairSample],
    report: PreflightReport,
    max_length: int | None,
    truncation_mode: str | None,
    bos_token_id: int | None,
) -> None:
    """The data and tokenization checks of every source (see the module docstring), into `report`. With
    `truncation_mode=None` longer pairs are dropped, as `trl.RewardTrainer` does, instead of truncated."""
    for source, sample in samples.items():
        pairs = len(sample.chosen)
        if sample.size == 0:
            report.findings.append(
                Finding("empty source", "error", "the source has no pairs: check its file, split or filter.", source)
            )
            continue
        measured = report.measured.setdefault(source, {})
        measured["sampled pairs"] = pairs
        _check_margins(sample, source, report)
        identical = np.array([c == r for c, r in zip(sample.chosen, sample.rejected)])
        measured["identical (%)"] = 100 * float(identical.mean())
        if identical.all():
            report.findings.append(
                Finding(
                    "identical pairs",
                    "error",
                    f"all {pairs} sampled pairs have the same chosen and rejected tokens (ties): there is nothing to "
                    "learn from this source. Likely cause: a wrong column mapping (the same column read twice) or "
                    "responses that differ only in whitespace. Check the source's conversion, or drop it.",
                    source,
                )
            )
            continue
        if identical.any():
            report.findings.append(
                Finding(
                    "identical pairs",
                    "warning",
                    f"{100 * identical.mean():.1f}% of the sampled pairs have the same chosen and rejected tokens "
                    "(ties): they give no gradient and count as errors in evaluation. Drop them from the source.",
                    source,
                )
            )
        _check_bos(sample, bos_token_id, source, report)
        if max_length is not None:
            _check_truncation(sample, identical, max_length, truncation_mode, source, report)


def _check_margins(sample: PairSample, source: str, report: PreflightReport) -> None:
    if sample.margins is None:
        return
    bad = ~np.isfinite(sample.margins)
    if bad.any():
        report.findings.append(
            Finding(
                "margins",
                "error",
                f"{int(bad.sum())} of the {len(bad)} sampled pairs have a `margin` that is NaN or infinite: one such "
                "margin makes every weight NaN after one step. Fix or drop these rows, or remove the `margin` column.",
                source,
            )
        )


def _check_bos(sample: PairSample, bos_token_id: int | None, source: str, report: PreflightReport) -> None:
    if bos_token_id is None:
        return
    sequences = sample.chosen + sample.rejected
    doubled = np.mean([len(ids) > 1 and ids[0] == ids[1] == bos_token_id for ids in sequences])
    report.measured[source]["double BOS (%)"] = 100 * float(doubled)
    if doubled > 0:
        report.findings.append(
            Finding(
                "duplicated BOS",
                "warning",
                f"{100 * doubled:.1f}% of the sampled sequences start with the BOS token twice: the chat template "
                "writes one and the tokenizer adds another (or the text already holds one), a sequence the model "
                "never saw in pre-training. Remove the BOS from the text or the template, or tokenize the rendered "
                "template without special tokens.",
                source,
            )
        )


def _check_truncation(
    sample: PairSample,
    identical: np.ndarray,
    max_length: int,
    truncation_mode: str | None,
    source: str,
    report: PreflightReport,
) -> None:
    longest = np.array([max(len(c), len(r)) for c, r in zip(sample.chosen, sample.rejected)])
    too_long = longest > max_length
    measured = report.measured[source]
    measured["truncated (%)" if truncation_mode else "dropped (%)"] = 100 * float(too_long.mean())
    if truncation_mode is None:
        if too_long.all():
            report.findings.append(
                Finding(
                    "truncation",
                    "error",
                    f"every sampled pair is longer than max_length={max_length} and would be dropped. Raise "
                    "`max_length` or set `truncation_mode='keep_end'` to truncate instead.",
                    source,
                )
            )
        elif too_long.mean() > TRUNCATED_SHARE_WARNING:
            report.findings.append(
                Finding(
                    "truncation",
                    "warning",
                    f"{100 * too_long.mean():.1f}% of the sampled pairs are longer than max_length={max_length} and "
                    "would be dropped. Raise `max_length` or set `truncation_mode='keep_end'`.",
                    source,
                )
            )
        return
    made_identical = np.array(
        [
            not same and truncate(c, max_length, truncation_mode) == truncate(r, max_length, truncation_mode)
            for c, r, same in zip(sample.chosen, sample.rejected, identical)
        ]
    )
    share = float(made_identical.mean())
    measured["identical after truncation (%)"] = 100 * share
    if share > 0:
        message = (
            f"{100 * share:.1f}% of the sampled pairs become identical once truncated to max_length={max_length} "
            f"({truncation_mode}): the tokens where chosen and rejected differ are cut, so these pairs give no "
            f"gradient. {_keeping_apart(sample, made_identical, max_length, truncation_mode)}"
        )
        if share < IDENTICAL_SHARE_WARNING:  # a few pairs lost: worth knowing, not worth a warning
            report.notes.append(f"{source}: {message}")
        else:
            severity = "error" if share >= IDENTICAL_SHARE_ERROR else "warning"
            report.findings.append(Finding("identical after truncation", severity, message, source))
    elif too_long.mean() > TRUNCATED_SHARE_WARNING:
        if truncation_mode == "keep_end":  # the response, where the reward is read, is kept: a deliberate trade-off
            report.notes.append(
                f"{source}: {100 * too_long.mean():.1f}% of the sampled pairs are longer than max_length={max_length} "
                "and lose the beginning of their prompt (keep_end)."
            )
        else:
            report.findings.append(
                Finding(
                    "truncation",
                    "warning",
                    f"{100 * too_long.mean():.1f}% of the sampled pairs are longer than max_length={max_length} and "
                    "lose their end, where the reward is read. Use `truncation_mode='keep_end'` or raise "
                    "`max_length`.",
                    source,
                )
            )


def _keeping_apart(sample: PairSample, made_identical: np.ndarray, max_length: int, truncation_mode: str) -> str:
    """Which `max_length`, and whether the other truncation mode, would keep the pairs made identical apart."""
    pairs = [(c, r) for (c, r), cut in zip(zip(sample.chosen, sample.rejected), made_identical) if cut]
    if truncation_mode == "keep_end":  # the pair must keep one token before their common end
        needed = max(_common_suffix_length(c, r) + 1 for c, r in pairs)
    else:
        needed = max(common_prefix_length(c, r) + 1 for c, r in pairs)
    other = "keep_start" if truncation_mode == "keep_end" else "keep_end"
    apart = np.mean([truncate(c, max_length, other) != truncate(r, max_length, other) for c, r in pairs])
    advice = f"max_length={needed} or more keeps every sampled pair apart"
    if apart > 0:
        advice += f"; truncation_mode='{other}' would keep {100 * apart:.0f}% of them apart at this max_length"
    return f"Likely cause: long {'prompts' if truncation_mode == 'keep_start' else 'common endings'}. Fix: {advice}."


def _common_suffix_length(ids: Sequence[int], other_ids: Sequence[int]) -> int:
    return common_prefix_length(list(reversed(ids)), list(reversed(other_ids)))


# ---------------------------------------------------------------------------------------------------------------------
# How the model reads
# ---------------------------------------------------------------------------------------------------------------------


def model_pairs(
    samples: Mapping[str, PairSample], max_length: int | None, truncation_mode: str | None
) -> list[list[list[int]]]:
    """Up to `MODEL_SAMPLE` pairs, taken in turn from every source, that stay distinct once truncated as training
    truncates (a pair longer than `max_length` is kept whole when training drops such pairs: `truncation_mode=None`)."""
    distinct = []
    for sample in samples.values():
        pairs = []
        for chosen, rejected in zip(sample.chosen, sample.rejected):
            pair = [
                truncate(ids, max_length, truncation_mode) if truncation_mode else ids for ids in (chosen, rejected)
            ]
            if pair[0] != pair[1]:
                pairs.append(pair)
            if len(pairs) == MODEL_SAMPLE:
                break
        distinct.append(pairs)
    in_turn = [pairs[index] for index in range(MODEL_SAMPLE) for pairs in distinct if index < len(pairs)]
    return in_turn[:MODEL_SAMPLE]


def check_reading(
    model: Any, tokenizer: Any, pairs: list[list[list[int]]], report: PreflightReport, tolerance: float = 1e-3
) -> None:
    """The reading checks (see the module docstring) on `pairs` (see `model_pairs`), into `report`. The model is put
    in eval mode for the checks and its mode restored."""
    if not pairs:
        return
    pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        report.findings.append(
            Finding(
                "pad token",
                "error",
                "the tokenizer has no pad token, so batches cannot be padded. Set one (`tokenizer.pad_token = ...`, "
                "or `RewardConfig(pad_token=...)`), and the same id as `model.config.pad_token_id`.",
            )
        )
        return
    _note_padding(tokenizer, report)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _check_read_positions(model, pairs, pad_token_id, report)
            _check_padding_invariance(model, tokenizer, [ids for pair in pairs for ids in pair], report, tolerance)
    finally:
        model.train(was_training)


def _note_padding(tokenizer: Any, report: PreflightReport) -> None:
    """The pad token equal to the EOS token, and a tokenizer that pads on the left: how each is resolved."""
    if tokenizer.pad_token is not None and tokenizer.pad_token == tokenizer.eos_token:
        report.notes.append(
            f"The pad token is the EOS token ({tokenizer.pad_token!r}): the EOS that ends a plain-text pair counts as "
            "padding, so a decoder reads the reward at the token before it (the last token of the response). "
            "Training and every trl-more scorer read it there; the model's reading record saves this pad token."
        )
    if getattr(tokenizer, "padding_side", "right") == "left":
        report.findings.append(
            Finding(
                "padding side",
                "warning",
                "the tokenizer pads on the left (`padding_side='left'`, usual for generation), but the reward "
                "trainers pad every batch on the right and the model's reading record says so; trl-more's scorers "
                "do the same, code that pads with this tokenizer does not. If the pad token is also the EOS token, "
                "the reward is read at the last token that is neither. Set `tokenizer.padding_side = 'right'` before "
                "saving the tokenizer with the model.",
            )
        )


def _check_read_positions(
    model: Any, pairs: list[list[list[int]]], pad_token_id: int, report: PreflightReport
) -> None:
    """Where each sequence's reward is read, in one right-padded batch (as the trainers' collators build them)."""
    from ..reward_head import RewardHeadInputCapture
    from ..rewards.batch_rewards import padded_inputs

    try:
        capture = RewardHeadInputCapture(model)
    except ValueError:  # no linear head to watch (e.g. the multi-objective model): the invariance checks remain
        report.notes.append("The reward head could not be located, so the read position was not checked.")
        return
    sequences = [ids for pair in pairs for ids in pair]
    inputs = padded_inputs(sequences, pad_token_id)
    device = next(model.parameters()).device
    with capture.attached():
        logits = model(**{name: tensor.to(device) for name, tensor in inputs.items()}, use_cache=False).logits
        _, per_token = capture.read()
    if per_token.dim() != 3:  # an encoder's head reads one pooled vector per sequence: the invariance checks apply
        return
    per_token, logits = per_token[..., 0].float().cpu(), logits[:, 0].float().cpu()
    positions = (per_token - logits[:, None]).abs().argmin(-1).tolist()
    problems = {"padding": 0, "prompt": 0, "before the end": 0}
    for row, (position, ids) in enumerate(zip(positions, sequences)):
        length = len(ids)
        pair = pairs[row // 2]
        if position >= length:
            problems["padding"] += 1
        elif position < common_prefix_length(*pair):
            problems["prompt"] += 1
        elif any(token != pad_token_id for token in ids[position + 1 :]):
            problems["before the end"] += 1
    report.measured.setdefault("(model)", {})["sequences read at the wrong token"] = sum(problems.values())
    if problems["padding"]:
        config_pad = model.config.get_text_config().pad_token_id
        report.findings.append(
            Finding(
                "reward position",
                "error",
                f"{problems['padding']} of {len(sequences)} sequences have their reward read at a padding token, so it "
                "depends on the batch and not on the sequence. Likely cause: the model's `config.pad_token_id` "
                f"({config_pad}) is not the pad token the batches are padded with ({pad_token_id}). Fix: "
                "`model.config.pad_token_id = tokenizer.pad_token_id`.",
            )
        )
    if problems["prompt"]:
        report.findings.append(
            Finding(
                "reward position",
                "error",
                f"{problems['prompt']} of {len(sequences)} sequences have their reward read inside the prompt, which "
                "chosen and rejected share: both get the same reward and the loss stays at log 2 (0.693). Likely "
                "cause: the pad token also appears at the end of the responses (pad = EOS with an EOS-terminated "
                "template), or a pooling rule that reads a fixed position. Fix: a pad token that is not part of the "
                "text, or a model that reads the last token that is not padding.",
            )
        )
    if problems["before the end"]:
        report.findings.append(
            Finding(
                "reward position",
                "error",
                f"{problems['before the end']} of {len(sequences)} sequences have their reward read before their last "
                "token, so the end of the response does not count. Likely cause: a pooling rule that reads a fixed "
                "position, or the pad token appearing inside the text. Fix: read the last token that is not padding "
                "(transformers' sequence classifiers do) and pad with a token that is not part of the text.",
            )
        )


def _check_padding_invariance(
    model: Any, tokenizer: Any, sequences: list[list[int]], report: PreflightReport, tolerance: float
) -> None:
    """The rewards of a right-padded batch against each sequence alone, and against a left-padded batch."""
    from ..tokenization import model_pad_token_id

    pad_token_id = model_pad_token_id(model, tokenizer)
    batch = len(sequences)
    right = sequence_rewards(model, sequences, pad_token_id, batch, "right")
    left = sequence_rewards(model, sequences, pad_token_id, batch, "left")
    # Scored alone: the most padded sequences of the batch (the shortest), where padding read as content shows most.
    shortest = np.argsort([len(ids) for ids in sequences], kind="stable")[:ALONE_SAMPLE]
    alone = sequence_rewards(model, [sequences[row] for row in shortest], pad_token_id, 1, "right")
    spread = max(float(right.std()), 1e-12)
    batch_change = float(np.abs(alone - right[shortest]).max() / spread)
    left_change = float(np.abs(left - right).max() / spread)
    measured = report.measured.setdefault("(model)", {})
    measured["reward change: batch vs alone"] = batch_change
    measured["reward change: left vs right padding"] = left_change
    if batch_change > tolerance:
        report.findings.append(
            Finding(
                "padding",
                "error",
                f"the same sequences get other rewards in a right-padded batch than alone (largest change "
                f"{batch_change:.2g} reward std): a reward depends on the batch it is scored in. Likely cause: padding "
                "read as content (a missing attention mask, a `config.pad_token_id` that is not the pad token) or a "
                "pooling rule that reads a fixed position. Fix the model's pooling or its pad token before training.",
            )
        )
    if left_change > tolerance:
        report.notes.append(
            f"Left padding changes this model's rewards (largest change {left_change:.2g} reward std; e.g. absolute "
            "positions, or a first-token pooler): it must be read right-padded, as training pads and the reading "
            "record says."
        )
