"""Rating sets for the multi-objective reward model (docs/multi_objective.md): responses rated on several objectives.

Each set converts to `prompt`, `response` (shared transcript format), `source`, and one float column per objective
named `<set>-<attribute>` (as ArmoRM names them; the prefix keeps apart attributes that share a name but not a scale,
such as HelpSteer's and Topical-Chat's `coherence`). Ratings keep their raw scale; `RATING_SCALES` gives every
objective's `(low, high)` so that stage 1 can scale them to [0, 1] with `(rating - low) / (high - low)`.

- HelpSteer (`nvidia/HelpSteer`): `prompt`, `response`, and five integer attributes rated 0-4.
- Topical-Chat (USR annotations, ../shared/data/topical_chat/topical_chat.json): `source` is the dialogue history
  (turns separated by newlines, the last one by the human the response answers), `context` the knowledge fact the
  response may use, `system_output` the response, `scores` the mean of three annotators on the USR scales
  (understandability and groundedness 0-1, naturalness, coherence and engagingness 1-3, overall 1-5; the file's
  minima and maxima are exactly these bounds).
- The other rating sets of the ArmoRM paper (UltraFeedback fine-grained ratings, BeaverTails, CodeUltraFeedback,
  Prometheus, Argilla Capybara, OpenOrca and Math-Preference) convert in `trl_more.data.armorm_ratings`; their scales
  are here, with the paper's 19 objectives in its order (`ARMORM_OBJECTIVES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .conversion import ConvertedSource, RatingsBuilder
from .formats import render_dialogue, render_response


__all__ = [
    "ARMORM_OBJECTIVES",
    "HELPSTEER_ATTRIBUTES",
    "RATING_SCALES",
    "TOPICAL_CHAT_SCALES",
    "convert_helpsteer",
    "convert_topical_chat",
]

HELPSTEER_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
TOPICAL_CHAT_SCALES = {
    "understandability": (0.0, 1.0),
    "naturalness": (1.0, 3.0),
    "coherence": (1.0, 3.0),
    "engagingness": (1.0, 3.0),
    "groundedness": (0.0, 1.0),
    "overall": (1.0, 5.0),
}

# Rating set (its source name) -> objective column -> (low, high) rating scale. Objective names are those of the
# ArmoRM paper and its released model (`beavertails-is_safe`, `code-instruction-following`, ...). Argilla
# Math-Preference shares UltraFeedback's instruction-following objective and scale, as in the paper.
RATING_SCALES: dict[str, dict[str, tuple[float, float]]] = {
    "helpsteer": {f"helpsteer-{name}": (0.0, 4.0) for name in HELPSTEER_ATTRIBUTES},
    "topical-chat": {f"topical-chat-{name}": scale for name, scale in TOPICAL_CHAT_SCALES.items()},
    # openbmb/UltraFeedback: the critique's overall score is 1-10, the four fine-grained GPT-4 ratings 1-5.
    "ultrafeedback-ratings": {
        "ultrafeedback-overall_score": (1.0, 10.0),
        "ultrafeedback-instruction_following": (1.0, 5.0),
        "ultrafeedback-truthfulness": (1.0, 5.0),
        "ultrafeedback-honesty": (1.0, 5.0),
        "ultrafeedback-helpfulness": (1.0, 5.0),
    },
    "beavertails": {"beavertails-is_safe": (0.0, 1.0)},  # a boolean: True (safe) = 1
    # coseal/CodeUltraFeedback: GPT-3.5 rates 1-5 on one of five coding preferences per instruction.
    "codeultrafeedback-ratings": {
        f"code-{name}": (1.0, 5.0)
        for name in ("complexity", "style", "explanation", "instruction-following", "readability")
    },
    "prometheus-feedback": {"prometheus-score": (1.0, 5.0)},  # Feedback Collection: 1-5 against a rubric
    "capybara-ratings": {"argilla-overall_quality": (1.0, 5.0)},  # UltraFeedback overall rating, 1-5
    "openorca-ratings": {"argilla-judge_lm": (1.0, 10.0)},  # distilabel's JudgeLM task: 1-10
    "math-preference-ratings": {"ultrafeedback-instruction_following": (1.0, 5.0)},
}

# The 19 objectives of ArmoRM-Llama3-8B, in the paper's (and its released model's) order.
ARMORM_OBJECTIVES = (
    *RATING_SCALES["helpsteer"],
    *RATING_SCALES["ultrafeedback-ratings"],
    *RATING_SCALES["beavertails"],
    *RATING_SCALES["prometheus-feedback"],
    *RATING_SCALES["capybara-ratings"],
    *RATING_SCALES["openorca-ratings"],
    *RATING_SCALES["codeultrafeedback-ratings"],
)


def convert_helpsteer(
    rows: Iterable[Mapping[str, Any]], source: str = "helpsteer", on_invalid: str = "raise"
) -> ConvertedSource:
    """Convert HelpSteer rows to `prompt`, `response`, `source` and the five `helpsteer-*` ratings (0-4).

    Args:
        rows: Raw rows in the Hub schema.
        source: Value of the `source` column.
        on_invalid: `"raise"` (default: a rating outside its scale usually means a wrong scale, which dropping rows
            would hide) or `"drop"` for rows with an empty prompt or response, a rating outside 0-4, or no rating at
            all (a single missing rating is kept as NaN).
    """
    builder = RatingsBuilder(source, RATING_SCALES["helpsteer"], on_invalid)
    for where, row in builder.read(rows):
        builder.add(
            where,
            render_dialogue([("human", row.get("prompt") or "")]),
            render_response(row.get("response") or ""),
            {f"helpsteer-{name}": row.get(name) for name in HELPSTEER_ATTRIBUTES},
        )
    return builder.finish()


def convert_topical_chat(
    rows: Iterable[Mapping[str, Any]],
    source: str = "topical-chat",
    on_invalid: str = "raise",
    include_knowledge: bool = True,
) -> ConvertedSource:
    """Convert Topical-Chat rating rows to `prompt`, `response`, `source` and the six `topical-chat-*` ratings.

    The prompt renders the dialogue history as alternating turns ending with the human turn the response answers;
    with `include_knowledge` it starts with `"Knowledge: <fact>"`, the fact the groundedness rating refers to.

    Args:
        rows: Raw rows (`source` dialogue history, `context` knowledge, `system_output`, `scores{...}`).
        source: Value of the `source` column (the raw `source` field is the dialogue history).
        on_invalid: `"raise"` (default, as for HelpSteer) or `"drop"` for rows without dialogue history or response,
            or with a rating outside its USR scale.
        include_knowledge: Start the prompt with the knowledge fact.
    """
    builder = RatingsBuilder(source, RATING_SCALES["topical-chat"], on_invalid)
    for where, row in builder.read(rows):
        history = [turn.strip() for turn in (row.get("source") or "").strip().split("\n")]
        turns = [
            ("human" if (len(history) - position) % 2 else "assistant", turn) for position, turn in enumerate(history)
        ]
        knowledge = (row.get("context") or "").strip()
        prompt = render_dialogue(turns) if any(history) else ""
        if prompt and include_knowledge and knowledge:
            prompt = f"Knowledge: {knowledge}{prompt}"
        scores = row.get("scores") or {}
        builder.add(
            where,
            prompt,
            render_response(row.get("system_output") or ""),
            {f"topical-chat-{name}": scores.get(name) for name in TOPICAL_CHAT_SCALES},
        )
    return builder.finish()
