"""`trl-more strength`: the preference strength of every training pair, from an ensemble of reward models.

Example:
    trl-more strength --config recipes/strength/cpu-minilm-cross-fit.yaml
    trl-more strength --mixture recipes/mixtures/hh_cpu.yaml --num_models 4 --mode cross_fit \\
        --max_steps 200 --learning_rate 1e-4 --output_dir runs/hh-strength

Trains `--num_models` reward models with the options of `MORERewardConfig` (and TRL's `ModelConfig`: PEFT,
quantization) and writes, to `--output_dir`: `strength.jsonl` and `strength.parquet` (the training pairs with
`strength_mean`, `strength_std` and `strength_differences`), `strength_summary.json`/`.md` (per source: the share of
pairs with mu < 0 and the quantiles of mu and sigma) and `strength.png`, plus one `model-XX/scores.json` per model. An
interrupted run started again with the same command reuses the models already scored. The data options are those of
`trl-more reward` (a mixture, one dataset in TRL's preference format, local copies of the default sources, or the Hub);
the training split is scored. Every model scores with the `--max_length` it was trained with (at most the backbone's
position limit, e.g. 512 for BERT-style encoders, which is also the limit without `--max_length`), truncating longer
pairs as `--truncation_mode` says (`keep_end` when it is unset, which drops long pairs from training only).
With `--save_models` every member's weights are kept in `model-XX/` for `trl-more average` (the members then share
their initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from ..more.more_config import MORERewardConfig
from ..noisy_preferences.strength import STRENGTH_MODES
from .common import model_init_kwargs, reward_training_parser, training_tokenizer
from .reward import DataArguments


@dataclass
class StrengthScriptArguments(DataArguments):
    r"""
    Data and ensemble options of `trl-more strength`: the data options of `trl-more reward` (`DataArguments`; the
    training pairs are scored), and:

    Parameters:
        num_models (`int`, *optional*, defaults to `4`):
            Reward models in the ensemble (the paper: 10).
        mode (`str`, *optional*, defaults to `"cross_fit"`):
            `cross_fit` (every pair scored only by models that never trained on it) or `seeds` (the paper's: every
            model trains on every pair).
        num_folds (`int`, *optional*, defaults to `2`):
            Folds of `cross_fit`; `num_models` must be a multiple of it with at least two repeats.
        plots (`bool`, *optional*, defaults to `True`):
            Draw `strength.png` (needs matplotlib).
        save_models (`bool`, *optional*, defaults to `False`):
            Keep every member's weights in `model-XX/` so that `trl-more average` can weight-average them (WARM).
            The members then start from one initialisation (the same seed; each its own data order through
            `data_seed`), as averaging requires.
    """

    num_models: int = field(default=4, metadata={"help": "Reward models in the ensemble."})
    mode: str = field(
        default="cross_fit",
        metadata={"help": "`cross_fit` (out-of-sample) or `seeds` (in-sample).", "choices": list(STRENGTH_MODES)},
    )
    num_folds: int = field(default=2, metadata={"help": "Folds of `cross_fit`."})
    plots: bool = field(default=True, metadata={"help": "Draw strength.png (needs matplotlib)."})
    save_models: bool = field(
        default=False,
        metadata={"help": "Keep the members' weights (one initialisation) for `trl-more average`."},
    )


def make_parser(prog: str | None = None) -> TrlParser:
    return reward_training_parser(StrengthScriptArguments, prog, __doc__.split("\n\n")[0])


def main(script_args: StrengthScriptArguments, training_args: MORERewardConfig, model_args: ModelConfig):
    from ..noisy_preferences import estimate_preference_strength
    from .reward import default_model, load_training_sources

    if get_quantization_config(model_args) is not None:
        raise ValueError("`trl-more strength` does not quantize the ensemble's models; drop the 4/8-bit flags.")
    train_dataset, _ = load_training_sources(script_args, training_args.seed, training_args.source_column)
    model_name = model_args.model_name_or_path or default_model(training_args.output_dir, script_args.demo)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    tokenizer = training_tokenizer(
        model_name, model_args.model_revision, training_args.trust_remote_code, training_args.eos_token
    )
    strength = estimate_preference_strength(
        model_name,
        train_dataset,
        training_args,
        num_models=script_args.num_models,
        mode=script_args.mode,
        num_folds=script_args.num_folds,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        save_models=script_args.save_models,
    )
    paths = strength.save(training_args.output_dir, plots=script_args.plots)
    print(strength.to_markdown())
    print("Written: " + ", ".join(str(path) for path in paths.values()))
    return strength
