"""Scoring (prompt, response) pairs with one or several sequence-classification reward models."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase
from transformers.utils import logging

from .._compat import prepare_deepspeed
from ..batching import length_sorted_batches
from ..constants import check_choice
from ..input_settings import scoring_max_length, warn_if_read_differently
from ..pair_encoding import PAIR_ENCODINGS, encodes_bidirectionally
from ..pretrained import load_tokenizer
from ..tokenization import fit_to_max_length, tokenize_scored_response
from .batch_rewards import rewards_of, sequence_outputs, shared_prompt_logits
from .calibration import ENSEMBLE_CALIBRATIONS, RewardScale, reward_scale
from .ensemble import combine_rewards, ensemble_spread


logger = logging.get_logger(__name__)  # usable without accelerate's state: the scorer also runs outside trainers

# A prompt as a data set holds it: plain text, or a conversation (a list of {"role", "content"} messages).
Prompt = str | list[dict[str, Any]]


class RewardScores(NamedTuple):
    """Rewards of a set of samples: `per_model` has shape (num_samples, num_models), on one scale when the scorer put
    them there (see `RewardModelScorer`'s `calibration`), and `combined` (num_samples,) as the ensemble mode says.

    `mean` and `spread` are the members' mean reward and its uncertainty, the population standard deviation over the
    members (0 for one model), on the scale of `per_model`: mean - k * spread is the `"mean_minus_std"` lower bound.
    """

    per_model: torch.Tensor
    combined: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        return self.per_model.mean(dim=1)

    @property
    def spread(self) -> torch.Tensor:
        return ensemble_spread(self.per_model)


def load_reward_model(
    name_or_path: str, model_init_kwargs: dict[str, Any] | None = None
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """A sequence-classification reward model and its tokenizer from a local folder or the Hub.

    `model_init_kwargs` go to `from_pretrained`; their `trust_remote_code` (default False) applies to the tokenizer
    too.
    """
    model_init_kwargs = {"trust_remote_code": False, **(model_init_kwargs or {})}
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=model_init_kwargs["trust_remote_code"])
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **model_init_kwargs)
    return model, tokenizer


def load_reward_models(
    reward_models: str | nn.Module | Sequence[str | nn.Module],
    tokenizers: PreTrainedTokenizerBase | Sequence[PreTrainedTokenizerBase | None] | None,
    model_init_kwargs: dict[str, Any] | None,
) -> tuple[list[nn.Module], list[PreTrainedTokenizerBase]]:
    """Reward models (paths are loaded with `load_reward_model` and `model_init_kwargs`) and one tokenizer each: the
    given one, else the model's own (from its folder, or from `config.name_or_path` for a model object)."""
    if isinstance(reward_models, (str, nn.Module)):
        reward_models = [reward_models]
    if not reward_models:
        raise ValueError("Give at least one reward model (a path or a sequence-classification model).")
    if tokenizers is None or isinstance(tokenizers, PreTrainedTokenizerBase):
        tokenizers = [tokenizers] * len(reward_models)
    if len(tokenizers) != len(reward_models):
        raise ValueError(f"Got {len(reward_models)} reward models but {len(tokenizers)} reward tokenizers.")
    models, loaded_tokenizers = [], []
    for reward_model, tokenizer in zip(reward_models, tokenizers):
        if isinstance(reward_model, str):
            reward_model, own_tokenizer = load_reward_model(reward_model, model_init_kwargs)
            tokenizer = tokenizer or own_tokenizer
        elif tokenizer is None:
            tokenizer = tokenizer_of(reward_model, (model_init_kwargs or {}).get("trust_remote_code", False))
        models.append(reward_model)
        loaded_tokenizers.append(tokenizer)
    return models, loaded_tokenizers


def tokenizer_of(model: nn.Module, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a reward model object, from its `config.name_or_path`."""
    name_or_path = model.config.name_or_path
    try:
        return load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Could not load the tokenizer of the reward model {type(model).__name__} from {name_or_path!r}; pass it "
            "in `reward_processing_classes`."
        ) from error


def prepare_reward_model(model: nn.Module, accelerator: Accelerator) -> nn.Module:
    """The reward model ready for inference on this process: frozen, in eval mode, placed as training requires.

    Under DeepSpeed it becomes an inference engine (TRL's `prepare_deepspeed`): partitioned across processes under
    ZeRO-3 (a model loaded after the DeepSpeed config exists is already partitioned by `zero.Init` and cannot be used
    without it), replicated otherwise. Without DeepSpeed it is moved to the device and not wrapped for training.
    """
    model.requires_grad_(False)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return prepare_deepspeed(model, accelerator)
    model = accelerator.prepare_model(model, evaluation_mode=True, device_placement=True)
    return model.eval()


class RewardModelScorer:
    """Scores (prompt, response) pairs with one or several sequence-classification reward models.

    Each model reads the pairs through its own tokenizer and template: the response text is decoded from the policy's
    tokens and re-tokenized, so the reward model may use another tokenizer and template than the policy. A pair is
    built as TRL's `RewardTrainer` (and MORE) built the model's training pairs, so the reward is read where the model
    learned to put it: plain text as `prompt + response + eos_token` with the tokenizer's special tokens, a
    conversation (a list of messages) with the response as a final assistant message, in the reward model's chat
    template. The reward is `logits[:, 0]`, which covers scalar reward models and the multi-objective model (its
    (batch, 1) score, gated or steered); a model whose forward takes `prompt_lengths` (the multi-objective model's gate
    reads the last prompt token) gets them. Pairs are scored in length-sorted batches; inputs longer than the model's
    token limit lose the beginning of the prompt (the reward is read at the end). The number of forward passes depends only on
    the number of pairs, so processes scoring equally many pairs stay in step under ZeRO-3.

    Args:
        models: Reward models, already prepared (see `prepare_reward_model`).
        tokenizers: The tokenizer of each model, with a pad token matching `model.config.pad_token_id`.
        ensemble: How several models' rewards are combined (see `combine_rewards`).
        std_coef: The k of `"mean_minus_std"`.
        batch_size: Pairs per forward pass.
        max_length: Token limit of a reward-model input. `None`: each model's own, the `max_length` it was trained
            with (recorded by trl-more's trainers) or else its position limit
            (`trl_more.input_settings.scoring_max_length`); `max_lengths` holds the limit of every model.
        device: Where the inputs go (the models' device).
        sort_by_length: Batch pairs of similar length together (on by default; off only for benchmarks).
        show_progress: Show a progress bar over the batches.
        calibration: With several models, `"stored"` puts every model's rewards on one scale before combining them
            (its stored reward statistics, else its temperature; see `trl_more.rewards.calibration`) and refuses a
            model that has neither; `"none"` combines the raw rewards. `per_model` holds the rewards as combined.
        pair_encoding: `"shared_prompt"` scores consecutive pairs with the same prompt (rejection sampling's samples
            of one prompt) in one row, the prompt computed once (`trl_more.pair_encoding`; same rewards); `"packed"`
            also packs those rows into sequences no longer than a batch's longest row (less padding). Used for
            decoders with a linear reward head when every prompt has as many responses; otherwise, and with
            `"separate"`, every pair is its own sequence.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        tokenizers: Sequence[PreTrainedTokenizerBase],
        ensemble: str = "mean",
        std_coef: float = 1.0,
        batch_size: int = 16,
        max_length: int | None = None,
        device: torch.device | str = "cpu",
        sort_by_length: bool = True,
        show_progress: bool = False,
        calibration: str = "stored",
        pair_encoding: str = "separate",
    ):
        check_choice("calibration", calibration, ENSEMBLE_CALIBRATIONS)
        check_choice("pair_encoding", pair_encoding, PAIR_ENCODINGS)
        if len(models) == 0 or len(models) != len(tokenizers):
            raise ValueError(
                f"Give at least one reward model and one tokenizer per model; got {len(models)} models and "
                f"{len(tokenizers)} tokenizers."
            )
        for tokenizer in tokenizers:
            if tokenizer.pad_token_id is None:
                raise ValueError("Every reward tokenizer needs a pad token; see `align_pad_token`.")
        self.models = list(models)
        self.tokenizers = list(tokenizers)
        self.ensemble = ensemble
        self.std_coef = std_coef
        self.batch_size = batch_size
        self.max_lengths = [scoring_max_length(model, max_length) for model in self.models]
        for index, (model, tokenizer) in enumerate(zip(self.models, self.tokenizers)):
            warn_if_read_differently(model, tokenizer, where=f"reward model {index}", max_length=max_length)
        self.device = device
        self.sort_by_length = sort_by_length
        self.show_progress = show_progress
        self.scales = ensemble_scales(self.models, calibration)
        self.pair_encoding = pair_encoding

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> RewardScores:
        """Rewards of every (prompts[i], responses[i]) pair, per model and combined."""
        if len(prompts) != len(responses):
            raise ValueError(f"Got {len(prompts)} prompts but {len(responses)} responses.")
        per_model = torch.stack(
            [
                self._score_with(model, tokenizer, max_length, prompts, responses)
                if scale is None
                else scale.apply(self._score_with(model, tokenizer, max_length, prompts, responses))
                for model, tokenizer, max_length, scale in zip(
                    self.models, self.tokenizers, self.max_lengths, self.scales
                )
            ],
            dim=1,
        )
        return RewardScores(per_model, combine_rewards(per_model, self.ensemble, self.std_coef))

    @torch.no_grad()
    def _score_with(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int | None,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
    ) -> torch.Tensor:
        sequences, prompt_lengths = [], []
        for index, (prompt, response) in enumerate(zip(prompts, responses)):
            ids, prompt_length = tokenize_scored_response(tokenizer, prompt, response)
            ids, prompt_length = fit_to_max_length(ids, prompt_length, max_length, "keep_end", f"pair {index}")
            sequences.append(ids)
            prompt_lengths.append(prompt_length)
        # The multi-objective model's gate reads the last prompt token; other reward models take no prompt length.
        pass_prompt_lengths = "prompt_lengths" in inspect.signature(getattr(model, "module", model).forward).parameters
        groups = _prompt_groups(prompts)
        if (
            self.pair_encoding != "separate"
            and not pass_prompt_lengths
            and not encodes_bidirectionally(model)
            and len({len(group) for group in groups}) == 1
        ):
            return self._score_shared(model, tokenizer, sequences, groups)
        rewards = torch.empty(len(sequences), dtype=torch.float32)
        batches = length_sorted_batches([len(ids) for ids in sequences], self.batch_size, sort=self.sort_by_length)
        for batch in tqdm(batches, desc="Scoring", unit="batch", disable=not self.show_progress):
            output = sequence_outputs(
                model,
                [sequences[index] for index in batch],
                tokenizer.pad_token_id,
                self.device,
                prompt_lengths=[prompt_lengths[index] for index in batch] if pass_prompt_lengths else None,
            )
            rewards[batch] = rewards_of(output.logits)
        return rewards

    def _score_shared(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        sequences: list[list[int]],
        groups: list[list[int]],
    ) -> torch.Tensor:
        """Rewards of every sequence, each group of responses to one prompt in one shared-prompt row."""
        size = len(groups[0])
        rows_per_batch = max(1, self.batch_size // size)
        lengths = [sum(len(sequences[index]) for index in group) for group in groups]
        rewards = torch.empty(len(sequences), dtype=torch.float32)
        batches = length_sorted_batches(lengths, rows_per_batch, sort=self.sort_by_length)
        for batch in tqdm(batches, desc="Scoring", unit="batch", disable=not self.show_progress):
            logits = shared_prompt_logits(
                model,
                [[sequences[index] for index in groups[row]] for row in batch],
                tokenizer.pad_token_id,
                self.device,
                packed=self.pair_encoding == "packed",
            )
            values = rewards_of(logits)
            for row, group in enumerate(batch):  # response-major: response j of row r at j * rows + r
                rewards[groups[group]] = values[row :: len(batch)]
        return rewards


def _prompt_groups(prompts: Sequence[Prompt]) -> list[list[int]]:
    """Indices of the runs of consecutive equal prompts."""
    groups: list[list[int]] = []
    for index, prompt in enumerate(prompts):
        if groups and prompts[groups[-1][0]] == prompt:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def ensemble_scales(models: Sequence[nn.Module], calibration: str) -> list[RewardScale | None]:
    """The scale of every model's rewards in an ensemble (`None`: used raw): with `calibration="stored"` and several
    models, each model's stored reward statistics or temperature, and a `ValueError` naming the fix for a model that
    has neither; with one model, or `"none"`, no scale."""
    if len(models) == 1 or calibration == "none":
        if len(models) > 1:
            logger.warning(
                "Combining the raw rewards of several reward models (`calibration='none'`): a model whose rewards "
                "spread wider dominates the ensemble."
            )
        return [None] * len(models)
    scales = [reward_scale(model) for model in models]
    missing = [index for index, scale in enumerate(scales) if scale is None]
    if missing:
        names = [
            getattr(getattr(models[index], "module", models[index]).config, "name_or_path", "") for index in missing
        ]
        raise ValueError(
            f"Reward model(s) {missing} ({', '.join(map(repr, names))}) store no reward scale, so their rewards cannot "
            "be put on one scale with the others before they are combined. Fit one on held-out pairs: "
            "`trl-more evaluate --model <folder> --sources ... --calibration_sources <held-out> "
            "--save_calibrated_model` (saves the reward statistics and temperature), or in Python "
            "`set_reward_statistics(model, *fit_reward_statistics(evaluate_reward_model(...).rewards[source]))`; or "
            "combine the raw rewards knowingly with `ensemble_calibration='none'`."
        )
    return scales
