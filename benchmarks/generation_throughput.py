"""Throughput of rejection sampling's generation and scoring paths against naive loops, on the same tiny models.

Generation (generated tokens per second, `TransformersGenerationBackend` on a tiny random Qwen2 policy):
- batched, length-sorted (what `RejectionSamplingTrainer` runs): `--batch_size` prompts per `generate` call, all
  samples of a prompt in the same call, prompts of similar length together;
- batched, unsorted: the same batches in input order (more left padding);
- naive: one `generate` call per sampled response.
Scoring (pairs per second, `RewardModelScorer` on a tiny random Llama reward model): length-sorted batches against
batches in input order.

Prompts are random token sequences of uniformly spread lengths, so padding matters. Each measurement is the best of
`--repeats` runs after a warm-up. Absolute numbers depend on the machine and its load; the ratios are the point.

    python benchmarks/generation_throughput.py [--prompts 32] [--samples 4] [--max_new_tokens 32] [--repeats 1]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from accelerate import Accelerator

from trl_more.generation import SamplingSettings, TransformersGenerationBackend
from trl_more.rewards import RewardModelScorer
from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer


def best_time(function, repeats: int):
    """(seconds of the fastest run, result of the last run), after one warm-up run."""
    result = function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--min_prompt_length", type=int, default=8)
    parser.add_argument("--max_prompt_length", type=int, default=256)
    parser.add_argument(
        "--batch_size", type=int, default=8, help="Prompts per generate call / pairs per scoring batch."
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tokenizer = tiny_tokenizer()
    policy = tiny_causal_lm("qwen2", tokenizer).eval()
    reward_model = tiny_reward_model("llama", tokenizer, seed=1).eval()
    rng = random.Random(args.seed)
    special = set(tokenizer.all_special_ids)
    vocabulary = [token for token in range(len(tokenizer)) if token not in special]
    prompt_ids = [
        [rng.choice(vocabulary) for _ in range(rng.randint(args.min_prompt_length, args.max_prompt_length))]
        for _ in range(args.prompts)
    ]
    accelerator = Accelerator(cpu=True)
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=1.0)

    def backend(batch_size: int, sort: bool) -> TransformersGenerationBackend:
        return TransformersGenerationBackend(
            accelerator,
            settings,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_ids={tokenizer.eos_token_id},
            batch_size=batch_size,
            sort_by_length=sort,
            show_progress=False,
        )

    sorted_backend, unsorted_backend, single = (
        backend(args.batch_size, True),
        backend(args.batch_size, False),
        backend(1, False),
    )

    def naive():
        return [[single.generate(policy, [ids], 1)[0][0] for _ in range(args.samples)] for ids in prompt_ids]

    generation = {
        "batched, length-sorted": lambda: sorted_backend.generate(policy, prompt_ids, args.samples),
        "batched, unsorted": lambda: unsorted_backend.generate(policy, prompt_ids, args.samples),
        "naive (one response per call)": naive,
    }
    print(
        f"Generation: {args.prompts} prompts of {args.min_prompt_length}-{args.max_prompt_length} tokens x "
        f"{args.samples} samples, up to {args.max_new_tokens} new tokens, batch {args.batch_size} prompts"
    )
    rates = {}
    for name, function in generation.items():
        seconds, responses = best_time(function, args.repeats)
        tokens = sum(len(response) for samples in responses for response in samples)
        rates[name] = tokens / seconds
        print(f"  {name:<32} {tokens:>6} tokens in {seconds:7.2f} s = {rates[name]:9.1f} tokens/s")
    reference = rates["batched, length-sorted"]
    print(f"  batched+sorted / naive:    {reference / rates['naive (one response per call)']:.1f}x")
    print(f"  batched+sorted / unsorted: {reference / rates['batched, unsorted']:.2f}x")

    with torch.no_grad():
        responses = sorted_backend.generate(policy, prompt_ids, args.samples)
    prompts = [tokenizer.decode(ids) for ids in prompt_ids for _ in range(args.samples)]
    texts = [tokenizer.decode(response, skip_special_tokens=True) for samples in responses for response in samples]
    print(f"Scoring: {len(texts)} (prompt, response) pairs, batch {args.batch_size}")
    scoring = {}
    for sort in (True, False):
        scorer = RewardModelScorer([reward_model], [tokenizer], batch_size=args.batch_size, sort_by_length=sort)
        seconds, scores = best_time(lambda scorer=scorer: scorer.score(prompts, texts), args.repeats)
        scoring[sort] = (seconds, scores.combined)
        print(f"  {'length-sorted' if sort else 'unsorted':<32} {len(texts) / seconds:9.1f} pairs/s")
    assert torch.allclose(scoring[True][1], scoring[False][1], atol=1e-4), "sorting changed the rewards"
    print(f"  sorted / unsorted: {scoring[False][0] / scoring[True][0]:.2f}x (same rewards)")


if __name__ == "__main__":
    main()
