"""What the benchmark scorers (RewardBench, RM-Bench, best-of-N) share: their data from a local file or the Hub, a
(prompt, response) rendered as the reward model reads it and scored, and the callback that scores a benchmark at
every evaluation of a trainer (and hands the latest result to the model card).

Every benchmark is scored through the same path, so a model reads RewardBench, RM-Bench and best-of-N samples alike:
`score_sequences` renders each prompt with `render_prompt` (the tokenizer's chat template, the HH transcript, or the
prompt as given), scores with `trl_more.rewards.RewardModelScorer` at the model's own token limit
(`trl_more.input_settings.scoring_max_length`) and counts the sequences that lost the start of their prompt.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import TrainerCallback

from ..constants import check_choice


if TYPE_CHECKING:
    from datasets import Dataset
    from torch import nn
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerControl, TrainerState, TrainingArguments


__all__ = [
    "TEMPLATES",
    "BenchmarkCallback",
    "ScoredSequences",
    "benchmark_tables",
    "column",
    "column_names",
    "count_truncated",
    "is_conversation",
    "load_benchmark_data",
    "percent",
    "render_prompt",
    "resolve_template",
    "score_sequences",
    "snake_case",
]

# How a (prompt, response) reaches the reward model: "auto" is "chat" when the tokenizer has a chat template, else
# "hh"; "plain" passes the prompt as given (a text followed directly by the response, a conversation in the chat
# template), as trl-more's scorers read a data set's own prompts.
TEMPLATES = ("auto", "hh", "chat", "plain")
FILE_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".parquet")


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def column_names(dataset: Any) -> set[str]:
    """The columns of a `Dataset`, or those every row of a list of row dicts has."""
    if hasattr(dataset, "column_names"):
        return set(dataset.column_names)
    return set.intersection(*(set(row) for row in dataset)) if len(dataset) else set()


def column(dataset: Any, name: str) -> list[Any]:
    """One column of a `Dataset` or of a list of row dicts, as a list."""
    if hasattr(dataset, "column_names"):
        return list(dataset[name])
    return [row[name] for row in dataset]


def is_conversation(value: Any) -> bool:
    """Whether `value` is a conversation: a list of `{"role", "content"}` messages."""
    return isinstance(value, list) and all(isinstance(m, Mapping) and {"role", "content"} <= set(m) for m in value)


def load_benchmark_data(
    path_or_hub_id: str | os.PathLike, hub_example: str, default_split: str, split: str | None = None
) -> tuple[Dataset, str, Path | None]:
    """A benchmark's rows from a local file or the Hub: `(dataset, where it came from, the local file or None)`.

    Args:
        path_or_hub_id: a local .json/.jsonl(.gz)/.parquet file (read with `trl_more.data.read_records`) or a Hub
            data set id.
        hub_example: the benchmark's own Hub id, named when neither is found.
        default_split: the Hub split read when `split` is not given.
        split: the Hub split; local files have none.
    """
    from datasets import Dataset, load_dataset

    from ..data import read_records

    name = os.fspath(path_or_hub_id)
    path = Path(os.path.expandvars(os.path.expanduser(name)))
    if path.is_file():
        if split is not None:
            raise ValueError(f"`split` applies to Hub data sets only; {path} is a local file (give no split).")
        return Dataset.from_list(read_records(path)), str(path), path
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not name.lower().endswith(FILE_SUFFIXES):
        split = split or default_split
        return load_dataset(name, split=split), f"{name} (split {split})", None
    raise FileNotFoundError(
        f"No file {path} (relative paths are resolved against {Path.cwd()}), and {name!r} is not a Hub data set id "
        f"such as {hub_example!r}."
    )


# ---------------------------------------------------------------------------------------------------------------------
# Rendering and scoring
# ---------------------------------------------------------------------------------------------------------------------


def resolve_template(tokenizer: PreTrainedTokenizerBase, chat_template: str, model: nn.Module | None = None) -> str:
    """`"chat"`, `"hh"` or `"plain"`: `chat_template` with `"auto"` resolved for this tokenizer and `model`: the
    rendering of its training pairs when its reading record has one (`trl_more.input_settings`), else the chat
    template when the tokenizer has one, else `"hh"`. An explicit template other than the recorded rendering is
    used, with a warning."""
    from ..input_settings import input_settings, warn_if_read_differently

    check_choice("chat_template", chat_template, TEMPLATES)
    recorded = input_settings(model).rendering if model is not None else None
    if chat_template == "auto":
        if recorded is not None and (recorded != "chat" or tokenizer.chat_template):
            return recorded
        return "chat" if tokenizer.chat_template else "hh"
    if model is not None:
        warn_if_read_differently(model, where="benchmark scoring", rendering=chat_template)
    if chat_template == "chat" and not tokenizer.chat_template:
        raise ValueError(
            "`chat_template='chat'` but the tokenizer has no chat template; use 'hh' (the Human/Assistant transcript), "
            "'plain' (the prompt as given) or 'auto', or give the tokenizer the chat template the reward model was "
            "trained with."
        )
    return chat_template


def render_prompt(prompt: str | list[dict[str, Any]], template: str) -> str | list[dict[str, Any]]:
    """The prompt as the reward model reads it: user message(s) for its chat template (`"chat"`), an HH transcript
    (`"hh"`), or unchanged (`"plain"`)."""
    from ..data.formats import render_dialogue

    if template == "plain":
        return prompt
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if template == "chat":
        return messages
    return render_dialogue([(message["role"], message["content"]) for message in messages])


def count_truncated(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Any], responses: Sequence[str], max_length: int | None
) -> int:
    """How many sequences are longer than `max_length`; a `ValueError` if a response alone does not fit."""
    from ..tokenization import tokenize_scored_response

    if max_length is None:
        return 0
    truncated, too_long = 0, []
    for prompt, response in zip(prompts, responses):
        ids, prompt_length = tokenize_scored_response(tokenizer, prompt, response)
        truncated += len(ids) > max_length
        if len(ids) - prompt_length >= max_length:
            too_long.append(len(ids) - prompt_length)
    if too_long:
        raise ValueError(
            f"{len(too_long)} of {len(responses)} responses are {min(too_long)} to {max(too_long)} tokens long, which "
            f"leaves no room for their prompt within max_length={max_length}: the scorer cuts the start of the "
            "prompt only, never the response, where the reward is read. Raise `max_length` (at most the model's "
            "position limit), or score with a model that reads longer sequences."
        )
    return truncated


@dataclass
class ScoredSequences:
    """The rewards of a benchmark's sequences and how they were read.

    Attributes:
        rewards: one float64 reward per (prompt, response), raw (`logits[:, 0]`, no temperature applied).
        num_truncated: sequences longer than `max_length`, which lost the start of their prompt.
        max_length: the token limit they were scored with (`None`: no limit).
        template: how they were rendered: `"chat"`, `"hh"` or `"plain"`.
    """

    rewards: np.ndarray
    num_truncated: int
    max_length: int | None
    template: str


def score_sequences(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Any],
    responses: Sequence[str],
    batch_size: int = 8,
    max_length: int | None = None,
    chat_template: str = "auto",
    show_progress: bool = False,
) -> ScoredSequences:
    """Score every (prompts[i], responses[i]) with a reward model, each rendered as the model reads it.

    `"auto"` renders as the model's training pairs were rendered, when its reading record says
    (`trl_more.input_settings`), else as `"chat"` when the tokenizer has a chat template and as `"hh"` otherwise.
    With `chat_template="chat"` the prompt is a user
    message and the response an assistant message of the tokenizer's chat template; with `"hh"` it is the HH
    transcript `"\\n\\nHuman: {prompt}\\n\\nAssistant: {response}"` (stripped as trl-more's data sources are, plus the
    eos token, as TRL's reward trainer appends it); with `"plain"` the prompt is passed as given (a text followed by
    the response and the eos token; a conversation in the chat template). Sequences are scored by
    `RewardModelScorer` (length-sorted batches, the multi-objective model's prompt lengths) in eval mode, without
    gradients; those longer than `max_length` (by default the model's own limit: the `max_length` it was trained
    with, else its position limit) lose the start of their prompt and are counted. The model's training mode is
    restored afterwards; the tokenizer gets its eos token as pad token if it has none.
    """
    from ..data.formats import render_response
    from ..input_settings import scoring_max_length
    from ..rewards.scoring import RewardModelScorer
    from ..tokenization import align_pad_token

    template = resolve_template(tokenizer, chat_template, model)
    prompts = [render_prompt(prompt, template) for prompt in prompts]
    if template == "hh":
        responses = [render_response(response) for response in responses]
    max_length = scoring_max_length(model, max_length)
    num_truncated = count_truncated(tokenizer, prompts, responses, max_length)
    align_pad_token(model, tokenizer)
    scorer = RewardModelScorer(
        [model],
        [tokenizer],
        batch_size=batch_size,
        max_length=max_length,
        device=next(model.parameters()).device,
        show_progress=show_progress,
    )
    was_training = model.training
    model.eval()
    try:
        rewards = scorer.score(prompts, responses).per_model[:, 0].double().numpy()
    finally:
        model.train(was_training)
    return ScoredSequences(rewards, num_truncated, max_length, template)


# ---------------------------------------------------------------------------------------------------------------------
# Training callback
# ---------------------------------------------------------------------------------------------------------------------


class BenchmarkCallback(TrainerCallback):
    """Score a benchmark with the trainer's model at every evaluation and log the result through `trainer.log`.

    Subclasses implement `score(model, tokenizer)`, which returns a result with `log_metrics(prefix)` (the logged
    dict) and `to_markdown()` (the table). Built from the trainer, like TRL's own callbacks; several eval sets
    evaluated at one step are scored once; each process scores the whole benchmark (no gathering; fine on one process
    and under DDP). The latest result is kept in `last_result` with its step in `scored_step`, and
    `MORERewardTrainer`'s model card shows it under `title`.

    Args:
        trainer: the reward trainer (e.g. `trl_more.MORERewardTrainer` or `trl.RewardTrainer`).
        prefix: the prefix of the logged names.
    """

    title = "Benchmark"

    def __init__(self, trainer: Trainer, prefix: str):
        self.trainer = trainer
        self.prefix = prefix
        self.last_result: Any = None
        self.scored_step: int | None = None

    def score(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> Any:
        raise NotImplementedError

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step == self.scored_step:
            return
        self.scored_step = state.global_step
        self.last_result = self.score(self.trainer.model, self.trainer.processing_class)
        self.trainer.log(self.last_result.log_metrics(self.prefix))


def benchmark_tables(callbacks: Sequence[TrainerCallback]) -> dict[str, str]:
    """`{heading: Markdown table}` of the latest result of every `BenchmarkCallback` among `callbacks` that has
    scored, for the model card."""
    return {
        f"{callback.title} (step {callback.scored_step})": callback.last_result.to_markdown().strip()
        for callback in callbacks
        if isinstance(callback, BenchmarkCallback) and callback.last_result is not None
    }


# ---------------------------------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------------------------------


def percent(value: float) -> str:
    """A fraction as a percentage with two decimals; `-` for NaN (no data)."""
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def snake_case(name: str) -> str:
    """`"Chat Hard"` -> `"chat_hard"`, for logged metric names."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
