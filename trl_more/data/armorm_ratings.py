"""The rating sets of the ArmoRM paper (docs/multi_objective.md), each converted from its Hub schema.

Each converter returns rated responses: `prompt`, `response` (shared transcript format), `source` and the set's
objective columns on their raw scales (`RATING_SCALES[<source name>]`; a missing rating is NaN). HelpSteer is in
`trl_more.data.ratings`.

- UltraFeedback (`openbmb/UltraFeedback`): a row is one instruction with a list of `completions`, each with a
  `response`, an `overall_score` (the critique's, 1-10) and `annotations.<aspect>.Rating` (a string "1"-"5", or "N/A")
  for instruction following, truthfulness, honesty and helpfulness. Every completion becomes one rated response.
  The completion's `custom_system_prompt` (the principle used to generate it) is not part of the user's prompt.
- BeaverTails (`PKU-Alignment/BeaverTails`, splits `30k_train` / `30k_test`, the paper's 30k): `prompt`,
  `response`, `is_safe` (boolean, True = 1).
- CodeUltraFeedback (`coseal/CodeUltraFeedback`): an `instruction`, the coding `preference` it is judged on
  (`complexity`, `style`, `explanation`, `instruction-following` or `readability`), `responses[{model, response}]`
  and `annotations[{model, rating, rationale}]` (rating "1"-"5" or "N/A"), matched by model. Each rated response
  labels the one objective `code-<preference>`.
- Prometheus Feedback Collection (`prometheus-eval/Feedback-Collection`): `orig_instruction`, `orig_response` and
  `orig_score` (1-5, given against the row's own rubric, which the reward model does not see).
- Argilla Capybara (`argilla/Capybara-Preferences-Filtered`): `chosen` and `rejected` conversations sharing their
  prompt, with `chosen_rating` / `rejected_rating` (1-5): two rated responses per row, `argilla-overall_quality`.
- Argilla OpenOrca (`argilla/distilabel-intel-orca-dpo-pairs`): `system`, `input`, two `generations` and their
  JudgeLM `rating` (1-10): two rated responses per row, `argilla-judge_lm`. A non-empty system message is
  prepended to the human turn (the transcript format has no system turn) and counted in the report's notes.
- Argilla Math-Preference (`argilla/distilabel-math-preference-dpo`): `instruction`, `chosen_response`,
  `chosen_rating`, `rejected_response`, `rejected_rating`; as in the paper the ratings label UltraFeedback's
  instruction-following objective (scale 1-5). The card documents no scale: `rating_scale` gives the ratings' own
  scale when it is not 1-5, and they are then mapped linearly onto 1-5, so that both sets scale to [0, 1] alike.

A response of a single-objective set whose rating is "N/A" (not rated by the judge) is skipped and counted; in
UltraFeedback an "N/A" aspect is NaN and the response keeps its other ratings. Other unreadable rows are invalid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .conversion import ConvertedSource, RatingsBuilder
from .declared import parse_rating
from .formats import render_dialogue, render_response
from .ratings import RATING_SCALES


__all__ = [
    "CODE_PREFERENCES",
    "convert_beavertails",
    "convert_capybara_ratings",
    "convert_codeultrafeedback_ratings",
    "convert_math_preference_ratings",
    "convert_openorca_ratings",
    "convert_prometheus_feedback",
    "convert_ultrafeedback_ratings",
    "split_shared_prompt",
]

ULTRAFEEDBACK_ASPECTS = ("instruction_following", "truthfulness", "honesty", "helpfulness")
# CodeUltraFeedback's `preference` value -> objective.
CODE_PREFERENCES = {
    name: f"code-{name}" for name in ("complexity", "style", "explanation", "instruction-following", "readability")
}
_NOT_RATED = ("N/A",)


def _human_turn(text: Any) -> str:
    return render_dialogue([("human", text)]) if isinstance(text, str) and text.strip() else ""


def _text(value: Any) -> str:
    return render_response(value) if isinstance(value, str) else ""


def _rating(builder: RatingsBuilder, where: str, value: Any) -> float | None:
    """The rating as a float, or `None` for a response to leave out: not rated ("N/A" or missing, counted as
    skipped) or unreadable (counted as invalid)."""
    try:
        rating = parse_rating(value, _NOT_RATED)
    except ValueError:
        builder.invalid("rating is not a number", where, rating=value)
        return None
    if rating is None:
        builder.skip("response not rated (rating N/A or missing)")
    return rating


def split_shared_prompt(chosen: Any, rejected: Any) -> tuple[str, str, str] | str:
    """`(rendered prompt, chosen reply, rejected reply)` of two conversations (lists of `{role, content}`) that share
    every message but their last assistant reply, or the reason they cannot be split."""
    conversations = (chosen, rejected)
    if not all(isinstance(messages, list) and messages for messages in conversations):
        return "missing or empty conversation"
    if not all(isinstance(message, Mapping) for messages in conversations for message in messages):
        return "conversation is not a list of {role, content} messages"
    if chosen[-1].get("role") != "assistant" or rejected[-1].get("role") != "assistant":
        return "conversation does not end with an assistant reply"
    if chosen[:-1] != rejected[:-1]:
        return "chosen and rejected conversations have different prompts"
    if not chosen[:-1]:
        return "conversation without a prompt"
    try:
        prompt = render_dialogue([(message.get("role"), message.get("content") or "") for message in chosen[:-1]])
    except ValueError as error:
        return str(error)
    return prompt, chosen[-1].get("content") or "", rejected[-1].get("content") or ""


def convert_ultrafeedback_ratings(
    rows: Iterable[Mapping[str, Any]], source: str = "ultrafeedback-ratings", on_invalid: str = "raise"
) -> ConvertedSource:
    """Convert `openbmb/UltraFeedback` rows to one rated response per completion, with the five `ultrafeedback-*`
    objectives (overall score 1-10, fine-grained ratings 1-5; "N/A" is NaN).

    Args:
        rows: Raw rows (`instruction`, `completions[...]`).
        source: Value of the `source` column.
        on_invalid: `"raise"` (default, as for every rating set) or `"drop"` for rows without completions, empty
            prompts or responses, ratings that are not numbers or lie outside their scales, completions with no
            rating at all.
    """
    builder = RatingsBuilder(source, RATING_SCALES["ultrafeedback-ratings"], on_invalid)
    for where, row in builder.read(rows):
        completions = row.get("completions")
        if not isinstance(completions, list) or not completions:
            builder.invalid("no completions", where, instruction=row.get("instruction"))
            continue
        prompt = _human_turn(row.get("instruction"))
        for position, completion in enumerate(completions):
            at = f"{where}, completion {position}"
            annotations = completion.get("annotations") or {}
            raw = {"overall_score": completion.get("overall_score")}
            raw.update({aspect: (annotations.get(aspect) or {}).get("Rating") for aspect in ULTRAFEEDBACK_ASPECTS})
            try:
                ratings = {f"ultrafeedback-{name}": parse_rating(value, _NOT_RATED) for name, value in raw.items()}
            except ValueError:
                builder.invalid("rating is not a number", at, **raw)
                continue
            builder.add(at, prompt, _text(completion.get("response")), ratings)
    return builder.finish()


def convert_beavertails(
    rows: Iterable[Mapping[str, Any]], source: str = "beavertails", on_invalid: str = "raise"
) -> ConvertedSource:
    """Convert BeaverTails rows (`prompt`, `response`, `is_safe`) to rated responses with `beavertails-is_safe`
    (True = 1, False = 0).

    Args:
        rows: Raw rows.
        source: Value of the `source` column.
        on_invalid: `"raise"` (default) or `"drop"` for empty prompts or responses and `is_safe` values that are not
            booleans.
    """
    builder = RatingsBuilder(source, RATING_SCALES["beavertails"], on_invalid)
    for where, row in builder.read(rows):
        is_safe = row.get("is_safe")
        if not isinstance(is_safe, bool):
            builder.invalid("is_safe is not a boolean", where, is_safe=is_safe)
            continue
        prompt, response = _human_turn(row.get("prompt")), _text(row.get("response"))
        builder.add(where, prompt, response, {"beavertails-is_safe": float(is_safe)})
    return builder.finish()


def convert_codeultrafeedback_ratings(
    rows: Iterable[Mapping[str, Any]], source: str = "codeultrafeedback-ratings", on_invalid: str = "raise"
) -> ConvertedSource:
    """Convert CodeUltraFeedback rows to rated responses; each labels the row's one `code-<preference>` objective
    (1-5), the other four are NaN.

    Args:
        rows: Raw rows (`instruction`, `preference`, `responses`, `annotations`).
        source: Value of the `source` column.
        on_invalid: `"raise"` (default) or `"drop"` for an unknown preference, an annotation whose model has no
            response, a rating that is not a number or lies outside 1-5, empty prompts or responses.
    """
    builder = RatingsBuilder(source, RATING_SCALES["codeultrafeedback-ratings"], on_invalid)
    for where, row in builder.read(rows):
        objective = CODE_PREFERENCES.get(row.get("preference"))
        if objective is None:
            builder.invalid(
                f"preference is not one of {sorted(CODE_PREFERENCES)}", where, preference=row.get("preference")
            )
            continue
        responses = {entry.get("model"): entry.get("response") for entry in row.get("responses") or []}
        prompt = _human_turn(row.get("instruction"))
        for annotation in row.get("annotations") or []:
            model = annotation.get("model")
            at = f"{where}, {model}"
            if model not in responses:
                builder.invalid("annotation for a model without a response", at, model=model)
                continue
            rating = _rating(builder, at, annotation.get("rating"))
            if rating is not None:
                builder.add(at, prompt, _text(responses[model]), {objective: rating})
    return builder.finish()


def convert_prometheus_feedback(
    rows: Iterable[Mapping[str, Any]], source: str = "prometheus-feedback", on_invalid: str = "raise"
) -> ConvertedSource:
    """Convert Prometheus Feedback Collection rows (`orig_instruction`, `orig_response`, `orig_score`) to rated
    responses with `prometheus-score` (1-5).

    Args:
        rows: Raw rows.
        source: Value of the `source` column.
        on_invalid: `"raise"` (default) or `"drop"` for empty instructions or responses and scores that are not
            numbers or lie outside 1-5.
    """
    builder = RatingsBuilder(source, RATING_SCALES["prometheus-feedback"], on_invalid)
    for where, row in builder.read(rows):
        score = _rating(builder, where, row.get("orig_score"))
        if score is not None:
            prompt, response = _human_turn(row.get("orig_instruction")), _text(row.get("orig_response"))
            builder.add(where, prompt, response, {"prometheus-score": score})
    return builder.finish()


def convert_capybara_ratings(
    rows: Iterable[Mapping[str, Any]], source: str = "capybara-ratings", on_invalid: str = "raise"
) -> ConvertedSource:
    """Convert Argilla Capybara rows to two rated responses each (the chosen and the rejected reply), with
    `argilla-overall_quality` (1-5).

    Args:
        rows: Raw rows (`chosen`, `rejected` conversations, `chosen_rating`, `rejected_rating`).
        source: Value of the `source` column.
        on_invalid: `"raise"` (default) or `"drop"` for conversations that do not share their prompt or do not end
            with an assistant reply, ratings that are not numbers or lie outside 1-5, empty replies.
    """
    builder = RatingsBuilder(source, RATING_SCALES["capybara-ratings"], on_invalid)
    for where, row in builder.read(rows):
        split = split_shared_prompt(row.get("chosen"), row.get("rejected"))
        if isinstance(split, str):
            builder.invalid(split, where, chosen=row.get("chosen"), rejected=row.get("rejected"))
            continue
        prompt, chosen, rejected = split
        for side, text in (("chosen", chosen), ("rejected", rejected)):
            rating = _rating(builder, f"{where}, {side}", row.get(f"{side}_rating"))
            if rating is not None:
                builder.add(f"{where}, {side}", prompt, render_response(text), {"argilla-overall_quality": rating})
    return builder.finish()


def convert_openorca_ratings(
    rows: Iterable[Mapping[str, Any]], source: str = "openorca-ratings", on_invalid: str = "raise"
) -> ConvertedSource:
    """Convert Argilla OpenOrca rows to two rated responses each (the two `generations`), with `argilla-judge_lm`
    (JudgeLM's 1-10).

    Args:
        rows: Raw rows (`system`, `input`, `generations`, `rating`).
        source: Value of the `source` column.
        on_invalid: `"raise"` (default) or `"drop"` for rows whose ratings do not match their generations, ratings
            that are not numbers or lie outside 1-10, empty inputs or generations.
    """
    builder = RatingsBuilder(source, RATING_SCALES["openorca-ratings"], on_invalid)
    for where, row in builder.read(rows):
        generations, ratings = row.get("generations"), row.get("rating")
        if not isinstance(generations, list) or not isinstance(ratings, list) or len(generations) != len(ratings):
            builder.invalid("ratings do not match the generations", where, generations=generations, rating=ratings)
            continue
        question, system = row.get("input"), row.get("system")
        if isinstance(system, str) and system.strip() and isinstance(question, str) and question.strip():
            builder.note("system message prepended to the human turn", where, system=system)
            question = f"{system.strip()}\n\n{question.strip()}"
        prompt = _human_turn(question)
        for position, (generation, value) in enumerate(zip(generations, ratings)):
            at = f"{where}, generation {position}"
            rating = _rating(builder, at, value)
            if rating is not None:
                builder.add(at, prompt, _text(generation), {"argilla-judge_lm": rating})
    return builder.finish()


def convert_math_preference_ratings(
    rows: Iterable[Mapping[str, Any]],
    source: str = "math-preference-ratings",
    on_invalid: str = "raise",
    rating_scale: Sequence[float] = (1.0, 5.0),
) -> ConvertedSource:
    """Convert Argilla Math-Preference rows to two rated responses each, labelling
    `ultrafeedback-instruction_following` (the objective the paper shares with UltraFeedback).

    Args:
        rows: Raw rows (`instruction`, `chosen_response`, `chosen_rating`, `rejected_response`, `rejected_rating`).
        source: Value of the `source` column.
        on_invalid: `"raise"` (default) or `"drop"` for empty instructions or responses and ratings that are not
            numbers or lie outside `rating_scale`.
        rating_scale: `(low, high)` of the raw ratings; other than (1, 5) they are mapped linearly onto 1-5, so that
            they scale to [0, 1] as UltraFeedback's instruction-following ratings do (see the module docstring).
    """
    low, high = (float(bound) for bound in rating_scale)
    if not low < high:
        raise ValueError(f"`rating_scale` must be (low, high) with low < high, got {tuple(rating_scale)}.")
    objective = "ultrafeedback-instruction_following"
    target_low, target_high = RATING_SCALES["math-preference-ratings"][objective]
    builder = RatingsBuilder(source, {objective: (low, high)}, on_invalid)
    for where, row in builder.read(rows):
        prompt = _human_turn(row.get("instruction"))
        for side in ("chosen", "rejected"):
            rating = _rating(builder, f"{where}, {side}", row.get(f"{side}_rating"))
            if rating is not None:
                builder.add(f"{where}, {side}", prompt, _text(row.get(f"{side}_response")), {objective: rating})
    converted = builder.finish()
    if (low, high) == (target_low, target_high):
        return converted

    def onto_shared_scale(values: list[float]) -> list[float]:
        return [target_low + (value - low) * (target_high - target_low) / (high - low) for value in values]

    dataset = converted.dataset.map(lambda batch: {objective: onto_shared_scale(batch[objective])}, batched=True)
    return ConvertedSource(dataset, converted.report)
