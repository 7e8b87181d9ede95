"""A preference world with a known gold reward, rendered as text, where every method of trl-more can be measured
against the right answer (docs/known_answer_world.md).

`world` defines prompts, responses, the four objectives and the gold reward; `data` draws labelled pairs (Bradley-Terry
labels, injected flips), rated responses and policy prompts from it; `evaluation` scores reward models against it.
Nothing in the trainers knows about the world: it reaches them as ordinary text data sets and models.

Example:
    >>> from trl_more.synthetic import preference_pairs, training_columns, world_tokenizer
    >>> pairs = preference_pairs(2000, sources=["chatty", "terse", "careful"], flip_rate=0.2)
    >>> tokenizer = world_tokenizer()  # every word of the world is one token
    >>> trainer = MORERewardTrainer(tiny_reward_model("qwen2", tokenizer), args, train_dataset=training_columns(pairs))
"""

from .data import (
    FLIP_MODES,
    RATING_SCALES,
    TRAINING_COLUMNS,
    policy_prompts,
    preference_pairs,
    rated_responses,
    relabelled,
    sft_examples,
    shared_preference_pairs,
    training_columns,
)
from .evaluation import gold_accuracy, gold_reward_model
from .world import (
    HELD_OUT_STYLE,
    OBJECTIVES,
    PROMPT_TYPE_WEIGHTS,
    PROMPT_TYPES,
    SOURCE_OFFSETS,
    TRAINING_STYLE,
    Prompt,
    ResponseStyle,
    gold_reward,
    gold_weights,
    objective_values,
    parse_prompt,
    sample_prompts,
    world_tokenizer,
)


__all__ = [
    "FLIP_MODES",
    "HELD_OUT_STYLE",
    "OBJECTIVES",
    "PROMPT_TYPES",
    "PROMPT_TYPE_WEIGHTS",
    "RATING_SCALES",
    "SOURCE_OFFSETS",
    "TRAINING_COLUMNS",
    "TRAINING_STYLE",
    "Prompt",
    "ResponseStyle",
    "gold_accuracy",
    "gold_reward",
    "gold_reward_model",
    "gold_weights",
    "objective_values",
    "parse_prompt",
    "policy_prompts",
    "preference_pairs",
    "rated_responses",
    "relabelled",
    "sample_prompts",
    "sft_examples",
    "shared_preference_pairs",
    "training_columns",
    "world_tokenizer",
]
