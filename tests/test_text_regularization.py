"""GRM's text regularisation (`text_regularization_coefficient`): the SFT loss on the chosen responses by hand, its
gradient, the training loss in both pair encodings, configuration errors, and a short MORE + LoRA run whose saved
folder is a plain sequence-classification model."""

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more._compat import trainer_metrics
from trl_more.losses.text_regularization import chosen_response_nll
from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer, toy_preference_sources


COMMON = dict(
    per_device_train_batch_size=6,
    max_steps=1,
    learning_rate=1e-3,
    logging_steps=1,
    report_to="none",
    bf16=False,
    save_strategy="no",
    gradient_checkpointing=False,
    seed=0,
)


@pytest.fixture(scope="module")
def causal_lm_path(tmp_path_factory):
    """A tiny causal LM checkpoint (untied language-model head) and its tokenizer: the base of the reward models."""
    folder = tmp_path_factory.mktemp("base")
    tokenizer = tiny_tokenizer()
    tiny_causal_lm("qwen2", tokenizer, seed=3).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_the_sft_loss_is_the_causal_lm_loss_on_the_response_tokens_and_its_gradient_is_right(causal_lm_path):
    path, tokenizer = causal_lm_path
    lm = AutoModelForCausalLM.from_pretrained(path)
    prompt, responses = (
        "Human: How do I bake bread? Assistant:",
        [" Knead it well.", " Mix flour and water, then wait."],
    )
    rows = [tokenizer(prompt + response + tokenizer.eos_token)["input_ids"] for response in responses]
    starts = torch.tensor([len(tokenizer(prompt)["input_ids"])] * 2)
    length = max(map(len, rows))
    input_ids = torch.full((2, length), tokenizer.pad_token_id)
    attention_mask = torch.zeros(2, length, dtype=torch.long)
    first = torch.tensor([length - len(rows[0]), 0])  # row 0 left-padded, row 1 not padded
    for index, (row, offset) in enumerate(zip(rows, first.tolist())):
        input_ids[index, offset : offset + len(row)] = torch.tensor(row)
        attention_mask[index, offset : offset + len(row)] = 1
    last = torch.tensor([length - 1, len(rows[1]) - 1])
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)

    # By hand: the causal LM's own loss with the prompt and padding masked out of the labels.
    labels = torch.full_like(input_ids, -100)
    for index in range(2):
        begin = int(first[index] + starts[index])
        labels[index, begin : int(last[index]) + 1] = input_ids[index, begin : int(last[index]) + 1]
    expected = lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, labels=labels).loss
    hidden = lm.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).last_hidden_state
    hidden = hidden.detach().requires_grad_(True)
    weight = lm.lm_head.weight.detach().clone().requires_grad_(True)
    loss, count = chosen_response_nll(hidden, input_ids, first, starts, last, weight)
    assert count == int((labels != -100).sum())
    torch.testing.assert_close(loss, expected.detach(), atol=1e-5, rtol=0)

    # The gradient in closed form, (softmax - one-hot) / count through the head, against autograd.
    loss.backward()
    grad_hidden, grad_weight = torch.zeros_like(hidden), torch.zeros_like(weight)
    for index in range(2):
        for position in range(int(first[index] + starts[index]), int(last[index]) + 1):
            h = hidden[index, position - 1].detach()
            residual = torch.softmax(weight.detach() @ h, -1) - F.one_hot(input_ids[index, position], weight.shape[0])
            grad_hidden[index, position - 1] += weight.detach().t() @ residual / count
            grad_weight += torch.outer(residual, h) / count
    torch.testing.assert_close(hidden.grad, grad_hidden, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(weight.grad, grad_weight, atol=1e-6, rtol=1e-4)


def trainer_for(path, tokenizer, tmp_path, model=None, **overrides):
    return MORERewardTrainer(
        model=model if model is not None else str(path),
        args=MORERewardConfig(str(tmp_path), **{**COMMON, **overrides}),
        train_dataset=toy_preference_sources(6),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("pair_encoding", ["separate", "shared_prompt", "packed"])
def test_the_training_loss_is_one_minus_w_times_the_reward_loss_plus_w_times_the_sft_loss(
    causal_lm_path, tmp_path, pair_encoding
):
    path, tokenizer = causal_lm_path
    weight = 0.25
    trainer = trainer_for(
        path,
        tokenizer,
        tmp_path,
        text_regularization_coefficient=weight,
        lambda_method="uniform",
        pair_encoding=pair_encoding,
        pack_length=4096 if pair_encoding == "packed" else None,
    )
    lm = AutoModelForCausalLM.from_pretrained(path)
    torch.testing.assert_close(trainer.text_head.weight, lm.lm_head.weight)  # the base model's head, kept
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))

    # By hand: TRL's loss (3 sources, lambda 1/3 each: the mean over the batch's pairs, 2 of each source) ...
    pairs = [trainer.train_dataset[index] for index in list(trainer._get_train_sampler())[:6]]
    model = trainer.model
    with torch.no_grad():
        rewards = [
            model(input_ids=torch.tensor([pair[side]]), use_cache=False).logits[0, 0]
            for pair in pairs
            for side in ("chosen_ids", "rejected_ids")
        ]
        reward_loss = torch.stack(
            [-F.logsigmoid(rewards[2 * i] - rewards[2 * i + 1]) for i in range(len(pairs))]
        ).mean()
        # ... and the causal LM with the reward model's backbone on the chosen responses, over all their tokens.
        lm.model.load_state_dict(model.model.state_dict())
        nll, tokens = torch.tensor(0.0), 0
        for pair in pairs:
            ids = torch.tensor([pair["chosen_ids"]])
            shared = [a == b for a, b in zip(pair["chosen_ids"], pair["rejected_ids"])]  # the prompt: shared tokens
            start = shared.index(False) if False in shared else len(shared) - 1
            assert pair["chosen_response_start"] == start
            logits = lm(input_ids=ids).logits[0, start - 1 : -1]
            nll += F.cross_entropy(logits, ids[0, start:], reduction="sum")
            tokens += ids.shape[1] - start
    expected = (1 - weight) * reward_loss + weight * nll / tokens
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pair_encoding", ["separate", "shared_prompt", "packed"])
def test_it_combines_with_the_contrastive_loss(causal_lm_path, tmp_path, pair_encoding):
    """Both views come from one forward pass of the doubled batch; the text loss reads the first view's rows."""
    path, tokenizer = causal_lm_path
    trainer = trainer_for(
        path,
        tokenizer,
        tmp_path,
        text_regularization_coefficient=0.5,
        contrastive_loss="simcse",
        contrastive_dropout=0.0,
        pair_encoding=pair_encoding,
        pack_length=4096 if pair_encoding == "packed" else None,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with_text = trainer.compute_loss(trainer.model, dict(batch))
    metrics = trainer_metrics(trainer, "train")
    text, contrastive = metrics["loss/text"][-1], metrics["loss/contrastive"][-1]
    trainer.text_head, trainer.head_capture.keep_graph = None, True  # the same step without the text loss
    without = trainer.compute_loss(trainer.model, dict(batch))
    assert with_text.item() == pytest.approx(0.5 * without.item() + 0.5 * text, abs=1e-5)
    assert metrics["loss/contrastive"][-1] == pytest.approx(contrastive, abs=1e-6)


def test_bad_settings_are_refused_with_the_reason(causal_lm_path, tmp_path):
    path, tokenizer = causal_lm_path
    for value in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"`text_regularization_coefficient` must be in \[0, 1\)"):
            MORERewardConfig(str(tmp_path), text_regularization_coefficient=value, report_to="none")
    with pytest.raises(ValueError, match="Unknown `text_regularization` 'dpo'; choose one of 'sft'"):
        MORERewardConfig(str(tmp_path), text_regularization_coefficient=0.1, text_regularization="dpo")
    bert_tokenizer = tiny_tokenizer("wordpiece")
    with pytest.raises(ValueError, match="needs a decoder reward model; this 'bert' model attends in both directions"):
        trainer_for(
            path,
            bert_tokenizer,
            tmp_path,
            model=tiny_reward_model("bert", bert_tokenizer),
            text_regularization_coefficient=0.1,
        )
    with pytest.raises(ValueError, match="keeps the language-model head of the base causal LM, but none was found"):
        trainer_for(
            path, tokenizer, tmp_path, model=tiny_reward_model("qwen2", tokenizer), text_regularization_coefficient=0.1
        )
    tied = trainer_for(  # a head tied to the token embeddings is their copy
        path,
        tokenizer,
        tmp_path,
        model=tiny_reward_model("qwen2", tokenizer, tie_word_embeddings=True),
        text_regularization_coefficient=0.1,
    )
    torch.testing.assert_close(tied.text_head.weight, tied.model.get_input_embeddings().weight)


def test_a_short_more_lora_run_saves_a_plain_sequence_classification_model(causal_lm_path, tmp_path):
    path, tokenizer = causal_lm_path
    args = MORERewardConfig(
        str(tmp_path),
        **{**COMMON, "max_steps": 2},
        text_regularization_coefficient=0.1,
        pair_encoding="shared_prompt",
        preflight="off",
    )
    trainer = MORERewardTrainer(
        model=str(path),
        args=args,
        train_dataset=toy_preference_sources(6),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    initial = trainer.text_head.weight.detach().clone()
    trainer.train()
    history = trainer.state.log_history
    assert all(key in history[0] for key in ("loss/text", "lambda/polite", "loss/polite"))
    assert not torch.equal(trainer.text_head.weight.detach(), initial)  # trained on the side
    # on the trainer's schedule: linear decay from 1e-3 over 2 steps, so the last step ran at 1e-3 * (1 - 1/2)
    assert trainer.text_head.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert "text_regularization_head" in trainer.checkpointed_state()
    trainer.model.merge_and_unload().save_pretrained(tmp_path / "saved")
    with safe_open(tmp_path / "saved" / "model.safetensors", framework="pt") as saved:
        assert not any("lm_head" in key for key in saved.keys())  # noqa: SIM118  (only the reward model ships)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert loaded.config.num_labels == 1 and type(loaded).__name__ == "Qwen2ForSequenceClassification"
    trainer.create_model_card()
    assert "text regularisation (GRM)" in (tmp_path / "README.md").read_text()
