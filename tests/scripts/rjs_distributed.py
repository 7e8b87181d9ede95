"""Rejection sampling under `accelerate launch` with several processes, for tests/test_rejection_sampling_distributed.py.

Runs a 2-iteration RJS loop with tiny models on 5 prompts (not divisible by the number of processes) and writes, per
process, `report-rank<k>.json` in the output folder: every `generate` call (batch shape), the examples each
iteration's training set holds, the examples this process trained on, the policy's parameters before and after
training, and the shapes of a few parameters outside any gather (`(0,)` when ZeRO-3 partitions them). The test asserts on these reports and on the iteration files.

Usage:
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3_cpu_test.yaml \
        tests/scripts/rjs_distributed.py OUTPUT_DIR
    accelerate launch --multi_gpu --num_processes 2 tests/scripts/rjs_distributed.py OUTPUT_DIR --use_cpu
(`--metarm` also updates the reward model with MetaRM every iteration and reports its parameters before and after;
`--use_cpu` is what makes accelerate run DDP over gloo on CPU; without it the processes would not talk to each other.)
"""

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from datasets import Dataset
from transformers import GenerationMixin, TrainerCallback

from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer
from trl_more.cli.common import leave_process_group
from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer, toy_preference_sources


NUM_PROMPTS = 5


def main(output_dir: str, use_cpu: bool, metarm: bool) -> None:
    metarm_options = (
        dict(
            metarm=True,
            metarm_learning_rate=1e-3,
            metarm_meta_learning_rate=1.0,
            metarm_per_device_train_batch_size=2,
            metarm_per_device_meta_batch_size=2,
            metarm_steps_per_iteration=2,
        )
        if metarm
        else {}
    )
    args = RejectionSamplingConfig(
        output_dir,
        num_iterations=2,
        prompts_per_iteration=NUM_PROMPTS,
        num_samples_per_prompt=3,
        max_new_tokens=6,
        generation_batch_size=2,
        reward_batch_size=4,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        gradient_checkpointing=False,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        ddp_backend="gloo",
        use_cpu=use_cpu,
        seed=0,
        **metarm_options,
    )
    # Built after the config, so that under ZeRO-3 `zero.Init` partitions them as it would a model loaded by path.
    tokenizer = tiny_tokenizer()
    policy = tiny_causal_lm("qwen2", tokenizer)
    reward_model = tiny_reward_model("llama", tokenizer, seed=1)
    prompts = Dataset.from_dict(
        {"prompt": [f"Human: question number {i}{' again' * i}? Assistant:" for i in range(10)]}
    )

    report = {"generate_calls": [], "iteration_examples": {}, "trained_examples": {}}
    original_generate = GenerationMixin.generate

    def counting_generate(self, *args, **kwargs):
        # The lm_head weight's shape inside generate: full when the parameters are gathered for the round.
        report["generate_calls"].append([*kwargs["input_ids"].shape, *self.lm_head.weight.shape])
        return original_generate(self, *args, **kwargs)

    GenerationMixin.generate = counting_generate

    trainer = RejectionSamplingTrainer(
        policy,
        reward_model,
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
        callbacks=[_RecordIterationExamples(report)],
        reward_train_dataset=toy_preference_sources(8)["polite"] if metarm else None,
    )
    collate = trainer.data_collator

    def recording_collator(examples):
        trained = report["trained_examples"].setdefault(str(trainer.current_iteration), [])
        trained.extend(
            example["input_ids"] for example in examples if any(label != -100 for label in example["labels"])
        )
        return collate(examples)

    trainer.data_collator = recording_collator
    report["parameters_before"] = {name: p.detach().float().sum().item() for name, p in _full_parameters(trainer)}
    reward_module = trainer.reward_updater.module if metarm else None
    if metarm:
        report["reward_parameters_before"] = _parameter_sums(trainer, reward_module)
    with _counting_gathers(report):
        trainer.train()
    report["parameters_after"] = {name: p.detach().float().sum().item() for name, p in _full_parameters(trainer)}
    if metarm:
        report["reward_parameters_after"] = _parameter_sums(trainer, reward_module)
    report["world_size"] = trainer.accelerator.num_processes
    report["zero_stage"] = trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else 0
    report["partitioned_shapes"] = {
        "policy.lm_head.weight": list(trainer.model.lm_head.weight.shape),
        "reward.layers.0.mlp.up_proj.weight": list(
            trainer.reward_models[0].module.model.layers[0].mlp.up_proj.weight.shape
        )
        if trainer.is_deepspeed_enabled
        else None,
    }
    if report["zero_stage"] == 3:  # otherwise every ZeRO-3 check below would pass on unpartitioned tensors
        assert set(map(tuple, report["partitioned_shapes"].values())) == {(0,)}, report["partitioned_shapes"]
    trainer.save_model(str(Path(output_dir) / "final"))
    rank = trainer.accelerator.process_index
    (Path(output_dir) / f"report-rank{rank}.json").write_text(json.dumps(report))
    leave_process_group()  # no process exits while another still writes (or uses the process group)


class _RecordIterationExamples(TrainerCallback):
    """Runs after the trainer's own iteration callback, so the training set already holds the iteration."""

    def __init__(self, report):
        self.report = report

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = train_dataloader.dataset
        self.report["iteration_examples"][str(len(self.report["iteration_examples"]))] = [
            example["input_ids"] for example in dataset.examples
        ]


@contextmanager
def _counting_gathers(report):
    """Counts `deepspeed.zero.GatheredParameters` contexts opened with the whole model (hundreds of tensors)."""
    report["whole_model_gathers"] = 0
    if "deepspeed" not in sys.modules:
        yield
        return
    import deepspeed

    original = deepspeed.zero.GatheredParameters

    def counting(params, *args, **kwargs):
        params = list(params) if not isinstance(params, torch.nn.Parameter) else [params]
        report["whole_model_gathers"] += len(params) > 20
        return original(params, *args, **kwargs)

    deepspeed.zero.GatheredParameters = counting
    try:
        yield
    finally:
        deepspeed.zero.GatheredParameters = original


def _parameter_sums(trainer, module):
    return {name: p.detach().float().sum().item() for name, p in _full_parameters(trainer, module)}


def _full_parameters(trainer, model=None):
    """The policy's (or `model`'s) parameters, gathered under ZeRO-3 (collective: every process calls it)."""
    model = model if model is not None else trainer.accelerator.unwrap_model(trainer.model_wrapped)
    parameters = list(model.named_parameters())
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in parameters]):
            return [(name, p.detach().clone()) for name, p in parameters]
    return [(name, p.detach().clone()) for name, p in parameters]


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], use_cpu="--use_cpu" in sys.argv[2:], metarm="--metarm" in sys.argv[2:])
