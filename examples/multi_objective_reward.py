"""A multi-objective reward model with gated scalarization (ArmoRM) in both stages, offline on a CPU in about a minute.

1. Stage 1: the regression layer predicts Topical-Chat's six ratings from frozen MiniLM features (closed-form ridge).
2. Stage 2: the gate learns, from HH-RLHF preference pairs, how to weigh the six objectives for each prompt.
3. Scoring: a score, its per-objective breakdown, and a score steered with fixed objective weights.
4. Sharing: saved with its code, it loads through `AutoModelForSequenceClassification` with `trust_remote_code=True`.

    python examples/multi_objective_reward.py [--data_dir ../shared/data] [--output_dir /tmp/armo-minilm]
    python examples/multi_objective_reward.py --tiny   # the same steps on a few dozen examples (seconds)
"""

import argparse
import os
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_more.data import RATING_SCALES, load_preference_source
from trl_more.multi_objective import MultiObjectiveRewardModel
from trl_more.multi_objective.features import extract_features
from trl_more.multi_objective.multi_objective_config import MultiObjectiveRewardConfig
from trl_more.multi_objective.multi_objective_trainer import MultiObjectiveRewardTrainer
from trl_more.multi_objective.regression import fit_regression_layer, prepare_rating_dataset, r2_per_objective
from trl_more.pretrained import minilm_path
from trl_more.tokenization import tokenize_prompt


parser = argparse.ArgumentParser()
parser.add_argument("--data_dir", default=os.environ.get("TRL_MORE_SHARED_DATA", "../shared/data"))
parser.add_argument("--output_dir", default="/tmp/armo-minilm")
parser.add_argument("--tiny", action="store_true", help="Every step on a few dozen examples (seconds).")
options = parser.parse_args()
num_ratings, num_pairs, num_steps = (40, 40, 3) if options.tiny else (None, 400, 60)
data = Path(options.data_dir)
torch.manual_seed(0)  # the gate's initial weights

# The backbone: a BERT-style sentence encoder, so the regression layer averages the response tokens.
tokenizer = AutoTokenizer.from_pretrained(minilm_path())
tokenizer.eos_token = tokenizer.sep_token  # TRL appends the eos token to plain-text sequences
scales = RATING_SCALES["topical-chat"]
objectives = list(scales)
model = MultiObjectiveRewardModel.from_backbone(
    str(minilm_path()), objectives, pooling="mean", regression_bias=True, gate_hidden_sizes=[256, 256]
)

# Stage 1: ratings scaled to [0, 1], features cached once, ridge alpha chosen per objective on a validation split.
ratings = load_preference_source("topical-chat", path=data / "topical_chat" / "topical_chat.json").dataset
ratings = ratings.select(range(num_ratings or len(ratings)))
prepared = prepare_rating_dataset(ratings, tokenizer, objectives, scales, max_length=128, truncation_mode="keep_end")
splits = prepared.train_test_split(test_size=0.2, seed=0)
train, validation = splits["train"], splits["test"]
features = {
    name: extract_features(model, split["input_ids"], split["prompt_length"], batch_size=32).pooled
    for name, split in (("train", train), ("validation", validation))
}
fit_regression_layer(model, features["train"], train["labels"], features["validation"], validation["labels"])
with torch.no_grad():
    predictions = model.regression_layer(features["validation"])
r2 = r2_per_objective(predictions, validation["labels"], train["labels"], objectives)
print("Validation R^2:", {name.removeprefix("topical-chat-"): round(value, 3) for name, value in r2.items()})
model.config.evaluation_results = {"validation R^2 (Topical-Chat)": r2}  # shown in the model card

# Stage 2: only the gate (and beta) trains, on cached features of the frozen backbone.
pairs = load_preference_source("hh-helpful", path=data / "hh_rlhf" / "helpful-base.test.jsonl.gz").dataset
pairs = pairs.filter(lambda row: len(tokenizer(row["prompt"])["input_ids"]) < 96).select(range(num_pairs))
pairs = pairs.train_test_split(test_size=0.2, seed=0)
args = MultiObjectiveRewardConfig(
    options.output_dir,
    cache_features=True,
    max_length=192,
    max_steps=num_steps,
    per_device_train_batch_size=32,
    report_to="none",
    save_strategy="no",
    logging_steps=20,
)
trainer = MultiObjectiveRewardTrainer(
    model, args=args, train_dataset=pairs["train"], eval_dataset=pairs["test"], processing_class=tokenizer
)
trainer.train()
print("Held-out preference accuracy:", round(trainer.evaluate()["eval_accuracy"], 3))

# Scoring: the prompt length tells the gate where the prompt ends.
prompt, response = pairs["test"][0]["prompt"], pairs["test"][0]["chosen"]
inputs = tokenizer(prompt + response, return_tensors="pt", truncation=True, max_length=192)
prompt_lengths = torch.tensor([len(tokenize_prompt(tokenizer, prompt))])
with torch.no_grad():
    outputs = model(**inputs, prompt_lengths=prompt_lengths)
    steered = model(**inputs, prompt_lengths=prompt_lengths, objective_weights={"topical-chat-groundedness": 1.0})
print(f"Score {outputs.logits[0, 0]:.4f}; contributions:", model.score_breakdown(outputs)[0])
print(f"Steered to groundedness only: {steered.logits[0, 0]:.4f}")

# Sharing: weights, config, tokenizer, model card and the modeling code with its auto_map.
model.save_pretrained(options.output_dir, tokenizer=tokenizer)
loaded = AutoModelForSequenceClassification.from_pretrained(options.output_dir, trust_remote_code=True)
with torch.no_grad():
    assert torch.equal(loaded(**inputs, prompt_lengths=prompt_lengths).logits, outputs.logits)
print(f"Saved to {options.output_dir} (see README.md there); reloaded through the Auto class with the same score.")
