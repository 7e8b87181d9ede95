"""One reward model as the server scores with it: tokenization with its limits, and batched scoring without gradients."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..batching import length_sorted_batches
from ..input_settings import input_settings, scoring_max_length, warn_if_read_differently
from ..rewards.batch_rewards import rewards_of, sequence_outputs
from ..rewards.calibration import stored_temperature
from ..tokenization import tokenize, tokenize_scored_response
from .serve_config import SERVED_MAX_LENGTH


__all__ = ["ScoredItem", "ServedEnsemble", "ServedModel"]


@dataclass
class ScoredItem:
    """The scores of one (prompt, response): the raw reward, the reward divided by the model's stored temperature
    (the scale on which reward differences are calibrated log-odds; `None` without one), for the multi-objective
    model the per-objective rewards and the weights the gate (or the steering) gave them, and for an ensemble its
    uncertainty (the spread of the members' rewards) and every member's reward, on the scale `reward` is on."""

    reward: float
    calibrated_reward: float | None = None
    objectives: dict[str, float] | None = None
    gate_weights: dict[str, float] | None = None
    uncertainty: float | None = None
    member_rewards: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}


class ServedModel:
    """A reward model in eval mode on its device, with its tokenizer and the server's length limit (`max_length`;
    `None`: the model's own limit, at most `SERVED_MAX_LENGTH`)."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int | None,
        batch_size: int,
        device: torch.device | str,
    ):
        self.name = name
        # How the model was trained to read (`trl_more.input_settings`): told otherwise, the server says so once.
        self.reading = input_settings(model)
        warn_if_read_differently(model, tokenizer, where=f"trl-more serve ({name})", max_length=max_length)
        self._renderings_warned: set[str] = set()
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.max_length = max_length if max_length is not None else _served_max_length(model)
        self.batch_size = batch_size
        self.device = device
        config = model.config
        self.temperature = stored_temperature(model)
        self.objectives: list[str] | None = list(getattr(config, "objectives", None) or []) or None
        parameters = inspect.signature(model.forward).parameters
        self.takes_prompt_lengths = "prompt_lengths" in parameters
        self.steerable = "objective_weights" in parameters

    @classmethod
    def load(
        cls,
        name: str,
        path: str,
        dtype: str,
        device: str,
        max_length: int | None,
        batch_size: int,
        trust_remote_code: bool,
    ) -> ServedModel:
        from transformers import AutoModelForSequenceClassification

        from .. import multi_objective  # noqa: F401  (registers the multi-objective model with the Auto classes)
        from ..pretrained import check_model_reference, load_tokenizer
        from ..tokenization import align_pad_token

        check_model_reference(path)
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        align_pad_token(model, tokenizer)
        return cls(name, model, tokenizer, max_length, batch_size, device)

    def describe(self) -> dict[str, Any]:
        return {
            "objectives": self.objectives,
            "temperature": self.temperature,
            "max_length": self.max_length,
            "reading": self.reading.to_dict(),
        }

    def tokenize(self, prompt: str | list[dict[str, Any]], response: str) -> tuple[list[int], int]:
        """Token ids of an item and its prompt length, as the model was trained on it; `ValueError` when it cannot
        be scored as given (empty, too long, conversational without a chat template)."""
        if not response:
            raise ValueError("the response is empty")
        if not prompt:
            raise ValueError("the prompt is empty")
        self._warn_if_rendered_differently(prompt)
        ids, prompt_length = tokenize_scored_response(self.tokenizer, prompt, response)
        if len(ids) > self.max_length:
            raise ValueError(
                f"it is {len(ids)} tokens long, more than model {self.name!r} reads (max_length={self.max_length}; "
                "it is not cut): shorten it, or start the server with a larger --max_length if the model reads "
                "longer sequences"
            )
        return ids, prompt_length

    @property
    def label(self) -> str:
        """The name of the reward output (`config.id2label[0]`, `"LABEL_0"` by default), as vLLM's `/classify` names
        a one-label model's class."""
        return str((getattr(self.model.config, "id2label", None) or {}).get(0, "LABEL_0"))

    def tokenize_text(self, text: str) -> tuple[list[int], None]:
        """Token ids of a whole scored sequence (prompt and response already rendered into one text, as vLLM's
        `/classify` receives it) and `None` for its prompt length, which such a text does not give: the
        multi-objective model's gate then reads the last token, as when TRL's `GRPOTrainer` scores texts. A model
        trained on plain text gets the EOS token appended when the text lacks it, as its training pairs had (a
        model trained on conversations, or whose tokenizer has a chat template when nothing is recorded, reads the
        text as rendered by the template)."""
        if not text:
            raise ValueError("the input is empty")
        rendering = self.reading.rendering
        plain = rendering != "chat" if rendering is not None else not self.tokenizer.chat_template
        eos = self.tokenizer.eos_token
        if plain and eos is not None and not text.endswith(eos):
            text = text + eos
        ids = tokenize(self.tokenizer, text)
        if len(ids) > self.max_length:
            raise ValueError(
                f"it is {len(ids)} tokens long, more than model {self.name!r} reads (max_length={self.max_length}; "
                "it is not cut): shorten it, or start the server with a larger --max_length if the model reads "
                "longer sequences"
            )
        return ids, None

    def _warn_if_rendered_differently(self, prompt: str | list[dict[str, Any]]) -> None:
        """One warning per rendering when requests come rendered otherwise than the model's training pairs (a
        conversation for a model trained on plain text, or the reverse)."""
        rendering = "chat" if isinstance(prompt, list) else "plain"
        trained = self.reading.rendering
        if trained is None or (rendering == "chat") == (trained == "chat") or rendering in self._renderings_warned:
            return
        self._renderings_warned.add(rendering)
        warn_if_read_differently(self.model, where=f"trl-more serve ({self.name})", rendering=rendering)

    def check_weights(self, weights: Mapping[str, float] | None) -> None:
        """Refuse steering weights the model cannot take."""
        if weights is None:
            return
        if not self.steerable or self.objectives is None:
            raise ValueError(f"model {self.name!r} has no objectives to steer; leave `objective_weights` out")
        unknown = sorted(set(weights) - set(self.objectives))
        if unknown:
            raise ValueError(f"unknown objective(s) {unknown}; model {self.name!r} has {self.objectives}")
        if not all(math.isfinite(value) for value in weights.values()):
            raise ValueError("objective weights must be finite numbers")

    @torch.no_grad()
    def score(
        self, items: Sequence[tuple[list[int], int | None]], weights: Mapping[str, float] | None = None
    ) -> list[ScoredItem]:
        """Scores of tokenized items, in length-sorted batches of `batch_size`; items with a prompt length and whole
        texts without one (`tokenize_text`) are batched apart."""
        scored: list[ScoredItem | None] = [None] * len(items)
        with_prompt = [index for index, (_, prompt_length) in enumerate(items) if prompt_length is not None]
        whole = [index for index, (_, prompt_length) in enumerate(items) if prompt_length is None]
        batches = [
            [group[position] for position in batch]
            for group in (with_prompt, whole)
            for batch in length_sorted_batches([len(items[index][0]) for index in group], self.batch_size)
        ]
        steering = {} if weights is None else {"objective_weights": dict(weights)}
        for batch in batches:
            takes_prompt_lengths = self.takes_prompt_lengths and items[batch[0]][1] is not None
            output = sequence_outputs(
                self.model,
                [items[index][0] for index in batch],
                self.tokenizer.pad_token_id,
                self.device,
                prompt_lengths=[items[index][1] for index in batch] if takes_prompt_lengths else None,
                **steering,
            )
            rewards = rewards_of(output.logits).tolist()
            objective_rewards = getattr(output, "rewards", None)
            gates = getattr(output, "gating_weights", None)
            for row, index in enumerate(batch):
                item = ScoredItem(rewards[row])
                if self.temperature:
                    item.calibrated_reward = rewards[row] / self.temperature
                if self.objectives is not None and objective_rewards is not None:
                    item.objectives = dict(zip(self.objectives, objective_rewards[row].float().cpu().tolist()))
                    item.gate_weights = dict(zip(self.objectives, gates[row].float().cpu().tolist()))
                scored[index] = item
        return scored


class ServedEnsemble:
    """Several served reward models answering as one model: per item the mean of the members' rewards on one scale
    (`trl_more.rewards.ensemble_scales`: each member's stored statistics, else its temperature), their spread as the
    `uncertainty` (`RewardScores.spread`), and every member's reward. Each member reads the item with its own
    tokenizer and limit; an item too long for any member is refused."""

    temperature = None  # the members' common scale is not a calibrated one in general
    objectives = None

    def __init__(self, name: str, members: Sequence[ServedModel], calibration: str = "stored"):
        from ..rewards import ensemble_scales

        self.name = name
        self.members = list(members)
        self.scales = ensemble_scales([member.model for member in self.members], calibration)

    def describe(self) -> dict[str, Any]:
        return {
            "objectives": None,
            "temperature": None,
            "max_length": min(member.max_length for member in self.members),
            "members": [member.describe() for member in self.members],
        }

    def tokenize(self, prompt: str | list[dict[str, Any]], response: str) -> tuple[tuple[list[int], int], ...]:
        """The item as every member reads it."""
        return tuple(member.tokenize(prompt, response) for member in self.members)

    def tokenize_text(self, text: str) -> tuple[tuple[list[int], None], ...]:
        """A whole scored text as every member reads it (`ServedModel.tokenize_text`)."""
        return tuple(member.tokenize_text(text) for member in self.members)

    @property
    def label(self) -> str:
        return self.members[0].label

    def check_weights(self, weights: Mapping[str, float] | None) -> None:
        if weights is not None:
            raise ValueError(f"ensemble {self.name!r} has no objectives to steer; leave `objective_weights` out")

    def score(self, items: Sequence[tuple[tuple[list[int], int], ...]], weights: None = None) -> list[ScoredItem]:
        from ..rewards import RewardScores, combine_rewards

        columns = []
        for position, (member, scale) in enumerate(zip(self.members, self.scales)):
            rewards = torch.tensor([item.reward for item in member.score([item[position] for item in items])])
            columns.append(rewards if scale is None else scale.apply(rewards))
        per_model = torch.stack(columns, dim=1)
        scores = RewardScores(per_model, combine_rewards(per_model, "mean"))
        return [
            ScoredItem(reward=reward, uncertainty=spread, member_rewards=members)
            for reward, spread, members in zip(scores.mean.tolist(), scores.spread.tolist(), per_model.tolist())
        ]


def _served_max_length(model: nn.Module) -> int:
    """The default limit of a served model: its own (`scoring_max_length`), at most `SERVED_MAX_LENGTH`."""
    own = scoring_max_length(model)
    return SERVED_MAX_LENGTH if own is None else min(own, SERVED_MAX_LENGTH)
