"""Data sets drawn from the preference world (`trl_more.synthetic.world`): labelled pairs, ratings, prompts.

Every function is seeded and returns a `datasets.Dataset` in TRL's format, with the known answers in extra columns:

- `preference_pairs`: explicit-prompt pairs labelled by Bradley-Terry at a temperature (small gold differences are
  close to coin flips), optionally with injected flips, uniform or concentrated near small gold margins. Columns:
  `prompt`, `chosen`, `rejected`, `source`, and `gold_margin` (r*(chosen) - r*(rejected) under the pair's source
  weights: negative where the label contradicts the gold order), `flipped` (an injected flip), `prompt_type`.
- `shared_preference_pairs`: pairs every source orders the same way (they differ only in relevance or helpfulness).
- `rated_responses`: per-objective ratings with rating noise and a rater's length bias on helpfulness, for stage 1
  of the multi-objective model.
- `policy_prompts` / `sft_examples`: prompts and (prompt, completion) examples to start a policy from.

Only the training columns reach a trainer (`training_columns`); the rest is what the benchmarks score against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import Dataset

from ..constants import check_choice
from .world import (
    FILLER_WORDS,
    HELPFUL_WORDS,
    OBJECTIVES,
    SOURCE_OFFSETS,
    TOPICS,
    TRAINING_STYLE,
    Prompt,
    ResponseStyle,
    gold_reward,
    objective_values,
    sample_prompts,
)


__all__ = [
    "FLIP_MODES",
    "RATING_SCALES",
    "TRAINING_COLUMNS",
    "policy_prompts",
    "preference_pairs",
    "rated_responses",
    "sft_examples",
    "relabelled",
    "shared_preference_pairs",
    "training_columns",
]

FLIP_MODES = ("uniform", "small_margin")
TRAINING_COLUMNS = ("prompt", "chosen", "rejected", "source")
# The scale of every objective's rating in `rated_responses` (what stage 1 scales to [0, 1]).
RATING_SCALES = {"relevance": (0.0, 1.0), "helpfulness": (0.0, 4.0), "harm": (0.0, 3.0), "verbosity": (0.0, 16.0)}


def preference_pairs(
    num_pairs: int,
    sources: Sequence[str] = ("neutral",),
    seed: int = 0,
    temperature: float | None = 0.5,
    flip_rate: float = 0.0,
    flip_mode: str = "uniform",
    style: ResponseStyle = TRAINING_STYLE,
    prompt_types: dict[str, float] | None = None,
) -> Dataset:
    """`num_pairs` labelled pairs per source.

    Args:
        sources: Keys of `SOURCE_OFFSETS`; each source labels its own pairs with its own weights.
        temperature: Bradley-Terry temperature T: the first response is chosen with probability
            sigmoid((r*(y1) - r*(y2)) / T). `None` labels by the gold order (ties at random): noise-free labels.
        flip_rate: Share of every source's pairs whose label is then swapped (recorded in `flipped`).
        flip_mode: `"uniform"` flips pairs at random; `"small_margin"` picks pairs with probability proportional to
            exp(-|gold margin|), so the flips fall where the gold difference is small (annotators' confusions).
        style: The response distribution both responses are drawn from.
        prompt_types: Probabilities of the prompt types (uniform by default).
    """
    check_choice("flip_mode", flip_mode, FLIP_MODES, option=False)
    if not 0.0 <= flip_rate < 1.0:
        raise ValueError(f"flip_rate must be in [0, 1), got {flip_rate}.")
    unknown = [source for source in sources if source not in SOURCE_OFFSETS]
    if unknown:
        raise ValueError(f"Unknown source(s) {unknown}; the world's sources are {', '.join(SOURCE_OFFSETS)}.")
    rows = []
    for source_number, source in enumerate(sources):
        rng = np.random.default_rng([seed, source_number])
        prompts = sample_prompts(num_pairs, rng, prompt_types)
        first = [style.sample(prompt, rng) for prompt in prompts]
        second = [style.sample(prompt, rng) for prompt in prompts]
        margins = np.array(
            [gold_reward(p, a, source) - gold_reward(p, b, source) for p, a, b in zip(prompts, first, second)]
        )
        if temperature is None:
            first_wins = (margins > 0) | ((margins == 0) & (rng.random(num_pairs) < 0.5))
        else:
            first_wins = rng.random(num_pairs) < 1.0 / (1.0 + np.exp(-margins / temperature))
        flipped = _flips(margins, flip_rate, flip_mode, rng)
        first_wins ^= flipped
        for prompt, a, b, margin, wins, flip in zip(prompts, first, second, margins, first_wins, flipped):
            chosen, rejected = (a, b) if wins else (b, a)
            rows.append(
                {
                    "prompt": prompt.text,
                    "chosen": chosen,
                    "rejected": rejected,
                    "source": source,
                    "gold_margin": float(margin if wins else -margin),
                    "flipped": bool(flip),
                    "prompt_type": prompt.type,
                }
            )
    return Dataset.from_list(rows)


def relabelled(pairs: Dataset, temperature: float, seed: int) -> Dataset:
    """`pairs` (with their `gold_margin`) labelled anew by Bradley-Terry at `temperature`: each pair keeps its order
    with probability sigmoid(gold margin / T) and is swapped otherwise (`gold_margin` follows the swap). Turns
    noise-free evaluation pairs into pairs labelled like Bradley-Terry training data, to measure calibration on."""
    rng = np.random.default_rng(seed)
    margins = np.asarray(pairs["gold_margin"])
    keep = rng.random(len(margins)) < 1 / (1 + np.exp(-margins / temperature))

    def swap(row: dict, index: int) -> dict:
        if keep[index]:
            return row
        return {**row, "chosen": row["rejected"], "rejected": row["chosen"], "gold_margin": -row["gold_margin"]}

    return pairs.map(swap, with_indices=True)


def _flips(margins: np.ndarray, rate: float, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Exactly round(rate * n) pairs to flip, drawn without replacement (uniformly, or weighted by exp(-|margin|))."""
    count = round(rate * len(margins))
    weights = np.ones(len(margins)) if mode == "uniform" else np.exp(-np.abs(margins))
    flipped = np.zeros(len(margins), dtype=bool)
    if count:
        flipped[rng.choice(len(margins), size=count, replace=False, p=weights / weights.sum())] = True
    return flipped


def shared_preference_pairs(num_pairs: int, seed: int = 0, style: ResponseStyle = TRAINING_STYLE) -> Dataset:
    """Pairs every source orders alike: the rejected response is the chosen one with its topic word made irrelevant
    or one helpful word replaced by a filler, so only relevance or helpfulness differ (same length, same harm).
    `gold_margin` is the neutral source's (every source's margin has the same sign)."""
    rng = np.random.default_rng([seed, 1_000])
    rows = []
    while len(rows) < num_pairs:
        prompt = sample_prompts(1, rng)[0]
        words = style.sample(prompt, rng).split()
        helpful = [position for position, word in enumerate(words) if word in HELPFUL_WORDS]
        worse = list(words)
        if prompt.topic in words and (not helpful or rng.random() < 0.5):
            worse[words.index(prompt.topic)] = str(rng.choice([topic for topic in TOPICS if topic != prompt.topic]))
        elif helpful:
            worse[int(rng.choice(helpful))] = str(rng.choice(FILLER_WORDS))
        else:
            continue
        chosen, rejected = " " + " ".join(words), " " + " ".join(worse)
        margin = gold_reward(prompt, chosen) - gold_reward(prompt, rejected)
        rows.append(
            {
                "prompt": prompt.text,
                "chosen": chosen,
                "rejected": rejected,
                "source": "shared",
                "gold_margin": margin,
                "flipped": False,
                "prompt_type": prompt.type,
            }
        )
    return Dataset.from_list(rows)


def rated_responses(
    num_responses: int,
    seed: int = 0,
    noise: float = 0.15,
    length_bias: float = 0.25,
    style: ResponseStyle = TRAINING_STYLE,
) -> Dataset:
    """Responses with a rating per objective: `f_k` plus Gaussian noise (`noise` x the scale's width), clipped to
    `RATING_SCALES`; helpfulness is also rated `length_bias` higher per verbosity unit (raters favour long answers),
    the bias that verbosity debiasing removes. Columns: `prompt`, `response`, one per objective, `prompt_type`."""
    rng = np.random.default_rng([seed, 2_000])
    rows = []
    for prompt in sample_prompts(num_responses, rng):
        response = style.sample(prompt, rng)
        values = objective_values(prompt, response)
        values[OBJECTIVES.index("helpfulness")] += length_bias * values[OBJECTIVES.index("verbosity")]
        row = {"prompt": prompt.text, "response": response, "prompt_type": prompt.type}
        for name, value in zip(OBJECTIVES, values):
            low, high = RATING_SCALES[name]
            row[name] = float(np.clip(value + rng.normal(0.0, noise * (high - low)), low, high))
        rows.append(row)
    return Dataset.from_list(rows)


def policy_prompts(num_prompts: int, seed: int = 0) -> list[Prompt]:
    """Prompts for a policy to answer (uniform types and topics)."""
    return sample_prompts(num_prompts, np.random.default_rng([seed, 3_000]))


def sft_examples(num_examples: int, seed: int = 0, style: ResponseStyle = TRAINING_STYLE) -> Dataset:
    """(prompt, completion) examples of `style`, to teach a tiny causal LM to answer like the world (a policy's
    starting point before rejection sampling)."""
    rng = np.random.default_rng([seed, 4_000])
    prompts = sample_prompts(num_examples, rng)
    return Dataset.from_dict(
        {
            "prompt": [prompt.text for prompt in prompts],
            "completion": [style.sample(prompt, rng) for prompt in prompts],
        }
    )


def training_columns(dataset: Dataset) -> Dataset:
    """The columns a reward trainer reads (`TRAINING_COLUMNS`, those present), without the known answers."""
    return dataset.select_columns([name for name in TRAINING_COLUMNS if name in dataset.column_names])
