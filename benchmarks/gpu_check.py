"""The GPU figures trl-more cannot measure on CPU, in one short run (under 10 minutes on one H200).

Run by benchmarks/gpu_check.sh (which installs what is missing from wheels kept beside it). On random-weight decoder
layouts (speed does not depend on the weights; about 1B parameters by default), in bf16:

1. pair encoding: TRL's separate encoding against shared-prompt encoding, with the dense 4D mask (SDPA) and with a
   FlexAttention block mask, packed pairs (`pair_encoding="packed"`) with the dense mask (packs no longer than the
   longest row) and with FlexAttention (packs of `--pack_length` tokens), and shared prompts in length-grouped batches
   (`SourceGroupedSampler` with lengths, over a pool of 50 batches): training pair-tokens per second, padded tokens per
   step, peak memory, and the largest reward difference (grouped batches are other pairs: no reward difference);
2. MORE's overhead: `trl.RewardTrainer` against `MORERewardTrainer` (three sources, min-norm lambda) on the same
   batches: seconds per step;
3. rejection-sampling generation: `TransformersGenerationBackend` (batched, length-sorted) against one `generate`
   call per response: generated tokens per second.

Every part writes `<output_dir>/<part>.json` as soon as it is done (a failure is recorded there, and the next part
runs). Data are random token sequences with HH-like lengths (prompt 32-384 tokens, responses 16-256): no data set or
network is needed. `--device cpu --tiny` runs every part in about a minute on a CPU (the test suite does).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch


def layout(tiny: bool, vocab_size: int) -> dict:
    """A Qwen2 layout: ~1.1B parameters (hidden 2048, 16 layers), or a tiny one for the CPU smoke run."""
    if tiny:
        return dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=vocab_size,
        )
    return dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=16,
        vocab_size=vocab_size,
    )


def reward_model(options, tokenizer, attention: str = "sdpa"):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(
        "qwen2",
        **layout(options.tiny, len(tokenizer)),
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention, dtype=options.dtype)
    return model.to(options.device)


def random_pairs(tokenizer, count: int, seed: int, scale: float) -> list[dict]:
    rng = random.Random(seed)
    special = set(tokenizer.all_special_ids)
    vocabulary = [token for token in range(len(tokenizer)) if token not in special]

    def tokens(low, high):
        return [rng.choice(vocabulary) for _ in range(rng.randint(int(low * scale), int(high * scale)))]

    pairs = []
    for _ in range(count):
        prompt = tokens(32, 384)
        pairs.append(
            {
                "chosen_ids": prompt + tokens(16, 256) + [tokenizer.eos_token_id],
                "rejected_ids": prompt + tokens(16, 256) + [tokenizer.eos_token_id],
            }
        )
    return pairs


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def pair_encoding_part(options, tokenizer) -> dict:
    from trl_more._compat import DataCollatorForPreference
    from trl_more.more.sampler import SourceGroupedSampler
    from trl_more.pair_encoding import (
        encode_shared_prompt,
        flex_attention_mask,
        pair_row_lengths,
        rewards_at,
    )
    from trl_more.reward_head import find_reward_head

    scale = 0.25 if options.tiny else 1.0
    pairs = random_pairs(tokenizer, options.batch * (options.steps + 1), 0, scale)
    batches = [pairs[i : i + options.batch] for i in range(0, len(pairs), options.batch)]
    pool = random_pairs(tokenizer, options.batch * 50, 1, scale)
    lengths = pair_row_lengths([p["chosen_ids"] for p in pool], [p["rejected_ids"] for p in pool], shared_prompt=True)
    order = list(SourceGroupedSampler([0] * len(pool), options.batch, lengths=lengths))
    grouped_batches = [[pool[i] for i in order[k : k + options.batch]] for k in range(0, len(order), options.batch)]
    results = {}
    encodings = ("separate", "shared_prompt", "shared_prompt_flex", "packed", "packed_flex", "grouped")
    for encoding in encodings:
        try:
            flex = encoding.endswith("_flex")
            attention = "flex_attention" if flex else "sdpa"
            model = reward_model(options, tokenizer, attention)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
            head = find_reward_head(model)
            captured = []
            head.register_forward_hook(lambda module, args, output, captured=captured: captured.append(output))
            times, tokens, padded, first_rewards = [], 0, 0, None
            if options.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            # Grouped: the sampler's first batch is its longest (so that memory errors show first); skip it.
            steps = grouped_batches[1 : options.steps + 2] if encoding == "grouped" else batches
            for step, batch in enumerate(steps):
                synchronize(options.device)
                start = time.perf_counter()
                captured.clear()
                if encoding == "separate":
                    inputs = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(batch)
                    logits = model(
                        input_ids=inputs["input_ids"].to(options.device),
                        attention_mask=inputs["attention_mask"].to(options.device),
                    ).logits
                    counted, step_tokens = int(inputs["attention_mask"].sum()), inputs["input_ids"].numel()
                else:  # shared_prompt, packed, their FlexAttention variants, grouped (shared prompt)
                    packed = encoding.startswith("packed")
                    encoded = encode_shared_prompt(
                        [[pair["chosen_ids"], pair["rejected_ids"]] for pair in batch],
                        tokenizer.pad_token_id,
                        options.dtype,
                        packed=packed,
                        pack_length=options.pack_length if packed and flex else None,
                    )
                    mask = (
                        flex_attention_mask(encoded, options.device)
                        if flex
                        else encoded.attention_mask.to(options.device)
                    )
                    model(
                        input_ids=encoded.input_ids.to(options.device),
                        attention_mask=mask,
                        position_ids=encoded.position_ids.to(options.device),
                    )
                    logits = rewards_at(captured[-1], encoded.reward_positions, encoded.reward_rows)
                    counted, step_tokens = encoded.num_tokens, encoded.input_ids.numel()
                chosen, rejected = logits.float().squeeze(-1).chunk(2)
                loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                synchronize(options.device)
                if step == 0:
                    first_rewards = logits.detach().float().cpu()
                else:  # the first step warms up kernels and allocator
                    times.append(time.perf_counter() - start)
                    tokens += counted
                    padded += step_tokens
            results[encoding] = {
                "pair_tokens_per_second": tokens / sum(times),
                "seconds_per_step": statistics.median(times),
                "padded_tokens_per_step": padded / len(times),
                "peak_memory_gb": peak_memory_gb(options.device),
                "first_step_rewards": first_rewards.reshape(-1).tolist(),
            }
            del model, optimizer
        except Exception as error:  # recorded, and the other encodings still run
            results[encoding] = {
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()[-2000:],
            }
        if options.device.startswith("cuda"):
            torch.cuda.empty_cache()
    reference = results["separate"].get("first_step_rewards")
    for encoding in encodings[1:]:
        if encoding == "grouped":  # other pairs: only the speed compares
            if "pair_tokens_per_second" in results[encoding] and "pair_tokens_per_second" in results["separate"]:
                results[encoding]["speed_up"] = (
                    results[encoding]["pair_tokens_per_second"] / results["separate"]["pair_tokens_per_second"]
                )
            continue
        rewards = results[encoding].get("first_step_rewards")
        if reference and rewards:
            results[encoding]["max_reward_difference"] = max(abs(a - b) for a, b in zip(reference, rewards))
            results[encoding]["speed_up"] = (
                results[encoding]["pair_tokens_per_second"] / results["separate"]["pair_tokens_per_second"]
            )
    return results


def more_overhead_part(options, tokenizer) -> dict:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from trl_more import MORERewardConfig, MORERewardTrainer

    pairs = random_pairs(tokenizer, 3 * options.batch * (options.steps + 1), 1, 0.25 if options.tiny else 0.5)
    data = Dataset.from_list([{**pair, "source": ["a", "b", "c"][i % 3]} for i, pair in enumerate(pairs)])
    per_step = {}
    common = dict(
        per_device_train_batch_size=3 * (options.batch // 3 or 1),
        max_steps=options.steps + 1,
        learning_rate=1e-6,
        logging_steps=1,
        report_to="none",
        bf16=options.dtype == torch.bfloat16,
        use_cpu=options.device == "cpu",
        gradient_checkpointing=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    for name in ("RewardTrainer", "MORERewardTrainer", "RewardTrainer", "MORERewardTrainer"):
        model = (
            reward_model(options, tokenizer).float()
            if options.dtype == torch.bfloat16
            else reward_model(options, tokenizer)
        )
        if name == "RewardTrainer":
            trainer = RewardTrainer(
                model,
                RewardConfig(str(Path(options.output_dir) / "runs"), **common),
                train_dataset=data.remove_columns(["source"]),
                processing_class=tokenizer,
            )
        else:
            trainer = MORERewardTrainer(
                model,
                MORERewardConfig(str(Path(options.output_dir) / "runs"), **common),
                train_dataset=data,
                processing_class=tokenizer,
            )
        start = time.perf_counter()
        trainer.train()
        synchronize(options.device)
        per_step.setdefault(name, []).append((time.perf_counter() - start) / (options.steps + 1))
        del trainer, model
        if options.device.startswith("cuda"):
            torch.cuda.empty_cache()
    best = {name: min(values) for name, values in per_step.items()}
    return {"seconds_per_step": best, "overhead": best["MORERewardTrainer"] / best["RewardTrainer"]}


def generation_part(options, tokenizer) -> dict:
    from accelerate import Accelerator
    from transformers import AutoConfig, AutoModelForCausalLM

    from trl_more.rejection_sampling.generation import SamplingSettings, TransformersGenerationBackend

    config = AutoConfig.for_model("qwen2", **layout(options.tiny, len(tokenizer)), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_config(config, dtype=options.dtype).to(options.device).eval()
    accelerator = Accelerator(cpu=options.device == "cpu")
    settings = SamplingSettings(max_new_tokens=16 if options.tiny else 128, temperature=1.0)
    prompts = [pair["chosen_ids"][:64] for pair in random_pairs(tokenizer, 8 if options.tiny else 64, 2, 0.25)]

    def backend(batch_size):
        return TransformersGenerationBackend(
            accelerator,
            settings,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_ids=set(),
            batch_size=batch_size,
            show_progress=False,
        )

    rates = {}
    for name, run in (
        ("batched, length-sorted", lambda: backend(16).generate(policy, prompts, 4, seed=0)),
        (
            "one response per call",
            lambda: [[backend(1).generate(policy, [p], 1, seed=s)[0][0] for s in range(4)] for p in prompts[:4]],
        ),
    ):
        run()  # warm-up
        synchronize(options.device)
        start = time.perf_counter()
        samples = run()
        synchronize(options.device)
        rates[name] = sum(len(response) for group in samples for response in group) / (time.perf_counter() - start)
    return {
        "generated_tokens_per_second": rates,
        "speed_up": rates["batched, length-sorted"] / rates["one response per call"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny layouts: a CPU smoke run of every part")
    parser.add_argument("--batch", type=int, default=16, help="pairs per training step")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--pack_length", type=int, default=4096, help="tokens per packed sequence with FlexAttention")
    parser.add_argument("--parts", nargs="+", default=["pair_encoding", "more_overhead", "generation"])
    options = parser.parse_args()
    options.dtype = torch.float32 if options.device == "cpu" else torch.bfloat16
    output = Path(options.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    from trl_more.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer(vocab_size=512 if options.tiny else 8192)
    environment = {"torch": torch.__version__, "device": options.device, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        environment["gpu"] = torch.cuda.get_device_name()
    (output / "environment.json").write_text(json.dumps(environment, indent=2))
    parts = {"pair_encoding": pair_encoding_part, "more_overhead": more_overhead_part, "generation": generation_part}
    failed = False
    for name in options.parts:
        start = time.perf_counter()
        try:
            result = parts[name](options, tokenizer)
        except Exception as error:
            failed = True
            result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}
        result["wall_seconds"] = time.perf_counter() - start
        (output / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        print(f"{name}: {json.dumps(result, default=str)[:600]}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
