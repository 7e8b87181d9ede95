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
        str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2, max_completion_length=6,
        report_to="none", bf16=False, logging_steps=1, save_strategy="no", seed=0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=tiny_causal_lm("qwen2", tokenizer), reward_funcs=reward_model, reward_processing_classes=tokenizer,
        args=args, train_dataset=prompts, processing_class=tokenizer,
    )  # fmt: skip
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
