"""Rejection sampling (RJS / RAFT) in a few lines: sample responses, score them, keep the best, fine-tune, repeat.

Without arguments it runs on a CPU in about a minute with a tiny random policy and two tiny random reward models (an
ensemble, so the rewards mean nothing). Give real models by path or Hub id for a real run:

    python examples/rejection_sampling.py
    python examples/rejection_sampling.py --tiny   # one iteration on two prompts (seconds)
    python examples/rejection_sampling.py --policy Qwen/Qwen2.5-0.5B-Instruct --reward_models my-rm-a my-rm-b

Every iteration's samples, rewards and selections land in `<output_dir>/iteration-XX/`.
"""

import argparse
import json
from pathlib import Path

from datasets import Dataset

from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer
from trl_more.rejection_sampling import is_degenerate_response


QUESTIONS = [
    "How do I keep basil fresh?",
    "Can you suggest a name for a grey cat?",
    "What should I pack for a weekend hike?",
    "How can I fall asleep faster?",
    "Why do leaves change colour in autumn?",
    "What is a good first programming language?",
    "How do I make my coffee less bitter?",
    "Why is the sky blue?",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="Policy path or Hub id (default: a tiny random model).")
    parser.add_argument("--reward_models", nargs="+", help="Reward model paths or Hub ids (default: two tiny ones).")
    parser.add_argument("--output_dir", default="runs/rejection-sampling-example")
    parser.add_argument("--tiny", action="store_true", help="One iteration on two prompts, short samples (seconds).")
    cli = parser.parse_args()

    if bool(cli.policy) != bool(cli.reward_models):
        parser.error("give both --policy and --reward_models, or neither (tiny random models)")
    if cli.policy:
        policy, reward_models, tokenizer, reward_tokenizers = cli.policy, cli.reward_models, None, None
    else:
        from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        policy = tiny_causal_lm("qwen2", tokenizer)
        reward_models = [tiny_reward_model("qwen2", tokenizer, seed=1), tiny_reward_model("llama", tokenizer, seed=2)]
        reward_tokenizers = [tokenizer, tokenizer]

    # The policy and the reward models read the same question in the same HH format here; a `reward_prompt` column
    # would let the reward models read it differently (e.g. when the policy sees an instruction template).
    prompts = Dataset.from_dict({"prompt": [f"\n\nHuman: {question}\n\nAssistant:" for question in QUESTIONS]})
    config = RejectionSamplingConfig(
        cli.output_dir,
        num_iterations=1 if cli.tiny else 2,
        prompts_per_iteration=2 if cli.tiny else 4,  # iteration 0 takes prompts 0-3, iteration 1 prompts 4-7
        num_samples_per_prompt=4,  # best-of-4, as in the paper
        temperature=1.0,
        max_new_tokens=8 if cli.tiny else 16,
        ensemble="mean_minus_std",  # penalise responses the reward models disagree on
        # Real reward models are put on one scale by their stored reward statistics (`trl-more evaluate
        # --calibration_sources ... --save_calibrated_model`); the tiny random ones have none, so they combine raw.
        ensemble_calibration="stored" if cli.policy else "none",
        per_device_train_batch_size=4,
        learning_rate=1e-4,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
    )
    trainer = RejectionSamplingTrainer(
        model=policy,
        reward_models=reward_models,
        args=config,
        train_dataset=prompts,
        processing_class=tokenizer,
        reward_processing_classes=reward_tokenizers,
        response_filter=lambda prompt, response: not is_degenerate_response(response),
    )
    trainer.train()

    for iteration in range(config.num_iterations):
        metrics = json.loads((Path(cli.output_dir) / f"iteration-{iteration:02d}" / "metrics.json").read_text())
        print(f"iteration {iteration}: " + ", ".join(f"{name[4:]}={value:.3g}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
