"""Pre-flight checks of a PEFT (LoRA) reward model: is the score head trained and saved with the adapter?

A reward model built from a language model gets a new, randomly drawn score head. Under LoRA that head must be in
the adapter's `modules_to_save` (what `LoraConfig(task_type="SEQ_CLS")` sets): otherwise it stays frozen at its
random values and is not saved, so every reload draws another head and the saved model scores at random. Two checks:

- the head is trainable and will be saved (`modules_to_save`), unless the base checkpoint already holds a reward
  head (its `architectures` name a sequence classifier) that stays frozen. A warning, not an error: `trl.RewardTrainer`
  trains such a configuration, and an existing TRL script must keep working with trl-more's classes swapped in;
- a round trip: one optimizer step (sign-SGD on the sample's pairwise loss), the adapter saved as `save_pretrained`
  writes it, then a fresh load simulated in place (trainable parameters back to their initial values, a head the base
  checkpoint lacks drawn anew, the saved adapter loaded) must give the rewards of after the step. The model's
  parameters are restored afterwards: training starts from the model it was given.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import torch

from ..metrics.audits import sequence_rewards
from .report import Finding, PreflightReport


__all__ = ["check_peft"]

STEP_SIZE = 1e-2  # of the sign-SGD step: about what Adam's first step moves each weight


def check_peft(
    model: Any, sequences: list[list[int]], pad_token_id: int, report: PreflightReport, tolerance: float = 1e-3
) -> None:
    """The PEFT checks (see the module docstring) on `sequences` (chosen and rejected alternating), into `report`;
    nothing for a model without an adapter."""
    from accelerate.utils import extract_model_from_parallel, is_peft_model

    from ..reward_head import HEAD_ATTRIBUTES

    model = extract_model_from_parallel(model)
    if not is_peft_model(model) or len(sequences) < 2:
        return
    base = model.get_base_model()
    attribute = next(
        (name for name in HEAD_ATTRIBUTES if isinstance(getattr(base, name, None), torch.nn.Module)), None
    )
    if attribute is None:
        return
    head = getattr(base, attribute)
    saved = hasattr(head, "modules_to_save")  # PEFT's ModulesToSaveWrapper: a trained copy saved with the adapter
    in_checkpoint = any(name.endswith("ForSequenceClassification") for name in base.config.architectures or [])
    if not saved and not in_checkpoint:
        trainable = any(parameter.requires_grad for parameter in head.parameters())
        state = "trains only through LoRA matrices around its random weights" if trainable else "stays frozen"
        report.findings.append(
            Finding(
                "PEFT score head",
                "warning",  # not an error: `trl.RewardTrainer` accepts this, and a drop-in must train what it trains
                f"the score head `{attribute}` is new (the base checkpoint has none) but is not in the adapter's "
                f"`modules_to_save`: it {state} and its weights are not saved, so a reloaded model draws another "
                f"random head and scores at random. Fix: `LoraConfig(task_type='SEQ_CLS', ...)` or "
                f"`modules_to_save=['{attribute}']`.",
            )
        )
        return  # the round trip would only find the same
    change = _round_trip_change(model, sequences, pad_token_id, f".{attribute}.", redraw_head=not in_checkpoint)
    report.measured.setdefault("(model)", {})["reward change: PEFT save and reload"] = change
    if change > tolerance:
        report.findings.append(
            Finding(
                "PEFT save and reload",
                "error",
                f"after one optimizer step, saving the adapter and loading it again changes the rewards (largest "
                f"change {change:.2g} reward std): some trained weights are not saved with the adapter. Likely cause: "
                "trainable modules outside the adapter and `modules_to_save`. Fix: add them to `modules_to_save`.",
            )
        )


def _round_trip_change(
    model: Any, sequences: list[list[int]], pad_token_id: int, head_marker: str, redraw_head: bool
) -> float:
    """The largest reward change (in reward std) that saving and reloading the adapter causes after one step."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    parameters = dict(model.named_parameters())
    touched = {name for name, parameter in parameters.items() if parameter.requires_grad or head_marker in name}
    initial = {name: parameters[name].detach().clone() for name in touched}
    was_training = model.training
    try:
        _sign_sgd_step(model, sequences, pad_token_id)
        model.eval()
        with torch.no_grad():
            stepped = sequence_rewards(model, sequences, pad_token_id, len(sequences), "right")
            with tempfile.TemporaryDirectory() as folder:
                model.save_pretrained(folder)
                adapter = load_peft_weights(folder, device=str(next(model.parameters()).device))
            for name, parameter in parameters.items():  # a fresh load: the initial weights, a new random head
                if name in touched and parameter.requires_grad:
                    parameter.copy_(initial[name])
                elif redraw_head and head_marker in name:
                    parameter.normal_(std=float(initial[name].float().std()) or 0.02)
            set_peft_model_state_dict(model, adapter)
            reloaded = sequence_rewards(model, sequences, pad_token_id, len(sequences), "right")
    finally:
        with torch.no_grad():
            for name in touched:
                parameters[name].copy_(initial[name])
                parameters[name].grad = None
        model.train(was_training)
    return float(np.abs(reloaded - stepped).max() / max(float(stepped.std()), 1e-12))


def _sign_sgd_step(model: Any, sequences: list[list[int]], pad_token_id: int) -> None:
    """One sign-SGD step of the pairwise loss on `sequences` (chosen and rejected alternating)."""
    from ..rewards.batch_rewards import padded_inputs

    model.train()
    device = next(model.parameters()).device
    inputs = padded_inputs(sequences, pad_token_id)
    rewards = model(**{name: tensor.to(device) for name, tensor in inputs.items()}, use_cache=False).logits[:, 0]
    loss = -torch.nn.functional.logsigmoid(rewards[0::2] - rewards[1::2]).mean()
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.grad is not None:
                parameter.add_(parameter.grad.sign(), alpha=-STEP_SIZE)
