"""MetaRM's meta step: move the trainable parameters up the gradient of J, and back.

    theta' = theta + eta * grad J(theta; meta batch)

`ascend` computes grad J with `torch.autograd.grad` on the unwrapped model (so that no DDP or DeepSpeed gradient hook
fires and the parameters' `.grad` stay untouched), averages it across processes (every rank moves by the same step
and the replicas stay identical), saves the values it overwrites and applies the step in place; `restore` puts
theta back. Under DeepSpeed ZeRO-3 the parameters are edited where ZeRO-3 keeps them (each rank's partition, see
`trl_more._compat.parameter_storage`); the full gradient of the trainable parameters is materialised on every rank
for the duration of the step, which with LoRA is small.

The meta forward runs the batch's prompts a few at a time (`prompts_per_forward`), so that it needs no more activation
memory than a training micro-batch, and under `torch.random.fork_rng`, so that it does not change the random stream
of training (with eta = 0 the trainer trains exactly as without the meta step).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from .._compat import parameter_shape, parameter_storage
from .difference import difference_loss


__all__ = ["MetaAscent", "unchanged_random_state"]


class MetaAscent:
    """The first-order meta step of MetaRM on one reward model (see the module docstring)."""

    def __init__(
        self, model: nn.Module, learning_rate: float, abs_epsilon: float = 0.0, prompts_per_forward: int | None = None
    ):
        self.model = model
        self.parameters = [param for param in model.parameters() if param.requires_grad]
        if not self.parameters:
            raise ValueError(
                "MetaRM trains the reward model, but it has no trainable parameter (frozen, or a quantized model "
                "without adapters). Unfreeze it or pass a `peft_config`."
            )
        self.learning_rate = learning_rate
        self.abs_epsilon = abs_epsilon
        self.prompts_per_forward = prompts_per_forward
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def active(self) -> bool:
        """Whether the parameters are at theta' (moved, not yet restored)."""
        return self._saved is not None

    def rewards(self, batch: dict[str, Any]) -> torch.Tensor:
        """The (num_prompts, k) rewards of a meta batch, with the autograd graph."""
        return (
            self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            .logits[:, 0]
            .view(batch["num_prompts"], -1)
        )

    def difference(self, batch: dict[str, Any]) -> float:
        """J of a meta batch at the current parameters, without gradients (for logging)."""
        with torch.no_grad(), unchanged_random_state(batch["input_ids"].device):
            return difference_loss(self.rewards(batch).float(), self.abs_epsilon).item()

    def ascend(self, batch: dict[str, Any], accelerator: Any) -> float:
        """Move to theta' = theta + eta * grad J (averaged over processes); returns J at theta (process mean)."""
        if self.active:
            raise RuntimeError("The meta step was taken twice without restoring the parameters in between.")
        gradients, value = self._gradient(batch)
        if accelerator.num_processes > 1:
            packed = accelerator.reduce(torch.cat([*(g.reshape(-1) for g in gradients), value.reshape(1)]), "mean")
            *flat, value = packed.split([*(g.numel() for g in gradients), 1])
            gradients = [part.view_as(g) for part, g in zip(flat, gradients)]
        saved = []
        with torch.no_grad():
            for param, gradient in zip(self.parameters, gradients):
                for target, step in parameter_storage(param, gradient):
                    saved.append((target, target.clone()))
                    target.add_(step.to(target), alpha=self.learning_rate)
        self._saved = saved
        return value.item()

    def restore(self) -> None:
        """Put back theta (a no-op when the parameters are not moved)."""
        if self._saved is None:
            return
        with torch.no_grad():
            for target, value in self._saved:
                target.copy_(value)
        self._saved = None

    def _gradient(self, batch: dict[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """grad J over the trainable parameters (zeros for those J does not reach) and J, the batch's prompts taken
        `prompts_per_forward` at a time (J is a mean over prompts, so the chunks' gradients add up)."""
        num_prompts = batch["num_prompts"]
        k = batch["input_ids"].shape[0] // num_prompts
        chunk = self.prompts_per_forward or num_prompts
        total = [
            torch.zeros(parameter_shape(param), dtype=param.dtype, device=param.device) for param in self.parameters
        ]
        value = torch.zeros((), device=batch["input_ids"].device)
        with unchanged_random_state(batch["input_ids"].device):
            for start in range(0, num_prompts, chunk):
                rows = slice(start * k, min(num_prompts, start + chunk) * k)
                part = {
                    "input_ids": batch["input_ids"][rows],
                    "attention_mask": batch["attention_mask"][rows],
                    "num_prompts": rows.stop // k - start,
                }
                share = part["num_prompts"] / num_prompts
                objective = difference_loss(self.rewards(part).float(), self.abs_epsilon) * share
                grads = torch.autograd.grad(objective, self.parameters, allow_unused=True)
                for accumulated, grad in zip(total, grads):
                    if grad is not None:
                        accumulated.add_(grad.to(accumulated))
                value = value + objective.detach()
        return total, value


def unchanged_random_state(device: torch.device) -> contextlib.AbstractContextManager:
    """Random numbers drawn within the block (dropout) do not advance the caller's generators."""
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)
