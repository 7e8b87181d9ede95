"""Bad inputs, crashes and resumption: every case a clear error that names the fix, or a run that resumes exactly.

Each test reproduces a failure a user hit (a silent wrong result, a crash that left a run unresumable, an error that
did not name the problem) and checks what happens now.
"""

import gzip
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset, IterableDataset, concatenate_datasets

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.cli import main as cli_main
from trl_more.cli import parse_subcommand_arguments
from trl_more.data import MixtureConfig, read_records
from trl_more.testing import (
    save_tiny_reward_model,
    tiny_reward_model,
    tiny_tokenizer,
    toy_preference_sources,
)
from trl_more.trainer_utils import resolve_resume_checkpoint


REPO = Path(__file__).resolve().parents[1]
SOURCES = ("polite", "concise", "factual")
TINY = dict(
    per_device_train_batch_size=6, max_steps=2, learning_rate=1e-3, logging_steps=1, report_to="none", bf16=False
)


def more_trainer(tmp_path, train_dataset, **overrides):
    tokenizer = tiny_tokenizer()
    return MORERewardTrainer(
        tiny_reward_model("qwen2", tokenizer),
        MORERewardConfig(str(tmp_path), **{**TINY, **overrides}),
        train_dataset=train_dataset,
        processing_class=tokenizer,
    )


def sources(num_pairs=6, **replaced):
    """The three toy sources as a dict, with some sources replaced."""
    return {**dict(toy_preference_sources(num_pairs)), **replaced}


# ---------------------------------------------------------------------------------------------------------------------
# A source whose pairs all tie
# ---------------------------------------------------------------------------------------------------------------------


def test_a_source_of_identical_pairs_is_refused(tmp_path):
    same = Dataset.from_dict(
        {"prompt": ["Human: hi Assistant:"] * 6, "chosen": [" same"] * 6, "rejected": [" same"] * 6}
    )
    with pytest.raises(ValueError, match=r"Every training pair of \['concise'\] has identical chosen and rejected"):
        more_trainer(tmp_path, sources(concise=same))


def test_truncation_that_cuts_every_response_away_is_refused_and_the_mode_named(tmp_path):
    long_prompt = "Human: " + "tell me about bread " * 40 + "Assistant:"
    cut = Dataset.from_dict({"prompt": [long_prompt] * 6, "chosen": [" Yes."] * 6, "rejected": [" No."] * 6})
    with pytest.raises(ValueError, match="identical chosen and rejected(.|\n)*keep_start"):
        more_trainer(tmp_path, sources(factual=cut), max_length=32, truncation_mode="keep_start")
    more_trainer(tmp_path, sources(factual=cut), max_length=32, truncation_mode="keep_end")  # keeps the responses


def test_some_tied_pairs_are_counted_per_source(tmp_path, caplog):
    polite = toy_preference_sources(6)["polite"]
    partly = concatenate_datasets(
        [polite, Dataset.from_dict({"prompt": ["Hi"], "chosen": [" x"], "rejected": [" x"]})]
    )
    with caplog.at_level("WARNING"):
        more_trainer(tmp_path, sources(polite=partly))
    assert "Tied pairs (identical chosen and rejected tokens; no gradient): polite: 1 of 7" in caplog.text


# ---------------------------------------------------------------------------------------------------------------------
# Margins and missing texts
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, None, math.inf], ids=["nan", "none", "inf"])
def test_a_margin_that_is_not_a_finite_number_is_named_with_its_row_and_source(tmp_path, bad):
    with_margin = {name: data.add_column("margin", [0.5] * len(data)) for name, data in sources().items()}
    margins = [0.5, 0.5, bad, 0.5, 0.5, 0.5]
    with_margin["factual"] = with_margin["factual"].remove_columns("margin").add_column("margin", margins)
    with pytest.raises(ValueError, match=r"margin that is not a finite number \(e.g. row 14 \(source 'factual'\)"):
        more_trainer(tmp_path, with_margin)
    one_source = with_margin["factual"]  # with a single source as well
    with pytest.raises(ValueError, match="margin that is not a finite number"):
        more_trainer(tmp_path, one_source, per_device_train_batch_size=2)


def test_a_missing_response_is_named_with_its_row_and_source(tmp_path):
    broken = toy_preference_sources(6)["concise"].to_dict()
    broken["chosen"][3] = None
    with pytest.raises(ValueError, match=r"have no `chosen` \(e.g. row 9 \(source 'concise'\)\)"):
        more_trainer(tmp_path, sources(concise=Dataset.from_dict(broken)))


def test_conversational_and_plain_text_sources_cannot_be_mixed(tmp_path):
    chat = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "hi"}]] * 6,
            "chosen": [[{"role": "assistant", "content": "hello"}]] * 6,
            "rejected": [[{"role": "assistant", "content": "go"}]] * 6,
        }
    )
    with pytest.raises(ValueError, match=r"mix conversational pairs .*\['factual'\].* with plain-text pairs"):
        more_trainer(tmp_path, sources(factual=chat))


def test_an_iterable_dataset_without_declared_columns_still_has_its_source_column_seen(tmp_path):
    rows = concatenate_datasets(
        [data.add_column("source", [name] * len(data)) for name, data in toy_preference_sources(4).items()]
    ).to_list()
    stream = IterableDataset.from_generator(lambda: iter(rows))
    assert stream.column_names is None  # nothing declared: the first row is read
    with pytest.raises(ValueError, match="`IterableDataset` with a `source` column"):
        more_trainer(tmp_path, stream)


# ---------------------------------------------------------------------------------------------------------------------
# Over-sampled sources
# ---------------------------------------------------------------------------------------------------------------------


def test_a_source_repeated_many_times_per_epoch_is_warned_about(tmp_path, caplog):
    tiny = toy_preference_sources(1, sources=("factual",))["factual"]
    with caplog.at_level("WARNING"):
        more_trainer(tmp_path, sources(num_pairs=30, factual=tiny))  # cycled 30 times to fill balanced batches
    assert "factual: 30x" in caplog.text


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints: killed while writing one, resumed with other sources, `true` from the command line
# ---------------------------------------------------------------------------------------------------------------------


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(tmp_path, caplog):
    killed = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "scripts" / "killed_while_checkpointing.py"),
            str(tmp_path / "run"),
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    partial = tmp_path / "run" / "checkpoint-4"
    assert (partial / "model.safetensors").is_file() and not (partial / "trainer_state.json").exists()

    options = dict(max_steps=6, save_strategy="steps", save_steps=2, lambda_momentum=0.5, seed=0)
    with pytest.raises(ValueError, match=r"is an incomplete checkpoint \(missing trainer_state.json"):
        more_trainer(tmp_path / "other", toy_preference_sources(12), **options).train(
            resume_from_checkpoint=str(partial)
        )
    resumed = more_trainer(tmp_path / "run", toy_preference_sources(12), **options)
    with caplog.at_level("WARNING"):
        resumed.train(resume_from_checkpoint=True)
    assert (
        "Skipping incomplete checkpoint(s) checkpoint-4" in caplog.text and "resuming from checkpoint-2" in caplog.text
    )

    full = more_trainer(tmp_path / "full", toy_preference_sources(12), **options)
    full.train()
    for (name, p_full), (_, p_resumed) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(p_resumed, p_full, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("changed", [{"concise": None}, "reordered"], ids=["fewer_sources", "reordered_sources"])
def test_resuming_with_other_sources_is_refused(tmp_path, changed):
    options = dict(max_steps=2, save_strategy="steps", save_steps=2)
    more_trainer(tmp_path, sources(), **options).train()
    if changed == "reordered":
        other = dict(reversed(list(sources().items())))
    else:
        other = {name: data for name, data in sources().items() if name != "concise"}
    resumed = more_trainer(tmp_path, other, **{**options, "max_steps": 4, "per_device_train_batch_size": 6})
    with pytest.raises(ValueError, match=r"belongs to the sources \['polite', 'concise', 'factual'\]"):
        resumed.train(resume_from_checkpoint=True)


def test_resume_from_checkpoint_read_from_the_command_line(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()  # interrupted while written
    assert resolve_resume_checkpoint("true", tmp_path) == str(tmp_path / "checkpoint-2")
    assert resolve_resume_checkpoint("True", tmp_path) == str(tmp_path / "checkpoint-2")
    assert resolve_resume_checkpoint("false", tmp_path) is None
    assert resolve_resume_checkpoint(None, tmp_path) is None
    with pytest.raises(ValueError, match="No valid checkpoint found"):
        resolve_resume_checkpoint(True, tmp_path / "empty")
    only_partial = tmp_path / "partial"
    (only_partial / "checkpoint-2").mkdir(parents=True)
    assert resolve_resume_checkpoint(True, only_partial) is None  # starts afresh, with a warning
    (_, training, _) = parse_subcommand_arguments("reward", ["--resume_from_checkpoint", "true", "--bf16", "false"])
    assert resolve_resume_checkpoint(training.resume_from_checkpoint, tmp_path) == str(tmp_path / "checkpoint-2")


def test_every_trainer_skips_a_partial_checkpoint(tmp_path, caplog):
    from trl_more import MultiObjectiveRewardConfig, MultiObjectiveRewardTrainer
    from trl_more.multi_objective import MultiObjectiveRewardModel

    tokenizer = tiny_tokenizer()
    backbone = tiny_reward_model("qwen2", tokenizer).base_model
    model = MultiObjectiveRewardModel.from_backbone(backbone, ["a", "b"], gate_hidden_sizes=[8])
    args = MultiObjectiveRewardConfig(
        str(tmp_path),
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
        report_to="none",
        bf16=False,
        per_device_train_batch_size=4,
    )
    pairs = toy_preference_sources(8)["polite"]
    MultiObjectiveRewardTrainer(model, args, train_dataset=pairs, processing_class=tokenizer).train()
    os.remove(tmp_path / "checkpoint-2" / "trainer_state.json")
    trainer = MultiObjectiveRewardTrainer(model, args, train_dataset=pairs, processing_class=tokenizer)
    with caplog.at_level("WARNING"):
        trainer.train(resume_from_checkpoint=True)
    assert "Skipping incomplete checkpoint(s) checkpoint-2" in caplog.text and trainer.state.global_step == 2


# ---------------------------------------------------------------------------------------------------------------------
# Files and data folders
# ---------------------------------------------------------------------------------------------------------------------


def test_a_corrupt_jsonl_line_is_named_with_its_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"chosen": "a", "rejected": "b"}\n\n{"chosen": "a", "rejected": \n')
    with pytest.raises(ValueError, match=rf"{path}, line 3: not a JSON record"):
        read_records(path)


def test_a_truncated_gzip_file_is_named(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    content = gzip.compress(b'{"chosen": "a", "rejected": "b"}\n' * 500)
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=rf"Cannot read {path}: EOFError.*truncated download"):
        read_records(path)


def test_a_mistyped_data_dir_fails_with_the_missing_files(tmp_path):
    model = save_tiny_reward_model(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match=r"--data_dir .*missing .*helpful-base\.test\.jsonl\.gz"):
        cli_main(
            [
                "reward",
                "--data_dir",
                str(tmp_path / "no-such-folder"),
                "--model_name_or_path",
                str(model),
                "--output_dir",
                str(tmp_path / "out"),
                "--bf16",
                "false",
                "--report_to",
                "none",
            ]
        )


def test_the_default_sources_come_from_the_hub_and_offline_say_how_to_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = save_tiny_reward_model(tmp_path / "model")
    with pytest.raises(
        RuntimeError, match=r"Could not load source 'hh-helpful' from the Hub \(Anthropic/hh-rlhf(.|\n)*--demo"
    ):
        cli_main(
            [
                "reward",
                "--model_name_or_path",
                str(model),
                "--output_dir",
                str(tmp_path / "out"),
                "--bf16",
                "false",
                "--report_to",
                "none",
            ]
        )


def test_demo_data_is_used_only_when_asked_for_and_said_loudly(tmp_path, capsys):
    model = save_tiny_reward_model(tmp_path / "model")
    cli_main(
        [
            "reward",
            "--demo",
            "--model_name_or_path",
            str(model),
            "--output_dir",
            str(tmp_path / "out"),
            "--max_steps",
            "1",
            "--per_device_train_batch_size",
            "6",
            "--bf16",
            "false",
            "--report_to",
            "none",
            "--evaluate",
            "false",
        ]
    )
    assert "training on the bundled TOY sources" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--mixture and --demo exclude each other"):
        parse_subcommand_arguments("reward", ["--demo", "--mixture", "m.yaml", "--bf16", "false"])


def test_a_mixture_local_copy_is_read_when_present_and_the_hub_named_when_not(tmp_path, caplog, shared_data):
    config = MixtureConfig.from_dict(
        {"sources": [{"name": "webgpt", "local_copy": str(tmp_path / "absent.jsonl")}]}, origin="test"
    )
    with caplog.at_level("WARNING"):
        assert config.sources[0].resolved_path() is None
    assert (
        f"no local copy at {tmp_path / 'absent.jsonl'}; loading split 'train' of 'webgpt' from the Hub" in caplog.text
    )
    present = MixtureConfig.from_yaml(REPO / "recipes" / "mixtures" / "quickstart.yaml")
    assert all(Path(source.resolved_path()).is_file() for source in present.sources)


# ---------------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------------


def test_an_unknown_flag_is_named_before_the_configs_are_built(tmp_path):
    # bf16 on a CPU makes TrainingArguments raise when it is built: the misspelled flag must be reported first.
    with pytest.raises(SystemExit, match=r"unrecognized arguments --learning_rat .*did you mean 'learning_rate'"):
        parse_subcommand_arguments("reward", ["--bf16", "true", "--learning_rat", "1e-4"])


def test_a_key_given_twice_in_a_yaml_config_is_an_error(tmp_path):
    config = tmp_path / "reward.yaml"
    config.write_text("learning_rate: 1.0e-4\nmax_steps: 3\nlearning_rate: 1.0e-3\n")
    with pytest.raises(
        SystemExit, match=rf"{config}, line 3: the key 'learning_rate' is given twice \(first on line 1\)"
    ):
        parse_subcommand_arguments("reward", ["--config", str(config)])
    mixture = tmp_path / "mixture.yaml"
    mixture.write_text(yaml.safe_dump({"sources": [{"name": "webgpt"}]}) + "test_size: 0.1\ntest_size: 0.2\n")
    with pytest.raises(ValueError, match="the key 'test_size' is given twice"):
        MixtureConfig.from_yaml(mixture)


@pytest.mark.parametrize("subcommand", ["reward", "armo", "evaluate", "rjs"])
def test_every_subcommand_help_starts_with_what_it_does(subcommand, capsys):
    with pytest.raises(SystemExit):
        cli_main([subcommand, "--help"])
    first_lines = capsys.readouterr().out.split("options:")[0]
    assert f"`trl-more {subcommand}`:" in first_lines


# ---------------------------------------------------------------------------------------------------------------------
# The shared multi-objective model needs transformers 5
# ---------------------------------------------------------------------------------------------------------------------


def test_the_shared_model_code_names_the_transformers_it_needs(tmp_path):
    configuration = REPO / "trl_more" / "multi_objective" / "configuration_multi_objective.py"
    script = (
        "import transformers\ntransformers.__version__ = '4.57.1'\n"
        f"exec(compile(open({str(configuration)!r}).read(), 'configuration_multi_objective.py', 'exec'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "needs transformers >= 5.0, found 4.57.1: `pip install -U 'transformers>=5.0'`" in result.stderr


def test_write_atomically_keeps_the_old_file_when_the_write_fails(tmp_path):
    from trl_more.trainer_utils import write_atomically

    target = tmp_path / "scores.json"
    write_atomically(target, lambda path: Path(path).write_text("complete"))
    assert target.read_text() == "complete"

    def crash(path: str) -> None:
        Path(path).write_text("trunc")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_atomically(target, crash)
    assert target.read_text() == "complete"  # the final name never holds the half-written file
