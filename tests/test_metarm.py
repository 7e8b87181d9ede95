"""MetaRM: the difference loss by hand, the meta step against a hand-written reference of its three moves, eta = 0
against ordinary training, resume against an uninterrupted run, and the errors for bad input."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig

from trl_more import MetaRMConfig, MetaRMTrainer, MORERewardConfig, MORERewardTrainer
from trl_more.metarm import MetaAscent, MetaBatches, difference_loss, tokenize_meta_dataset
from trl_more.testing import (
    StopAfterCheckpoint,
    tiny_reward_model,
    tiny_tokenizer,
    toy_meta_dataset,
    toy_preference_sources,
)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def config(output_dir, **overrides):
    values = dict(
        per_device_train_batch_size=6,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        bf16=False,
        save_strategy="no",
        seed=0,
        meta_learning_rate=0.5,
        meta_num_responses=3,
        per_device_meta_batch_size=4,
        disable_tqdm=True,
    )
    values.update(overrides)
    return MetaRMConfig(str(output_dir), **values)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


# ---------------------------------------------------------------------------------------------------------------------
# The difference loss J
# ---------------------------------------------------------------------------------------------------------------------


def test_difference_loss_by_hand_for_three_responses():
    rewards = torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    first = 2 / 9 * (sigmoid(1) + sigmoid(3) + sigmoid(2))  # |1-2|, |1-4|, |2-4|
    second = 2 / 9 * 3 * 0.5  # three ties
    assert difference_loss(rewards).item() == pytest.approx((first + second) / 2, abs=1e-7)


def test_smooth_surrogate_by_hand_and_its_gradient_against_autograd():
    rewards = torch.tensor([[0.0, 1.0]], requires_grad=True)
    value = difference_loss(rewards, abs_epsilon=0.5)
    assert value.item() == pytest.approx(2 / 4 * sigmoid(math.sqrt(1 + 0.25)), abs=1e-7)
    value.backward()
    d = math.sqrt(1.25)
    slope = 0.5 * sigmoid(d) * (1 - sigmoid(d)) / d  # d/dr_2 of (1/2) sigmoid(sqrt(r^2 + eps^2)) at r = 1
    torch.testing.assert_close(rewards.grad, torch.tensor([[-slope, slope]]), atol=1e-7, rtol=0)


def test_tied_rewards_have_zero_subgradient_with_the_exact_absolute_value():
    rewards = torch.tensor([[0.3, 0.3, 1.0]], requires_grad=True)
    difference_loss(rewards).backward()
    slope = 2 / 9 * sigmoid(0.7) * (1 - sigmoid(0.7))
    torch.testing.assert_close(rewards.grad, torch.tensor([[-slope, -slope, 2 * slope]]), atol=1e-7, rtol=0)


def test_difference_loss_needs_two_responses():
    with pytest.raises(ValueError, match=r"num_prompts, k >= 2"):
        difference_loss(torch.zeros(3, 1))


# ---------------------------------------------------------------------------------------------------------------------
# Meta data
# ---------------------------------------------------------------------------------------------------------------------


def test_meta_batches_cover_every_prompt_once_per_epoch_and_split_across_processes():
    rows = [[[index, 1], [index, 2]] for index in range(10)]
    single = MetaBatches(rows, batch_size=4, seed=0, pad_token_id=0)
    assert single.batches_per_epoch == 2
    seen = single.indices(0) + single.indices(1)
    assert len(set(seen)) == 8  # two batches of an epoch never repeat a prompt (the last 10 % 4 wait for next epoch)
    assert single.indices(2) != single.indices(0)  # a new permutation each epoch
    ranks = [MetaBatches(rows, 2, 0, 0, num_processes=2, process_index=rank) for rank in range(2)]
    assert ranks[0].indices(0) + ranks[1].indices(0) == single.indices(0)  # the processes split the global batch
    batch = single.batch(0)
    assert batch["input_ids"].shape == (8, 2) and batch["num_prompts"] == 4


def test_meta_responses_are_tokenized_as_the_reward_model_scores_them(tokenizer):
    meta = Dataset.from_dict({"prompt": ["Human: hi Assistant:"], "responses": [[" hello", " go away"]]})
    (row,) = tokenize_meta_dataset(meta, tokenizer, num_responses=2)
    expected = [
        tokenizer("Human: hi Assistant:" + text + tokenizer.eos_token)["input_ids"] for text in meta[0]["responses"]
    ]
    assert row == expected


@pytest.mark.parametrize(
    "meta, k, match",
    [
        (
            {"prompt": ["p"], "responses": [["a", "b"]]},
            3,
            r"Row 0 of the meta dataset has 2 response\(s\).*meta_num_responses=3",
        ),
        ({"prompt": ["p"], "responses": ["a"]}, 2, r"has str response\(s\)"),
        ({"prompt": ["p"], "samples": [["a", "b"]]}, 2, r"lacks \['responses'\].*meta_responses_column"),
        ({"prompt": ["p"], "responses": [["a", ""]]}, 2, "not a non-empty string"),
    ],
)
def test_bad_meta_datasets_are_refused_with_the_fix(tokenizer, meta, k, match):
    with pytest.raises(ValueError, match=match):
        tokenize_meta_dataset(Dataset.from_dict(meta), tokenizer, num_responses=k)


def test_a_meta_dataset_smaller_than_one_batch_is_refused():
    with pytest.raises(ValueError, match=r"fewer than one meta batch of 4 per device x 2 process\(es\)"):
        MetaBatches([[[1], [2]]] * 5, batch_size=4, seed=0, pad_token_id=0, num_processes=2)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"meta_num_responses": 1}, "at least 2"),
        ({"meta_learning_rate": -1e-6}, "must be >= 0"),
        ({"meta_step_every": 0}, "positive integer"),
        ({"meta_abs_epsilon": -0.1}, "must be >= 0"),
    ],
)
def test_bad_meta_options_are_refused(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        config(tmp_path, **overrides)


# ---------------------------------------------------------------------------------------------------------------------
# The meta step
# ---------------------------------------------------------------------------------------------------------------------


def test_the_ascent_raises_j_on_the_meta_batch_and_restore_puts_theta_back(tokenizer):
    model = tiny_reward_model("llama", tokenizer, seed=1)
    rows = tokenize_meta_dataset(toy_meta_dataset(4, 3), tokenizer, num_responses=3)
    batch = MetaBatches(rows, 4, 0, tokenizer.pad_token_id).batch(0)
    before = copy.deepcopy(model.state_dict())
    ascent = MetaAscent(model, learning_rate=1.0, prompts_per_forward=3)  # two forwards: 3 + 1 prompts

    class OneProcess:
        num_processes = 1

    j_at_theta = ascent.difference(batch)  # one forward of all 4 prompts
    j_before = ascent.ascend(batch, OneProcess())
    assert j_before == pytest.approx(j_at_theta, abs=1e-6)  # the chunks add up to the whole batch's J
    assert ascent.active and ascent.difference(batch) > j_before  # J rose after the ascent
    ascent.restore()
    assert not ascent.active
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def rewards_of(model, sequences):
    """Rewards of token-id sequences, one forward each (no padding): the reference's own scoring."""
    return torch.cat([model(input_ids=torch.tensor([ids])).logits[:, 0] for ids in sequences])


def test_one_metarm_step_equals_the_three_moves_written_by_hand(tmp_path, tokenizer):
    """theta' = theta + eta grad J; g = grad of the preference loss at theta'; theta - lr * clip(g), to 1e-6 (SGD: one
    Adam step is about lr * sign(g), which would turn round-off in tiny gradients into differences of lr)."""
    pairs = toy_preference_sources(4, sources=("polite",))["polite"]
    meta = toy_meta_dataset(4, 3, seed=1)
    model = tiny_reward_model("llama", tokenizer, seed=2)
    reference = copy.deepcopy(model)
    args = config(tmp_path, max_steps=1, meta_learning_rate=0.5, max_grad_norm=1.0, optim="sgd", learning_rate=0.1)
    args.per_device_train_batch_size = 4  # the 4 pairs in one batch: the loss of the reference is their mean
    trainer = MetaRMTrainer(model=model, args=args, train_dataset=pairs, meta_dataset=meta, processing_class=tokenizer)
    trainer.train()

    params = [param for param in reference.parameters() if param.requires_grad]
    theta = [param.detach().clone() for param in params]
    # 1. ascend J on the meta batch (all 4 prompts), the responses tokenized as prompt + response + EOS
    rewards = torch.stack(
        [
            rewards_of(
                reference,
                [tokenizer(row["prompt"] + text + tokenizer.eos_token)["input_ids"] for text in row["responses"]],
            )
            for row in meta
        ]
    )
    j = sum(torch.sigmoid((rewards[:, a] - rewards[:, b]).abs()) for a, b in [(0, 1), (0, 2), (1, 2)]) * 2 / 9
    gradients = torch.autograd.grad(j.mean(), params, allow_unused=True)
    with torch.no_grad():
        for param, gradient in zip(params, gradients):
            if gradient is not None:
                param.add_(0.5 * gradient)
    # 2. the preference loss at theta' (the pairs as TRL tokenized them)
    chosen = rewards_of(reference, trainer.train_dataset["chosen_ids"])
    rejected = rewards_of(reference, trainer.train_dataset["rejected_ids"])
    loss = -F.logsigmoid(chosen - rejected).mean()
    gradients = torch.autograd.grad(loss, params, allow_unused=True)
    # 3. restore theta, clip, one SGD step at the first step's learning rate
    with torch.no_grad():
        for param, value, gradient in zip(params, theta, gradients):
            param.copy_(value)
            param.grad = gradient if gradient is not None else torch.zeros_like(param)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer = torch.optim.SGD(params, lr=0.1)
    optimizer.step()

    trained = dict(trainer.model.named_parameters())
    for name, param in reference.named_parameters():
        torch.testing.assert_close(trained[name], param, atol=1e-6, rtol=0, msg=name)
    moved = sum(
        not torch.allclose(trained[name], value) for (name, _), value in zip(reference.named_parameters(), theta)
    )
    assert moved > 0


def test_with_eta_zero_metarm_trains_exactly_as_more(tmp_path, tokenizer):
    sources = toy_preference_sources(8)
    meta = toy_meta_dataset(8, 3)
    common = dict(per_device_train_batch_size=6, max_steps=3, learning_rate=1e-2, report_to="none", bf16=False)
    common.update(save_strategy="no", seed=0, lambda_momentum=0.7, disable_tqdm=True)
    more = MORERewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer, seed=4),
        args=MORERewardConfig(str(tmp_path / "more"), **common),
        train_dataset=sources,
        processing_class=tokenizer,
    )
    more.train()
    metarm = MetaRMTrainer(
        model=tiny_reward_model("qwen2", tokenizer, seed=4),
        args=MetaRMConfig(
            str(tmp_path / "metarm"),
            meta_learning_rate=0.0,
            meta_num_responses=3,
            per_device_meta_batch_size=2,
            **common,
        ),
        train_dataset=sources,
        meta_dataset=meta,
        processing_class=tokenizer,
    )
    metarm.train()
    ours = dict(metarm.model.named_parameters())
    for name, param in more.model.named_parameters():
        assert torch.equal(ours[name], param), name  # bit for bit
    assert any("meta/difference" in entry for entry in metarm.state.log_history)


def test_metarm_with_lora_and_gradient_checkpointing_logs_j_rising_and_trains_only_the_adapters(tmp_path, tokenizer):
    model = tiny_reward_model("qwen2", tokenizer, seed=5)
    base = {name: param.detach().clone() for name, param in model.named_parameters()}
    trainer = MetaRMTrainer(
        model=model,
        args=config(tmp_path, max_steps=3, gradient_checkpointing=True, meta_learning_rate=5.0),
        train_dataset=toy_preference_sources(8),
        meta_dataset=toy_meta_dataset(8, 3),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS", target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "meta/difference" in entry]
    assert len(logs) == 3
    assert all(entry["meta/difference_after"] > entry["meta/difference"] for entry in logs)  # the ascent raised J
    assert all("meta/loss_before" in entry and "meta/loss_after" in entry for entry in logs)
    merged = trainer.model
    changed = {name for name, param in merged.named_parameters() if param.requires_grad}
    assert any("lora_" in name for name in changed)
    for name, param in merged.named_parameters():
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        if not param.requires_grad and plain in base:
            assert torch.equal(param, base[plain]), name  # the frozen backbone is untouched by the meta step


def test_a_resumed_metarm_run_equals_the_uninterrupted_one(tmp_path, tokenizer):
    def run(output_dir, resume=None, stop_at=None):
        trainer = MetaRMTrainer(
            model=tiny_reward_model("qwen2", tokenizer, seed=6),
            args=config(
                output_dir,
                max_steps=4,
                save_strategy="steps",
                save_steps=2,
                meta_step_every=1,
                per_device_meta_batch_size=3,
                per_device_train_batch_size=6,
            ),
            train_dataset=toy_preference_sources(8),
            meta_dataset=toy_meta_dataset(7, 3),  # 2 meta batches per epoch: the resumed run crosses into epoch 2
            processing_class=tokenizer,
        )
        if stop_at is not None:
            trainer.add_callback(StopAfterCheckpoint(stop_at))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    uninterrupted = run(tmp_path / "full")
    assert run(tmp_path / "part", stop_at=2).state.global_step == 2
    resumed = run(tmp_path / "part", resume=str(tmp_path / "part" / "checkpoint-2"))
    theirs = dict(uninterrupted.model.named_parameters())
    for name, param in resumed.model.named_parameters():
        torch.testing.assert_close(param, theirs[name], atol=1e-6, rtol=0, msg=name)

    def meta_log(trainer):
        return {
            entry["step"]: entry["meta/difference"]
            for entry in trainer.state.log_history
            if "meta/difference" in entry
        }

    full, part = meta_log(uninterrupted), meta_log(resumed)
    assert set(part) >= {3, 4}
    for step in (3, 4):
        assert part[step] == pytest.approx(full[step], abs=1e-6)  # the same meta batches after the resume


def test_metarm_changes_training_and_records_its_settings_in_the_model_card(tmp_path, tokenizer):
    def train(eta):
        trainer = MetaRMTrainer(
            model=tiny_reward_model("qwen2", tokenizer, seed=7),
            args=config(tmp_path / str(eta), meta_learning_rate=eta),
            train_dataset=toy_preference_sources(8),
            meta_dataset=toy_meta_dataset(8, 3),
            processing_class=tokenizer,
        )
        trainer.train()
        return trainer

    plain, meta = train(0.0), train(2.0)
    assert any(not torch.allclose(a, b) for a, b in zip(plain.model.parameters(), meta.model.parameters()))
    card = meta.model_card_data().settings["MetaRM meta step"]
    assert card.startswith("eta 2, 4 prompts x 3 responses per device, every 1 step(s)")


# ---------------------------------------------------------------------------------------------------------------------
# Models and options MetaRM cannot train
# ---------------------------------------------------------------------------------------------------------------------


def test_a_frozen_reward_model_is_refused(tmp_path, tokenizer):
    model = tiny_reward_model("qwen2", tokenizer)
    for param in model.parameters():
        param.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        MetaRMTrainer(
            model=model,
            args=config(tmp_path),
            train_dataset=toy_preference_sources(4),
            meta_dataset=toy_meta_dataset(4, 3),
            processing_class=tokenizer,
        )


def test_a_multi_objective_reward_model_is_refused(tmp_path, tokenizer):
    from trl_more.multi_objective import MultiObjectiveRewardModel

    backbone = tiny_reward_model("qwen2", tokenizer).model
    model = MultiObjectiveRewardModel.from_backbone(backbone, ["helpfulness", "safety"])
    with pytest.raises(ValueError, match="multi-objective reward model.*cannot be trained this way"):
        MetaRMTrainer(
            model=model,
            args=config(tmp_path),
            train_dataset=toy_preference_sources(4),
            meta_dataset=toy_meta_dataset(4, 3),
            processing_class=tokenizer,
        )


def test_a_missing_meta_dataset_and_reentrant_checkpointing_are_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="MetaRM needs a `meta_dataset`"):
        MetaRMTrainer(
            model=tiny_reward_model("qwen2", tokenizer),
            args=config(tmp_path),
            train_dataset=toy_preference_sources(4),
            meta_dataset=None,
            processing_class=tokenizer,
        )
    args = config(tmp_path, gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(ValueError, match="reentrant gradient checkpointing"):
        MetaRMTrainer(
            model=tiny_reward_model("qwen2", tokenizer),
            args=args,
            train_dataset=toy_preference_sources(4),
            meta_dataset=toy_meta_dataset(4, 3),
            processing_class=tokenizer,
        )
