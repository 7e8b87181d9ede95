"""Train a tiny MORE reward model and SIGKILL this process while it writes a chosen checkpoint.

    python killed_while_checkpointing.py OUTPUT_DIR KILL_AT_STEP

The kill comes as transformers starts writing `checkpoint-<KILL_AT_STEP>/trainer_state.json`, the last file of a
checkpoint: the folder then holds the model and the optimizer state but no trainer state, as after a real crash.
"""

import os
import signal
import sys

from transformers.trainer_callback import TrainerState

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


def main() -> None:
    output_dir, kill_at = sys.argv[1], int(sys.argv[2])
    original = TrainerState.save_to_json

    def save_to_json(self, json_path):
        if f"checkpoint-{kill_at}" in json_path:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, json_path)

    TrainerState.save_to_json = save_to_json
    tokenizer = tiny_tokenizer()
    args = MORERewardConfig(
        output_dir,
        per_device_train_batch_size=6,
        max_steps=6,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="steps",
        save_steps=2,
        lambda_momentum=0.5,
        report_to="none",
        bf16=False,
        seed=0,
    )
    trainer = MORERewardTrainer(
        tiny_reward_model("qwen2", tokenizer),
        args,
        train_dataset=toy_preference_sources(12),
        processing_class=tokenizer,
    )
    trainer.train()


if __name__ == "__main__":
    main()
