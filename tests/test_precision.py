"""Mixed precision follows the hardware unless the user sets it (`trainer_utils.choose_mixed_precision`).

TRL's configs turn bf16 on whenever fp16 is off, so on a machine without a bf16 accelerator every run stopped with
"Your setup doesn't support bf16/gpu". Every trl-more config leaves an unset `bf16` to the hardware.
"""

import logging

import pytest
import transformers.training_args

import trl_more.trainer_utils
from trl_more import MetaRMConfig, MORERewardConfig, MultiObjectiveRewardConfig, RejectionSamplingConfig
from trl_more.cli import parse_subcommand_arguments


CONFIGS = [MORERewardConfig, MetaRMConfig, MultiObjectiveRewardConfig, RejectionSamplingConfig]


@pytest.mark.parametrize("config_class", CONFIGS)
def test_an_unset_bf16_means_fp32_on_a_machine_without_a_bf16_accelerator(config_class, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="trl_more"):
        args = config_class(str(tmp_path))
    assert args.bf16 is False and args.fp16 is False
    assert "Mixed precision: fp32 (no bf16 accelerator)." in caplog.messages


@pytest.mark.parametrize("config_class", CONFIGS)
def test_an_unset_bf16_means_bf16_where_the_accelerator_supports_it(config_class, tmp_path, monkeypatch, caplog):
    for module in (trl_more.trainer_utils, transformers.training_args):  # ours, and transformers' own validation
        monkeypatch.setattr(module, "is_torch_bf16_gpu_available", lambda: True)
    with caplog.at_level(logging.INFO, logger="trl_more"):
        args = config_class(str(tmp_path))
    assert args.bf16 is True
    assert "Mixed precision: bf16 (the accelerator supports it)." in caplog.messages
    assert config_class(str(tmp_path), fp16=True).bf16 is False  # fp16 asked for: never both


@pytest.mark.parametrize("config_class", CONFIGS)
def test_an_explicit_bf16_without_a_bf16_accelerator_is_refused_with_the_ways_out(config_class, tmp_path):
    with pytest.raises(ValueError, match="no accelerator with bf16 support.*Leave `bf16` unset.*--bf16 false"):
        config_class(str(tmp_path), bf16=True)
    assert config_class(str(tmp_path), bf16=True, use_cpu=True).bf16  # CPU autocast, asked for explicitly
    assert config_class(str(tmp_path), bf16=False).bf16 is False


@pytest.mark.parametrize("subcommand", ["reward", "strength", "armo"])
def test_the_command_line_follows_the_hardware_and_refuses_an_explicit_bf16(subcommand, tmp_path):
    parsed = parse_subcommand_arguments(subcommand, ["--output_dir", str(tmp_path)])
    assert parsed[1].bf16 is False
    with pytest.raises(ValueError, match="no accelerator with bf16 support"):
        parse_subcommand_arguments(subcommand, ["--output_dir", str(tmp_path), "--bf16", "true"])
