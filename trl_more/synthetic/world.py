"""A preference world with a known gold reward: prompts, responses, objectives and the weights that combine them.

Everything is plain text, so real tokenizers and the real trainers run unchanged, and every text can be scored back:
the gold reward of any response, a policy's sample included, is computed from its words.

- A prompt has a *type* and a *topic*: `"question about bread:"`, `"risky about tea:"`, `"brief about chess:"`.
- A response is a bag of words: topic words, helpful words, harmful words and filler words, e.g. `" bread step tip
  well because"`.
- Four objectives `f_k(x, y)`, each read off the words (`objective_values`):
  - relevance: 1 when the response names the prompt's topic and no other topic, else 0;
  - helpfulness: the number of *distinct* helpful words, at most 3 (repeating one gains nothing: a flaw a reward
    model trained on data without repeats cannot see, and a policy optimised against it can exploit);
  - harm: the number of harmful words, at most 3;
  - verbosity: the number of words.
- The gold reward `r*(x, y) = sum_k w_k(x, s) f_k(x, y)`: the weights depend on the prompt type (`PROMPT_TYPE_WEIGHTS`,
  what a prompt-conditioned gate should learn) and on the source `s` (`SOURCE_OFFSETS`): every source weighs relevance
  and helpfulness alike (the shared preference) and they disagree on verbosity and harm (the diversified ones).

The world's own words make a small vocabulary (`WORLD_VOCABULARY`); `world_tokenizer()` is the tiny tokenizer of
`trl_more.testing` trained on it as well, so every word is one token. Pairs, labels, ratings and policies are in
`trl_more.synthetic.data`; docs/known_answer_world.md shows every method measured in this world.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from transformers import PreTrainedTokenizerFast


__all__ = [
    "FILLER_WORDS",
    "HARMFUL_WORDS",
    "HELD_OUT_FILLER_WORDS",
    "HELD_OUT_STYLE",
    "HELPFUL_WORDS",
    "OBJECTIVES",
    "PROMPT_TYPES",
    "PROMPT_TYPE_WEIGHTS",
    "SOURCE_OFFSETS",
    "TOPICS",
    "TRAINING_STYLE",
    "WORLD_VOCABULARY",
    "Prompt",
    "ResponseStyle",
    "gold_reward",
    "gold_weights",
    "objective_values",
    "parse_prompt",
    "sample_prompts",
    "world_tokenizer",
]

OBJECTIVES = ("relevance", "helpfulness", "harm", "verbosity")
TOPICS = ("bread", "cats", "music", "chess")
HELPFUL_WORDS = ("step", "because", "example", "tip", "reason", "detail")
HARMFUL_WORDS = ("poison", "weapon", "steal", "hurt")
FILLER_WORDS = ("well", "maybe", "so", "um", "like", "really")
# Fillers no training style uses: the held-out response style, for out-of-distribution tests.
HELD_OUT_FILLER_WORDS = ("indeed", "basically", "honestly", "anyway")
PROMPT_TYPES = ("question", "risky", "brief")
MAX_HELPFUL, MAX_HARM = 3, 3

# w_k(x) per prompt type, in the order of OBJECTIVES: a risky prompt makes harm count most, a brief one penalises
# length. The gate of a multi-objective reward model should recover these from the prompt alone. Every weight is a
# multiple of 0.5, so two responses' gold rewards differ by 0 or by at least 0.5 (no near-ties hide in the gold order).
PROMPT_TYPE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "question": (2.0, 1.0, -1.0, 0.0),
    "risky": (1.0, 0.5, -3.0, 0.0),
    "brief": (2.0, 1.0, -1.0, -0.5),
}
# What each source adds to the prompt-type weights: none changes relevance or helpfulness (the preference all share);
# they disagree on verbosity and on how much harm matters. "neutral" is the world's reference gold reward.
SOURCE_OFFSETS: dict[str, tuple[float, ...]] = {
    "neutral": (0.0, 0.0, 0.0, 0.0),
    "chatty": (0.0, 0.0, 0.0, 0.5),
    "terse": (0.0, 0.0, 0.0, -0.5),
    "careful": (0.0, 0.0, -2.0, 0.0),
}

WORLD_VOCABULARY = (*TOPICS, *HELPFUL_WORDS, *HARMFUL_WORDS, *FILLER_WORDS, *HELD_OUT_FILLER_WORDS, *PROMPT_TYPES)


@dataclass(frozen=True)
class Prompt:
    """A prompt of the world: its type (a key of `PROMPT_TYPE_WEIGHTS`) and topic (one of `TOPICS`)."""

    type: str
    topic: str

    @property
    def text(self) -> str:
        return f"{self.type} about {self.topic}:"


def parse_prompt(text: str) -> Prompt:
    """The `Prompt` a prompt text renders (the inverse of `Prompt.text`)."""
    words = text.strip().rstrip(":").split()
    if len(words) != 3 or words[0] not in PROMPT_TYPES or words[1] != "about" or words[2] not in TOPICS:
        raise ValueError(f"{text!r} is not a prompt of the world: expected '<type> about <topic>:'.")
    return Prompt(words[0], words[2])


def objective_values(prompt: Prompt | str, response: str) -> np.ndarray:
    """`f_k(x, y)` for every objective of `OBJECTIVES`, read off the response's words (any text: unknown words count
    only towards verbosity)."""
    prompt = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    words = response.split()
    topics = {word for word in words if word in TOPICS}
    relevance = float(topics == {prompt.topic})
    helpfulness = float(min(len({word for word in words if word in HELPFUL_WORDS}), MAX_HELPFUL))
    harm = float(min(sum(word in HARMFUL_WORDS for word in words), MAX_HARM))
    return np.array([relevance, helpfulness, harm, float(len(words))])


def gold_weights(prompt: Prompt | str, source: str = "neutral") -> np.ndarray:
    """`w_k(x, s)`: the prompt type's weights plus the source's offsets."""
    prompt = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    if source not in SOURCE_OFFSETS:
        raise ValueError(f"Unknown source {source!r}; the world's sources are {', '.join(SOURCE_OFFSETS)}.")
    return np.add(PROMPT_TYPE_WEIGHTS[prompt.type], SOURCE_OFFSETS[source])


def gold_reward(prompt: Prompt | str, response: str, source: str = "neutral") -> float:
    """`r*(x, y) = sum_k w_k(x, s) f_k(x, y)`."""
    return float(gold_weights(prompt, source) @ objective_values(prompt, response))


@dataclass(frozen=True)
class ResponseStyle:
    """A distribution over responses: how often each kind of word appears. Policies and data sets draw from one.

    Attributes:
        relevant: Probability that the response names the prompt's topic (otherwise another topic).
        helpful: Probabilities of 0, 1, 2, ... distinct helpful words.
        harmful: Probabilities of 0, 1, 2, ... harmful words.
        fillers: Inclusive range of the number of filler words.
        filler_words: The fillers to draw from (`HELD_OUT_FILLER_WORDS` for the held-out style).
        repeat_helpful: Probability of repeating each helpful word once more (no gold value: see `objective_values`).
    """

    relevant: float = 0.6
    helpful: tuple[float, ...] = (0.3, 0.3, 0.25, 0.15)
    harmful: tuple[float, ...] = (0.6, 0.25, 0.15)
    fillers: tuple[int, int] = (0, 4)
    filler_words: tuple[str, ...] = field(default=FILLER_WORDS)
    repeat_helpful: float = 0.0

    def sample(self, prompt: Prompt, rng: np.random.Generator) -> str:
        """One response to `prompt`: a topic word, then the other words in random order, with a leading space."""
        other_topics = [topic for topic in TOPICS if topic != prompt.topic]
        words = [prompt.topic if rng.random() < self.relevant else str(rng.choice(other_topics))]
        helpful = list(rng.choice(HELPFUL_WORDS, size=_draw(self.helpful, rng), replace=False))
        words += helpful + [word for word in helpful if rng.random() < self.repeat_helpful]
        words += list(rng.choice(HARMFUL_WORDS, size=_draw(self.harmful, rng)))
        words += list(rng.choice(self.filler_words, size=int(rng.integers(self.fillers[0], self.fillers[1] + 1))))
        # The topic word comes first (it answers the prompt), the others in random order.
        return " " + " ".join([words[0], *(str(word) for word in rng.permutation(words[1:]))])


TRAINING_STYLE = ResponseStyle()
# The out-of-distribution style: fillers no training response contains, and longer responses.
HELD_OUT_STYLE = ResponseStyle(fillers=(3, 7), filler_words=HELD_OUT_FILLER_WORDS)


def _draw(probabilities: Sequence[float], rng: np.random.Generator) -> int:
    return int(rng.choice(len(probabilities), p=np.asarray(probabilities) / np.sum(probabilities)))


def sample_prompts(count: int, rng: np.random.Generator, types: Mapping[str, float] | None = None) -> list[Prompt]:
    """`count` prompts with uniform topics and types drawn with `types`' probabilities (uniform by default)."""
    names = list(types or PROMPT_TYPES)
    probabilities = np.array([types[name] for name in names]) if types else np.ones(len(names))
    chosen_types = rng.choice(names, size=count, p=probabilities / probabilities.sum())
    return [Prompt(str(kind), str(rng.choice(TOPICS))) for kind in chosen_types]


@functools.cache
def _world_corpus() -> str:
    prompts = [Prompt(kind, topic).text for kind in PROMPT_TYPES for topic in TOPICS]
    return "\n".join(prompts + [" " + " ".join(WORLD_VOCABULARY)] * 8)


def world_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny BPE tokenizer of `trl_more.testing`, also trained on the world's texts: every world word is one token
    (a response of n words is n tokens), so tiny models learn the world in seconds."""
    from ..testing import tiny_tokenizer

    return tiny_tokenizer(corpus=_world_corpus())
