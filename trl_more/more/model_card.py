"""The model card of a reward model trained by `MORERewardTrainer`, and the error raised when its Hub upload fails.

TRL's `RewardTrainer` writes a card (README.md) from its `rm_model_card.md` template. `MORERewardTrainer` keeps that
card and appends what a user of the model needs to judge and use it: the training sources and their sizes, the method
(MORE with its settings, MultiTask, or plain reward training), the per-source accuracy and calibration table, MORE's
source weights over training (a plot saved next to the card, so it is uploaded with it) and how to load the model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.sources import SOURCE_ID_COLUMN
from ..metrics import DEFAULT_OUTLIER_THRESHOLD, RewardEvaluation, reward_temperature


if TYPE_CHECKING:
    from .more_trainer import MORERewardTrainer


LAMBDA_PLOT_NAME = "lambda.png"
PAPER_URL = "https://huggingface.co/papers/2312.07401"
# The columns of `RewardEvaluation.to_markdown`, as `PreferenceMetrics` logs them: `eval_<set>_<key>`.
EVALUATION_KEYS = (
    "num_pairs",
    "preference_accuracy",
    "ece",
    "ace",
    "mce",
    "margin_mean",
    "margin_std",
    "positive_outliers",
    "positive_outlier_mean",
    "negative_outliers",
    "negative_outlier_mean",
)


def more_model_card(trainer: MORERewardTrainer, evaluation: RewardEvaluation | None = None) -> str:
    """The sections `MORERewardTrainer` appends to TRL's card (Markdown, no YAML header).

    Args:
        trainer: the trainer whose model the card describes (after training).
        evaluation: the per-source evaluation to show (e.g. the one `trl-more reward` computes); `None` uses the
            latest per-source metrics the trainer logged during evaluation (with `PreferenceMetrics`), if any.

    Draws MORE's weights over training to `<output_dir>/lambda.png` when they were logged (and matplotlib is
    installed) and refers to it from the card.
    """
    args = trainer.args
    history = trainer.state.log_history
    sections = [
        _data_section(trainer.source_names, training_pairs_per_source(trainer), _last_lambdas(history)),
        _method_section(trainer),
    ]
    if evaluation is None:
        evaluation = evaluation_from_log(history, _eval_set_names(trainer.eval_dataset), **_metric_options(trainer))
    if evaluation is not None:
        sections.append(
            "## Evaluation\n\nPreference accuracy and calibration on held-out pairs of every source (ECE: expected "
            "calibration error of sigmoid(r(chosen) - r(rejected)), 0 is perfect).\n\n"
            + evaluation.to_markdown().strip()
        )
    if trainer.num_sources > 1:
        sections.append(_lambda_section(history, args.output_dir, args.reweighting))
    model = trainer.accelerator.unwrap_model(trainer.model)
    eos_token = getattr(trainer.processing_class, "eos_token", None)
    sections.append(_usage_section(model_id_of(trainer), eos_token, reward_temperature(model)))
    return "\n\n".join(sections) + "\n"


def fill_trl_card_gaps(card: str, base_model: str | None, model_id: str) -> str:
    """TRL's template names the base model and the repository even when they are unknown (a local base model, a
    model not pushed yet) and then writes `None`; put the local base model's name and the model's path there."""
    local = "/".join(os.path.normpath(base_model).split(os.sep)[-2:]) if base_model else None
    card = card.replace("[None](https://huggingface.co/None)", f"a local model (`{local}`)" if local else "a model")
    return card.replace('pipeline(model="None"', f'pipeline(model="{model_id}"')


def training_pairs_per_source(trainer: MORERewardTrainer) -> dict[str, int] | None:
    """Pairs of every source in the prepared training set (after the length limit and any resampling)."""
    dataset = trainer.train_dataset
    if not trainer.source_names or SOURCE_ID_COLUMN not in (getattr(dataset, "column_names", None) or []):
        return None
    counts = np.bincount(dataset[SOURCE_ID_COLUMN], minlength=trainer.num_sources)
    return {name: int(count) for name, count in zip(trainer.source_names, counts)}


def evaluation_from_log(
    log_history: Sequence[Mapping[str, Any]],
    eval_set_names: Sequence[str] | None,
    n_bins: int = 10,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
) -> RewardEvaluation | None:
    """The latest per-source metrics logged by a reward trainer with `PreferenceMetrics`, as a table (no margins).

    `eval_set_names` are the keys of a dict `eval_dataset` (metrics `eval_<name>_ece`, ...); `None` reads a single
    eval set (`eval_ece`, ...). Returns `None` when no such metrics were logged.
    """
    prefixes = {name: f"eval_{name}_" for name in eval_set_names} if eval_set_names else {"all eval pairs": "eval_"}
    rows = {}
    for entry in log_history:
        for name, prefix in prefixes.items():
            if all(f"{prefix}{key}" in entry for key in EVALUATION_KEYS):
                rows[name] = {key: entry[f"{prefix}{key}"] for key in EVALUATION_KEYS}
    if not rows:
        return None
    for row in rows.values():
        row["num_pairs"] = int(row["num_pairs"])
    return RewardEvaluation(rows, {}, n_bins, outlier_threshold)


def model_id_of(trainer: MORERewardTrainer) -> str:
    """The Hub repository of the trainer's model when it has one, else its output folder."""
    return trainer.hub_model_id or trainer.args.hub_model_id or trainer.args.output_dir


def _eval_set_names(eval_dataset: Any) -> list[str] | None:
    return [str(name) for name in eval_dataset] if isinstance(eval_dataset, Mapping) else None


def _metric_options(trainer: MORERewardTrainer) -> dict[str, Any]:
    metrics = trainer.compute_metrics  # PreferenceMetrics (or anything with the same attributes) sets the bins
    return {
        "n_bins": getattr(metrics, "n_bins", 10),
        "outlier_threshold": getattr(metrics, "outlier_threshold", DEFAULT_OUTLIER_THRESHOLD),
    }


def _last_lambdas(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    from ..plots import LAMBDA_PREFIX

    latest = {}
    for entry in log_history:
        latest.update(
            {key[len(LAMBDA_PREFIX) :]: value for key, value in entry.items() if key.startswith(LAMBDA_PREFIX)}
        )
    return latest


def _data_section(source_names: list[str], sizes: dict[str, int] | None, lambdas: dict[str, float]) -> str:
    if not source_names:
        return "## Training data\n\nOne preference source (no source column), trained as with `trl.RewardTrainer`."
    header, rule = "| source | training pairs |", "|---|---|"
    if lambdas:
        header, rule = header + " lambda (last logged) |", rule + "---|"
    lines = [header, rule]
    for name in source_names:
        cells = [name, f"{sizes[name]:,}" if sizes else "(streamed)"]
        if lambdas:
            cells.append(f"{lambdas[name]:.4f}" if name in lambdas else "")
        lines.append("| " + " | ".join(cells) + " |")
    if sizes:
        lines.append(f"| **total** | {sum(sizes.values()):,} |" + (" |" if lambdas else ""))
    return (
        f"## Training data\n\n{len(source_names)} preference sources; training pairs per source after the length "
        "limit and any resampling:\n\n" + "\n".join(lines)
    )


def _method_section(trainer: MORERewardTrainer) -> str:
    args = trainer.args
    num_sources = trainer.num_sources
    per_source = args.per_device_train_batch_size // max(num_sources, 1)
    if num_sources < 2:
        method = "Bradley-Terry reward training on a single source (MORE's options have no effect)."
    elif args.reweighting == "uniform":
        method = (
            f"**MultiTask** (the balanced baseline of [MORE]({PAPER_URL})): every micro-batch holds {per_source} "
            f"pairs of each of the {num_sources} sources and every source's Bradley-Terry loss has the weight "
            f"1/{num_sources}."
        )
    else:
        synced = " averaged across processes," if args.sync_lambda_across_processes and args.world_size > 1 else ""
        method = (
            f"**MORE** ([multi-objective reward learning]({PAPER_URL})): every micro-batch holds {per_source} pairs "
            f"of each of the {num_sources} sources, and the loss is `sum_i lambda_i * loss_i`, with lambda the "
            f"minimum-norm point of the per-source gradients of the reward head ({args.gradient_normalization} "
            f"normalisation, momentum {args.lambda_momentum:g},{synced} solved exactly at every step)."
        )
        if num_sources == 2 and args.gradient_normalization == "l2":
            method += " With two sources and l2 normalisation lambda is always (1/2, 1/2): this equals MultiTask."
    length = f"longer pairs truncated ({args.truncation_mode})" if args.truncation_mode else "longer pairs dropped"
    epochs = args.num_train_epochs
    duration = f"{args.max_steps} steps" if args.max_steps > 0 else f"{epochs:g} epoch{'s' if epochs != 1 else ''}"
    settings = {
        "per-device batch (pairs)": args.per_device_train_batch_size,
        "processes x gradient accumulation": f"{args.world_size} x {args.gradient_accumulation_steps}",
        "learning rate": f"{args.learning_rate:g} ({getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)})",
        "training": f"{duration}, {trainer.state.global_step} optimizer steps done",
        "max length (tokens)": f"{args.max_length}, {length}",
        "resampled by the trainer to": args.samples_per_source or "no (sources as given)",
        "seed": args.seed,
    }
    table = "\n".join(
        ["| setting | value |", "|---|---|", *(f"| {key} | {value} |" for key, value in settings.items())]
    )
    return f"## Method\n\n{method}\n\n{table}"


def _lambda_section(log_history: Sequence[Mapping[str, Any]], output_dir: str, reweighting: str) -> str:
    if reweighting == "uniform":
        return "## Source weights\n\nMultiTask keeps every source's weight at 1/K throughout training."
    if not _last_lambdas(log_history):
        return "## Source weights\n\nNo source weights were logged (training ran fewer steps than `logging_steps`)."
    try:
        from ..plots import plot_lambda_history
    except ImportError:  # matplotlib is an optional extra
        return "## Source weights\n\nThe plot of lambda over training needs matplotlib: `pip install trl-more[plots]`."
    plot_lambda_history(log_history, os.path.join(output_dir, LAMBDA_PLOT_NAME))
    return (
        "## Source weights over training\n\nMORE's weight lambda of every source at each logging step (the dashed "
        f"line is the uniform weight 1/K):\n\n![lambda per source over training]({LAMBDA_PLOT_NAME})"
    )


def _usage_section(model_id: str, eos_token: str | None, temperature: float) -> str:
    append_eos = f" + {eos_token!r}" if eos_token else ""
    code = (
        "```python\nimport torch\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        f'model = AutoModelForSequenceClassification.from_pretrained("{model_id}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{model_id}")\n\n'
        "def reward(prompt, response):\n"
        f'    inputs = tokenizer(prompt + response{append_eos}, return_tensors="pt")\n'
        "    with torch.no_grad():\n"
        "        return model(**inputs).logits[0, 0].item()"
        + (" / model.config.reward_temperature" if temperature != 1.0 else "")
        + "\n\n"
        'prompt = "\\n\\nHuman: How do I keep basil fresh?\\n\\nAssistant:"\n'
        'better, worse = reward(prompt, " Keep it in water."), reward(prompt, " No idea.")\n'
        "probability = torch.sigmoid(torch.tensor(better - worse))  # P(first response preferred)\n```"
    )
    text = (
        f"## Usage\n\nA sequence-classification model with one output, the reward. Score plain text as in training: "
        f"prompt + response{' + the eos token (TRL appends it)' if eos_token else ''}.\n\n{code}"
    )
    if temperature != 1.0:
        text += (
            f"\n\nA temperature T = {temperature:.4g} was fitted on held-out pairs and is stored in "
            "`config.reward_temperature`: dividing the rewards by it gives calibrated probabilities (rankings and "
            "accuracy are unchanged)."
        )
    else:
        text += (
            "\n\nNo temperature was fitted. To fit one on held-out pairs: `trl-more evaluate --model <this model> "
            "--sources ... --calibration_sources held_out=pairs.jsonl --save_calibrated_model`."
        )
    return text
