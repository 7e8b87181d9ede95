"""The model card of a reward model trained by `MORERewardTrainer`: a data object and its template.

The trainer fills a `RewardModelCard` (`MORERewardTrainer.model_card_data`, through `trainer_model_card`) with what a user of the model needs to
judge and use it: the training sources and their sizes, the method and its settings, the per-source accuracy and
calibration, the benchmarks scored during training (RewardBench, RM-Bench, best-of-N against a gold reward: the
latest result of every `trl_more.metrics.benchmark_scoring.BenchmarkCallback`), MORE's lambda over training and how
to load and score with the model. `render` turns it into the
README.md (YAML metadata for the Hub, then Markdown) with `model_card_template.md`, through huggingface_hub's
`ModelCard.from_template`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..constants import LAMBDA_METRIC_PREFIX, SOURCE_INDEX_COLUMN
from ..metrics import DEFAULT_OUTLIER_THRESHOLD, RewardEvaluation, reward_temperature
from ..metrics.benchmark_scoring import benchmark_tables
from .data_checks import per_source_counts


if TYPE_CHECKING:
    from .more_config import MORERewardConfig
    from .more_trainer import MORERewardTrainer


__all__ = [
    "LAMBDA_PLOT_NAME",
    "RewardModelCard",
    "evaluation_from_log",
    "last_lambdas",
    "noisy_preference_settings",
    "trainer_model_card",
    "training_pairs_per_source",
]

LAMBDA_PLOT_NAME = "lambda.png"
TEMPLATE = Path(__file__).with_name("model_card_template.md")
PAPER_URL = "https://huggingface.co/papers/2312.07401"
MORE_CITATION = """@inproceedings{zeng2024diversified,
    title     = {{On Diversified Preferences of Large Language Model Alignment}},
    author    = {Dun Zeng and Yong Dai and Pengyu Cheng and Longyue Wang and Tianhao Hu and Wanshun Chen and Nan Du and Zenglin Xu},
    booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2024},
    pages     = {9194--9210},
    year      = 2024,
}"""
TRL_CITATION = """@software{vonwerra2020trl,
    title   = {{TRL: Transformers Reinforcement Learning}},
    author  = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallouédec, Quentin},
    license = {Apache-2.0},
    url     = {https://github.com/huggingface/trl},
    year    = {2020}
}"""
FRAMEWORKS = ("trl-more", "trl", "transformers", "torch", "datasets", "tokenizers")
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


@dataclass
class RewardModelCard:
    """Everything the model card of a trained reward model shows.

    Attributes:
        model_id: Hub repository of the model, or its folder when it has none.
        base_model: the model training started from (a Hub id or a local path; `None` when unknown).
        method: `"more"`, `"multitask"` or `"single"` (one source, plain reward training).
        sources: training pairs per source after the length limit and any resampling (`None` for one source; a
            value `None` for a streamed source).
        lambdas: the last logged lambda of every source (empty when none was logged).
        pairs_per_source: pairs of every source in a micro-batch.
        gradient_normalization, lambda_momentum, lambda_synced: MORE's settings.
        settings: the training settings table, `{setting: value}`.
        evaluation: per-source accuracy and calibration, or `None`.
        benchmarks: `{heading: Markdown table}` of the benchmarks scored during training (see
            `trl_more.metrics.benchmark_scoring.benchmark_tables`).
        lambda_plot: file name of the plot of lambda over training, next to the card, or `None`.
        lambda_note: what the card says instead of the plot when there is none.
        temperature: the fitted reward temperature (1.0: none).
        eos_token: the token appended to plain-text inputs in training (`None` for none).
        tags: Hub tags.
    """

    model_id: str
    base_model: str | None
    method: str
    sources: Mapping[str, int | None] | None = None
    lambdas: Mapping[str, float] = field(default_factory=dict)
    pairs_per_source: int = 0
    gradient_normalization: str = "l2"
    lambda_momentum: float = 0.99
    lambda_synced: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    evaluation: RewardEvaluation | None = None
    benchmarks: Mapping[str, str] = field(default_factory=dict)
    lambda_plot: str | None = None
    lambda_note: str = ""
    temperature: float = 1.0
    eos_token: str | None = None
    tags: Sequence[str] = ()

    def render(self) -> str:
        """The card as README.md text: YAML metadata, then Markdown."""
        from huggingface_hub import ModelCard, ModelCardData

        hub_base_model = self.base_model if self.base_model and not os.path.isdir(self.base_model) else None
        card_data = ModelCardData(
            base_model=hub_base_model,
            library_name="transformers",
            pipeline_tag="text-classification",
            model_name=os.path.basename(os.path.normpath(self.model_id)),
            tags=sorted(set(self.tags)),
        )
        sources = dict(self.sources) if self.sources else None
        versions = _framework_versions()
        card = ModelCard.from_template(
            card_data,
            template_path=str(TEMPLATE),
            model_name=card_data.model_name,
            model_id=self.model_id,
            base_model_link=_base_model_link(self.base_model),
            sources_phrase=f"{len(sources)} preference sources" if sources else "one preference source",
            method=self.method,
            paper_url=PAPER_URL,
            num_sources=len(sources or ()),
            pairs_per_source=self.pairs_per_source,
            gradient_normalization=self.gradient_normalization,
            lambda_momentum=f"{self.lambda_momentum:g}",
            lambda_sync=" averaged across processes," if self.lambda_synced else "",
            two_sources_l2=len(sources or ()) == 2 and self.gradient_normalization == "l2",
            sources=sources,
            total_pairs=sum(sources.values()) if sources and None not in sources.values() else None,
            lambdas=dict(self.lambdas),
            settings=dict(self.settings),
            evaluation=self.evaluation.to_markdown().strip() if self.evaluation is not None else None,
            benchmarks=dict(self.benchmarks),
            lambda_plot=self.lambda_plot,
            lambda_note=self.lambda_note,
            temperature=self.temperature,
            eos_token=self.eos_token,
            eos_literal=repr(self.eos_token),
            framework_versions=versions,
            trl_more_version=versions.get("trl-more", "(version unknown)"),
            more_citation=MORE_CITATION,
            trl_citation=TRL_CITATION,
        )
        return re.sub(r"\n{3,}", "\n\n", str(card))  # the template's optional sections leave blank runs


def _base_model_link(base_model: str | None) -> str:
    if not base_model:
        return "a model"
    if os.path.isdir(base_model):
        return f"a local model (`{'/'.join(os.path.normpath(base_model).split(os.sep)[-2:])}`)"
    return f"[{base_model}](https://huggingface.co/{base_model})"


def _framework_versions() -> dict[str, str]:
    versions = {}
    for name in FRAMEWORKS:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def last_lambdas(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The last logged `lambda/<source>` of every source."""
    latest = {}
    for entry in log_history:
        latest.update(
            {
                key.removeprefix(LAMBDA_METRIC_PREFIX): value
                for key, value in entry.items()
                if key.startswith(LAMBDA_METRIC_PREFIX)
            }
        )
    return latest


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


def trainer_model_card(trainer: MORERewardTrainer, evaluation: RewardEvaluation | None = None) -> RewardModelCard:
    """What the model card of a `MORERewardTrainer` shows, from the trainer (after training).

    Args:
        trainer: the trainer whose model, settings, sources and log history the card describes.
        evaluation: the per-source evaluation to show (e.g. the one `trl-more reward` computes); `None` uses the
            latest per-source metrics logged during evaluation (with `PreferenceMetrics`), if any.
    """
    args, history = trainer.args, trainer.state.log_history
    if evaluation is None:
        eval_sets = [str(name) for name in trainer.eval_dataset] if isinstance(trainer.eval_dataset, Mapping) else None
        evaluation = evaluation_from_log(
            history,
            eval_sets,
            n_bins=getattr(trainer.compute_metrics, "n_bins", 10),
            outlier_threshold=getattr(trainer.compute_metrics, "outlier_threshold", 5.0),
        )
    method = "single" if trainer.num_sources < 2 else {"min_norm": "more", "uniform": "multitask"}[args.lambda_method]
    length = f"longer pairs truncated ({args.truncation_mode})" if args.truncation_mode else "longer pairs dropped"
    epochs = args.num_train_epochs
    duration = f"{args.max_steps} steps" if args.max_steps > 0 else f"{epochs:g} epoch{'s' if epochs != 1 else ''}"
    schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    lambdas = last_lambdas(history)
    model = trainer.accelerator.unwrap_model(trainer.model)
    return RewardModelCard(
        model_id=trainer.hub_model_id or args.hub_model_id or args.output_dir,
        base_model=model.config.name_or_path or None,
        method=method,
        sources=training_pairs_per_source(trainer.train_dataset, trainer.sources),
        lambdas=lambdas,
        pairs_per_source=args.per_device_train_batch_size // max(trainer.num_sources, 1),
        gradient_normalization=args.gradient_normalization,
        lambda_momentum=args.lambda_momentum,
        lambda_synced=args.sync_lambda_across_processes and args.world_size > 1,
        settings={
            "per-device batch (pairs)": args.per_device_train_batch_size,
            "processes x gradient accumulation": f"{args.world_size} x {args.gradient_accumulation_steps}",
            "learning rate": f"{args.learning_rate:g} ({schedule})",
            "training": f"{duration}, {trainer.state.global_step} optimizer steps done",
            "max length (tokens)": f"{args.max_length}, {length}",
            "resampled by the trainer to": args.samples_per_source or "no (sources as given)",
            **noisy_preference_settings(args, trainer.flipped_pairs),
            "seed": args.seed,
        },
        evaluation=evaluation,
        benchmarks=benchmark_tables(trainer.callback_handler.callbacks),
        lambda_plot=LAMBDA_PLOT_NAME if method == "more" and lambdas else None,
        lambda_note="No source weights were logged (training ran fewer steps than `logging_steps`).",
        temperature=reward_temperature(model),
        eos_token=getattr(trainer.processing_class, "eos_token", None),
        tags=trainer._tag_names,
    )


def noisy_preference_settings(args: MORERewardConfig, flipped_pairs: Mapping[str, int]) -> dict[str, str]:
    """The denoising, text-regularisation and contrastive options in use, for the model card's settings table."""
    settings = {}
    if flipped_pairs:
        rule = (
            f"strength < {args.flip_below_strength:g}"
            if args.flip_below_strength is not None
            else (f"the weakest {args.flip_fraction:.0%} of every source")
        )
        counts = ", ".join(f"{name}: {count}" for name, count in flipped_pairs.items())
        settings["flipped pairs"] = f"{rule} ({counts})"
    if args.label_smoothing > 0:
        below = args.label_smoothing_below_strength
        settings["label smoothing"] = f"{args.label_smoothing:g}" + (
            f" (pairs with strength < {below:g})" if below is not None else ""
        )
    if args.adaptive_margin != 0.0:
        clip = f", clipped to +-{args.adaptive_margin_clip:g}" if args.adaptive_margin_clip else ""
        settings["adaptive margin"] = f"{args.adaptive_margin:g} x strength{clip}"
    if args.text_regularization_coefficient > 0:
        settings["text regularisation (GRM)"] = (
            f"{args.text_regularization} on the chosen responses, coefficient {args.text_regularization_coefficient:g}"
        )
    if args.contrastive_loss is not None:
        settings["contrastive loss"] = (
            f"{args.contrastive_loss} on the {args.contrastive_representation} representation, coefficient "
            f"{args.contrastive_coefficient:g}, dropout {args.contrastive_dropout:g}"
        )
    return settings


def training_pairs_per_source(dataset: Any, sources: Sequence[str]) -> dict[str, int | None] | None:
    """Training pairs of every source: `None` without sources, `None` per source for a data set without a source
    index column (a streamed one)."""
    if not sources:
        return None
    if SOURCE_INDEX_COLUMN not in (getattr(dataset, "column_names", None) or []):
        return dict.fromkeys(sources)
    return dict(zip(sources, per_source_counts(dataset, len(sources)).tolist()))
