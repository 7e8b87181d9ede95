"""Weight-averaged reward models (WARM): M reward models fine-tuned from one initialisation, averaged into one.

WARM (Rame et al., 2024) averages the weights of reward models trained from the same pre-trained model and the same
reward-head initialisation (different seeds, data orders or hyper-parameters): theta = sum_m w_m theta_m. Its premise
is linear mode connectivity from the shared starting point; the average of models from different starting points is
not a reward model of either. It matches the prediction ensemble of the same M models at the scoring cost of one.

`average_reward_models` checks what it can of the premise before averaging:

- the same architecture: the configs agree (apart from where they were loaded from, the transformers version and
  the reward scale fitted after training), and so do the parameter names and shapes (the reward head included);
- the same initialisation, when the members record it (`config.training_initialisation`, written by
  `trl-more strength --save_models`): members that record different ones are refused; members without a record are
  averaged with a warning that the shared initialisation could not be checked;
- the same reading record (`trl_more.input_settings`: token limit, truncation, rendering, EOS and pad tokens,
  pooling): the average reads its input as its members did, so members that disagree are refused.

LoRA members (a folder with `adapter_config.json`, or a `PeftModel`) are merged into their base model first:
averaging the A and B factors separately is not the average of the products B A, so the adapters are never averaged
as factors. The averaged model is a plain sequence-classification model (`AutoModelForSequenceClassification` loads
it); its members' reward statistics and temperature do not describe its rewards and are dropped (fit new ones with
`trl-more evaluate --save_calibrated_model`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..constants import REWARD_STATISTICS_ATTRIBUTES, TEMPERATURE_ATTRIBUTE, TRAINING_INITIALISATION_ATTRIBUTE
from ..input_settings import RECORD_ATTRIBUTES, input_settings


__all__ = ["average_reward_models", "averaging_weights", "write_averaged_model_card"]

logger = logging.getLogger(__name__)

# Config keys left out of the architecture check: where the config was read from, the library version, the reward
# scale fitted after training (it does not describe the average's rewards and is dropped), and the initialisation and
# reading record (each compared on its own, with its own message).
_PER_MEMBER_CONFIG_KEYS = (
    "_name_or_path",
    "transformers_version",
    *REWARD_STATISTICS_ATTRIBUTES,
    TEMPERATURE_ATTRIBUTE,
    TRAINING_INITIALISATION_ATTRIBUTE,
    *RECORD_ATTRIBUTES.values(),
)
# Relative tolerance of "the weights sum to 1" before they are normalised.
_WEIGHT_SUM_TOLERANCE = 1e-6

Member = str | os.PathLike | nn.Module


def averaging_weights(weights: Sequence[float] | None, num_models: int) -> list[float]:
    """The weight of every member: uniform (1 / M) when `weights` is None, else `weights` divided by their sum.

    Weights must be finite and non-negative with a positive sum, one per member. Weights that do not sum to 1 are
    normalised by their sum (`[1, 1, 2]` gives `[0.25, 0.25, 0.5]`), with an info line saying so.
    """
    if num_models < 1:
        raise ValueError("Averaging needs at least one reward model.")
    if weights is None:
        return [1.0 / num_models] * num_models
    weights = [float(weight) for weight in weights]
    if len(weights) != num_models:
        raise ValueError(f"Got {len(weights)} weights for {num_models} models; give one weight per model.")
    if any(not math.isfinite(weight) or weight < 0 for weight in weights) or sum(weights) <= 0:
        raise ValueError(
            f"Averaging weights must be finite and non-negative with a positive sum, got {weights}: a negative weight "
            "extrapolates away from a member instead of averaging. Give e.g. `[0.5, 0.5]`."
        )
    total = sum(weights)
    if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
        logger.info(f"Averaging weights {weights} sum to {total:g}; divided by their sum.")
    return [weight / total for weight in weights]


def average_reward_models(
    paths_or_models: Sequence[Member],
    weights: Sequence[float] | None = None,
    model_init_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """The weight average sum_m w_m theta_m of reward models fine-tuned from one initialisation (WARM).

    Args:
        paths_or_models: the members: folders or Hub ids of sequence-classification reward models (a LoRA adapter
            folder is loaded on its base model and merged), or loaded models (a `PeftModel` is merged on a copy).
            Given models are not modified.
        weights: one non-negative weight per member (see `averaging_weights`); `None`: uniform.
        model_init_kwargs: keyword arguments of `from_pretrained` for members given as paths (e.g. `revision`).

    Returns:
        A new model of the first member's class and config with the averaged parameters, in the members' dtype
        (averaged in float32 or wider). Its config keeps the members' reading record and initialisation and drops
        their reward statistics and temperature.

    Raises:
        ValueError: naming the reason and the fix, for members of other architectures, parameter names or shapes
            (the reward head's included), initialisations or reading records, other non-float buffers, or bad weights.
    """
    weights = averaging_weights(weights, len(paths_or_models))
    names = [_member_name(member, index) for index, member in enumerate(paths_or_models)]
    # Members are loaded one at a time into a running sum: memory holds one member and the sum, not M models.
    first = _load_member(paths_or_models[0], model_init_kwargs)
    reference = first.state_dict()
    totals = {
        key: weights[0] * value.to(torch.promote_types(value.dtype, torch.float32))
        for key, value in reference.items()
        if torch.is_floating_point(value)
    }
    initialisations = [getattr(first.config, TRAINING_INITIALISATION_ATTRIBUTE, None)]
    for index in range(1, len(paths_or_models)):
        model = _load_member(paths_or_models[index], model_init_kwargs)
        _check_same_architecture(first, model, names[0], names[index])
        _check_same_reading(first, model, names[0], names[index])
        initialisations.append(getattr(model.config, TRAINING_INITIALISATION_ATTRIBUTE, None))
        for key, value in model.state_dict().items():
            if key in totals:
                totals[key] += weights[index] * value.to(totals[key].dtype)
            elif not torch.equal(value, reference[key]):  # integer buffers (position ids) are not weights
                raise ValueError(
                    f"The non-float buffer {key!r} differs between {names[0]} and {names[index]}: these are not the "
                    "same architecture. Average only models fine-tuned from one pre-trained model."
                )
        del model
    _check_same_initialisation(initialisations, names)
    result = first if first is not paths_or_models[0] else copy.deepcopy(first)  # a given model is left as it was
    result.load_state_dict(
        {key: totals[key].to(value.dtype) if key in totals else value for key, value in reference.items()}
    )
    for attribute in (*REWARD_STATISTICS_ATTRIBUTES, TEMPERATURE_ATTRIBUTE):
        if hasattr(result.config, attribute):
            delattr(result.config, attribute)
    result.config.name_or_path = ""
    return result


def write_averaged_model_card(output_dir: str | os.PathLike, members: Sequence[str], weights: Sequence[float]) -> Path:
    """Write `README.md` in `output_dir`: what the model is, its members with their weights, and how to use it."""
    from huggingface_hub import ModelCardData

    rows = "\n".join(
        f"| {index} | `{member}` | {weight:.4g} |" for index, (member, weight) in enumerate(zip(members, weights))
    )
    metadata = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["trl-more", "reward-model", "warm"],
    ).to_yaml()
    text = f"""---
{metadata}
---

# Weight-averaged reward model (WARM)

A reward model (a sequence-classification model with one output) whose weights are the weighted average
theta = sum_m w_m theta_m of {len(members)} reward models fine-tuned from one initialisation
([WARM](https://huggingface.co/papers/2401.12187)), written by `trl-more average` (trl-more, a TRL plugin). It scores
at the cost of one model. It reads its input as its members did (the reading record in `config.json`).

| member | model | weight |
|---|---|---|
{rows}

The members' reward statistics and temperature, if any, were dropped: they do not describe the average's rewards.
To calibrate it on held-out pairs: `trl-more evaluate --model <this model> --sources ... --calibration_sources
held_out=pairs.jsonl --save_calibrated_model`.

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained("<this folder>")
tokenizer = AutoTokenizer.from_pretrained("<this folder>")
```
"""
    path = Path(output_dir) / "README.md"
    path.write_text(text)
    return path


def _member_name(member: Member, index: int) -> str:
    if isinstance(member, str | os.PathLike):
        return str(member)
    return getattr(getattr(member, "config", None), "name_or_path", "") or f"model {index}"


def _load_member(member: Member, model_init_kwargs: dict[str, Any] | None) -> nn.Module:
    """A plain sequence-classification model: loaded from a folder or Hub id, a LoRA adapter merged into its base."""
    if isinstance(member, str | os.PathLike):
        adapter_config = Path(member) / "adapter_config.json"
        if adapter_config.is_file():
            from peft import PeftModel
            from transformers import AutoModelForSequenceClassification

            base_name = json.loads(adapter_config.read_text())["base_model_name_or_path"]
            base = AutoModelForSequenceClassification.from_pretrained(
                base_name, num_labels=1, **(model_init_kwargs or {})
            )
            return PeftModel.from_pretrained(base, str(member)).merge_and_unload()
        from .scoring import load_reward_model

        return load_reward_model(str(member), model_init_kwargs)[0]
    if hasattr(member, "merge_and_unload"):  # a PeftModel: merged on a copy, the caller's model is left as it was
        return copy.deepcopy(member).merge_and_unload()
    return member


def _check_same_architecture(first: nn.Module, other: nn.Module, first_name: str, name: str) -> None:
    reference, config = _comparable_config(first), _comparable_config(other)
    differing = sorted(key for key in reference.keys() | config.keys() if reference.get(key) != config.get(key))
    if differing:
        details = ", ".join(f"{key}: {reference.get(key)!r} vs {config.get(key)!r}" for key in differing[:5])
        raise ValueError(
            f"{name} has another architecture than {first_name} ({details}): weights of different models cannot be "
            "averaged. Average only reward models fine-tuned from one pre-trained model with the same head."
        )
    shapes = {key: tuple(value.shape) for key, value in first.state_dict().items()}
    others = {key: tuple(value.shape) for key, value in other.state_dict().items()}
    if others != shapes:
        key = next(key for key in sorted(shapes.keys() | others.keys()) if shapes.get(key) != others.get(key))
        raise ValueError(
            f"Parameter {key!r} has shape {shapes.get(key)} in {first_name} but {others.get(key)} in {name} "
            "(None: absent): the models differ in their layers or reward head. Average only reward models with the "
            "same base model and the same reward-head shape (num_labels)."
        )


def _comparable_config(model: nn.Module) -> dict[str, Any]:
    config = model.config.to_dict()
    return {key: value for key, value in config.items() if key not in _PER_MEMBER_CONFIG_KEYS}


def _check_same_initialisation(recorded: Sequence[str | None], names: Sequence[str]) -> None:
    known = {value for value in recorded if value is not None}
    if len(known) > 1:
        groups = ", ".join(f"{name}: {value}" for name, value in zip(names, recorded))
        raise ValueError(
            f"The models were fine-tuned from different initialisations ({groups}). WARM averages only models that "
            "start from the same weights, reward head included (linear mode connectivity); the average of others is "
            "not a reward model. Train the members from one initialisation, e.g. `trl-more strength --save_models`."
        )
    if None in recorded:
        unrecorded = [name for name, value in zip(names, recorded) if value is None]
        logger.warning(
            f"{', '.join(unrecorded)} record no initialisation, so it cannot be checked that every member started from "
            "the same weights and reward head, which WARM assumes. Average only models fine-tuned from one "
            "initialisation (`trl-more strength --save_models` records it)."
        )


def _check_same_reading(first: nn.Module, other: nn.Module, first_name: str, name: str) -> None:
    reference, record = dataclasses.asdict(input_settings(first)), dataclasses.asdict(input_settings(other))
    differing = {key: (reference[key], record[key]) for key in reference if reference[key] != record[key]}
    if differing:
        details = ", ".join(f"{key}: {value!r} vs {theirs!r}" for key, (value, theirs) in differing.items())
        raise ValueError(
            f"{name} was trained to read its input differently from {first_name} ({details}), so the average would "
            "have no single way to read its input. Average members trained with the same max_length, truncation, "
            "data format and tokenizer."
        )
