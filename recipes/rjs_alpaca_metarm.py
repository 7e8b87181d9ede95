"""Rejection sampling (RJS) of Alpaca-7B with a MetaRM reward model that follows the policy ("Secrets of RLHF Part II",
Section 4): before every iteration's responses are scored, the reward model takes MetaRM steps on them (unlabeled)
and on its HH-RLHF preference pairs, so that it keeps telling apart what the improving policy now writes.

Everything else is recipes/rjs_alpaca.py (the policy's batch included: 128 per optimizer step). The MetaRM settings are the paper's: alpha = eta = 5e-6, 16 preference pairs
and 16 meta prompts per step, k = 5 responses per prompt (hence 5 samples per prompt, where plain RJS uses 4), one pass
over each iteration's prompts, 4 rounds. The reward model is trained in full (bf16, its own AdamW); with ZeRO-3 it is
partitioned like the policy and keeps one DeepSpeed engine for the whole run.

On 8 GPUs (DeepSpeed ZeRO-3):

    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml recipes/rjs_alpaca_metarm.py \\
        --model_name_or_path <alpaca-7b folder or Hub id> --reward_model_path <reward model folder>

Every iteration's updated reward model is saved, with a model card, in `<output_dir>/iteration-XX/reward_model`.
Smoke run on CPU with tiny random models and the offline data of ../shared/data (a few minutes):
`python recipes/rjs_alpaca_metarm.py --smoke` (recipes/rjs_alpaca_smoke.yaml, then recipes/rjs_alpaca_metarm_smoke.yaml).
"""

from __future__ import annotations

import runpy
from pathlib import Path


HERE = Path(__file__).resolve().parent
RJS_ALPACA = runpy.run_path(str(HERE / "rjs_alpaca.py"))

PAPER_DEFAULTS = {
    **RJS_ALPACA["PAPER_DEFAULTS"],
    "num_iterations": 4,
    "num_samples_per_prompt": 5,
    "metarm": True,
    "metarm_learning_rate": 5e-6,
    "metarm_meta_learning_rate": 5e-6,
    "metarm_per_device_train_batch_size": 16,
    "metarm_per_device_meta_batch_size": 16,
    "metarm_steps_per_iteration": None,
    "output_dir": "runs/rjs-alpaca-metarm",
}


def main(argv: list[str] | None = None):
    return RJS_ALPACA["main"](argv, PAPER_DEFAULTS, (HERE / "rjs_alpaca_metarm_smoke.yaml",))


if __name__ == "__main__":
    main()
