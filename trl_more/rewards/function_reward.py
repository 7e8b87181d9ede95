"""A Python function of (prompt, response) texts, used wherever trl-more takes a reward model.

Rule-based rewards, a known gold reward (`trl_more.synthetic.gold_reward`) or a reward served elsewhere can then
select samples in rejection sampling, be evaluated, or serve as the gold of a benchmark, through the same scorer as
a trained model: `RewardModelScorer` tokenizes every (prompt, response) as usual and passes the prompt length, and
the model decodes the prompt and the response back to text and calls the function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput


__all__ = ["FunctionRewardModel"]


class FunctionRewardModel(nn.Module):
    """`function(prompt, response) -> float` as a sequence-classification reward model (`logits[:, 0]`).

    Args:
        function: The reward of a response to a prompt, both plain text.
        tokenizer: The tokenizer the inputs are encoded with (the scorer's tokenizer for this model); special tokens
            (the appended eos token, padding) are skipped when decoding.
        name: What the model is called in logs and errors (default: the function's name).
    """

    def __init__(
        self,
        function: Callable[[str, str], float],
        tokenizer: PreTrainedTokenizerBase,
        name: str | None = None,
    ):
        super().__init__()
        self.function = function
        self.tokenizer = tokenizer
        self.config = PretrainedConfig(
            num_labels=1, pad_token_id=tokenizer.pad_token_id, name_or_path=name or function.__name__
        )
        # Scorers read the device and dtype of a model's first parameter; this one has nothing else to learn.
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        prompt_lengths: torch.LongTensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if prompt_lengths is None:
            raise ValueError(
                "FunctionRewardModel needs the prompt length of every input to split prompt and response: score "
                "through `RewardModelScorer` (which passes `prompt_lengths`), or pass them."
            )
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        rewards = []
        for ids, keep, prompt_length in zip(input_ids, mask, prompt_lengths.tolist()):
            tokens = ids[keep].tolist()
            prompt = self.tokenizer.decode(tokens[:prompt_length], skip_special_tokens=True)
            response = self.tokenizer.decode(tokens[prompt_length:], skip_special_tokens=True)
            rewards.append(float(self.function(prompt, response)))
        return SequenceClassifierOutput(logits=torch.tensor(rewards, dtype=self.anchor.dtype)[:, None])
