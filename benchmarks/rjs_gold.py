"""Rejection sampling in miniature against a known gold reward: do MultiTask and MORE proxies align a policy as well?

The MORE paper's claim is that better-calibrated reward models align policies better under rejection sampling (RJS).
Human preferences have no known ground truth, so this benchmark builds a world where the truth is known:

1. Policy: a small causal LM (Qwen2 layout, about 1.6M parameters, a byte-level BPE tokenizer trained here) fine-tuned
   briefly on real (question, answer) pairs of ../shared/data (HH-RLHF single-turn conversations, the Alpaca-GPT4
   sample, the UltraFeedback sample), so that it answers in varied, half-formed English.
2. Gold reward: relevance plus helpful tone, both read from all-MiniLM-L6-v2 sentence embeddings (mean-pooled,
   normalised; what that model was trained for): cos(question, answer) + mean cos(answer, helpful anchors) - mean
   cos(answer, dismissive anchors) (`HELPFUL_ANCHORS`, `DISMISSIVE_ANCHORS`). A fixed, deterministic, real function of
   the text: "the answer is about what was asked, and reads as a willing, helpful reply". An answer without a letter
   or digit scores -1. (Relevance alone did not move in a first version: a 1.6M-parameter policy barely learns to
   condition on the question from a few hundred examples, so RJS had nothing to improve; the tone part can move.)
3. Preference data from four sources (the questions of HH helpful, HH harmless, Alpaca and UltraFeedback): two
   policy samples per question, labelled by the gold reward, each label flipped with a source-specific probability
   (`LABEL_NOISE`), so the sources disagree as annotator pools do.
4. Proxy reward models: MiniLM trained on those pairs with MultiTask (uniform) and with MORE (min-norm), the same
   settings as benchmarks/calibration.py; their held-out accuracy against the noise-free gold order and their ECE
   against held-out labels drawn like the training labels.
5. RJS with each proxy (`RejectionSamplingTrainer`, best of 4, fresh questions every iteration); after every iteration
   the policy answers a fixed set of held-out evaluation questions (4 samples each), scored by the gold reward.
6. Reward models that follow the policy (MetaRM, "Secrets of RLHF Part II" Section 4), from the MORE proxy: (a) the
   fixed proxy (arm 5), (b) the proxy updated every iteration by ordinary training on gold-labelled pairs of the
   iteration's own samples (an upper bound: it uses labels no real run has), (c) the proxy updated every iteration by
   MetaRM (`metarm=True`): meta steps on the iteration's unlabeled samples and the original noisy pairs, no new
   labels. Same generation budget. After every iteration: the proxy's accuracy on gold-labelled pairs of the current
   policy's evaluation samples (the shifted distribution), next to the gold reward.

Reported per iteration and proxy: gold reward of the evaluation samples (mean and standard error), and, on the
iteration's own samples, the gold reward of all of them, of the ones the proxy selected, and of the gold-best of each
prompt (what a perfect reward model would have selected), with the proxy's agreement with gold.

    python benchmarks/rjs_gold.py            # about 30 minutes on 2 idle cores
    python benchmarks/rjs_gold.py --threads 1 --iterations 2 --prompts_per_iteration 32   # a smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
from calibration import TrainingSettings, train_reward_model
from rjs_common import EveryIteration, LabelledUpdatesTrainer
from run_all import machine_description


BENCHMARKS = Path(__file__).resolve().parent
DATA_DIR = BENCHMARKS.parent / ".." / "shared" / "data"
RESULTS_DIR = BENCHMARKS / "results"

# Probability that a source's label contradicts the gold reward.
LABEL_NOISE = {"hh-helpful": 0.0, "hh-harmless": 0.1, "alpaca": 0.25, "ultrafeedback": 0.4}
PROXIES = ("multitask", "more")
HELPFUL_ANCHORS = (
    "Sure, I'd be happy to help you with that. Here is what you can do.",
    "Great question! Here is a clear and detailed answer.",
)
DISMISSIVE_ANCHORS = ("I don't know and I don't care.", "No. Figure it out yourself.")
HUMAN, ASSISTANT = "\n\nHuman: ", "\n\nAssistant:"
# Longer questions are not used as prompts: they would crowd out the answer in the policy's and the proxies' context.
MAX_QUESTION_CHARS = 400


# ---------------------------------------------------------------------------------------------------------------------
# Data: questions and answers of every source
# ---------------------------------------------------------------------------------------------------------------------


def load_sources(data_dir: Path) -> dict[str, dict[str, list]]:
    """`{source: {"questions": [...], "answers": [(question, answer), ...]}}`: every distinct opening question of at
    most `MAX_QUESTION_CHARS` characters, and the single-turn (question, chosen answer) pairs the policy is pre-trained
    on."""
    from trl_more.cli.rjs import dialogue_turns, select_turns
    from trl_more.data import load_preference_source, read_records

    files = {
        "hh-helpful": ("hh-helpful", data_dir / "hh_rlhf/helpful-base.test.jsonl.gz"),
        "hh-harmless": ("hh-harmless", data_dir / "hh_rlhf/harmless-base.test.jsonl.gz"),
        "ultrafeedback": (
            "ultrafeedback",
            [data_dir / "ultrafeedback/train_clean.jsonl", data_dir / "ultrafeedback/eval_clean.jsonl"],
        ),
    }
    sources = {}
    for source, (name, path) in files.items():
        paths = [str(item) for item in path] if isinstance(path, list) else str(path)
        dataset = load_preference_source(name, paths).dataset
        questions = [select_turns(dialogue_turns(prompt), "first")[0][1] for prompt in dataset["prompt"]]
        single_turn = [prompt.count(HUMAN.strip()) == 1 for prompt in dataset["prompt"]]
        answers = [(q, a.strip()) for q, a, one in zip(questions, dataset["chosen"], single_turn) if one and a.strip()]
        sources[source] = {"questions": _distinct(questions), "answers": answers}
    alpaca = read_records(str(data_dir / "alpaca_gpt4/alpaca_en_demo.json"))
    pairs = [(_alpaca_question(row), row["output"].strip()) for row in alpaca]
    sources["alpaca"] = {"questions": _distinct(q for q, _ in pairs), "answers": pairs}
    return {source: sources[source] for source in LABEL_NOISE}


def _alpaca_question(row: dict) -> str:
    return f"{row['instruction'].strip()}\n{row['input'].strip()}".strip()


def _distinct(questions) -> list[str]:
    return [question for question in dict.fromkeys(questions) if 0 < len(question) <= MAX_QUESTION_CHARS]


def hh_prompt(question: str) -> str:
    return f"{HUMAN}{question}{ASSISTANT}"


def split_questions(sources: dict, counts: dict[str, int], seed: int) -> dict[str, dict[str, list[str]]]:
    """Disjoint question sets per source and use: `{use: {source: [question, ...]}}` (uses: the keys of `counts`)."""
    splits = {use: {} for use in counts}
    for source, content in sources.items():
        questions = list(content["questions"])
        random.Random(f"{seed}-{source}").shuffle(questions)
        needed = sum(counts.values())
        if len(questions) < needed:
            raise ValueError(f"Source {source!r} has {len(questions)} distinct questions; {needed} are needed.")
        start = 0
        for use, count in counts.items():
            splits[use][source] = questions[start : start + count]
            start += count
    return splits


# ---------------------------------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------------------------------


def train_policy_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`, with `<|pad|>` and `<|endoftext|>` (eos) tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|pad|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|pad|>", eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


def pretrain_policy(sources: dict, options: argparse.Namespace, folder: Path) -> Path:
    """The initial policy: a small Qwen2 fine-tuned on the sources' (question, answer) pairs, saved to `folder` (and
    read back from there when it already holds one)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from trl_more.testing import tiny_causal_lm

    if (folder / "config.json").is_file():
        return folder
    pairs = [pair for content in sources.values() for pair in content["answers"]]
    tokenizer = train_policy_tokenizer([f"{q} {a}" for q, a in pairs], options.policy_vocab_size)
    policy = tiny_causal_lm(
        "qwen2",
        tokenizer,
        seed=options.seed,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    rows = [{"prompt": hh_prompt(q), "completion": f" {a}"} for q, a in pairs]
    random.Random(options.seed).shuffle(rows)
    args = SFTConfig(
        str(folder / "trainer"),
        max_steps=options.policy_steps,
        per_device_train_batch_size=16,
        learning_rate=2e-3,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        max_length=128,
        gradient_checkpointing=False,
        logging_steps=max(1, options.policy_steps // 10),
        save_strategy="no",
        report_to="none",
        bf16=False,
        seed=options.seed,
    )
    SFTTrainer(model=policy, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer).train()
    policy.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sample_answers(policy, tokenizer, questions: list[str], num_samples: int, max_new_tokens: int) -> list[list[str]]:
    """`num_samples` sampled answers (decoded text) per question, in the HH format the policy was trained on."""
    from accelerate import Accelerator

    from trl_more.rejection_sampling.generation import SamplingSettings, TransformersGenerationBackend

    backend = TransformersGenerationBackend(
        Accelerator(cpu=True),
        SamplingSettings(max_new_tokens=max_new_tokens, temperature=1.0),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_ids=[tokenizer.eos_token_id],
        batch_size=32,
        show_progress=False,
    )
    prompt_ids = [tokenizer(text=hh_prompt(question))["input_ids"] for question in questions]
    samples = backend.generate(policy, prompt_ids, num_samples, seed=0)
    return [[tokenizer.decode(ids, skip_special_tokens=True) for ids in answers] for answers in samples]


# ---------------------------------------------------------------------------------------------------------------------
# Gold reward
# ---------------------------------------------------------------------------------------------------------------------


class GoldReward:
    """The gold reward of an answer to a question: relevance + tone, from all-MiniLM-L6-v2 sentence embeddings (mean of
    the last hidden states over the tokens, L2-normalised).

    relevance = cos(question, answer); tone = mean cos(answer, helpful anchor) - mean cos(answer, dismissive anchor).
    An answer without a letter or digit gets -1. Deterministic (eval mode, no dropout); `scores` also gives both parts.
    """

    def __init__(self, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        from trl_more.pretrained import minilm_path

        self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        self.encoder = AutoModel.from_pretrained(minilm_path()).eval()
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        missing = [text for text in dict.fromkeys(texts) if text not in self._cache]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            inputs = self.tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = self.encoder(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            self._cache.update(zip(batch, embeddings))
        return torch.stack([self._cache[text] for text in texts])

    def scores(self, questions: list[str], answers: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gold reward, relevance, tone) of every answer, as float64 arrays."""
        answer_embeddings = self._embed([answer.strip() for answer in answers])
        relevance = (self._embed(questions) * answer_embeddings).sum(-1).double().numpy()
        helpful = (answer_embeddings @ self._embed(list(HELPFUL_ANCHORS)).T).mean(-1)
        dismissive = (answer_embeddings @ self._embed(list(DISMISSIVE_ANCHORS)).T).mean(-1)
        tone = (helpful - dismissive).double().numpy()
        has_content = np.array([bool(re.search(r"\w", answer)) for answer in answers])
        return np.where(has_content, relevance + tone, -1.0), relevance, tone

    def __call__(self, questions: list[str], answers: list[str]) -> np.ndarray:
        return self.scores(questions, answers)[0]


# ---------------------------------------------------------------------------------------------------------------------
# Proxy reward models
# ---------------------------------------------------------------------------------------------------------------------


def labelled_pairs(questions: dict[str, list[str]], policy, tokenizer, gold: GoldReward, options, seed: int):
    """Two policy answers per question, ordered by the gold reward, the order flipped with the source's noise rate.

    Returns a Dataset (`prompt`, `chosen`, `rejected`, `source`, `gold_margin` = gold(chosen) - gold(rejected),
    `flipped`). Pairs whose answers are identical are left out (they carry no preference).
    """
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    rows = []
    for source, source_questions in questions.items():
        answers = sample_answers(policy, tokenizer, source_questions, 2, options.max_new_tokens)
        firsts, seconds = [a[0] for a in answers], [a[1] for a in answers]
        gold_first, gold_second = gold(source_questions, firsts), gold(source_questions, seconds)
        for question, first, second, g1, g2 in zip(source_questions, firsts, seconds, gold_first, gold_second):
            if first.strip() == second.strip() or g1 == g2:
                continue
            better, worse, margin = (first, second, g1 - g2) if g1 > g2 else (second, first, g2 - g1)
            flipped = bool(rng.random() < LABEL_NOISE[source])
            chosen, rejected = (worse, better) if flipped else (better, worse)
            rows.append(
                {
                    "prompt": hh_prompt(question),
                    "chosen": f" {chosen.strip()}",
                    "rejected": f" {rejected.strip()}",
                    "source": source,
                    "gold_margin": float(-margin if flipped else margin),
                    "flipped": flipped,
                }
            )
    return Dataset.from_list(rows)


def proxy_quality(model, tokenizer, test_pairs, max_length: int) -> dict[str, dict[str, float]]:
    """Per source: accuracy against the gold order and ECE against the noisy labels (as trained) and the gold order."""
    from trl_more.metrics import evaluate_reward_model, expected_calibration_error

    by_source = {s: test_pairs.filter(lambda row, s=s: row["source"] == s) for s in LABEL_NOISE}
    columns = ["prompt", "chosen", "rejected"]
    evaluation = evaluate_reward_model(
        model,
        tokenizer,
        {s: d.select_columns(columns) for s, d in by_source.items()},
        batch_size=32,
        max_length=max_length,
        show_progress=False,
    )
    quality = {}
    for source, dataset in by_source.items():
        margins = evaluation.margins[source]
        gold_sign = np.sign(dataset["gold_margin"])  # +1 where the label agrees with gold
        gold_margins = margins * gold_sign  # the margin of the gold-better answer over the gold-worse one
        quality[source] = {
            "pairs": len(dataset),
            "gold_accuracy": float(np.mean(gold_margins > 0)),
            "label_accuracy": float(np.mean(margins > 0)),
            "label_ece": expected_calibration_error(margins),
            "gold_ece": expected_calibration_error(gold_margins),
        }
    quality["average"] = {
        key: float(np.mean([row[key] for row in quality.values()]))
        for key in ("gold_accuracy", "label_accuracy", "label_ece", "gold_ece")
    }
    return quality


# ---------------------------------------------------------------------------------------------------------------------
# Rejection sampling
# ---------------------------------------------------------------------------------------------------------------------


def run_rjs(
    proxy,
    proxy_tokenizer,
    policy_folder: Path,
    rjs_questions,
    eval_questions,
    gold,
    options,
    output_dir,
    update: str = "none",
    preference_pairs=None,
):
    """RJS of the initial policy against `proxy`; per iteration, gold rewards of the evaluation and training samples
    and the proxy's accuracy on gold-labelled pairs of the evaluation samples. `update`: "none" (a fixed proxy),
    "labelled" (trained on gold-labelled pairs of every iteration's samples) or "metarm" (MetaRM on them, unlabeled,
    with `preference_pairs`)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer
    from trl_more.rejection_sampling import is_degenerate_response

    tokenizer = AutoTokenizer.from_pretrained(policy_folder)
    policy = AutoModelForCausalLM.from_pretrained(policy_folder)
    prompts = Dataset.from_dict({"prompt": [hh_prompt(q) for q in rjs_questions]})
    config = RejectionSamplingConfig(
        str(output_dir),
        num_iterations=options.iterations,
        prompts_per_iteration=options.prompts_per_iteration,
        num_samples_per_prompt=4,
        selection="best_per_prompt",
        temperature=1.0,
        max_new_tokens=options.max_new_tokens,
        generation_batch_size=32,
        reward_batch_size=32,
        reward_max_length=options.max_length,
        max_length=192,
        per_device_train_batch_size=16,
        learning_rate=options.rjs_learning_rate,
        lr_scheduler_type="constant",
        num_epochs_per_iteration=options.epochs_per_iteration,
        gradient_checkpointing=False,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        bf16=False,
        disable_tqdm=True,
        seed=options.seed,
        metarm=update != "none",
        metarm_learning_rate=options.update_learning_rate,
        metarm_meta_learning_rate=options.metarm_eta if update == "metarm" else 0.0,
        metarm_per_device_train_batch_size=16,
        metarm_per_device_meta_batch_size=16,
        metarm_steps_per_iteration=options.update_steps,
    )
    labelled = update == "labelled"
    trainer = (LabelledUpdatesTrainer if labelled else RejectionSamplingTrainer)(
        model=policy,
        reward_models=[proxy],
        args=config,
        train_dataset=prompts,
        processing_class=tokenizer,
        reward_processing_classes=[proxy_tokenizer],
        response_filter=lambda prompt, response: not is_degenerate_response(response),
        reward_train_dataset=preference_pairs.select_columns(["prompt", "chosen", "rejected"])
        if update != "none"
        else None,
        **({"label_pairs": gold_ordered_pairs(gold)} if labelled else {}),
    )

    evaluations = []

    eval_prompt_ids = [tokenizer(text=hh_prompt(question))["input_ids"] for question in eval_questions]

    def evaluate_policy() -> None:
        # The trainer's own generation backend and sampling settings, on the fixed evaluation questions.
        samples = trainer.generation_backend.generate(trainer.model_wrapped, eval_prompt_ids, 4, seed=0)
        flat_questions = [q for q, group in zip(eval_questions, samples) for _ in group]
        flat_answers = [tokenizer.decode(ids, skip_special_tokens=True) for group in samples for ids in group]
        values, relevance, tone = gold.scores(flat_questions, flat_answers)
        proxy_rewards = trainer.reward_scorer.score([hh_prompt(q) for q in flat_questions], flat_answers).combined
        evaluations.append(
            {
                "proxy_gold_accuracy": pair_accuracy(proxy_rewards.double().numpy(), values),
                "gold_mean": float(values.mean()),
                "gold_sem": float(values.std(ddof=1) / math.sqrt(values.size)),
                "relevance_mean": float(relevance.mean()),
                "tone_mean": float(tone.mean()),
                "words": float(np.mean([len(a.split()) for a in flat_answers])),
            }
        )

    trainer.add_callback(EveryIteration(lambda iterations_done: evaluate_policy()))
    trainer.train()

    records = []
    for iteration in range(options.iterations):
        folder = Path(output_dir) / f"iteration-{iteration:02d}"
        samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        questions = [sample["prompt"].removeprefix(HUMAN).removesuffix(ASSISTANT) for sample in samples]
        values = gold(questions, [sample["response"] for sample in samples])
        by_prompt: dict[int, list[int]] = {}
        for position, sample in enumerate(samples):
            by_prompt.setdefault(sample["prompt_index"], []).append(position)
        selected = [position for position, sample in enumerate(samples) if sample["selected"]]
        gold_best = [max(rows, key=lambda row: values[row]) for rows in by_prompt.values()]
        metrics = json.loads((folder / "metrics.json").read_text())
        records.append(
            {
                "iteration": iteration,
                "eval_gold_before": evaluations[iteration],
                "eval_gold_after": evaluations[iteration + 1],
                "samples_gold_mean": float(values.mean()),
                "selected_gold_mean": float(values[selected].mean()) if selected else math.nan,
                "gold_best_mean": float(values[gold_best].mean()),
                "selection_agrees_with_gold": float(np.mean([row in set(gold_best) for row in selected])),
                "proxy_reward_mean": metrics.get("rjs/reward_mean"),
                "proxy_reward_selected_mean": metrics.get("rjs/reward_selected_mean"),
                "distinct_2": metrics.get("rjs/distinct_2"),
                "response_length": metrics.get("rjs/response_length"),
            }
        )
    return records, evaluations


def pair_accuracy(proxy_rewards: np.ndarray, gold_rewards: np.ndarray) -> float:
    """Accuracy of the proxy on gold-labelled pairs: samples (0, 1) and (2, 3) of every question (4 samples each),
    where the gold rewards differ."""
    first, second = np.arange(0, len(gold_rewards), 2), np.arange(1, len(gold_rewards), 2)
    labelled = gold_rewards[first] != gold_rewards[second]
    agree = np.sign(proxy_rewards[first] - proxy_rewards[second]) == np.sign(
        gold_rewards[first] - gold_rewards[second]
    )
    return float(agree[labelled].mean())


def gold_ordered_pairs(gold: GoldReward):
    """Arm (b)'s labels: answers (0, 1) and (2, 3) of a question as (better, worse) by the gold reward, pairs the gold
    ties left out (for `rjs_common.LabelledUpdatesTrainer`, whose updates train on those of every iteration so far
    instead of the original noisy pairs, with no meta step)."""

    def label(reward_prompt: str, answers: list[str]) -> list[tuple[str, str]]:
        question = reward_prompt.removeprefix(HUMAN).removesuffix(ASSISTANT)
        values = gold([question] * len(answers), answers)
        pairs = []
        for a, b in zip(range(0, len(answers) - 1, 2), range(1, len(answers), 2)):
            if values[a] != values[b]:
                pairs.append((answers[a], answers[b]) if values[a] > values[b] else (answers[b], answers[a]))
        return pairs

    return label


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def proxy_table(qualities: dict[str, dict]) -> str:
    sources = list(LABEL_NOISE)
    header = ["proxy"] + [f"{s} (noise {LABEL_NOISE[s]:.0%})" for s in sources] + ["average"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, quality in qualities.items():
        cells = [
            f"{100 * quality[s]['gold_accuracy']:.1f}% / {quality[s]['label_ece']:.3f} / {quality[s]['gold_ece']:.3f}"
            for s in [*sources, "average"]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rjs_table(results: dict[str, tuple[list, list]]) -> str:
    header = [
        "proxy",
        "iteration",
        "gold on eval questions, before (relevance + tone)",
        "gold of all samples",
        "gold of proxy-selected",
        "gold of gold-best",
        "selection = gold-best",
        "proxy reward (all / selected)",
        "distinct-2",
        "length (tokens)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, (records, evaluations) in results.items():
        for record in records:
            before = record["eval_gold_before"]
            lines.append(
                f"| {name} | {record['iteration']} | {_eval_cell(before)} "
                f"| {record['samples_gold_mean']:.4f} | {record['selected_gold_mean']:.4f} "
                f"| {record['gold_best_mean']:.4f} | {100 * record['selection_agrees_with_gold']:.0f}% "
                f"| {record['proxy_reward_mean']:.3f} / {record['proxy_reward_selected_mean']:.3f} "
                f"| {record['distinct_2']:.3f} | {record['response_length']:.1f} |"
            )
        final = evaluations[-1]
        lines.append(f"| {name} | final | {_eval_cell(final)} | | | | | | | |")
    return "\n".join(lines)


def shift_table(results: dict[str, tuple[list, list]]) -> str:
    iterations = len(next(iter(results.values()))[1])
    header = ["proxy", *(f"after {i}" if i else "start" for i in range(iterations))]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, (_, evaluations) in results.items():
        cells = [f"{e['gold_mean']:.4f} / {100 * e['proxy_gold_accuracy']:.1f}%" for e in evaluations]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "(gold reward / proxy accuracy on gold-labelled pairs of the same answers)\n\n" + "\n".join(lines)


def _eval_cell(evaluation: dict) -> str:
    return (
        f"{evaluation['gold_mean']:.4f} ± {evaluation['gold_sem']:.4f} "
        f"({evaluation['relevance_mean']:.3f} + {evaluation['tone_mean']:.3f})"
    )


def plot_gold_curves(results: dict[str, tuple[list, list]], path: Path) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.2), dpi=100)
    axis, accuracy_axis = figure.subplots(1, 2)
    for name, (_, evaluations) in results.items():
        means = np.array([e["gold_mean"] for e in evaluations])
        errors = np.array([e["gold_sem"] for e in evaluations])
        steps = np.arange(len(means))
        axis.errorbar(steps, means, yerr=errors, marker="o", capsize=3, label=name)
        accuracy_axis.plot(steps, [100 * e["proxy_gold_accuracy"] for e in evaluations], marker="o", label=name)
    axis.set(
        xlabel="RJS iterations done",
        ylabel="gold reward of the policy's samples",
        title="Gold reward of held-out answers (mean ± s.e.)",
    )
    accuracy_axis.set(
        xlabel="RJS iterations done",
        ylabel="proxy accuracy (%)",
        title="Proxy accuracy on gold-labelled pairs of the policy's answers",
    )
    for panel in (axis, accuracy_axis):
        panel.set_xticks(range(len(means)))
        panel.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=DATA_DIR)
    parser.add_argument("--work_dir", type=Path, default=BENCHMARKS.parent / "outputs" / "benchmarks" / "rjs_gold")
    parser.add_argument("--plot_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores; 1 when the machine is shared)")
    parser.add_argument("--policy_vocab_size", type=int, default=4096)
    parser.add_argument("--policy_steps", type=int, default=500)
    parser.add_argument("--max_new_tokens", type=int, default=40)
    parser.add_argument("--pairs_per_source", type=int, default=300, help="proxy training pairs per source")
    parser.add_argument("--test_pairs_per_source", type=int, default=100)
    parser.add_argument("--proxy_steps", type=int, default=150)
    parser.add_argument("--max_length", type=int, default=128, help="proxy input tokens (kept from the end)")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--prompts_per_iteration", type=int, default=128)
    parser.add_argument("--eval_questions_per_source", type=int, default=24)
    parser.add_argument("--epochs_per_iteration", type=int, default=2)
    parser.add_argument("--rjs_learning_rate", type=float, default=5e-4)
    parser.add_argument("--update_learning_rate", type=float, default=2e-5, help="AdamW lr of the proxy's updates")
    parser.add_argument("--metarm_eta", type=float, default=0.1, help="eta of MetaRM's meta step")
    parser.add_argument("--update_steps", type=int, default=None, help="proxy steps per iteration (default: a pass)")
    parser.add_argument("--no_updates", action="store_true", help="skip the arms that update the proxy")
    return parser.parse_args()


def main() -> None:
    options = parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    machine = machine_description()
    start, cpu_start = time.perf_counter(), time.process_time()
    timings = {}
    work_dir = options.work_dir
    sources = load_sources(options.data_dir)
    rjs_per_source = math.ceil(options.iterations * options.prompts_per_iteration / len(sources))
    splits = split_questions(
        sources,
        {
            "proxy_train": options.pairs_per_source,
            "proxy_test": options.test_pairs_per_source,
            "rjs": rjs_per_source,
            "eval": options.eval_questions_per_source,
        },
        options.seed,
    )

    stage = time.perf_counter()
    policy_name = f"policy-{options.policy_steps}steps-vocab{options.policy_vocab_size}-seed{options.seed}"
    policy_folder = pretrain_policy(sources, options, work_dir / policy_name)
    timings["policy pre-training"] = time.perf_counter() - stage

    from transformers import AutoModelForCausalLM, AutoTokenizer

    stage = time.perf_counter()
    gold = GoldReward()
    policy = AutoModelForCausalLM.from_pretrained(policy_folder)
    policy_tokenizer = AutoTokenizer.from_pretrained(policy_folder)
    train_pairs = labelled_pairs(splits["proxy_train"], policy, policy_tokenizer, gold, options, options.seed)
    test_pairs = labelled_pairs(splits["proxy_test"], policy, policy_tokenizer, gold, options, options.seed + 1)
    del policy
    timings["preference pairs (sampling + gold labels)"] = time.perf_counter() - stage

    training = TrainingSettings(
        steps=options.proxy_steps,
        batch_size=16,
        max_length=options.max_length,
        frozen_layers=3,
        learning_rate=1e-4,
        warmup_ratio=0.05,
        lambda_momentum=0.99,
        gradient_normalization="l2",
    )
    # RJS prompts interleave the sources, so that every iteration's slice holds all of them.
    rjs_questions = [q for group in zip(*splits["rjs"].values()) for q in group]
    eval_questions = [q for questions in splits["eval"].values() for q in questions]
    qualities, results = {}, {}
    for method in PROXIES:
        stage = time.perf_counter()
        trainer, proxy_tokenizer = train_reward_model(
            method,
            train_pairs.select_columns(["prompt", "chosen", "rejected", "source"]),
            training,
            options.seed,
            work_dir / f"proxy-{method}",
        )
        proxy = trainer.model.eval()
        name = "MORE" if method == "more" else "MultiTask"
        qualities[name] = proxy_quality(proxy, proxy_tokenizer, test_pairs, options.max_length)
        timings[f"{name} proxy training + evaluation"] = time.perf_counter() - stage

        # Copies for the arms that update the proxy, taken before the fixed arm freezes it for inference.
        updatable = copy.deepcopy(proxy) if method == "more" and not options.no_updates else None
        stage = time.perf_counter()
        torch.manual_seed(options.seed)  # both RJS runs start from the same policy and the same sampling seed
        results[name] = run_rjs(
            proxy,
            proxy_tokenizer,
            policy_folder,
            rjs_questions,
            eval_questions,
            gold,
            options,
            work_dir / f"rjs-{method}",
        )
        timings[f"RJS with the {name} proxy"] = time.perf_counter() - stage
        for update, label in (("labelled", "MORE + gold-labelled updates"), ("metarm", "MORE + MetaRM updates")):
            if method != "more" or options.no_updates:
                continue
            stage = time.perf_counter()
            torch.manual_seed(options.seed)
            results[label] = run_rjs(
                copy.deepcopy(updatable),
                proxy_tokenizer,
                policy_folder,
                rjs_questions,
                eval_questions,
                gold,
                options,
                work_dir / f"rjs-more-{update}",
                update=update,
                preference_pairs=train_pairs,
            )
            timings[f"RJS with {label}"] = time.perf_counter() - stage
        del trainer, proxy

    total, cpu_total = time.perf_counter() - start, time.process_time() - cpu_start
    plot = plot_gold_curves(results, options.plot_dir / "rjs_gold.png")
    noisy = sum(train_pairs["flipped"])
    sections = [
        f"{machine}. Wall time {total / 60:.1f} min ({cpu_total / 60:.1f} min of CPU time on "
        f"{torch.get_num_threads()} torch thread(s)): "
        + ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in timings.items())
        + ".",
        f"Proxy training pairs: {len(train_pairs)} ({noisy} labels flipped), held-out pairs: {len(test_pairs)}; "
        f"label noise per source: {', '.join(f'{s} {p:.0%}' for s, p in LABEL_NOISE.items())}. "
        f"RJS: {options.iterations} iterations of {options.prompts_per_iteration} fresh questions x 4 samples, "
        f"best of 4, {options.epochs_per_iteration} epochs per iteration at learning rate {options.rjs_learning_rate}; "
        f"evaluation: {len(eval_questions)} held-out questions x 4 samples after every iteration.",
        "Proxy quality on held-out pairs, per source: accuracy against the gold order / ECE against held-out labels "
        "with the source's noise / ECE against the gold order:",
        proxy_table(qualities),
        "RJS per iteration (the gold columns are means over the iteration's samples; 'before' is the policy that "
        "generated them):",
        rjs_table(results),
        "Reward models that follow the policy: after every iteration, the gold reward of the policy's held-out answers "
        "and the proxy's accuracy on gold-labelled pairs of those answers (the shifted distribution); updates: "
        f"{options.update_steps or 'one pass over the iteration'} step(s) of 16 pairs (+ 16 meta prompts) per iteration, "
        f"AdamW lr {options.update_learning_rate:g}, MetaRM eta {options.metarm_eta:g}:",
        shift_table(results),
        f"Plot: {plot.name}",
    ]
    markdown = "\n\n".join(sections) + "\n"
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "rjs_gold.md").write_text(markdown)
    (work_dir / "rjs_gold.json").write_text(
        json.dumps({"options": {k: str(v) for k, v in vars(options).items()}, "proxies": qualities, "rjs": results})
    )
    print(markdown)


if __name__ == "__main__":
    main()
