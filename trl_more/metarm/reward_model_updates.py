"""MetaRM inside rejection sampling: the reward model is updated on every iteration's fresh responses before it scores
them ("Secrets of RLHF Part II", Section 4: rounds that alternate reward-model meta-training and policy optimisation).

`RewardModelUpdater` owns one trainable reward model, its optimizer and, under DeepSpeed, its one training engine for
the whole run (DeepSpeed engines do not survive being rebuilt). At iteration i it takes `steps` MetaRM steps:

1. a meta batch of the iteration's prompts with their k sampled responses: theta' = theta + eta * grad J;
2. a batch of the original preference pairs: the Bradley-Terry loss is differentiated at theta';
3. theta is restored and AdamW applies that gradient.

Which meta prompts and which preference pairs a step uses is a function of (seed, iteration, step), and the updated
weights and optimizer state are saved with the iteration, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from datasets import Dataset
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from .._compat import before_deepspeed_optimizer_step, prepare_reward_dataset
from ..losses import pairwise_loss
from ..reports import markdown_table
from ..rewards.batch_rewards import padded_inputs
from ..tokenization import truncate
from .meta_ascent import MetaAscent
from .meta_data import MetaBatches


__all__ = ["RewardModelUpdater", "updated_reward_model_card"]

OPTIMIZER_FILE = "optimizer.pt"
ENGINE_FOLDER = "deepspeed"


class RewardModelUpdater:
    """MetaRM updates of one reward model between rejection-sampling iterations (see the module docstring).

    Args:
        model: the reward model (a sequence-classification model with one output, or a `PeftModel` of one), with the
            parameters to train set to `requires_grad`.
        tokenizer: its tokenizer.
        preference_dataset: the preference pairs it was trained on (any format TRL's `RewardTrainer` reads).
        accelerator: the rejection-sampling trainer's accelerator.
        learning_rate: alpha, AdamW's learning rate (the paper: 5e-6).
        meta_learning_rate: eta of the meta step (the paper: 5e-6).
        batch_size: preference pairs per device per step (the paper: 16).
        meta_batch_size: meta prompts per device per step (the paper: 16).
        steps: steps per iteration; `None` for one pass over the iteration's prompts.
        abs_epsilon: the smooth surrogate of |d| in J (0: exact).
        max_length: token limit of every sequence (the end is kept, where the reward is read).
        max_grad_norm: gradient clipping (as the policy's; 0 for none).
        seed: seed of the batches.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        preference_dataset: Dataset,
        accelerator: Accelerator,
        *,
        learning_rate: float,
        meta_learning_rate: float,
        batch_size: int,
        meta_batch_size: int,
        steps: int | None,
        abs_epsilon: float,
        max_length: int | None,
        max_grad_norm: float,
        seed: int,
    ):
        from .metarm_trainer import check_trainable_reward_model

        check_trainable_reward_model(model)
        self.accelerator = accelerator
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.meta_batch_size = meta_batch_size
        self.steps = steps
        self.max_length = max_length
        self.max_grad_norm = max_grad_norm
        self.seed = seed
        self.pairs = _tokenized_pairs(preference_dataset, tokenizer, max_length)
        if len(self.pairs) < batch_size * accelerator.num_processes:
            raise ValueError(
                f"The reward model's preference set has {len(self.pairs)} pairs, fewer than one MetaRM batch of "
                f"{batch_size} per device x {accelerator.num_processes} process(es). Give more pairs or lower "
                "`metarm_per_device_train_batch_size`."
            )
        parameters = [param for param in model.parameters() if param.requires_grad]
        self.ascent = MetaAscent(model, meta_learning_rate, abs_epsilon)  # prompts per forward: set per iteration
        optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
        self.deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        if self.deepspeed:
            import deepspeed

            hidden_size = getattr(getattr(model, "config", None), "hidden_size", None)
            config = _training_config(accelerator, batch_size, hidden_size, max_grad_norm)
            self.engine, self.optimizer, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
            before_deepspeed_optimizer_step(self.engine, self.ascent.restore)
            self.model = self.engine
        else:
            self.engine, self.optimizer = None, optimizer
            self.model = model.to(accelerator.device)
        self.module = model
        self.model.eval()

    # ----------------------------------------------------------------------------------------------------------------
    # One iteration's update
    # ----------------------------------------------------------------------------------------------------------------

    def update(self, iteration: int, meta_rows: list[list[list[int]]], show_progress: bool = True) -> dict[str, float]:
        """MetaRM steps on this iteration's responses (`meta_rows`: k token-id sequences per prompt, every process
        the same list); returns the mean J before and after the meta steps and the preference loss."""
        k = len(meta_rows[0])
        self.ascent.prompts_per_forward = max(1, (2 * self.batch_size) // k)
        batches = MetaBatches(
            meta_rows,
            self.meta_batch_size,
            seed=int(np.random.SeedSequence([self.seed, iteration]).generate_state(1)[0]),
            pad_token_id=self.tokenizer.pad_token_id,
            num_processes=self.accelerator.num_processes,
            process_index=self.accelerator.process_index,
        )
        steps = self.steps if self.steps is not None else batches.batches_per_epoch
        self.model.train()
        totals = {"difference": 0.0, "difference_after": 0.0, "loss": 0.0}
        device = self.accelerator.device
        progress = tqdm(
            range(steps),
            desc=f"MetaRM update {iteration}",
            disable=not (show_progress and self.accelerator.is_main_process),
        )
        for step in progress:
            meta_batch = batches.batch(step, device)
            totals["difference"] += self.ascent.ascend(meta_batch, self.accelerator)
            totals["difference_after"] += self._reduced(self.ascent.difference(meta_batch))
            inputs = self._pair_batch(iteration, step)
            logits = self.model(**inputs, use_cache=False).logits
            loss = pairwise_loss(logits.squeeze(-1).float()).mean()
            if self.engine is not None:
                self.engine.backward(loss)
                self.engine.step()  # restores theta first (the hook installed at construction)
            else:
                loss.backward()
                self._synchronise_gradients()
                self.ascent.restore()
                if self.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.ascent.parameters, self.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            totals["loss"] += self._reduced(loss.item())
        self.model.eval()
        return {f"metarm/{name}": value / max(steps, 1) for name, value in totals.items()}

    def _pair_batch(self, iteration: int, step: int) -> dict[str, torch.Tensor]:
        """This process's share of the step's preference pairs, chosen rows first (TRL's layout)."""
        global_batch = self.batch_size * self.accelerator.num_processes
        rng = np.random.default_rng([self.seed, iteration, step, 1])
        chosen = rng.choice(len(self.pairs), size=global_batch, replace=False)
        start = self.accelerator.process_index * self.batch_size
        rows = [self.pairs[int(index)] for index in chosen[start : start + self.batch_size]]
        inputs = padded_inputs([row[0] for row in rows] + [row[1] for row in rows], self.tokenizer.pad_token_id)
        return {name: tensor.to(self.accelerator.device) for name, tensor in inputs.items()}

    def _reduced(self, value: float) -> float:
        if self.accelerator.num_processes == 1:
            return value
        tensor = torch.tensor(value, device=self.accelerator.device)
        return self.accelerator.reduce(tensor, reduction="mean").item()

    def _synchronise_gradients(self) -> None:
        """Average the gradients over processes (the model is not wrapped for DDP), so replicas stay identical."""
        if self.accelerator.num_processes == 1:
            return
        parameters = [param for param in self.ascent.parameters if param.grad is not None]
        flat = self.accelerator.reduce(torch.cat([param.grad.reshape(-1) for param in parameters]), "mean")
        for param, part in zip(parameters, flat.split([param.numel() for param in parameters])):
            param.grad.copy_(part.view_as(param.grad))

    # ----------------------------------------------------------------------------------------------------------------
    # Saving and loading (collective: every process calls them)
    # ----------------------------------------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, model_card: str) -> None:
        """The updated reward model (loadable with `from_pretrained`, with its tokenizer and `model_card` as
        README.md) and the optimizer state needed to resume, in `folder`."""
        folder = Path(folder)
        state_dict = self.accelerator.get_state_dict(self.model)  # whole on the main process, also under ZeRO-3
        if self.accelerator.is_main_process:
            unwrapped = self.module
            unwrapped.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
            self.tokenizer.save_pretrained(folder)
            (folder / "README.md").write_text(model_card, encoding="utf-8")
        if self.engine is not None:
            self.engine.save_checkpoint(str(folder / ENGINE_FOLDER), tag="state")
        elif self.accelerator.is_main_process:
            torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_FILE)
        self.accelerator.wait_for_everyone()

    def load(self, folder: str | os.PathLike) -> None:
        """Continue from a reward model saved by `save` (weights and optimizer state)."""
        folder = Path(folder)
        if self.engine is not None:
            self.engine.load_checkpoint(str(folder / ENGINE_FOLDER), tag="state")
            return
        from safetensors.torch import load_file

        files = sorted(folder.glob("*.safetensors"))
        state = {}
        for path in files:
            state.update(load_file(path, device=str(self.accelerator.device)))
        missing, unexpected = self.module.load_state_dict(state, strict=False)
        trainable_missing = [
            name for name, param in self.module.named_parameters() if param.requires_grad and name in missing
        ]
        if unexpected or trainable_missing:
            raise ValueError(
                f"The reward model saved in {folder} does not match this run's (missing {trainable_missing[:5]}, "
                f"unexpected {unexpected[:5]}); use a new `output_dir`."
            )
        self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location=self.accelerator.device))


def updated_reward_model_card(args: Any, iteration: int, base: str) -> str:
    """The model card of the reward model a rejection-sampling run (config `args`) saved after updating it with MetaRM
    in iteration `iteration`, starting from `base`."""
    settings = [
        ("alpha (AdamW learning rate)", f"{args.metarm_learning_rate:g}"),
        ("eta (meta step)", f"{args.metarm_meta_learning_rate:g}"),
        (
            "preference pairs / meta prompts per device per step",
            f"{args.metarm_per_device_train_batch_size} / {args.metarm_per_device_meta_batch_size}",
        ),
        ("responses per prompt (k)", str(args.num_samples_per_prompt)),
    ]
    return (
        f"---\ntags:\n- trl-more\n- metarm\n- reward-model\n---\n\n# Reward model after iteration {iteration}\n\n"
        f"The reward model of the rejection-sampling run in `{args.output_dir}`, updated with MetaRM "
        f"(docs/metarm.md of trl-more) on the responses the policy sampled in iterations 0-{iteration} and on its "
        f"preference pairs, starting from `{base}`.\n\n"
        + "\n".join(markdown_table(["setting", "value"], settings))
        + "\n\nLoad it with `AutoModelForSequenceClassification.from_pretrained(<this folder>)`; the reward is "
        "`logits[:, 0]`.\n"
    )


def _tokenized_pairs(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int | None) -> list[tuple]:
    """(chosen ids, rejected ids) of every preference pair, tokenized as TRL's `RewardTrainer` does and cut to
    `max_length` keeping the end."""
    if dataset is None:
        raise ValueError(
            "Updating the reward model with MetaRM needs the preference pairs it was trained on "
            "(`reward_train_dataset`): the meta step alone has no labels to learn from."
        )
    prepared = prepare_reward_dataset(copy.copy(dataset), tokenizer, "metarm")
    return [
        (truncate(chosen, max_length), truncate(rejected, max_length))
        for chosen, rejected in zip(prepared["chosen_ids"], prepared["rejected_ids"])
    ]


def _training_config(accelerator: Accelerator, batch_size: int, hidden_size: int | None, max_grad_norm: float) -> dict:
    """The DeepSpeed config of the reward model's own training engine: the run's ZeRO stage and precision, one
    micro-batch of `batch_size` pairs per step, our AdamW (the config's optimizer, scheduler and optimizer offload are
    dropped). Values left "auto" (transformers fills them only for the policy's engine) are filled here."""
    config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
    for key in ("optimizer", "scheduler", "train_batch_size"):
        config.pop(key, None)
    config["train_micro_batch_size_per_gpu"] = batch_size
    config["gradient_accumulation_steps"] = 1
    config["zero_allow_untested_optimizer"] = True
    if config.get("gradient_clipping") == "auto":
        config["gradient_clipping"] = max_grad_norm
    for precision in ("bf16", "fp16"):
        if isinstance(config.get(precision), dict) and config[precision].get("enabled") == "auto":
            config[precision]["enabled"] = accelerator.mixed_precision == precision
    zero = config.setdefault("zero_optimization", {})
    zero.pop("offload_optimizer", None)
    sized = {
        "reduce_bucket_size": hidden_size**2 if hidden_size else None,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size**2) if hidden_size else None,
        "stage3_param_persistence_threshold": 10 * hidden_size if hidden_size else None,
    }
    for key in [key for key, value in zero.items() if value == "auto"]:
        if sized.get(key) is not None:
            zero[key] = sized[key]
        else:
            del zero[key]
    for key in [key for key, value in config.items() if value == "auto"]:
        del config[key]
    return config
