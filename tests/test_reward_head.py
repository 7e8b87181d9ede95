"""Closed-form per-source head gradients against autograd, on real (tiny) transformers architectures."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from trl.trainer.reward_trainer import DataCollatorForPreference

from trl_more.losses import pairwise_loss
from trl_more.more.reward_head import per_source_head_gradients, per_source_mean
from trl_more.reward_head import RewardHeadInputCapture, find_reward_head
from trl_more.testing import tiny_reward_model, tiny_tokenizer


TEXTS = [
    ("Human: hi Assistant: hello there", "Human: hi Assistant: go away"),
    ("Human: bake bread? Assistant: mix flour and water", "Human: bake bread? Assistant: no"),
    ("Human: a joke? Assistant: the scarecrow was outstanding", "Human: a joke? Assistant: no jokes"),
    ("Human: capital of France? Assistant: Paris", "Human: capital of France? Assistant: I am not sure, maybe Rome"),
    ("Human: boil? Assistant: one hundred degrees", "Human: boil? Assistant: whatever"),
    ("Human: summary? Assistant: the fox jumps", "Human: summary? Assistant: the quick brown fox jumps over it"),
]
SOURCE_IDS = torch.tensor([0, 1, 2, 0, 1, 0])


def preference_batch(tokenizer, padding_side="right"):
    examples = [{"chosen_ids": tokenizer(c)["input_ids"], "rejected_ids": tokenizer(r)["input_ids"]} for c, r in TEXTS]
    batch = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(examples)
    if padding_side == "left":  # move every row's padding to the front
        lengths = batch["attention_mask"].sum(1)
        for row, length in enumerate(lengths.tolist()):
            batch["input_ids"][row] = batch["input_ids"][row].roll(batch["input_ids"].shape[1] - length)
            batch["attention_mask"][row] = batch["attention_mask"][row].roll(batch["input_ids"].shape[1] - length)
    return batch


def head_weight(model):
    head = find_reward_head(model)
    if hasattr(head, "modules_to_save"):  # PEFT: the trainable copy of the head
        return head.modules_to_save[head.active_adapters[0]].weight
    return head.weight


def build(architecture, lora):
    tokenizer = tiny_tokenizer("wordpiece" if architecture in ("bert", "roberta") else "bpe")
    model = tiny_reward_model(architecture, tokenizer, seed=1)
    if lora:
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules="all-linear"))
    model.eval()
    return model, tokenizer


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt_neox", "bert", "roberta"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize(
    "loss_options",
    [{}, {"margin": True, "center": 0.01}, {"smoothing": 0.15}, {"smoothing": "per_pair", "margin": True}],
    ids=["plain", "margin+center", "smoothing", "per_pair_smoothing+margin"],
)
def test_closed_form_equals_autograd(architecture, lora, loss_options):
    model, tokenizer = build(architecture, lora)
    batch = preference_batch(tokenizer)
    capture = RewardHeadInputCapture(model)
    with capture.attached():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        rewards = logits.squeeze(-1)
        margin = torch.linspace(-0.5, 0.5, len(TEXTS)) if loss_options.get("margin") else None
        center = loss_options.get("center")
        smoothing = loss_options.get("smoothing")
        if smoothing == "per_pair":  # e.g. smoothing only the pairs below a strength threshold
            smoothing = torch.tensor([0.3, 0.0, 0.1, 0.0, 0.2, 0.05])

        pair_losses = pairwise_loss(rewards, margin, smoothing)
        if center is not None:
            pair_losses = pair_losses + center * rewards.view(2, -1).sum(0) ** 2
        source_losses = per_source_mean(pair_losses, SOURCE_IDS, 3)
        weight = head_weight(model)
        expected = torch.stack(
            [torch.autograd.grad(loss, weight, retain_graph=True)[0].squeeze(0) for loss in source_losses]
        )

        features = capture.pooled_features(batch["input_ids"], logits)
        closed_form = per_source_head_gradients(features, rewards, SOURCE_IDS, 3, margin, center, smoothing)
        assert expected.abs().max() > 1e-4  # the check is not vacuous
        torch.testing.assert_close(closed_form, expected, rtol=1e-4, atol=1e-6)
        # Reading releases the captured activations, so a stale capture can never be read for another batch.
        assert capture.inputs is None and capture.outputs is None
        with pytest.raises(RuntimeError, match="has not run since the last read"):
            capture.pooled_features(batch["input_ids"], logits)


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_decoder_features_follow_left_padding(architecture):
    model, tokenizer = build(architecture, lora=False)
    right, left = preference_batch(tokenizer, "right"), preference_batch(tokenizer, "left")
    capture = RewardHeadInputCapture(model)
    with torch.no_grad(), capture.attached():
        right_features = capture.pooled_features(right["input_ids"], model(**right).logits)
        left_logits = model(**left).logits
        left_features = capture.pooled_features(left["input_ids"], left_logits)
    torch.testing.assert_close(left_features, right_features, rtol=1e-4, atol=1e-5)


def test_source_without_pairs_gets_a_zero_gradient():
    model, tokenizer = build("qwen2", lora=False)
    batch = preference_batch(tokenizer)
    capture = RewardHeadInputCapture(model)
    with torch.no_grad(), capture.attached():
        logits = model(**batch).logits
        features = capture.pooled_features(batch["input_ids"], logits)
    gradients = per_source_head_gradients(features, logits.squeeze(-1), SOURCE_IDS, 4)
    assert torch.all(gradients[3] == 0) and torch.all(gradients[:3].abs().sum(1) > 0)


@pytest.mark.parametrize(
    ("architecture", "lora", "expected"),
    [("qwen2", False, "Linear"), ("bert", False, "Linear"), ("roberta", False, "Linear"), ("qwen2", True, "Wrapper")],
)
def test_find_reward_head(architecture, lora, expected):
    model, _ = build(architecture, lora)
    assert type(find_reward_head(model)).__name__.endswith(expected)


def test_model_without_linear_head_is_a_clear_error():
    with pytest.raises(ValueError, match="Could not find the reward head"):
        find_reward_head(torch.nn.Sequential(torch.nn.Linear(2, 1)))


def test_mismatch_between_head_output_and_logits_is_detected():
    model, tokenizer = build("qwen2", lora=False)
    batch = preference_batch(tokenizer)
    capture = RewardHeadInputCapture(model)
    with torch.no_grad(), capture.attached():
        logits = model(**batch).logits
        with pytest.raises(RuntimeError, match="does not match the model's logits"):
            capture.pooled_features(batch["input_ids"], logits + 1.0)


def test_the_hook_is_on_the_head_only_while_attached():
    model, tokenizer = build("qwen2", lora=False)
    capture = RewardHeadInputCapture(model)
    assert not capture.head._forward_hooks
    with capture.attached():
        assert len(capture.head._forward_hooks) == 1
        with torch.no_grad():
            model(**preference_batch(tokenizer))
        assert capture.inputs is not None
    assert not capture.head._forward_hooks and capture.inputs is None
