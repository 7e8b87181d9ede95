"""The multi-objective reward model as the reward model of TRL's GRPOTrainer (`reward_funcs=model`)."""

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from trl_more.multi_objective import MultiObjectiveRewardModel
from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer


@pytest.mark.parametrize("steered", [False, True])
def test_grpo_trains_a_policy_on_the_model_scores(tmp_path, steered):
    tokenizer = tiny_tokenizer()
    reward_model = MultiObjectiveRewardModel.from_backbone(
        tiny_reward_model("qwen2", tokenizer, seed=1), ["helpful", "short"], gate_hidden_sizes=[8]
    )
    scored = []
    reward_model.register_forward_hook(lambda module, args, output: scored.append(output))
    prompts = Dataset.from_dict({"prompt": ["Human: hi Assistant:", "Human: bake bread? Assistant:"] * 2})
    args = GRPOConfig(
        str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        report_to="none",
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=tiny_causal_lm("qwen2", tokenizer),
        reward_funcs=reward_model,
        reward_processing_classes=tokenizer,
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    if steered:
        with reward_model.steer({"short": 1.0}):
            trainer.train()
    else:
        trainer.train()
    logged = trainer.state.log_history[0]
    assert len(scored) == 1 and scored[0].logits.shape == (4, 1)  # one scoring pass over the 4 completions
    assert logged["reward"] == pytest.approx(scored[0].logits.mean().item(), abs=1e-5)
    if steered:  # fixed weights instead of the gate: the score is the `short` objective alone
        torch.testing.assert_close(scored[0].logits[:, 0], scored[0].rewards[:, 1])
    else:
        torch.testing.assert_close(scored[0].gating_weights.sum(-1), torch.ones(4))


def test_grpo_reads_the_gated_score_in_logits_0(tmp_path):
    """GRPOTrainer scores a reward model with `model(**tokenizer(texts)).logits[:, 0]`: for the multi-objective model
    that is the gated score sum_i gate_i * (rewards @ transform)_i, recomputed here by hand from the backbone's last
    hidden state of every completion (no prompt lengths: the gate reads the last token)."""
    tokenizer = tiny_tokenizer()
    reward_model = MultiObjectiveRewardModel.from_backbone(
        tiny_reward_model("qwen2", tokenizer, seed=2), ["helpful", "short"], gate_hidden_sizes=[8]
    )
    with torch.no_grad():
        reward_model.regression_layer.weight.normal_(std=0.5)
    transform = torch.tensor([[1.0, -0.5], [0.0, 1.0]])  # a non-trivial reward transform (e.g. debiasing)
    reward_model.set_reward_transform(transform)
    before = {name: value.clone() for name, value in reward_model.state_dict().items()}
    calls = []
    reward_model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append((kwargs, output)), with_kwargs=True
    )
    prompts = Dataset.from_dict({"prompt": ["Human: hi Assistant:", "Human: bake bread? Assistant:"] * 2})
    args = GRPOConfig(
        str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        report_to="none",
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=tiny_causal_lm("qwen2", tokenizer),
        reward_funcs=reward_model,
        reward_processing_classes=tokenizer,
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    trainer.train()
    for name, value in reward_model.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=name)
    ((kwargs, output),) = calls
    assert set(kwargs) == {"input_ids", "attention_mask"}  # TRL passes the tokenized texts only: no prompt lengths
    input_ids, attention_mask = kwargs["input_ids"], kwargs["attention_mask"]
    reward_model.eval()
    with torch.no_grad():
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # counted over attended tokens (any padding)
        hidden = reward_model.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions
        ).last_hidden_state
        last = attention_mask.shape[1] - 1 - attention_mask.flip(-1).argmax(-1)  # the last attended token
        pooled = hidden[torch.arange(hidden.shape[0]), last]
        rewards = reward_model.regression_layer(pooled)
        gate = reward_model.gate(pooled)
        gated_score = (gate * (rewards @ transform)).sum(-1)
    torch.testing.assert_close(output.logits[:, 0], gated_score, atol=1e-4, rtol=0)  # float32 kernels
    torch.testing.assert_close(gate.sum(-1), reward_model.gate.beta.expand(4), atol=1e-5, rtol=0)
    logged = trainer.state.log_history[0]
    assert logged["reward"] == pytest.approx(gated_score.mean().item(), abs=1e-4)  # the reward GRPO optimised
