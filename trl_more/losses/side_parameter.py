"""A parameter trained next to the reward model but not part of it (SwAV's prototypes, GRM's language-model head)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SideParameter:
    """One tensor trained beside the reward model with its own AdamW, and checkpointed with the trainer's state.

    It is not part of the reward model (the saved model has none). Its gradient comes from the training loss's
    backward pass; after every optimizer step of the trainer, `step()` averages it across processes (so that it stays
    identical on every rank), takes one AdamW step and then `_after_step()` (a subclass's projection, e.g. onto unit
    length). The step follows the trainer's learning-rate schedule: its learning rate is `learning_rate` times the
    schedule's current factor (`learning_rate_scale`), as the reward model's own is.
    """

    def __init__(self, weight: torch.Tensor, learning_rate: float, weight_decay: float = 0.0):
        self.weight = nn.Parameter(weight.detach().float().clone())
        self.learning_rate = learning_rate
        self.optimizer = torch.optim.AdamW([self.weight], lr=learning_rate, weight_decay=weight_decay)

    def step(self, accelerator: Any, learning_rate_scale: float = 1.0) -> None:
        """One AdamW step on the gradient averaged over the processes, at `learning_rate * learning_rate_scale`."""
        if self.weight.grad is None:
            return
        if accelerator.num_processes > 1:
            self.weight.grad = accelerator.reduce(self.weight.grad, reduction="mean")
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate * learning_rate_scale
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._after_step()

    def _after_step(self) -> None:
        """What follows every AdamW step; nothing by default."""

    def state_dict(self) -> dict:
        return {"weight": self.weight.detach().cpu(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.weight.copy_(state["weight"].to(self.weight.device))
        self.optimizer.load_state_dict(state["optimizer"])
