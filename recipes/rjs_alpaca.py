"""Rejection sampling (RJS) of Alpaca-7B against a reward model, on HH-RLHF prompts, with the paper's settings.

The policy sees the first human turn of every HH-RLHF helpful-base and harmless-base training conversation in the
Alpaca instruction template; the reward model (e.g. a MORE reward model trained on HH transcripts) reads the same
question as an HH transcript, "\\n\\nHuman: {question}\\n\\nAssistant:", followed by the response
(`--prompt_turns all` keeps whole multi-turn conversations instead). Each iteration
samples 4 responses per prompt and fine-tunes on the best one (loss on the response tokens only).

On 8 GPUs (DeepSpeed ZeRO-3):

    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml recipes/rjs_alpaca.py \\
        --model_name_or_path <alpaca-7b folder or Hub id> --reward_model_path <reward model folder>

The batch is Alpaca's fine-tuning batch, 128 sequences per optimizer step: 4 per GPU x 4 accumulation steps x 8 GPUs.
With another number of GPUs keep 128 (e.g. 4 GPUs: `--gradient_accumulation_steps 8`); a launch with another global
batch is refused (`--expected_global_batch_size none` runs one knowingly). Compared with the papers: N = 4 samples
per prompt, best of 4, HH-RLHF training prompts and Alpaca-7B (the MORE paper's RJS); 2048 prompts per iteration and
temperature 1.0 (RAFT's); learning rate 2e-5, cosine schedule, 3% warm-up and batch 128 (Alpaca's). One epoch per
iteration and 3 iterations are our choice: the MORE paper does not state them, and Alpaca's 3 epochs are for its
supervised fine-tuning on 52K examples, not for each RJS round.

Every setting below, and every option of `trl-more rjs` (`RejectionSamplingConfig`, TRL's `ModelConfig`), can be
changed on the command line or in a YAML file given with `--config`. A run interrupted after some iterations resumes
with `--resume_from_checkpoint <output_dir>/checkpoint-N` (a checkpoint is saved after every iteration) and reuses the
iterations already in `<output_dir>/iteration-XX/`.

Smoke run, end to end on CPU with tiny random models and the offline prompts of ../shared/data (a few minutes at
most): `python recipes/rjs_alpaca.py --smoke` (the settings are in recipes/rjs_alpaca_smoke.yaml).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from trl_more.cli import parse_strictly, rjs


SMOKE_CONFIG = Path(__file__).with_name("rjs_alpaca_smoke.yaml")

# The paper's RJS setting (Alpaca-7B, HH-RLHF train prompts, 4 samples per prompt, best-of-4), RAFT's sampling
# (temperature 1.0, top_p 1.0, 2048 prompts per iteration) and Alpaca's fine-tuning hyper-parameters.
PAPER_DEFAULTS = {
    "prompt_sources": ["hh-helpful", "hh-harmless"],
    "prompt_split": "train",
    "prompt_template": "alpaca",
    "reward_prompt_format": "hh",
    "num_iterations": 3,
    "prompts_per_iteration": 2048,
    "num_samples_per_prompt": 4,
    "selection": "best_per_prompt",
    "temperature": 1.0,
    "top_p": 1.0,
    "max_new_tokens": 256,
    "max_prompt_length": 512,
    "generation_batch_size": 4,
    "reward_batch_size": 16,
    "reward_max_length": 1024,
    "max_length": 768,
    "learning_rate": 2e-5,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,  # a fraction of all steps
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 4,
    "expected_global_batch_size": 128,  # Alpaca's: 4 x 4 x 8 GPUs (see the module docstring)
    "gradient_checkpointing": True,
    "dtype": "bfloat16",
    "save_strategy": "epoch",
    "logging_steps": 1,
    "output_dir": "runs/rjs-alpaca",
}


def tiny_models(folder: Path) -> list[str]:
    """A tiny random Llama policy and reward model, saved with their tokenizer; the flags that select them."""
    from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    for name, model in (
        ("policy", tiny_causal_lm("llama", tokenizer)),
        ("reward", tiny_reward_model("llama", tokenizer)),
    ):
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    return ["--model_name_or_path", str(folder / "policy"), "--reward_model_path", str(folder / "reward")]


def main(argv: list[str] | None = None, defaults: dict | None = None, smoke_configs: tuple[Path, ...] = ()):
    """Run the recipe: `defaults` (the paper's, unless another recipe passes its own) under the command line's flags;
    with `--smoke`, tiny models and the smoke settings (SMOKE_CONFIG, then `smoke_configs`; later files win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = rjs.make_parser(prog=Path(sys.argv[0]).name)
    parser.set_defaults(**(defaults or PAPER_DEFAULTS))
    if "--smoke" not in argv:
        return rjs.main(*parse_strictly(parser, argv))
    argv.remove("--smoke")
    with tempfile.TemporaryDirectory(prefix="rjs-alpaca-smoke-") as folder:
        if "--config" not in argv:
            argv = ["--config", str(_merged_yaml([SMOKE_CONFIG, *smoke_configs], Path(folder))), *argv]
        # Flags given on the command line come later and win, so a smoke run can also use real models.
        return rjs.main(*parse_strictly(parser, [*tiny_models(Path(folder)), *argv]))


def _merged_yaml(paths: list[Path], folder: Path) -> Path:
    """One YAML file in `folder` holding the settings of `paths` (later files override earlier ones)."""
    import yaml

    from trl_more.yaml_loading import load_yaml

    settings = {}
    for path in paths:
        settings.update(load_yaml(path))
    merged = folder / "smoke.yaml"
    merged.write_text(yaml.safe_dump(settings))
    return merged


if __name__ == "__main__":
    main()
