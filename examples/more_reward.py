"""MORE reward training on three preference sources, evaluated per source, saved with its model card.

Offline by default: HH-RLHF helpful, HH-RLHF harmless and the UltraFeedback sample from ../shared/data with the
pretrained MiniLM encoder (a few minutes on 2 CPU cores). `--tiny` uses a tiny random model and the toy sources
(seconds). Every batch holds 4 pairs of each source; the per-source losses are weighted by MORE's lambda
(`--lambda_method uniform`: the MultiTask baseline). The output folder gets the model, its tokenizer and a model card
(README.md: sources, method, per-source accuracy and ECE, the lambda plot, how to load it); `--push_to_hub
--hub_model_id you/name` uploads it.

    python examples/more_reward.py
    python examples/more_reward.py --lambda_method uniform --output_dir runs/example-multitask
    python examples/more_reward.py --tiny --output_dir /tmp/more-tiny
"""

import argparse
import os
from pathlib import Path

from transformers import AutoTokenizer

from trl_more import MORERewardConfig, MORERewardTrainer, PreferenceMetrics
from trl_more.data import load_mixture, mix_sources
from trl_more.pretrained import minilm_path
from trl_more.testing import save_tiny_reward_model, write_toy_mixture


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--data_dir", default=os.environ.get("TRL_MORE_SHARED_DATA", "../shared/data"))
parser.add_argument("--output_dir", default="runs/example-more")
parser.add_argument("--lambda_method", default="min_norm", choices=["min_norm", "uniform"])
parser.add_argument("--max_steps", type=int, help="Training steps (default: 100, or 3 with --tiny).")
parser.add_argument("--tiny", action="store_true", help="A tiny random model and the toy sources (seconds).")
parser.add_argument("--push_to_hub", action="store_true")
parser.add_argument("--hub_model_id", default=None)
options = parser.parse_args()
data = Path(options.data_dir)

if options.tiny:
    model_path = save_tiny_reward_model(Path(options.output_dir) / "tiny-base-model")
    mixture = load_mixture(write_toy_mixture(Path(options.output_dir) / "toy-data", num_pairs=48, test_size=12))
else:
    model_path = minilm_path()
    mixture = mix_sources(
        [
            {"name": "hh-helpful", "path": data / "hh_rlhf" / "helpful-base.test.jsonl.gz"},
            {"name": "hh-harmless", "path": data / "hh_rlhf" / "harmless-base.test.jsonl.gz"},
            {
                "name": "ultrafeedback",
                "path": data / "ultrafeedback" / "train_clean.jsonl",
                "test_path": data / "ultrafeedback" / "eval_clean.jsonl",
                "test_size": 100,
            },
        ],
        test_size=100,  # held-out pairs per source
    )
print(mixture.summary)

tokenizer = AutoTokenizer.from_pretrained(model_path)
args = MORERewardConfig(
    options.output_dir,
    lambda_method=options.lambda_method,
    samples_per_source=None if options.tiny else 600,  # every real source resampled to 600 training pairs
    per_device_train_batch_size=12,  # 4 pairs of each of the 3 sources in every batch
    per_device_eval_batch_size=32,
    max_steps=options.max_steps or (3 if options.tiny else 100),
    learning_rate=1e-4,
    max_length=128,
    truncation_mode="keep_end",  # keep the end of long pairs (where the reward is read) instead of dropping them
    eos_token=None if tokenizer.eos_token else tokenizer.sep_token,  # BERT-style encoders have no eos token
    logging_steps=5 if not options.tiny else 1,
    eval_strategy="no",
    save_strategy="no",
    activation_checkpointing=False,
    report_to="none",
    push_to_hub=options.push_to_hub,
    hub_model_id=options.hub_model_id,
)
trainer = MORERewardTrainer(
    model=str(model_path),
    args=args,
    train_dataset=mixture.train,  # one dataset with a `source` column
    eval_dataset=mixture.test_by_source(),  # {source: held-out pairs}: metrics per source
    processing_class=tokenizer,
    **PreferenceMetrics().trainer_kwargs(),  # accuracy, ECE, ... for every held-out source
)
trainer.train()
metrics = trainer.evaluate()
for source in mixture.test_by_source():
    accuracy, ece = metrics[f"eval_{source}_preference_accuracy"], metrics[f"eval_{source}_ece"]
    print(f"{source:>14}: accuracy {100 * accuracy:.1f}%, ECE {ece:.4f}")

if options.push_to_hub:
    trainer.push_to_hub()  # saves, writes the card, uploads; a failed upload keeps the local folder and says so
else:
    trainer.save_model()
    trainer.create_model_card()  # README.md (and lambda.png) next to the model
print(f"Model and model card in {options.output_dir}.")
