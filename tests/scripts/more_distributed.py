"""MORE (or, with `--meta_learning_rate`, MetaRM) training under `accelerate launch` (DDP or DeepSpeed ZeRO-3),
recording the lambda every rank computes and the meta step's J.

Writes `<output_dir>/lambda_rank<r>.json` (the weights each rank solved for at every step) and, with `--check_zero3`,
asserts on every step that the reward head weight is really partitioned (shape (0,) outside a gather).
"""

import argparse
import json
import os

from transformers import TrainerCallback

from trl_more import MetaRMConfig, MetaRMTrainer, MORERewardConfig, MORERewardTrainer
from trl_more.cli.common import leave_process_group
from trl_more.more.lambdas import MinNormLambda
from trl_more.reward_head import find_reward_head
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_meta_dataset, toy_preference_sources


class RecordingLambda(MinNormLambda):
    """The trainer's lambda, also keeping every solution it returns."""

    def __init__(self, min_norm_lambda: MinNormLambda):
        self.__dict__.update(min_norm_lambda.__dict__)
        self.solved = []

    def __call__(self, gradients, losses):
        lambdas = super().__call__(gradients, losses)
        self.solved.append(lambdas.tolist())
        return lambdas


class AssertHeadPartitioned(TrainerCallback):
    def __init__(self, head):
        self.head, self.checked = head, 0

    def on_step_end(self, args, state, control, **kwargs):
        weight = self.head.weight
        assert weight.numel() == 0 and hasattr(weight, "ds_id"), f"head weight not partitioned: {weight.shape}"
        self.checked += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--per_device_train_batch_size", type=int, default=3)
    parser.add_argument("--max_steps", type=int, default=3)
    parser.add_argument("--check_zero3", action="store_true")
    parser.add_argument("--contrastive_loss", default=None, choices=["simcse", "swav"])
    parser.add_argument("--contrastive_representation", default="pair", choices=["pair", "difference"])
    parser.add_argument("--pair_encoding", default="separate", choices=["separate", "shared_prompt"])
    parser.add_argument("--meta_learning_rate", type=float, default=None, help="Train with MetaRM.")
    parser.add_argument("--per_device_meta_batch_size", type=int, default=2)
    parser.add_argument("--model_path", default=None, help="Load the model from this folder inside the trainer.")
    parser.add_argument("--text_regularization_coefficient", type=float, default=0.0)
    options = parser.parse_args()

    tokenizer = tiny_tokenizer()
    # Built before the training arguments: once a DeepSpeed ZeRO-3 config exists, transformers initialises new
    # models partitioned (zero.Init), with different random weights than the single-process reference run.
    # A path is loaded by the trainer, after the config: under ZeRO-3 the model is then partitioned from the start.
    model = options.model_path or tiny_reward_model("qwen2", tokenizer, seed=3)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    metarm = options.meta_learning_rate is not None
    meta_options = (
        dict(
            meta_learning_rate=options.meta_learning_rate,
            meta_num_responses=3,
            per_device_meta_batch_size=options.per_device_meta_batch_size,
        )
        if metarm
        else {}
    )
    args = (MetaRMConfig if metarm else MORERewardConfig)(
        **meta_options,
        output_dir=options.output_dir,
        per_device_train_batch_size=options.per_device_train_batch_size,
        max_steps=options.max_steps,
        learning_rate=1e-3,
        logging_steps=1,
        lambda_momentum=0.7,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        # CPU multi-process training: DDP needs `use_cpu` (accelerate's MULTI_CPU), ZeRO needs the gloo backend.
        use_cpu=distributed and not options.check_zero3,
        ddp_backend="gloo" if distributed else None,
        contrastive_loss=options.contrastive_loss,
        contrastive_representation=options.contrastive_representation,
        pair_encoding=options.pair_encoding,
        contrastive_dropout=0.1,
        swav_prototypes=4,
        text_regularization_coefficient=options.text_regularization_coefficient,
        seed=0,
    )
    trainer = (MetaRMTrainer if metarm else MORERewardTrainer)(
        model=model,
        args=args,
        train_dataset=toy_preference_sources(12),
        processing_class=tokenizer,
        **({"meta_dataset": toy_meta_dataset(8, 3)} if metarm else {}),
    )
    embeddings = trainer.model.get_input_embeddings().weight
    partitioned_at_init = embeddings.numel() == 0 and hasattr(embeddings, "ds_id")
    trainer.min_norm_lambda = RecordingLambda(trainer.min_norm_lambda)
    callback = None
    if options.check_zero3:
        callback = AssertHeadPartitioned(find_reward_head(trainer.model))
        trainer.add_callback(callback)
    trainer.train()
    rank = trainer.accelerator.process_index
    record = {"lambda": trainer.min_norm_lambda.solved, "world_size": trainer.accelerator.num_processes}
    record["contrastive_losses"] = [
        entry["loss/contrastive"] for entry in trainer.state.log_history if "loss/contrastive" in entry
    ]
    record["meta_differences"] = [
        entry["meta/difference"] for entry in trainer.state.log_history if "meta/difference" in entry
    ]
    record["embeddings_partitioned_at_init"] = partitioned_at_init
    record["text_losses"] = [entry["loss/text"] for entry in trainer.state.log_history if "loss/text" in entry]
    if trainer.text_head is not None:
        record["text_head"] = trainer.text_head.weight.detach().cpu().tolist()
    if trainer.swav_prototypes is not None:
        record["prototypes"] = trainer.swav_prototypes.weight.detach().cpu().tolist()
    if callback is not None:
        record["partition_checks"] = callback.checked
    with open(os.path.join(options.output_dir, f"lambda_rank{rank}.json"), "w") as file:
        json.dump(record, file)
    trainer.save_model(os.path.join(options.output_dir, "final"))
    leave_process_group()


if __name__ == "__main__":
    main()
