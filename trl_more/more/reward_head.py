"""The reward head of a sequence-classification model, its captured input, and per-source head gradients.

MORE reweights sources with gradients taken with respect to the reward head weight only. For a linear head
r = w . z + b the gradient of the Bradley-Terry loss has a closed form in the head input z (SPEC section 1), so a
forward hook that keeps z is all that is needed: no extra backward pass through the backbone, and the head weight is
never read, which keeps the computation valid when ZeRO-3 partitions it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel, is_peft_model


__all__ = [
    "RewardHeadInputCapture",
    "find_reward_head",
    "pairwise_reward_loss",
    "per_source_head_gradients",
    "per_source_mean",
]

# Attribute names under which transformers' sequence-classification models keep their head.
HEAD_ATTRIBUTES = ("score", "classifier", "v_head", "summary")


def find_reward_head(model: nn.Module) -> nn.Module:
    """The module that applies the final linear layer of a reward model's head.

    Works for decoder models (`score`), BERT-style (`classifier`) and RoBERTa-style (`classifier.out_proj`) heads, for
    models wrapped by DDP or DeepSpeed, and for PEFT models (a LoRA head, or a head in `modules_to_save`, in which
    case the PEFT wrapper is returned so that the active copy's input is seen).
    """
    base = extract_model_from_parallel(model)
    if is_peft_model(base):
        base = base.get_base_model()
    for attribute in HEAD_ATTRIBUTES:
        head = getattr(base, attribute, None)
        if isinstance(head, nn.Module):
            return _final_linear(head, f"{type(base).__name__}.{attribute}")
    raise ValueError(
        f"Could not find the reward head of {type(base).__name__}: MORE looks for a linear layer named one of "
        f"{HEAD_ATTRIBUTES} (or its `out_proj`), as in transformers' `*ForSequenceClassification` models."
    )


def _is_linear(module: nn.Module) -> bool:
    # A plain (or bitsandbytes-quantised) linear layer, or a PEFT LoRA layer around one.
    return isinstance(module, nn.Linear) or isinstance(getattr(module, "base_layer", None), nn.Linear)


def _final_linear(module: nn.Module, path: str) -> nn.Module:
    if _is_linear(module):
        return module
    original = getattr(module, "original_module", None)  # PEFT `ModulesToSaveWrapper`
    if original is not None:
        if _is_linear(original):
            return module
        return _final_linear(module.modules_to_save[module.active_adapters[0]], path)
    out_proj = getattr(module, "out_proj", None)  # RoBERTa-style classification head: dense -> tanh -> out_proj
    if isinstance(out_proj, nn.Module):
        return _final_linear(out_proj, f"{path}.out_proj")
    raise ValueError(f"The reward head `{path}` ({type(module).__name__}) does not end in a linear layer.")


class RewardHeadInputCapture:
    """Keeps the (detached) input and output of the reward head's final linear layer on every forward pass.

    Args:
        model (`nn.Module`):
            The reward model (plain, PEFT, DDP- or DeepSpeed-wrapped).
    """

    def __init__(self, model: nn.Module):
        self.head = find_reward_head(model)
        self.pad_token_id = extract_model_from_parallel(model).config.get_text_config().pad_token_id
        self.inputs: torch.Tensor | None = None
        self.outputs: torch.Tensor | None = None
        self._handle = self.head.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.inputs = args[0].detach()
        self.outputs = output.detach()

    def remove(self) -> None:
        self._handle.remove()

    def pooled_features(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The head input z of the pooled token of every sequence, shape (batch, hidden_size).

        Decoder heads run on every position and the model reads the last non-padding token, as transformers does;
        encoder heads already receive one vector per sequence. The pooled head output is checked against the model's
        `logits`, so a model that pools differently fails loudly instead of getting wrong gradients. Reading releases
        the captured tensors: a decoder's (batch, length, hidden) head input would otherwise stay alive until the next
        forward pass, after backward has freed the model's own copy.
        """
        if self.inputs is None:
            raise RuntimeError("The reward head has not run since the last read: call the model before reading.")
        features, outputs = self.inputs, self.outputs
        self.inputs = self.outputs = None
        if features.dim() == 3:
            rows = torch.arange(features.shape[0], device=features.device)
            positions = _last_non_pad_positions(input_ids, self.pad_token_id).to(features.device)
            features, outputs = features[rows, positions], outputs[rows, positions]
        if outputs.shape != logits.shape or not torch.allclose(outputs.float(), logits.detach().float(), atol=1e-4):
            raise RuntimeError(
                "The reward head's output at the pooled position does not match the model's logits, so the head "
                "input MORE reads is not the one the reward was computed from. MORE supports models that apply a "
                "linear head to the last non-padding token (decoders) or to a pooled vector (BERT/RoBERTa)."
            )
        return features


def _last_non_pad_positions(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    # Same rule as transformers' sequence-classification models: the rightmost token that is not padding.
    if pad_token_id is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, dtype=torch.long)
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
    return (positions * (input_ids != pad_token_id)).argmax(-1)


def per_source_head_gradients(
    features: torch.Tensor,
    rewards: torch.Tensor,
    source_ids: torch.Tensor,
    num_sources: int,
    margin: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> torch.Tensor:
    """Gradient of every source's mean reward loss with respect to the reward head weight, in closed form.

    The loss of pair b is TRL's: -log sigmoid(r_w - r_l - margin_b) [+ c * (r_w + r_l)^2]. Its gradient with respect
    to the head weight is coef_w * z_w + coef_l * z_l with coef_w = -sigmoid(-(d_b - margin_b)) + 2c(r_w + r_l) and
    coef_l = sigmoid(-(d_b - margin_b)) + 2c(r_w + r_l); averaging over each source's pairs gives g_i.

    Args:
        features: head inputs z, shape (2N, H), chosen sequences first, then rejected ones (TRL's layout).
        rewards: rewards, shape (2N,), same layout.
        source_ids: source of every pair, shape (N,), values in [0, num_sources).
        num_sources: K.
        margin: optional per-pair margin, shape (N,).
        center_rewards_coefficient: optional coefficient c of TRL's reward-centering term.

    Returns:
        A float32 tensor of shape (K, H); a source without pairs in the batch gets a zero row.
    """
    features, rewards = features.float(), rewards.detach().float()
    chosen_features, rejected_features = features.chunk(2)
    rewards_chosen, rewards_rejected = rewards.chunk(2)
    difference = rewards_chosen - rewards_rejected
    if margin is not None:
        difference = difference - margin.float()
    push = torch.sigmoid(-difference)  # -d(-log sigmoid(d)) / dd
    coef_chosen, coef_rejected = -push, push
    if center_rewards_coefficient is not None:
        center = 2.0 * center_rewards_coefficient * (rewards_chosen + rewards_rejected)
        coef_chosen, coef_rejected = coef_chosen + center, coef_rejected + center
    pair_gradients = coef_chosen[:, None] * chosen_features + coef_rejected[:, None] * rejected_features
    return per_source_mean(pair_gradients, source_ids, num_sources)


def per_source_mean(values: torch.Tensor, source_ids: torch.Tensor, num_sources: int) -> torch.Tensor:
    """Mean of `values` (shape (N, ...)) over the rows of every source; zero for a source without rows."""
    source_ids = source_ids.to(values.device)
    sums = values.new_zeros((num_sources, *values.shape[1:])).index_add(0, source_ids, values)
    counts = torch.bincount(source_ids, minlength=num_sources).clamp(min=1).to(values.dtype)
    return sums / counts.view(-1, *([1] * (values.dim() - 1)))


def pairwise_reward_loss(rewards: torch.Tensor, margin: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair Bradley-Terry loss -log sigmoid(r_w - r_l - margin) from TRL-layout rewards, shape (N,)."""
    rewards_chosen, rewards_rejected = rewards.chunk(2)
    difference = rewards_chosen - rewards_rejected
    if margin is not None:
        difference = difference - margin
    return -F.logsigmoid(difference)
