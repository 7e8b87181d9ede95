"""The reward head of a sequence-classification model and its captured input.

Scoring, evaluation, the pre-flight checks, MORE's head gradients and contrastive learning all read the reward head:
`find_reward_head` finds its final linear layer (plain, PEFT, DDP- or DeepSpeed-wrapped models) and
`RewardHeadInputCapture` keeps its input and output while attached, through a forward hook that never reads the head
weight (so it stays valid when ZeRO-3 partitions it). MORE's per-source gradients built on it are in
`trl_more.more.reward_head`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from accelerate.utils import extract_model_from_parallel, is_peft_model


__all__ = ["HEAD_ATTRIBUTES", "RewardHeadInputCapture", "find_reward_head"]

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
    """Keeps the input and output of the reward head's final linear layer on every forward pass made while it is
    `attached()`; the model carries no hook outside that block.

    Args:
        model (`nn.Module`):
            The reward model (plain, PEFT, DDP- or DeepSpeed-wrapped).
        keep_graph (`bool`, defaults to `False`):
            Keep the captured input in the autograd graph (for a loss on the representation, e.g. contrastive
            learning); by default it is detached, which is all MORE's closed-form gradients need.
        keep_output_graph (`bool`, defaults to `False`):
            Keep the captured output (the per-token rewards) in the autograd graph: shared-prompt encoding reads the
            rewards there (`trl_more.pair_encoding`), not from the model's pooled logits.
    """

    def __init__(self, model: nn.Module, keep_graph: bool = False, keep_output_graph: bool = False):
        self.head = find_reward_head(model)
        self.pad_token_id = extract_model_from_parallel(model).config.get_text_config().pad_token_id
        self.keep_graph = keep_graph
        self.keep_output_graph = keep_output_graph
        self.inputs: torch.Tensor | None = None
        self.outputs: torch.Tensor | None = None

    @property
    def hidden_size(self) -> int:
        """Width of the head input (the representation)."""
        return next(module.in_features for module in self.head.modules() if isinstance(module, nn.Linear))

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.inputs = args[0] if self.keep_graph else args[0].detach()
        self.outputs = output if self.keep_output_graph else output.detach()

    @contextmanager
    def attached(self) -> Iterator[RewardHeadInputCapture]:
        """Capture the head's input and output during the block (e.g. one `train()` call)."""
        handle = self.head.register_forward_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()
            self.inputs = self.outputs = None

    def read(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's input and output of the last forward pass, per token for decoders, and release them."""
        if self.inputs is None:
            raise RuntimeError("The reward head has not run since the last read: call the model before reading.")
        captured = (self.inputs, self.outputs)
        self.inputs = self.outputs = None
        return captured

    def pooled_features(
        self,
        input_ids: torch.Tensor,
        logits: torch.Tensor,
        captured: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The head input z of the pooled token of every sequence, shape (batch, hidden_size).

        Decoder heads run on every position and the model reads the last non-padding token, as transformers does;
        encoder heads already receive one vector per sequence. The pooled head output is checked against the model's
        `logits`, so a model that pools differently fails loudly instead of getting wrong gradients. Reading releases
        the captured tensors: a decoder's (batch, length, hidden) head input would otherwise stay alive until the next
        forward pass, after backward has freed the model's own copy. `captured`: what `read()` returned, when the
        caller needs the per-token tensors too.
        """
        features, outputs = captured if captured is not None else self.read()
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
