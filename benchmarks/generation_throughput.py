"""Throughput of rejection sampling's generation and scoring paths against naive loops, on the same tiny models.

Generation (generated tokens per second, `TransformersGenerationBackend` on a tiny random Qwen2 policy):
- batched, length-sorted (what `RejectionSamplingTrainer` runs): `--batch_size` prompts per `generate` call, all
  samples of a prompt in the same call, prompts of similar length together;
- batched, unsorted: the same batches in input order (more left padding);
- naive: one `generate` call per sampled response.
Scoring (pairs per second, `RewardModelScorer` on a tiny random Llama reward model): length-sorted batches against
batches in input order.

Prompts are random token sequences of uniformly spread lengths, so padding matters. Each measurement is the best of
`--repeats` interleaved rounds after a warm-up. Absolute numbers depend on the machine and its load; the ratios are
the point.

    python benchmarks/generation_throughput.py [--prompts 32] [--samples 4] [--max_new_tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from accelerate import Accelerator

from trl_more.rejection_sampling.generation import SamplingSettings, TransformersGenerationBackend
from trl_more.rewards import RewardModelScorer
from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer


def best_times(functions: dict, repeats: int) -> tuple[dict, dict]:
    """Fastest time of each function over `repeats` interleaved rounds (after a warm-up), and its last result.

    Interleaving and keeping the minimum make the comparison robust to other processes loading the machine: every
    function gets its share of the quiet moments.
    """
    results = {name: function() for name, function in functions.items()}
    times = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            results[name] = function()
            times[name] = min(times[name], time.perf_counter() - start)
    return times, results


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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

    sorted_backend = backend(args.batch_size, sort=True)
    unsorted_backend = backend(args.batch_size, sort=False)
    one_at_a_time = backend(1, sort=False)

    def naive():
        return [
            [one_at_a_time.generate(policy, [ids], 1, seed=0)[0][0] for _ in range(args.samples)] for ids in prompt_ids
        ]

    generation = {
        "batched, length-sorted": lambda: sorted_backend.generate(policy, prompt_ids, args.samples, seed=0),
        "batched, unsorted": lambda: unsorted_backend.generate(policy, prompt_ids, args.samples, seed=0),
        "naive (one response per call)": naive,
    }
    print(
        f"Generation: {args.prompts} prompts of {args.min_prompt_length}-{args.max_prompt_length} tokens x "
        f"{args.samples} samples, up to {args.max_new_tokens} new tokens, batch {args.batch_size} prompts"
    )
    times, results = best_times(generation, args.repeats)
    rates = {}
    for name in generation:
        tokens = sum(len(response) for samples in results[name] for response in samples)
        rates[name] = tokens / times[name]
        print(f"  {name:<32} {tokens:>6} tokens in {times[name]:7.2f} s = {rates[name]:9.1f} tokens/s")
    reference = rates["batched, length-sorted"]
    print(f"  batched+sorted / naive:    {reference / rates['naive (one response per call)']:.1f}x")
    print(f"  batched+sorted / unsorted: {reference / rates['batched, unsorted']:.2f}x")

    responses = results["batched, length-sorted"]
    prompts = [tokenizer.decode(ids) for ids in prompt_ids for _ in range(args.samples)]
    texts = [tokenizer.decode(response, skip_special_tokens=True) for samples in responses for response in samples]
    print(f"Scoring: {len(texts)} (prompt, response) pairs, batch {args.batch_size}")
    scorers = {
        sort: RewardModelScorer([reward_model], [tokenizer], batch_size=args.batch_size, sort_by_length=sort)
        for sort in (True, False)
    }
    times, scores = best_times(
        {sort: (lambda scorer=scorer: scorer.score(prompts, texts)) for sort, scorer in scorers.items()}, args.repeats
    )
    for sort in (True, False):
        print(f"  {'length-sorted' if sort else 'unsorted':<32} {len(texts) / times[sort]:9.1f} pairs/s")
    assert torch.allclose(scores[True].combined, scores[False].combined, atol=1e-4), "sorting changed the rewards"
    print(f"  sorted / unsorted: {times[False] / times[True]:.2f}x (same rewards)")


if __name__ == "__main__":
    main()
