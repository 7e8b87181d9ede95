"""Tiny models, tokenizers and preference data for tests, examples and quick experiments, built offline.

Nothing here downloads anything: tokenizers are trained on the fly with the `tokenizers` library on a small built-in
corpus, and models are built from configs with random weights. All builders are deterministic for a seed.

Example:
    >>> from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources
    >>> tokenizer = tiny_tokenizer()
    >>> model = tiny_reward_model("qwen2", tokenizer)
    >>> sources = toy_preference_sources(num_pairs=16)  # DatasetDict {"polite": ..., "concise": ..., "factual": ...}
"""

from __future__ import annotations

import functools
import random
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    TrainerCallback,
)

from .constants import check_choice


__all__ = [
    "StopAfterCheckpoint",
    "CHAT_TEMPLATE",
    "DECODER_ARCHITECTURES",
    "ENCODER_ARCHITECTURES",
    "PREFERENCE_FORMATS",
    "TWO_CPU_PROCESSES",
    "accelerate_launch",
    "free_port",
    "preference_dataset_in_format",
    "save_tiny_backbone",
    "save_tiny_reward_model",
    "tiny_causal_lm",
    "tiny_reward_model",
    "tiny_tokenizer",
    "toy_meta_dataset",
    "toy_preference_sources",
]

DECODER_ARCHITECTURES = ("qwen2", "llama", "gpt_neox")


def free_port() -> int:
    """A TCP port that is free on this machine now (for a test server, or a multi-process run's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# `accelerate launch` options of the multi-process tests: two processes on one machine, full precision, no compiler.
TWO_CPU_PROCESSES = (
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
)


def accelerate_launch(*options: str) -> list[str]:
    """The command `python -m accelerate.commands.launch <options>` on a free rendezvous port (`free_port`), so that
    test files launching processes at the same time (pytest-xdist) do not meet on accelerate's default port."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(free_port()), *options]


ENCODER_ARCHITECTURES = ("bert", "roberta")

# A minimal chat template, enough for conversational datasets and generation prompts.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = """
Human: How do I bake bread at home? Assistant: Mix flour, water, salt and yeast, knead the dough, let it rise,
then bake it in a hot oven until the crust is golden. Human: Can you tell me a joke? Assistant: Why did the
scarecrow win an award? Because he was outstanding in his field. Please and thank you are polite words.
The capital of France is Paris. Water boils at one hundred degrees Celsius at sea level. I am sorry, I cannot
help with that request because it could hurt someone. Sure, here is a short summary of the article. The
quick brown fox jumps over the lazy dog. Instruction: Write a response that appropriately completes the request.
Response: Thanks for asking! The answer is forty two. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.
"""
_SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
_BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@functools.cache
def _trained_tokenizer(kind: str, vocab_size: int, corpus: str = "") -> Tokenizer:
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=_SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=_BERT_SPECIAL_TOKENS, show_progress=False
        )
    else:
        raise ValueError(
            f"Unknown tokenizer kind {kind!r}; use 'bpe' (decoders) or 'wordpiece' (BERT-style encoders)."
        )
    tokenizer.train_from_iterator((_CORPUS + corpus).split("\n"), trainer=trainer)
    if kind == "wordpiece":
        cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
    return tokenizer


def tiny_tokenizer(kind: str = "bpe", vocab_size: int = 512, corpus: str = "") -> PreTrainedTokenizerFast:
    """A fast tokenizer trained on a small built-in English corpus, plus `corpus` when given (e.g. the texts of a
    synthetic world, so that its words become single tokens).

    `kind="bpe"` gives a byte-level BPE tokenizer (any text is encodable) with `<|pad|>`/`<|endoftext|>` as pad/eos
    tokens and a chat template; `kind="wordpiece"` gives a BERT-style tokenizer that adds `[CLS] ... [SEP]` and uses
    `[SEP]` as its eos token (TRL appends the eos token to non-conversational text). A new object is returned on
    every call, so callers may modify it freely.
    """
    backend = _trained_tokenizer(kind, vocab_size, corpus)
    if kind == "bpe":
        return PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(backend.to_str()),
            pad_token="<|pad|>",
            eos_token="<|endoftext|>",
            bos_token="<|endoftext|>",
            unk_token=None,
            chat_template=CHAT_TEMPLATE,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(backend.to_str()),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        eos_token="[SEP]",
    )


def _tiny_config(architecture: str, tokenizer: PreTrainedTokenizerFast, **overrides):
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
    }
    check_choice("architecture", architecture, DECODER_ARCHITECTURES + ENCODER_ARCHITECTURES, option=False)
    if architecture in DECODER_ARCHITECTURES:
        common.update(
            num_key_value_heads=2,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            tie_word_embeddings=False,
        )
        if architecture == "gpt_neox":
            del common["num_key_value_heads"]
    common.update(overrides)
    return AutoConfig.for_model(architecture, **common)


def tiny_reward_model(
    architecture: str = "qwen2", tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0, **config_overrides
) -> PreTrainedModel:
    """A randomly initialised sequence-classification model with one output (a reward model), 2 layers wide 32."""
    if tokenizer is None:
        tokenizer = tiny_tokenizer("wordpiece" if architecture in ENCODER_ARCHITECTURES else "bpe")
    config = _tiny_config(architecture, tokenizer, num_labels=1, **config_overrides)
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config)


def save_tiny_reward_model(folder: str | Path, architecture: str = "qwen2", seed: int = 0) -> Path:
    """`tiny_reward_model` and its tokenizer saved to `folder`, for anything that takes a model path (the CLI)."""
    tokenizer = tiny_tokenizer("wordpiece" if architecture in ENCODER_ARCHITECTURES else "bpe")
    tiny_reward_model(architecture, tokenizer, seed=seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def save_tiny_backbone(folder: str | Path, max_position_embeddings: int = 4096, seed: int = 0) -> Path:
    """The backbone (no head) of a tiny qwen2 `tiny_reward_model` with `max_position_embeddings` positions, and its
    tokenizer, saved to `folder`: the backbone of the multi-objective recipe's CPU smoke run (recipes/armorm/)."""
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model("qwen2", tokenizer, seed=seed, max_position_embeddings=max_position_embeddings)
    model.base_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def tiny_causal_lm(
    architecture: str = "qwen2", tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0, **config_overrides
) -> PreTrainedModel:
    """A randomly initialised causal language model (a policy), 2 layers wide 32."""
    if architecture not in DECODER_ARCHITECTURES:
        raise ValueError(f"Causal LMs are built for {DECODER_ARCHITECTURES}, not {architecture!r}.")
    tokenizer = tokenizer or tiny_tokenizer("bpe")
    config = _tiny_config(architecture, tokenizer, **config_overrides)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


# Each toy source prefers responses with its own marker, so a reward model can learn every source and the sources
# partly disagree (what one source prefers is neutral to the others).
_TOY_SOURCES = {
    "polite": ("Thanks for asking! ", "Whatever. "),
    "concise": ("", "Well, let me think about that for a while, and then "),
    "factual": ("The answer is forty two. ", "I am not sure, maybe "),
}
_TOY_PROMPTS = [
    "How do I bake bread at home?",
    "Can you tell me a joke?",
    "What is the capital of France?",
    "At what temperature does water boil?",
    "Write a short summary of the article.",
    "What is the answer to the question?",
]
_TOY_BODIES = [
    "mix flour, water, salt and yeast.",
    "the scarecrow was outstanding in his field.",
    "Paris is the capital of France.",
    "water boils at one hundred degrees.",
    "the quick brown fox jumps over the lazy dog.",
]


def toy_preference_sources(num_pairs: int = 32, seed: int = 0, sources: tuple[str, ...] | None = None) -> DatasetDict:
    """Synthetic explicit-prompt preference pairs from three "sources" with different, learnable preferences.

    Returns a `DatasetDict` mapping each source name to a `Dataset` with `prompt`, `chosen` and `rejected` columns
    in TRL's standard (plain-text) format, `num_pairs` rows each. Used as the bundled fallback data set and in tests.
    """
    sources = sources or tuple(_TOY_SOURCES)
    unknown = sorted(set(sources) - set(_TOY_SOURCES))
    if unknown:
        raise ValueError(f"Unknown toy sources {unknown}; the toy sources are {sorted(_TOY_SOURCES)}.")
    rng = random.Random(seed)
    result = {}
    for name in sources:
        good, bad = _TOY_SOURCES[name]
        rows = {"prompt": [], "chosen": [], "rejected": []}
        for _ in range(num_pairs):
            body = rng.choice(_TOY_BODIES)
            rows["prompt"].append(f"Human: {rng.choice(_TOY_PROMPTS)} Assistant:")
            rows["chosen"].append(f" {good}{body}")
            rows["rejected"].append(f" {bad}{body}")
        result[name] = Dataset.from_dict(rows)
    return DatasetDict(result)


def toy_meta_dataset(num_prompts: int = 8, num_responses: int = 3, seed: int = 0) -> Dataset:
    """Synthetic MetaRM meta data: `num_prompts` toy prompts with `num_responses` unlabeled responses each (a
    `prompt` column and a `responses` column of lists), mixing the toy sources' markers."""
    rng = random.Random(seed)
    markers = [marker for pair in _TOY_SOURCES.values() for marker in pair]
    rows = {"prompt": [], "responses": []}
    for _ in range(num_prompts):
        rows["prompt"].append(f"Human: {rng.choice(_TOY_PROMPTS)} Assistant:")
        rows["responses"].append([f" {rng.choice(markers)}{rng.choice(_TOY_BODIES)}" for _ in range(num_responses)])
    return Dataset.from_dict(rows)


class StopAfterCheckpoint(TrainerCallback):
    """Stands in for a crash in resume tests: ends training right after the checkpoint of `step` is written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


PREFERENCE_FORMATS = (
    "standard_preference",
    "standard_implicit_prompt_preference",
    "conversational_preference",
    "conversational_implicit_prompt_preference",
)


def write_toy_mixture(folder: str | Path, num_pairs: int = 24, test_size: float | int = 0.25, seed: int = 0) -> Path:
    """The toy sources written as JSON-lines files plus a mixture YAML over them (see `trl_more.data.load_mixture`);
    returns the YAML's path, e.g. for `trl-more reward --mixture <path>`.

    The files use the raw schema of the `ultrafeedback` source (`prompt`, `chosen`, `rejected` plain text), each
    labelled with its toy source's name.
    """
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for name, dataset in toy_preference_sources(num_pairs, seed=seed).items():
        dataset.to_json(folder / f"{name}.jsonl")
        sources.append({"name": "ultrafeedback", "path": str(folder / f"{name}.jsonl"), "label": name})
    path = folder / "mixture.yaml"
    path.write_text(yaml.safe_dump({"sources": sources, "test_size": test_size, "seed": seed}, sort_keys=False))
    return path


def preference_dataset_in_format(
    pairs: Sequence[tuple[str, str, str]], format_name: str = "standard_preference"
) -> Dataset:
    """(prompt, chosen, rejected) text triples as a `Dataset` in one of TRL's preference formats.

    `standard_*` formats hold plain text and `conversational_*` ones lists of `{"role", "content"}` messages (the prompt
    as a user turn, each response as an assistant turn); `*_implicit_prompt_*` formats have no `prompt` column, the
    prompt starting both `chosen` and `rejected` instead. These are the formats of TRL's test data set
    `trl-internal-testing/zen`, which `trl.RewardTrainer` accepts.
    """
    check_choice("preference format", format_name, PREFERENCE_FORMATS, option=False)
    conversational = format_name.startswith("conversational")
    implicit = "implicit_prompt" in format_name
    rows = {"chosen": [], "rejected": []} if implicit else {"prompt": [], "chosen": [], "rejected": []}
    for prompt, chosen, rejected in pairs:
        if conversational:
            prompt = [{"role": "user", "content": prompt}]
            chosen = [{"role": "assistant", "content": chosen.strip()}]
            rejected = [{"role": "assistant", "content": rejected.strip()}]
        if implicit:
            rows["chosen"].append(prompt + chosen)
            rows["rejected"].append(prompt + rejected)
        else:
            rows["prompt"].append(prompt)
            rows["chosen"].append(chosen)
            rows["rejected"].append(rejected)
    return Dataset.from_dict(rows)
