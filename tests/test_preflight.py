"""Pre-flight checks: every failure they target, made on purpose with tiny models, is caught with its message; healthy
models pass with no finding; the reading record travels with the model and is used by the scorers."""

import json
import logging

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from tokenizers import processors
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more._compat import prepare_reward_dataset
from trl_more.cli import main as cli_main
from trl_more.input_settings import input_settings
from trl_more.metrics import evaluate_reward_model
from trl_more.preflight import PairSample, PreflightError, pair_sample, preflight_checks
from trl_more.testing import (
    DECODER_ARCHITECTURES,
    ENCODER_ARCHITECTURES,
    preference_dataset_in_format,
    save_tiny_reward_model,
    tiny_reward_model,
    tiny_tokenizer,
    toy_preference_sources,
)


def samples_of(sources, tokenizer) -> dict[str, PairSample]:
    return {name: pair_sample(prepare_reward_dataset(data, tokenizer, name)) for name, data in sources.items()}


@pytest.fixture(scope="module")
def toy():
    return toy_preference_sources(8)


def checks(model, tokenizer, sources, max_length=None, truncation_mode="keep_end"):
    return preflight_checks(
        model, tokenizer, samples_of(sources, tokenizer), max_length=max_length, truncation_mode=truncation_mode
    )


def messages(report, check: str) -> list[str]:
    return [finding.message for finding in report.findings if finding.check == check]


@pytest.mark.parametrize("architecture", DECODER_ARCHITECTURES + ENCODER_ARCHITECTURES)
def test_healthy_tiny_models_pass_with_no_finding(architecture, toy):
    tokenizer = tiny_tokenizer("wordpiece" if architecture in ENCODER_ARCHITECTURES else "bpe")
    report = checks(tiny_reward_model(architecture, tokenizer), tokenizer, toy, max_length=128)
    assert report.findings == [], [str(finding) for finding in report.findings]
    assert report.measured["(model)"]["reward change: batch vs alone"] < 1e-3
    assert report.seconds < 10


def test_llama_with_pad_equal_to_eos_and_left_padding(toy):
    tokenizer = tiny_tokenizer()
    stale_pad_id = tokenizer.pad_token_id
    tokenizer.pad_token = tokenizer.eos_token  # the usual fix for a tokenizer without a pad token
    tokenizer.padding_side = "left"  # as set for generation
    model = tiny_reward_model("llama", tokenizer)  # its config pads with the EOS, as TRL's trainer sets it
    report = checks(model, tokenizer, toy)
    assert [finding.check for finding in report.findings] == ["padding side"]
    assert "pads on the left" in report.findings[0].message and "padding_side = 'right'" in report.findings[0].message
    assert any("pad token is the EOS token" in note and "token before it" in note for note in report.notes)

    model.config.pad_token_id = stale_pad_id  # the tokenizer was changed, the model's config was not
    report = checks(model, tokenizer, toy)
    assert any("read at a padding token" in message for message in messages(report, "reward position"))
    assert "model.config.pad_token_id = tokenizer.pad_token_id" in messages(report, "reward position")[0]
    assert any(finding.severity == "error" for finding in report.findings)


def test_a_bos_added_to_text_that_already_has_one(toy):
    tokenizer = tiny_tokenizer()
    tokenizer.bos_token = "<|system|>"
    bos_id = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|system|> $A", special_tokens=[("<|system|>", bos_id)]
    )
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    rendered = {  # pairs rendered with the chat template beforehand, then tokenized as plain text
        "chosen": [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], tokenize=False
            )
        ],
        "rejected": [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go."}], tokenize=False
            )
        ],
    }
    report = checks(tiny_reward_model("qwen2", tokenizer), tokenizer, {"rendered": Dataset.from_dict(rendered)})
    assert [finding.check for finding in report.findings] == ["duplicated BOS"]
    assert "start with the BOS token twice" in report.findings[0].message
    assert report.measured["rendered"]["double BOS (%)"] == 100


def test_lora_without_the_score_head_in_modules_to_save(toy):
    tokenizer = tiny_tokenizer()
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"])  # no task_type: the head is not saved
    report = checks(get_peft_model(tiny_reward_model("qwen2", tokenizer), lora), tokenizer, toy)
    assert [(finding.check, finding.severity) for finding in report.findings] == [("PEFT score head", "warning")]
    assert "not in the adapter's `modules_to_save`" in report.findings[0].message
    assert "task_type='SEQ_CLS'" in report.findings[0].message


def test_lora_round_trip_passes_with_the_head_saved_and_fails_with_trained_weights_outside(toy):
    tokenizer = tiny_tokenizer()
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    model = get_peft_model(tiny_reward_model("qwen2", tokenizer), lora)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    report = checks(model, tokenizer, toy)
    assert report.findings == [] and report.measured["(model)"]["reward change: PEFT save and reload"] < 1e-3
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())  # restored

    model.get_base_model().model.norm.weight.requires_grad_(True)  # trained, but neither adapter nor modules_to_save
    report = checks(model, tokenizer, toy)
    assert [finding.check for finding in report.findings] == ["PEFT save and reload"]
    assert "not saved with the adapter" in report.findings[0].message


def test_a_max_length_that_makes_80_percent_of_a_source_identical():
    ending = " and that is all there is to say about it, thank you for asking, have a nice day." * 3
    chosen = [f"Question {i}? Yes{ending if i < 8 else ''}" for i in range(10)]
    rejected = [f"Question {i}? No{ending if i < 8 else ''}" for i in range(10)]
    tokenizer = tiny_tokenizer()
    sources = {"long endings": Dataset.from_dict({"chosen": chosen, "rejected": rejected})}
    report = checks(tiny_reward_model("qwen2", tokenizer), tokenizer, sources, max_length=48)
    (finding,) = [f for f in report.findings if f.check == "identical after truncation"]
    assert finding.severity == "error" and finding.source == "long endings"
    assert "80.0% of the sampled pairs become identical" in finding.message
    assert "max_length=" in finding.message and "truncation_mode='keep_start' would keep 100%" in finding.message
    needed = int(finding.message.split("Fix: max_length=")[1].split()[0])
    report = checks(tiny_reward_model("qwen2", tokenizer), tokenizer, sources, max_length=needed)
    assert report.measured["long endings"]["identical after truncation (%)"] == 0


class LastColumnReward(nn.Module):
    """A reward model with a pooling bug made on purpose: it reads the last column of the batch, padding or not."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.score, self.config = model.model, model.score, model.config

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SequenceClassifierOutput(logits=self.score(hidden)[:, -1])


def test_a_reward_that_changes_with_padding(toy):
    tokenizer = tiny_tokenizer()
    report = checks(LastColumnReward(tiny_reward_model("qwen2", tokenizer)), tokenizer, toy)
    errors = {finding.check: finding.message for finding in report.errors}
    assert "read at a padding token" in errors["reward position"]
    assert "other rewards in a right-padded batch than alone" in errors["padding"]


def test_data_checks_empty_source_nan_margins_and_all_ties():
    tokenizer = tiny_tokenizer()
    ties = Dataset.from_dict({"chosen": ["Same answer."] * 4, "rejected": ["Same answer."] * 4})
    margins = Dataset.from_dict(
        {"chosen": ["Good."] * 4, "rejected": ["Bad."] * 4, "margin": [1.0, float("nan"), 0.5, 1.0]}
    )
    samples = samples_of({"ties": ties, "margins": margins}, tokenizer)
    samples["empty"] = PairSample([], [], None, 0)
    report = preflight_checks(
        tiny_reward_model("qwen2", tokenizer), tokenizer, samples, max_length=None, truncation_mode=None
    )
    found = {(finding.source, finding.check): finding for finding in report.findings}
    assert found["ties", "identical pairs"].severity == "error"
    assert "NaN or infinite" in found["margins", "margins"].message
    assert found["empty", "empty source"].severity == "error"


def test_the_trainer_stops_before_the_first_step_and_warn_mode_trains(tmp_path, caplog):
    tokenizer = tiny_tokenizer()
    ending = " and that is all there is to say about it, thank you for asking." * 3
    pairs = {
        "polite": toy_preference_sources(8)["polite"],
        "long endings": Dataset.from_dict(
            {
                "prompt": [f"Q{i}?" for i in range(10)],
                "chosen": [f" Yes{ending if i < 8 else ''}" for i in range(10)],  # 80% differ only beyond max_length
                "rejected": [f" No{ending if i < 8 else ''}" for i in range(10)],
            }
        ),
    }
    args = MORERewardConfig(
        str(tmp_path),
        max_length=40,
        truncation_mode="keep_end",
        per_device_train_batch_size=4,
        max_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
    )
    trainer = MORERewardTrainer(
        tiny_reward_model("qwen2", tokenizer), args, train_dataset=pairs, processing_class=tokenizer
    )
    with pytest.raises(PreflightError, match="identical once truncated") as error:
        trainer.train()
    assert "preflight='warn'" in str(error.value) and trainer.state.global_step == 0

    args.preflight = "warn"
    with caplog.at_level(logging.WARNING, logger="trl_more"):
        trainer.train()
    assert trainer.state.global_step == 1 and "pre-flight" in caplog.text
    assert any(f.source == "long endings" for f in trainer.preflight_report.findings)


def test_the_reading_record_round_trips_and_is_used_by_evaluate_and_serve(tmp_path, caplog):
    from trl_more.serve.served_model import ServedModel

    tokenizer = tiny_tokenizer()
    args = MORERewardConfig(
        str(tmp_path / "run"),
        max_length=96,
        truncation_mode="keep_start",
        per_device_train_batch_size=6,
        report_to="none",
        use_cpu=True,
    )
    trainer = MORERewardTrainer(
        tiny_reward_model("qwen2", tokenizer),
        args,
        train_dataset=toy_preference_sources(8),
        processing_class=tokenizer,
    )
    trainer.save_model(str(tmp_path / "model"))
    record = input_settings(trainer.model)
    assert (record.rendering, record.eos_token, record.pad_token) == ("hh", "<|endoftext|>", "<|pad|>")
    assert (record.padding_side, record.pooling, record.trained_truncation_mode) == (
        "right",
        "last_token",
        "keep_start",
    )

    served = ServedModel.load("rm", str(tmp_path / "model"), "float32", "cpu", None, 4, False)
    assert input_settings(served.model) == record and served.describe()["reading"]["max_length"] == 96
    evaluation = evaluate_reward_model(served.model, served.tokenizer, toy_preference_sources(4))
    assert (evaluation.truncation.max_length, evaluation.truncation.truncation_mode) == (96, "keep_start")

    with caplog.at_level(logging.WARNING, logger="trl_more"):
        ServedModel.load("rm", str(tmp_path / "model"), "float32", "cpu", 64, 4, False)
        served.tokenize([{"role": "user", "content": "Hi"}], "Hello")  # a conversation, trained on plain text
    assert "max_length=64 (trained with 96)" in caplog.text
    assert "conversations in its chat template (trained on plain text in the HH transcript format)" in caplog.text

    caplog.clear()
    toy_preference_sources(4)["polite"].to_json(tmp_path / "toy.jsonl")
    with caplog.at_level(logging.WARNING, logger="trl_more"):
        cli_main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "model"),
                "--sources",
                f"toy={tmp_path / 'toy.jsonl'}",
                "--output_dir",
                str(tmp_path / "evaluation"),
                "--no_plots",
                "--truncation_mode",
                "keep_end",
            ]
        )
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["truncation_mode"] == "keep_end" and metrics["max_length"] == 96
    assert "truncation_mode='keep_end' (trained with 'keep_start')" in caplog.text

    caplog.clear()  # conversations for a model trained on HH transcripts: doctor reads them, and says so
    chat = preference_dataset_in_format(
        [("Hi", "Hello! How can I help?", "Go away.")] * 4, "conversational_preference"
    )
    chat.to_json(tmp_path / "chat.jsonl")
    with caplog.at_level(logging.WARNING, logger="trl_more"):
        cli_main(
            [
                "doctor",
                "--model",
                str(tmp_path / "model"),
                "--sources",
                f"chat={tmp_path / 'chat.jsonl'}",
                "--output_dir",
                str(tmp_path / "doctor"),
                "--no_audit",
            ]
        )
    assert "conversations in its chat template (trained on plain text in the HH transcript format)" in caplog.text


def test_models_without_a_record_get_the_defaults(tmp_path):
    folder = save_tiny_reward_model(tmp_path / "plain")
    from trl_more.serve.served_model import ServedModel

    served = ServedModel.load("rm", str(folder), "float32", "cpu", None, 4, False)
    assert not served.reading.recorded and "no record" in served.reading.describe()
    evaluation = evaluate_reward_model(served.model, served.tokenizer, toy_preference_sources(4))
    assert evaluation.truncation.truncation_mode == "keep_end"


def test_doctor_writes_the_report_and_exits_with_an_error_status(tmp_path):
    folder = save_tiny_reward_model(tmp_path / "model")
    toy_preference_sources(8)["polite"].to_json(tmp_path / "polite.jsonl")
    cli_main(
        [
            "doctor",
            "--model",
            str(folder),
            "--sources",
            f"polite={tmp_path / 'polite.jsonl'}",
            "--output_dir",
            str(tmp_path / "doctor"),
        ]
    )
    report = json.loads((tmp_path / "doctor" / "doctor.json").read_text())
    assert report["preflight"]["passed"] and report["audit"]["checks"]["polite"]["pairs"] == 8
    assert "## Audits" in (tmp_path / "doctor" / "doctor.md").read_text()

    ties = Dataset.from_dict({"chosen": ["Same."] * 4, "rejected": ["Same."] * 4})
    ties.to_json(tmp_path / "ties.jsonl")
    with pytest.raises(SystemExit, match="1 error"):
        cli_main(
            [
                "doctor",
                "--model",
                str(folder),
                "--sources",
                f"ties={tmp_path / 'ties.jsonl'}",
                "--no_audit",
                "--output_dir",
                str(tmp_path / "doctor-ties"),
            ]
        )
    report = json.loads((tmp_path / "doctor-ties" / "doctor.json").read_text())
    assert report["preflight"]["findings"][0]["check"] == "identical pairs" and "audit" not in report


def test_the_minilm_encoder_of_the_cpu_recipes_passes_with_no_finding(shared_data):
    """The pretrained encoder of the CPU recipes on real pairs of their four sources, at their 128 tokens."""
    from transformers import AutoModelForSequenceClassification

    from trl_more.data import load_preference_source
    from trl_more.pretrained import load_tokenizer, minilm_path

    tokenizer = load_tokenizer(str(minilm_path()))
    tokenizer.eos_token = tokenizer.sep_token  # as `trl-more reward` sets it for BERT-style encoders
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)
    files = {
        "hh-helpful": "hh_rlhf/helpful-base.test.jsonl.gz",
        "oasst1": "oasst/en_100_tree.jsonl",
        "ultrafeedback": "ultrafeedback/train_clean.jsonl",
    }
    sources = {
        name: load_preference_source(name, path=shared_data / path).dataset.select(range(64))
        for name, path in files.items()
    }
    report = checks(model, tokenizer, sources, max_length=128)
    assert report.findings == [], [str(finding) for finding in report.findings]
    assert any("lose the beginning of their prompt" in note for note in report.notes)
