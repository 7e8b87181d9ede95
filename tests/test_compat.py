"""Every TRL/transformers internal trl-more uses, checked against the installed versions (see trl_more/_compat.py).

When an upgrade renames or changes one of them, these tests fail with a message naming it, instead of a training
run failing somewhere deep inside.
"""

import configparser
import importlib
import inspect
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from packaging.specifiers import SpecifierSet
from trl import RewardConfig, RewardTrainer

from trl_more import _compat
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


REPO = Path(__file__).resolve().parents[1]


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    "owner, method, parameters",
    [
        (owner, method, parameters)
        for owner, hooks in _compat.OVERRIDDEN_HOOKS.items()
        for method, parameters in hooks.items()
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_every_overridden_hook_still_exists_with_the_same_parameters(owner, method, parameters):
    function = getattr(_class(owner), method, None)
    assert function is not None, f"{owner}.{method}, which trl-more's trainers override, no longer exists"
    found = tuple(name for name in inspect.signature(function).parameters if name != "self")
    assert found == parameters, f"{owner}.{method} now takes {found}; trl-more's override expects {parameters}"


def test_every_reexported_name_resolves():
    for name in _compat.__all__:
        assert getattr(_compat, name, None) is not None, f"_compat.{name} did not resolve"


def test_reward_dataset_preparation_is_trls():
    tokenizer = tiny_tokenizer()
    pairs = toy_preference_sources(4)["polite"]
    ours = _compat.prepare_reward_dataset(pairs, tokenizer, "eval")
    trainer = RewardTrainer(
        tiny_reward_model("qwen2", tokenizer),
        RewardConfig("unused", report_to="none", bf16=False, max_length=None),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    assert ours["chosen_ids"] == trainer.train_dataset["chosen_ids"]
    assert ours["rejected_ids"] == trainer.train_dataset["rejected_ids"]
    assert all(ids[-1] == tokenizer.eos_token_id for ids in ours["chosen_ids"])


def test_trainer_internals_read_and_written(tmp_path):
    tokenizer = tiny_tokenizer()
    trainer = RewardTrainer(
        tiny_reward_model("qwen2", tokenizer),
        RewardConfig(str(tmp_path), report_to="none", bf16=False),
        train_dataset=toy_preference_sources(4)["polite"],
        processing_class=tokenizer,
    )
    _compat.trainer_metrics(trainer, "train")["custom"].append(1.0)
    trainer.log({"loss": 0.5})
    assert trainer.state.log_history[-1]["custom"] == 1.0  # TRL averages and logs what is recorded there
    trainer._set_signature_columns_if_needed()
    _compat.keep_batch_columns(trainer, ["source_index", "chosen_ids"])
    assert trainer._signature_columns.count("chosen_ids") == 1 and "source_index" in trainer._signature_columns
    _compat.save_model_without_push(trainer, str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def test_zero3_init_paused_restores_the_active_config():
    from transformers.integrations import deepspeed as hf_deepspeed

    sentinel = object()
    before = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = sentinel
    try:
        with _compat.zero3_init_paused():
            assert hf_deepspeed._hf_deepspeed_config_weak_ref is None
        assert hf_deepspeed._hf_deepspeed_config_weak_ref is sentinel
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = before


def test_sft_dataset_preparation_masks_the_prompt(tmp_path):
    from trl import SFTConfig, SFTTrainer

    from trl_more.testing import tiny_causal_lm

    tokenizer = tiny_tokenizer()
    trainer = SFTTrainer(
        tiny_causal_lm("qwen2", tokenizer),
        SFTConfig(str(tmp_path), report_to="none", bf16=False),
        train_dataset=Dataset.from_dict({"prompt": ["a"], "completion": ["b"]}),
        processing_class=tokenizer,
    )
    prepared = _compat.prepare_sft_dataset(
        trainer, Dataset.from_dict({"input_ids": [[5, 6, 7]], "completion_mask": [[0, 1, 1]]}), "check"
    )
    assert prepared[0] == {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}  # labels from the completion mask


def test_4bit_repacking_switch(tmp_path):
    layer = torch.nn.Linear(2, 2)
    layer.support_avx512bf16_for_cpu = True
    _compat.keep_4bit_weights_trainable(torch.nn.Sequential(layer))
    assert layer.support_avx512bf16_for_cpu is False


def test_the_installed_versions_are_in_the_range_ci_tests():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    requirements = {
        line.split(">")[0].split("<")[0].split("=")[0].strip(): line.strip()
        for line in config["options"]["install_requires"].strip().splitlines()
    }
    for package in ("trl", "transformers"):
        specifier = SpecifierSet(requirements[package][len(package) :])
        assert "<" in str(specifier), f"{package} has no upper bound in setup.cfg: pin the range CI tests"
        assert version(package) in specifier, f"{package} {version(package)} is outside the pinned range {specifier}"


def test_parameter_storage_of_a_plain_parameter_is_the_parameter_itself():
    param = torch.nn.Parameter(torch.arange(6.0).view(2, 3))
    ((target, values),) = _compat.parameter_storage(param, torch.ones(2, 3))
    assert target.data_ptr() == param.data_ptr() and torch.equal(values, torch.ones(2, 3))
    assert _compat.parameter_shape(param) == (2, 3)


def test_the_deepspeed_step_hook_runs_before_every_optimizer_step_and_only_at_boundaries():
    calls = []

    class Engine:  # the two methods of deepspeed.DeepSpeedEngine the hook relies on
        boundary = False

        def is_gradient_accumulation_boundary(self):
            return self.boundary

        def step(self):
            calls.append("step")

    engine = Engine()
    _compat.before_deepspeed_optimizer_step(engine, lambda: calls.append("restore"))
    engine.step()
    engine.boundary = True
    engine.step()
    assert calls == ["step", "restore", "step"]
    import deepspeed

    for method in ("is_gradient_accumulation_boundary", "step"):
        assert callable(getattr(deepspeed.DeepSpeedEngine, method, None)), f"DeepSpeedEngine.{method} is gone"


def test_cached_checkpoint_file_finds_a_folders_file_or_says_none(tmp_path):
    from trl_more._compat import cached_checkpoint_file

    (tmp_path / "config.json").write_text("{}")
    assert cached_checkpoint_file(tmp_path, "config.json") == str(tmp_path / "config.json")
    assert cached_checkpoint_file(tmp_path, "model.safetensors.index.json") is None
