"""Rejection-sampling fine-tuning (RJS / RAFT) on TRL's `SFTTrainer`, as one `train()` call.

How the iterations fit into one training run
--------------------------------------------
DeepSpeed ZeRO-3 engines do not survive a second `train()` or a new Trainer, so the whole run is one `train()` call
and one engine, and an iteration is a Trainer epoch (or `num_epochs_per_iteration` of them):

- The training set is an `IterationDataset` of fixed length `L`: the most responses an iteration can select (the
  number of prompts for best-per-prompt, `ceil(top_fraction * prompts * samples)` for top-fraction), rounded up to a
  multiple of `per_device_train_batch_size * num_processes`. Trainer sizes the learning-rate schedule from it once:
  `num_iterations * num_epochs_per_iteration` epochs of `L` examples.
- At the start of the first epoch of iteration i, a callback (the first one to run) makes the trainer produce
  iteration i: every process generates and scores its shard of the iteration's prompts, the samples of all processes
  are gathered, every process selects the same responses from them (a deterministic function of the gathered
  samples), the main process writes them to `output_dir/iteration-XX/`, and every process fills the dataset with the
  same tokenized examples. Slots the selection leaves empty hold a one-token example whose label is -100: it adds
  nothing to the loss or to the token count the loss is normalised by.
- Accelerate's prepared dataloader shards *indices*: all processes draw the same permutation of `range(L)` (a
  synchronised seed) and each takes its own batches of it, without wrap-around because `L` is a multiple of the
  global batch. Since the dataset content is identical on every process, every selected response is trained on by
  exactly one process, once per epoch. The dataloader reads the dataset lazily, in the training process, after the
  callback has run; with `dataloader_num_workers > 0` the workers are started after it too (persistent workers are
  refused by the config).

Generation, scoring and the distributed traps
---------------------------------------------
- The iteration's prompts are sorted by length and dealt round-robin to the processes; a process with one prompt
  fewer repeats one (`shard_for_process`), so every process calls `generate` and the reward models equally often
  with equally many prompts (under ZeRO-3 transformers synchronises the decoding steps and the reward models gather
  their parameters layer by layer; a process that stopped early would deadlock the others). Outputs of repeated
  prompts are dropped before gathering, so every prompt is generated, scored and selected exactly once, whatever the
  number of prompts and processes.
- The transformers backend unwraps the model once per generation round (TRL's `unwrap_model_for_generation`: one
  gather of the ZeRO-3 parameters, gradient checkpointing off); prompts are left-padded and batched by length, KV
  cache on.
- Reward models are prepared for inference as TRL's GRPO does (`prepare_deepspeed` under DeepSpeed, partitioned
  under ZeRO-3; `prepare_model(evaluation_mode=True)` otherwise). They read decoded text, re-tokenized with their own
  tokenizer and template.

Files and resumption
--------------------
`output_dir/iteration-XX/` holds `samples.jsonl` (every sample: prompt, response, its token ids, per-model and
combined rewards, whether the filter kept it, whether it was selected), `selected.jsonl` (the selected prompt/response
pairs), `metrics.json` and `provenance.json` (what produced it: see `iterations.py`). The folder is written under a
temporary name and renamed when complete, before training on it, so a crash leaves no partial folder; when a run
restarts (with or without `resume_from_checkpoint`), completed iterations are read back instead of generated again,
provided they were produced by this run's policy, reward models and settings (otherwise the run stops and names the
differences). Each round samples with a seed derived from (`seed`, iteration, process), inside a fork of the random
state, so a resumed run generates and trains exactly as the uninterrupted one; checkpoints are resumed only when
complete (`trl_more.trainer_utils`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import SFTConfig, SFTTrainer

from .._compat import gather_parameters, keep_4bit_weights_trainable, prepare_sft_dataset, trainer_metrics
from ..batching import shard_for_process
from ..fingerprints import fingerprint, model_fingerprint
from ..input_settings import scoring_max_length
from ..metarm.reward_model_updates import RewardModelUpdater, updated_reward_model_card
from ..rewards import Prompt, RewardModelScorer, align_pad_token, load_reward_models, prepare_reward_model
from ..tokenization import fit_to_max_length, tokenize_prompt, tokenize_scored_response
from ..trainer_utils import (
    CheckpointingMixin,
    check_global_batch_size,
    check_process_layout,
    convert_config,
    default_output_dir,
)
from .generation import (
    GenerationBackend,
    SamplingSettings,
    TransformersGenerationBackend,
    VLLMGenerationBackend,
    eos_token_ids,
)
from .iterations import (
    IterationDataset,
    IterationStore,
    iteration_metrics,
    provenance_differences,
    settings_provenance,
)
from .rejection_sampling_config import RejectionSamplingConfig
from .selection import max_selected, select_samples


REWARD_MODEL_FOLDER = "reward_model"  # in an iteration's folder: the reward model as MetaRM updated it


logger = get_logger(__name__)

ResponseFilter = Callable[[Prompt, str], bool]


class _IterationBoundary(TrainerCallback):
    """Makes the trainer produce an iteration's examples before the first epoch of that iteration starts."""

    def __init__(self, trainer: RejectionSamplingTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        updates_per_epoch = -(-len(train_dataloader) // args.gradient_accumulation_steps)
        epoch = state.global_step // updates_per_epoch
        self.trainer.prepare_iteration(epoch // args.num_epochs_per_iteration)


class RejectionSamplingTrainer(CheckpointingMixin, SFTTrainer):
    """
    Rejection-sampling fine-tuning (RJS, RAFT): sample several responses per prompt from the current policy, score
    them with one or several reward models, keep the best, fine-tune on them with the loss on the response tokens only
    (L = -E log pi(y_best | x)), repeat. See the module docstring for how the iterations run inside one `train()` call
    and one DeepSpeed engine.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer

    >>> prompts = Dataset.from_dict({"prompt": ["\\n\\nHuman: How do I bake bread?\\n\\nAssistant:"]})
    >>> trainer = RejectionSamplingTrainer(
    ...     model="Qwen/Qwen2.5-0.5B-Instruct",
    ...     reward_models="my-org/my-reward-model",
    ...     args=RejectionSamplingConfig("Qwen2.5-0.5B-RJS", num_iterations=2, prompts_per_iteration=1),
    ...     train_dataset=prompts,
    ... )
    >>> trainer.train()
    ```

    Args:
        model (`str` or [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            The policy, as for [`~trl.SFTTrainer`].
        reward_models (`str`, `PreTrainedModel`, or a list of them):
            Sequence-classification reward model(s), as paths or instances. The reward is `logits[:, 0]`. Several
            models are combined by `args.ensemble`.
        args ([`RejectionSamplingConfig`], *optional*):
            Configuration. A plain [`~trl.SFTConfig`] is converted (its fields kept, rejection sampling's at their
            defaults).
        train_dataset ([`~datasets.Dataset`]):
            The prompts: a `prompt` column of plain text (the policy's template already applied) or of conversations
            (lists of messages, rendered with the policy's chat template). An optional `reward_prompt` column gives the
            prompt as the reward model should read it (e.g. the raw question in the reward model's format, when the
            policy sees it inside an instruction template); the reward model reads `reward_prompt + response` (or the
            conversation plus the response, with its own chat template).
        eval_dataset: As for [`~trl.SFTTrainer`] (prompt-completion data, e.g. reference responses).
        processing_class ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            The policy's tokenizer.
        reward_processing_classes (tokenizer or list of tokenizers, *optional*):
            One per reward model; loaded from the reward model's path when `None`.
        reward_train_dataset ([`~datasets.Dataset`], *optional*):
            The preference pairs the reward model was trained on (any format TRL's `RewardTrainer` reads); needed, and
            only used, with `args.metarm=True`, when the reward model is updated with MetaRM every iteration.
        response_filter (`Callable[[prompt, response], bool]`, *optional*):
            Returns `False` for responses that must never be selected (e.g. degenerate ones); the prompt is the
            dataset's `prompt` value, the response the decoded text.
        callbacks, optimizers, optimizer_cls_and_kwargs, peft_config, quantization_config:
            As for [`~trl.SFTTrainer`].
    """

    _tag_names = ["trl", "sft", "trl-more", "rejection-sampling"]
    _name = "Rejection Sampling"

    def __init__(
        self,
        model: str | PreTrainedModel,
        reward_models: str | nn.Module | Sequence[str | nn.Module],
        args: RejectionSamplingConfig | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        reward_processing_classes: PreTrainedTokenizerBase | Sequence[PreTrainedTokenizerBase | None] | None = None,
        response_filter: ResponseFilter | None = None,
        reward_train_dataset: Dataset | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]] | None = None,
        peft_config=None,
        quantization_config=None,
    ):
        if args is None:
            args = RejectionSamplingConfig(default_output_dir(model, "RJS"))
        args = convert_config(args, RejectionSamplingConfig, SFTConfig)
        check_global_batch_size(args, args.world_size)
        prompts, reward_prompts = _read_prompts(train_dataset)
        # Reward models are loaded before the policy is wrapped but after `args` exists, so that under ZeRO-3 they are
        # partitioned by `zero.Init` like the policy.
        reward_models, reward_tokenizers = load_reward_models(
            reward_models, reward_processing_classes, args.reward_model_init_kwargs
        )

        # SFTTrainer wants a dataset it can prepare; this one-row prompt-completion set only fixes the data format
        # (prompt-completion, hence the completion-only loss by default). It is replaced right after.
        placeholder = Dataset.from_dict({"prompt": [""], "completion": [""]})
        super().__init__(
            model=model,
            args=args,
            train_dataset=placeholder,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            peft_config=peft_config,
            quantization_config=quantization_config,
        )
        if not isinstance(self.processing_class, PreTrainedTokenizerBase):
            raise ValueError("RejectionSamplingTrainer samples text only; pass a tokenizer as `processing_class`.")
        check_process_layout(self.accelerator, "samples could not be gathered across processes")
        keep_4bit_weights_trainable(self.model)  # it trains right after generating without grad

        self._set_prompts(prompts, reward_prompts)
        self.response_filter = response_filter
        self.eos_token_ids = eos_token_ids(self.model, self.processing_class)

        global_batch = args.per_device_train_batch_size * self.accelerator.num_processes
        capacity = max_selected(
            args.selection, args.prompts_per_iteration, args.num_samples_per_prompt, args.top_fraction
        )
        self.train_dataset = IterationDataset(
            -(-capacity // global_batch) * global_batch, self.processing_class.pad_token_id
        )

        for reward_model, tokenizer in zip(reward_models, reward_tokenizers):
            align_pad_token(reward_model, tokenizer)
        if args.reward_objective_weights is not None:
            _steer_reward_models(reward_models, args.reward_objective_weights)
        self.reward_updater = self._make_reward_updater(reward_models, reward_tokenizers, reward_train_dataset)
        if self.reward_updater is not None:
            self.reward_models = [self.reward_updater.model]
        else:
            self.reward_models = [prepare_reward_model(model, self.accelerator) for model in reward_models]
        self.reward_scorer = RewardModelScorer(
            self.reward_models,
            reward_tokenizers,
            ensemble=args.ensemble,
            std_coef=args.ensemble_std_coef,
            batch_size=args.reward_batch_size,
            max_length=args.reward_max_length,
            device=self.accelerator.device,
            calibration=args.ensemble_calibration,
            pair_encoding=args.reward_pair_encoding,
        )
        self.generation_backend = self._make_generation_backend()
        # What produced every iteration is recorded with it (see `iterations.py`); the fingerprints are collective.
        self._gather = gather_parameters(self.accelerator)
        self.initial_policy_fingerprint = model_fingerprint(self.model, self._gather)
        self.reward_model_fingerprints = [
            model_fingerprint(getattr(model, "module", model), self._gather) for model in self.reward_models
        ]
        self.iteration_store = IterationStore(args.output_dir)
        self.current_iteration: int | None = None
        self._reward_model_iteration = -1  # the last iteration whose MetaRM update the reward model holds
        # First in line, so that every other callback's `on_epoch_begin` already sees the iteration's data.
        self.callback_handler.callbacks.insert(0, _IterationBoundary(self))

    # ----------------------------------------------------------------------------------------------------------------
    # Set-up
    # ----------------------------------------------------------------------------------------------------------------

    def _set_prompts(self, prompts: list[Prompt], reward_prompts: list[Prompt]) -> None:
        # The same tokenization SFTTrainer applies to the prompt of a prompt-completion example.
        prompt_ids = [tokenize_prompt(self.processing_class, prompt) for prompt in prompts]
        limit = self.args.max_prompt_length
        kept = [index for index, ids in enumerate(prompt_ids) if limit is None or len(ids) <= limit]
        if len(kept) < len(prompts):
            logger.warning(
                f"{len(prompts) - len(kept)} of {len(prompts)} prompts are longer than max_prompt_length={limit} "
                "tokens and are left out."
            )
        if len(kept) < self.args.prompts_per_iteration:
            raise ValueError(
                f"`prompts_per_iteration={self.args.prompts_per_iteration}` exceeds the {len(kept)} usable prompts of "
                "`train_dataset`: lower it, give more prompts, or raise `max_prompt_length`."
            )
        self.prompts = [prompts[index] for index in kept]
        self.reward_prompts = [reward_prompts[index] for index in kept]
        self.prompt_ids = [prompt_ids[index] for index in kept]
        self.prompt_texts = [self._render_prompt(prompt) for prompt in self.prompts]

    def _render_prompt(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        return self.processing_class.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def _make_reward_updater(
        self,
        reward_models: list[nn.Module],
        tokenizers: list[PreTrainedTokenizerBase],
        preference_dataset: Dataset | None,
    ) -> RewardModelUpdater | None:
        """The MetaRM updater of the reward model, with `metarm=True` (see `trl_more.metarm.reward_model_updates`)."""
        args = self.args
        if not args.metarm:
            return None
        if len(reward_models) != 1:
            raise ValueError(
                f"`metarm=True` updates one reward model, but {len(reward_models)} were given. Use one reward model, or "
                "turn `metarm` off to score with the ensemble."
            )
        return RewardModelUpdater(
            reward_models[0],
            tokenizers[0],
            preference_dataset,
            self.accelerator,
            learning_rate=args.metarm_learning_rate,
            meta_learning_rate=args.metarm_meta_learning_rate,
            batch_size=args.metarm_per_device_train_batch_size,
            meta_batch_size=args.metarm_per_device_meta_batch_size,
            steps=args.metarm_steps_per_iteration,
            abs_epsilon=args.metarm_meta_abs_epsilon,
            max_length=scoring_max_length(reward_models[0], args.reward_max_length),
            max_grad_norm=args.max_grad_norm,
            seed=args.seed,
        )

    def _make_generation_backend(self) -> GenerationBackend:
        args = self.args
        settings = SamplingSettings(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            repetition_penalty=args.repetition_penalty,
        )
        if args.generation_backend == "vllm":
            return VLLMGenerationBackend(
                self.model,
                self.accelerator,
                settings,
                eos_token_ids=self.eos_token_ids,
                gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                max_model_length=args.vllm_max_model_length,
                seed=args.seed,
            )
        return TransformersGenerationBackend(
            self.accelerator,
            settings,
            pad_token_id=self.processing_class.pad_token_id,
            eos_token_ids=self.eos_token_ids,
            batch_size=args.generation_batch_size,
            gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
            show_progress=not args.disable_tqdm,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # One iteration: generate, score, select (or read back), then fill the training set
    # ----------------------------------------------------------------------------------------------------------------

    def iteration_prompt_indices(self, iteration: int) -> list[int]:
        """Positions in the prompt dataset of iteration `iteration`'s prompts (wrapping around at its end)."""
        size = self.args.prompts_per_iteration
        return [(iteration * size + offset) % len(self.prompts) for offset in range(size)]

    def iteration_provenance(self, iteration: int) -> dict[str, Any]:
        """What produces iteration `iteration` in this run (collective: the policy's fingerprint gathers ZeRO-3
        parameters). Training settings shape the policy from the second iteration on, so they are recorded too."""
        args = self.args
        indices = self.iteration_prompt_indices(iteration)
        filter_name = getattr(self.response_filter, "__qualname__", None) if self.response_filter else None
        provenance: dict[str, Any] = {
            "iteration": iteration,
            "global_step": self.state.global_step,
            "initial_policy": self.initial_policy_fingerprint,
            "policy": model_fingerprint(self.model, self._gather),
            "reward_models": self.reward_model_fingerprints,
            "prompts": fingerprint([[self.prompt_texts[i], self.reward_prompts[i]] for i in indices]),
        }
        provenance.update(settings_provenance(args, iteration, filter_name, self.accelerator.num_processes))
        return provenance

    def prepare_iteration(self, iteration: int) -> None:
        """Make the training set hold iteration `iteration`'s selected responses (collective: every process calls it)."""
        if iteration == self.current_iteration:
            return
        provenance = self.iteration_provenance(iteration)
        reuse = [self.iteration_store.is_complete(iteration) if self.accelerator.is_main_process else None]
        if broadcast_object_list(reuse, from_process=0)[0]:
            samples = [self._read_iteration(iteration, provenance) if self.accelerator.is_main_process else None]
            samples = broadcast_object_list(samples, from_process=0)[0]
            logger.info(f"Iteration {iteration}: reusing {self.iteration_store.path(iteration)}.")
            if self.reward_updater is not None:  # the reward model as this iteration left it
                self._load_reward_model(iteration)
            metrics = iteration_metrics(samples)
        else:
            samples, update_metrics = self._sample_iteration(iteration)
            metrics = {**iteration_metrics(samples), **update_metrics}
            if self.reward_updater is not None:
                if self.accelerator.is_main_process:
                    self.iteration_store.begin(iteration)
                self.accelerator.wait_for_everyone()
                self.reward_updater.save(
                    self.iteration_store.staging(iteration) / REWARD_MODEL_FOLDER, self._reward_model_card(iteration)
                )
            if self.accelerator.is_main_process:
                self.iteration_store.write(
                    iteration, samples, metrics, provenance, begun=self.reward_updater is not None
                )
        for name, value in metrics.items():
            trainer_metrics(self, "train")[name].append(value)
        logger.info(f"Iteration {iteration}: " + ", ".join(f"{name}={value:.4g}" for name, value in metrics.items()))
        self.train_dataset.set_examples(self._training_examples(iteration, samples))
        self.current_iteration = iteration

    def _read_iteration(self, iteration: int, provenance: dict[str, Any]) -> list[dict[str, Any]]:
        folder = self.iteration_store.path(iteration)
        differences = provenance_differences(
            self.iteration_store.read_provenance(iteration), provenance, self.state.global_step
        )
        if differences and not self.args.reuse_mismatched_iterations:
            raise ValueError(
                f"{folder} was produced by another policy, reward model or other settings than this run would use:\n  "
                + "\n  ".join(differences)
                + "\nUse a new `output_dir`, delete the iteration folders from this one on to generate them again, or "
                "set `reuse_mismatched_iterations=True` to train on them anyway."
            )
        if differences:
            logger.warning(f"Reusing {folder} although it differs from this run ({'; '.join(differences)}).")
        samples = self.iteration_store.read(iteration)
        expected = sorted(self.iteration_prompt_indices(iteration))
        found = sorted({sample["prompt_index"] for sample in samples})
        per_prompt = len(samples) / max(len(found), 1)
        if found != sorted(set(expected)) or per_prompt != self.args.num_samples_per_prompt:
            raise ValueError(
                f"{self.iteration_store.path(iteration)} holds {len(found)} prompts with {per_prompt:g} samples each, "
                f"not the {len(expected)} prompts x {self.args.num_samples_per_prompt} samples this run would generate "
                "(different prompts, `prompts_per_iteration` or `num_samples_per_prompt`). Use a new `output_dir`, or "
                "delete the iteration folders to generate them again."
            )
        return samples

    def _sample_iteration(self, iteration: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Every sample of the iteration, from all processes, in prompt order, with `selected` set; and the metrics of
        the reward model's update (with `metarm`: after generation, before scoring)."""
        args = self.args
        indices = self.iteration_prompt_indices(iteration)
        positions, num_real = shard_for_process(
            [len(self.prompt_ids[index]) for index in indices],
            self.accelerator.num_processes,
            self.accelerator.process_index,
        )
        local_indices = [indices[position] for position in positions]
        completions = self.generation_backend.generate(
            self.model_wrapped,
            [self.prompt_ids[index] for index in local_indices],
            args.num_samples_per_prompt,
            seed=self.round_seed(iteration),
        )
        pairs = [
            (index, sample, ids)
            for index, samples in zip(local_indices, completions)
            for sample, ids in enumerate(samples)
        ]
        responses = [self.processing_class.decode(ids, skip_special_tokens=True) for _, _, ids in pairs]
        update_metrics = {}
        if self.reward_updater is not None:
            num_real_pairs = num_real * args.num_samples_per_prompt
            update_metrics = self._update_reward_model(iteration, pairs[:num_real_pairs], responses[:num_real_pairs])
        with self.accelerator.autocast():
            scores = self.reward_scorer.score([self.reward_prompts[index] for index, _, _ in pairs], responses)

        local_samples = []
        num_real_pairs = num_real * args.num_samples_per_prompt  # the rest answer repeated prompts: dropped
        for (index, sample, ids), response, rewards, reward in zip(
            pairs[:num_real_pairs], responses, scores.per_model.tolist(), scores.combined.tolist()
        ):
            keep = self.response_filter is None or bool(self.response_filter(self.prompts[index], response))
            local_samples.append(
                {
                    "iteration": iteration,
                    "prompt_index": index,
                    "sample_index": sample,
                    "process_index": self.accelerator.process_index,
                    "prompt": self.prompt_texts[index],
                    "response": response,
                    "response_ids": ids,
                    "finished": bool(ids) and ids[-1] in self.eos_token_ids,
                    "rewards": rewards,
                    "reward": reward,
                    "kept_by_filter": keep,
                }
            )
        samples = gather_object(local_samples) if self.accelerator.num_processes > 1 else local_samples
        order = {index: position for position, index in enumerate(indices)}
        samples.sort(key=lambda sample: (order[sample["prompt_index"]], sample["sample_index"]))

        eligible = [
            sample["kept_by_filter"] and (args.min_reward is None or sample["reward"] >= args.min_reward)
            for sample in samples
        ]
        selected = set(
            select_samples(
                [sample["prompt_index"] for sample in samples],
                [sample["reward"] for sample in samples],
                eligible,
                strategy=args.selection,
                top_fraction=args.top_fraction,
            )
        )
        for position, sample in enumerate(samples):
            sample["eligible"] = eligible[position]
            sample["selected"] = position in selected
        return samples, update_metrics

    def _update_reward_model(
        self, iteration: int, pairs: list[tuple[int, int, list[int]]], responses: list[str]
    ) -> dict[str, float]:
        """MetaRM on this iteration's responses (gathered from every process: the meta data is the whole
        iteration's), tokenized as the reward model reads them. A resumed run first reads back the reward model of
        the previous iteration, whose update it did not run."""
        if iteration > 0 and self._reward_model_iteration != iteration - 1:
            self._load_reward_model(iteration - 1)
        local = [(index, sample, response) for (index, sample, _), response in zip(pairs, responses)]
        gathered = gather_object(local) if self.accelerator.num_processes > 1 else local
        by_prompt: dict[int, list[tuple[int, str]]] = {}
        for index, sample, response in gathered:
            by_prompt.setdefault(index, []).append((sample, response))
        tokenizer = self.reward_updater.tokenizer
        rows = []
        for index in self.iteration_prompt_indices(iteration):
            row = []
            for _, response in sorted(by_prompt[index]):
                ids, prompt_length = tokenize_scored_response(tokenizer, self.reward_prompts[index], response or " ")
                row.append(fit_to_max_length(ids, prompt_length, self.reward_updater.max_length, "keep_end")[0])
            rows.append(row)
        metrics = self.reward_updater.update(iteration, rows, show_progress=not self.args.disable_tqdm)
        self._reward_model_iteration = iteration
        logger.info(
            f"Iteration {iteration}: reward model updated ({', '.join(f'{k}={v:.4g}' for k, v in metrics.items())})."
        )
        return metrics

    def _load_reward_model(self, iteration: int) -> None:
        folder = self.iteration_store.path(iteration) / REWARD_MODEL_FOLDER
        if not folder.is_dir():
            raise ValueError(
                f"{self.iteration_store.path(iteration)} has no {REWARD_MODEL_FOLDER}/, so the reward model as MetaRM "
                "left it after that iteration is unknown (the folder was written without `metarm`). Use a new "
                "`output_dir`, or delete the iteration folders from this one on to generate them again."
            )
        self.reward_updater.load(folder)
        self._reward_model_iteration = iteration

    def _reward_model_card(self, iteration: int) -> str:
        base = getattr(self.reward_updater.module.config, "name_or_path", None) or "the initial reward model"
        return updated_reward_model_card(self.args, iteration, base)

    def round_seed(self, iteration: int) -> int:
        """The sampling seed of this process in iteration `iteration`: a function of (`seed`, iteration, process)
        only, so that a resumed run samples what the uninterrupted one did."""
        entropy = [self.args.seed, iteration, self.accelerator.process_index]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    def _training_examples(self, iteration: int, samples: list[dict[str, Any]]) -> list[dict[str, list[int]]]:
        """The selected responses as SFT examples: prompt + response tokens, labels -100 on the prompt."""
        selected = [sample for sample in samples if sample["selected"]]
        if not selected:
            logger.warning(f"Iteration {iteration}: no response was selected; the iteration trains on nothing.")
            return []
        prompts = [self.prompt_ids[sample["prompt_index"]] for sample in selected]
        dataset = Dataset.from_dict(
            {
                "input_ids": [prompt + sample["response_ids"] for prompt, sample in zip(prompts, selected)],
                "completion_mask": [
                    [0] * len(prompt) + [1] * len(sample["response_ids"]) for prompt, sample in zip(prompts, selected)
                ],
            }
        )
        # SFTTrainer's own preparation: labels from the completion mask, truncation to `max_length`, and dropping of
        # examples left without a response token. Its progress bars would interrupt the training bar every iteration.
        with _datasets_progress_bars_disabled():
            prepared = prepare_sft_dataset(self, dataset, f"iteration-{iteration:02d}")
        if len(prepared) < len(selected):
            logger.warning(
                f"Iteration {iteration}: {len(selected) - len(prepared)} of {len(selected)} selected responses start "
                f"beyond max_length={self.args.max_length} tokens and are not trained on."
            )
        return prepared.select_columns(["input_ids", "labels"]).to_list()


def _steer_reward_models(reward_models: Sequence[nn.Module], objective_weights: dict[str, float]) -> None:
    """Fixed objective weights for every multi-objective reward model (their gate is not used)."""
    steerable = [model for model in reward_models if callable(getattr(model, "set_steering", None))]
    if not steerable:
        raise ValueError(
            "`reward_objective_weights` steers multi-objective reward models (`MultiObjectiveRewardModel`), but none "
            "of the reward models is one. Remove the option, or add such a reward model."
        )
    for model in steerable:
        model.set_steering(objective_weights)  # an unknown objective name raises here, naming the known ones


def _read_prompts(dataset: Dataset | None) -> tuple[list[Prompt], list[Prompt]]:
    if dataset is None:
        raise ValueError("`train_dataset` is required: a dataset of prompts with a `prompt` column.")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`train_dataset` must be a datasets.Dataset of prompts, got {type(dataset).__name__}.")
    if "prompt" not in dataset.column_names:
        raise ValueError(
            f"`train_dataset` needs a `prompt` column (found {dataset.column_names}); rejection sampling generates "
            "the responses itself."
        )
    prompts = list(dataset["prompt"])
    reward_prompts = list(dataset["reward_prompt"]) if "reward_prompt" in dataset.column_names else prompts
    return prompts, reward_prompts


@contextmanager
def _datasets_progress_bars_disabled() -> Iterator[None]:
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
