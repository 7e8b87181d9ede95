import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments
from trl import RewardConfig

from trl_more.multi_objective import MultiObjectiveRewardModel
from trl_more.multi_objective.multi_objective_config import MultiObjectiveRewardConfig
from trl_more.multi_objective.multi_objective_trainer import MultiObjectiveRewardTrainer, PreferenceFeatures
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources
from trl_more.tokenization import tokenize_prompt


OBJECTIVES = ["polite", "concise", "factual"]


def stage1_model(tokenizer, seed=0):
    """A tiny model whose objective rewards differ between the toy sources' chosen and rejected responses."""
    backbone = tiny_reward_model("qwen2", tokenizer, seed=seed)
    torch.manual_seed(seed)
    model = MultiObjectiveRewardModel.from_backbone(backbone, OBJECTIVES, gate_hidden_sizes=[16], gate_dropout=0.0)
    with torch.no_grad():
        model.regression_layer.weight.normal_(std=1.0)
    return model


def make_args(tmp_path, **overrides):
    options = dict(
        output_dir=str(tmp_path),
        max_steps=25,
        learning_rate=3e-2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        report_to="none",
        bf16=False,
        logging_steps=5,
        save_strategy="no",
        max_length=64,
        seed=0,
    )
    options.update(overrides)
    return MultiObjectiveRewardConfig(**options)


def parameters(model, prefix):
    return {name: tensor.detach().clone() for name, tensor in model.named_parameters() if name.startswith(prefix)}


@pytest.fixture(scope="module")
def pairs():
    return toy_preference_sources(num_pairs=24, sources=("polite",))["polite"]


@pytest.mark.parametrize("cache_features", [False, True])
def test_only_the_gate_trains_and_the_bt_loss_decreases(tmp_path, pairs, cache_features):
    tokenizer = tiny_tokenizer()
    model = stage1_model(tokenizer)
    frozen = {**parameters(model, "backbone."), **parameters(model, "regression_layer.")}
    gate = parameters(model, "gate.")
    trainer = MultiObjectiveRewardTrainer(
        model,
        args=make_args(tmp_path, cache_features=cache_features),
        train_dataset=pairs,
        eval_dataset=pairs,
        processing_class=tokenizer,
    )
    assert isinstance(trainer.train_dataset, PreferenceFeatures) == cache_features
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before["eval_loss"] - 0.01
    for name, tensor in model.named_parameters():
        if name in frozen:
            assert torch.equal(tensor, frozen[name]), f"{name} changed"
        else:
            assert not torch.equal(tensor, gate[name]), f"{name} did not train"
    assert model.gate.beta.item() != 1.0
    with torch.no_grad():
        outputs = model(**tokenizer([pairs[0]["prompt"] + pairs[0]["chosen"]], return_tensors="pt"))
    torch.testing.assert_close(outputs.gating_weights.sum(-1), model.gate.beta.detach())
    assert set(after) >= {"eval_accuracy", "eval_beta", "eval_gate/polite", "eval_gate/factual"}
    assert model.config.evaluation_results["preferences (eval)"]["loss"] == after["eval_loss"]


def test_cached_features_equal_the_live_hidden_states(tmp_path, pairs):
    tokenizer = tiny_tokenizer()
    model = stage1_model(tokenizer)
    trainer = MultiObjectiveRewardTrainer(
        model, args=make_args(tmp_path, cache_features=True), train_dataset=pairs, processing_class=tokenizer
    )
    features = trainer.train_dataset
    for row in (0, 7):
        ids = tokenizer(pairs[row]["prompt"] + pairs[row]["chosen"] + tokenizer.eos_token)["input_ids"]
        prompt_length = len(tokenize_prompt(tokenizer, pairs[row]["prompt"]))
        with torch.no_grad():
            hidden = model.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
        torch.testing.assert_close(features.chosen.pooled[row], hidden[-1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(features.chosen.prompt[row], hidden[prompt_length - 1], atol=1e-5, rtol=1e-5)


def test_prompt_lengths_for_explicit_implicit_and_conversational_pairs(tmp_path):
    tokenizer = tiny_tokenizer()
    trainer = MultiObjectiveRewardTrainer(
        stage1_model(tokenizer),
        args=make_args(tmp_path),
        train_dataset=toy_preference_sources(4)["polite"],
        processing_class=tokenizer,
    )
    explicit = Dataset.from_dict(
        {"prompt": ["Human: hi Assistant:"], "chosen": [" Thanks!"], "rejected": [" Whatever."]}
    )
    implicit = Dataset.from_dict(
        {"chosen": ["Human: hi Assistant: Thanks!"], "rejected": ["Human: hi Assistant: No."]}
    )
    conversational = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "hi"}]],
            "chosen": [[{"role": "assistant", "content": "Thanks!"}]],
            "rejected": [[{"role": "assistant", "content": "Whatever."}]],
        }
    )
    prepare = trainer._prepare_dataset
    row = prepare(explicit, tokenizer, trainer.args, "explicit")[0]
    assert (
        row["chosen_prompt_length"]
        == row["rejected_prompt_length"]
        == len(tokenizer("Human: hi Assistant:")["input_ids"])
    )
    row = prepare(implicit, tokenizer, trainer.args, "implicit")[0]
    common = len(tokenizer("Human: hi Assistant:")["input_ids"])
    assert row["chosen_prompt_length"] == common and row["chosen_ids"][:common] == row["rejected_ids"][:common]
    row = prepare(conversational, tokenizer, trainer.args, "conversational")[0]
    prompt_ids = tokenize_prompt(tokenizer, conversational[0]["prompt"])
    assert row["chosen_prompt_length"] == len(prompt_ids) and row["chosen_ids"][: len(prompt_ids)] == prompt_ids


def test_long_pairs_are_truncated_or_rejected_clearly(tmp_path):
    tokenizer = tiny_tokenizer()
    long_prompt = "Human: " + "tell me about the quick brown fox " * 10 + "Assistant:"
    dataset = Dataset.from_dict({"prompt": [long_prompt], "chosen": [" Thanks!"], "rejected": [" No."]})
    with pytest.raises(ValueError, match=r"The prompt of pair 0 of the train set \(chosen\) is \d+ tokens long"):
        MultiObjectiveRewardTrainer(
            stage1_model(tokenizer),
            args=make_args(tmp_path, max_length=16),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    trainer = MultiObjectiveRewardTrainer(
        stage1_model(tokenizer),
        args=make_args(tmp_path, max_length=16, truncation_mode="keep_end"),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    assert len(row["chosen_ids"]) == 16 and 1 <= row["chosen_prompt_length"] < 16


def test_wrong_model_or_config_is_an_error(tmp_path, pairs):
    tokenizer = tiny_tokenizer()
    with pytest.raises(
        TypeError, match="trains the gate of a MultiObjectiveRewardModel, got Qwen2ForSequenceClassification"
    ):
        MultiObjectiveRewardTrainer(
            tiny_reward_model("qwen2", tokenizer),
            args=make_args(tmp_path),
            train_dataset=pairs,
            processing_class=tokenizer,
        )
    with pytest.raises(
        TypeError, match="must be a MultiObjectiveRewardConfig \\(or a RewardConfig, which is converted\\)"
    ):
        MultiObjectiveRewardTrainer(
            stage1_model(tokenizer),
            args=TrainingArguments(str(tmp_path), report_to="none", bf16=False),
            train_dataset=pairs,
            processing_class=tokenizer,
        )


def test_length_grouping_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="'group_by_length'` is not supported by the gate trainer"):
        MultiObjectiveRewardConfig(str(tmp_path), train_sampling_strategy="group_by_length", report_to="none")


def test_a_plain_reward_config_is_converted_and_the_differing_defaults_are_named(tmp_path, pairs, caplog):
    tokenizer = tiny_tokenizer()
    with caplog.at_level("WARNING"):
        trainer = MultiObjectiveRewardTrainer(
            stage1_model(tokenizer),
            args=RewardConfig(str(tmp_path), report_to="none", bf16=False, eos_token="<|endoftext|>"),
            train_dataset=pairs,
            processing_class=tokenizer,
        )
    assert isinstance(trainer.args, MultiObjectiveRewardConfig) and not trainer.args.cache_features
    assert (
        trainer.args.learning_rate == RewardConfig(str(tmp_path), bf16=False).learning_rate
    )  # the value passed is kept
    assert trainer.args.eos_token == "<|endoftext|>"  # fields `to_dict` masks (`*_token`) survive the conversion
    assert "learning_rate, lr_scheduler_type, whose defaults differ in MultiObjectiveRewardConfig" in caplog.text


def test_saved_model_card_shows_objectives_and_evaluation(tmp_path, pairs):
    tokenizer = tiny_tokenizer()
    model = stage1_model(tokenizer)
    trainer = MultiObjectiveRewardTrainer(
        model,
        args=make_args(tmp_path, max_steps=2, cache_features=True),
        train_dataset=pairs,
        eval_dataset=pairs,
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(str(tmp_path / "final"))
    card = (tmp_path / "final" / "README.md").read_text()
    assert "| 0 | polite |" in card and "## Evaluation" in card and f"{metrics['eval_accuracy']:.4g}" in card
    loaded = MultiObjectiveRewardModel.from_pretrained(tmp_path / "final")
    assert torch.equal(loaded.gate.beta, model.gate.beta)
