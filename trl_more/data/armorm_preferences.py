"""The preference sources of the ArmoRM gate (docs/multi_objective.md), as explicit-prompt pairs from their Hub schemas.

Every converter returns `prompt`, `chosen`, `rejected` (shared transcript format) and `source`, like the other
preference converters; rows a source's pairing rule leaves out (ties, a filter) are counted as skipped, unreadable
rows as invalid. HH-RLHF and binarized UltraFeedback, the gate's other sources, convert in their own modules.

- SHP (`stanfordnlp/SHP`): a Reddit post `history` and two comments `human_ref_A` / `human_ref_B`; `labels` is 1 when
  A is preferred. `score_ratio` (preferred score / other score) measures how clear the preference is: the SHP
  authors recommend keeping ratios of at least 2 and at most 5 pairs per post (`min_score_ratio`,
  `max_pairs_per_post`, off by default).
- PKU-SafeRLHF (`PKU-Alignment/PKU-SafeRLHF-30K`, the paper's): `prompt`, `response_0`, `response_1`,
  `better_response_id` (more helpful) and `safer_response_id` (0 or 1), as two sources: `pku-saferlhf-better` and
  `pku-saferlhf-safer`.
- HelpSteer pairs (`nvidia/HelpSteer`): responses to the same prompt, scored by the mean of `attributes` (default
  helpfulness and correctness, the binarization of the RLHF Workflow data the paper's gate uses); every two
  responses of a prompt with different scores make a pair, the higher chosen; equal scores are skipped.
- PRM800K phase 2 (github.com/openai/prm800k, `prm800k/data/phase2_{train,test}.jsonl`; local files only): each row is
  one pre-generated solution (`question.pre_generated_steps`, joined by newlines) to a MATH `question.problem`,
  labelled step by step; `label.finish_reason` is `solution` when every step was rated correct and `found_error`
  when a step was wrong. Every correct solution of a problem is paired against every wrong one. Quality-control and
  screening rows (the same solutions served to every labeller), rows that ended in `bad_problem` or `give_up`, and
  repeated solution texts are skipped.
- Prometheus Preference Collection (`prometheus-eval/Preference-Collection`): `orig_instruction`,
  `orig_response_A`, `orig_response_B` and `orig_preference` (`A` or `B`).
- Argilla Capybara (`argilla/Capybara-Preferences-Filtered`): `chosen` / `rejected` conversations sharing their prompt;
  pairs with `chosen_rating == rejected_rating` are skipped as ties.
- Argilla Math-Preference (`argilla/distilabel-math-preference-dpo`): `instruction`, `chosen_response`,
  `rejected_response` and their ratings; ties skipped.
- CodeUltraFeedback (`coseal/CodeUltraFeedback`): of the (up to four) rated responses of an instruction, the best is
  chosen over the worst (the dataset authors' binarization; among equal ratings the first listed); instructions
  whose rated responses are all rated alike, or with fewer than two rated responses, are skipped.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .armorm_ratings import CODE_PREFERENCES, split_shared_prompt
from .conversion import ConvertedSource, PreferencePairsBuilder
from .declared import parse_rating
from .formats import render_dialogue, render_response
from .ratings import HELPSTEER_ATTRIBUTES, RATING_SCALES


__all__ = [
    "convert_capybara",
    "convert_codeultrafeedback",
    "convert_helpsteer_pairs",
    "convert_math_preference",
    "convert_pku_saferlhf_better",
    "convert_pku_saferlhf_safer",
    "convert_prm800k",
    "convert_prometheus_preference",
    "convert_shp",
]


def _human_turn(text: Any) -> str:
    return render_dialogue([("human", text)]) if isinstance(text, str) and text.strip() else ""


def _text(value: Any) -> str:
    return render_response(value) if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    """A rating as a float, or `None` when it is missing or not a number."""
    try:
        return parse_rating(value, ("N/A",))
    except ValueError:
        return None


def convert_shp(
    rows: Iterable[Mapping[str, Any]],
    source: str = "shp",
    on_invalid: str = "drop",
    min_score_ratio: float | None = None,
    max_pairs_per_post: int | None = None,
) -> ConvertedSource:
    """Convert SHP rows to pairs: the post as one human turn, the preferred comment chosen.

    Args:
        rows: Raw rows (`post_id`, `history`, `human_ref_A`, `human_ref_B`, `labels`, `score_ratio`, ...).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for rows without post or comments, a `labels` other than 0 or 1, a missing
            `score_ratio` when filtering by it, empty or identical comments.
        min_score_ratio: Keep only pairs whose `score_ratio` is at least this (the SHP authors suggest 2); the others
            are skipped and counted.
        max_pairs_per_post: Keep at most this many pairs per `post_id`, the first ones read (the SHP authors suggest
            5); the others are skipped and counted.
    """
    if min_score_ratio is not None and not min_score_ratio >= 1:
        raise ValueError(f"`min_score_ratio` is a ratio of scores, at least 1; got {min_score_ratio!r}.")
    if max_pairs_per_post is not None and (isinstance(max_pairs_per_post, bool) or max_pairs_per_post < 1):
        raise ValueError(f"`max_pairs_per_post` must be a positive count, got {max_pairs_per_post!r}.")
    builder = PreferencePairsBuilder(source, on_invalid)
    pairs_per_post: dict[Any, int] = defaultdict(int)
    for where, row in builder.read(rows):
        comments = (row.get("human_ref_A"), row.get("human_ref_B"))
        if not isinstance(row.get("history"), str) or not all(isinstance(comment, str) for comment in comments):
            builder.invalid("missing post or comment", where, history=row.get("history"), comments=comments)
            continue
        label = row.get("labels")
        if label not in (0, 1) or isinstance(label, bool):
            builder.invalid("labels is not 0 or 1", where, labels=label)
            continue
        if min_score_ratio is not None:
            ratio = row.get("score_ratio")
            if not isinstance(ratio, int | float):
                builder.invalid("missing score_ratio", where, score_ratio=ratio)
                continue
            if ratio < min_score_ratio:
                builder.skip(f"score ratio below {min_score_ratio:g}")
                continue
        post = row.get("post_id")
        if max_pairs_per_post is not None and pairs_per_post[post] >= max_pairs_per_post:
            builder.skip(f"beyond the first {max_pairs_per_post} pair(s) of the post")
            continue
        pairs_per_post[post] += 1
        preferred, other = comments if label == 1 else comments[::-1]
        builder.add(where, _human_turn(row["history"]), render_response(preferred), render_response(other))
    return builder.finish()


def _convert_pku_saferlhf(
    rows: Iterable[Mapping[str, Any]], source: str, on_invalid: str, preference: str
) -> ConvertedSource:
    builder = PreferencePairsBuilder(source, on_invalid)
    column = f"{preference}_response_id"
    for where, row in builder.read(rows):
        winner = row.get(column)
        if winner not in (0, 1) or isinstance(winner, bool):
            builder.invalid(f"{column} is not 0 or 1", where, **{column: winner})
            continue
        responses = (_text(row.get("response_0")), _text(row.get("response_1")))
        builder.add(where, _human_turn(row.get("prompt")), responses[winner], responses[1 - winner])
    return builder.finish()


def convert_pku_saferlhf_better(
    rows: Iterable[Mapping[str, Any]], source: str = "pku-saferlhf-better", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert PKU-SafeRLHF rows to pairs with the more helpful response (`better_response_id`) chosen.

    Args:
        rows: Raw rows (`prompt`, `response_0`, `response_1`, `better_response_id`, ...).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for a `better_response_id` other than 0 or 1, empty or identical responses.
    """
    return _convert_pku_saferlhf(rows, source, on_invalid, "better")


def convert_pku_saferlhf_safer(
    rows: Iterable[Mapping[str, Any]], source: str = "pku-saferlhf-safer", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert PKU-SafeRLHF rows to pairs with the safer response (`safer_response_id`) chosen.

    Args:
        rows: Raw rows (`prompt`, `response_0`, `response_1`, `safer_response_id`, ...).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for a `safer_response_id` other than 0 or 1, empty or identical responses.
    """
    return _convert_pku_saferlhf(rows, source, on_invalid, "safer")


def convert_helpsteer_pairs(
    rows: Iterable[Mapping[str, Any]],
    source: str = "helpsteer-pairs",
    on_invalid: str = "drop",
    attributes: Sequence[str] = ("helpfulness", "correctness"),
) -> ConvertedSource:
    """Convert HelpSteer rated responses to pairs of responses to the same prompt, the higher mean rating chosen.

    Args:
        rows: Raw rows (`prompt`, `response`, the five 0-4 attributes).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for responses missing a scoring attribute or rated outside 0-4, empty
            prompts or responses, identical responses.
        attributes: The HelpSteer attributes whose mean scores a response.
    """
    unknown = sorted(set(attributes) - set(HELPSTEER_ATTRIBUTES))
    if unknown or not attributes:
        raise ValueError(f"`attributes` must be some of {list(HELPSTEER_ATTRIBUTES)}, got {list(attributes)}.")
    low, high = RATING_SCALES["helpsteer"]["helpsteer-helpfulness"]
    builder = PreferencePairsBuilder(source, on_invalid)
    by_prompt: dict[str, list[tuple[str, str, float]]] = {}
    for where, row in builder.read(rows):
        ratings = [_number(row.get(name)) for name in attributes]
        if any(rating is None or not low <= rating <= high for rating in ratings):
            builder.invalid(f"missing or out-of-scale rating ({', '.join(attributes)})", where, ratings=ratings)
            continue
        prompt = row.get("prompt")
        by_prompt.setdefault(prompt if isinstance(prompt, str) else "", []).append(
            (where, _text(row.get("response")), sum(ratings) / len(ratings))
        )
    for prompt, responses in by_prompt.items():
        if len(responses) == 1:
            builder.skip("prompt with a single response")
        for (where_a, text_a, score_a), (where_b, text_b, score_b) in itertools.combinations(responses, 2):
            if score_a == score_b:
                builder.skip("tie (equal scores)")
                continue
            (chosen, rejected) = (text_a, text_b) if score_a > score_b else (text_b, text_a)
            builder.add(f"{where_a} / {where_b}", _human_turn(prompt), chosen, rejected)
    return builder.finish()


def convert_prm800k(
    rows: Iterable[Mapping[str, Any]], source: str = "prm800k-phase2", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert PRM800K phase-2 rows to pairs of a correct and a wrong solution to the same MATH problem.

    Args:
        rows: Raw rows (`question{problem, pre_generated_steps}`, `label{finish_reason}`, the quality-control flags).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for rows without a problem or pre-generated steps (e.g. phase-1 rows),
            and for a solution text labelled both correct and wrong (chosen identical to rejected).
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    solutions: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for where, row in builder.read(rows):
        question, label = row.get("question") or {}, row.get("label") or {}
        problem, steps = question.get("problem"), question.get("pre_generated_steps")
        if not isinstance(problem, str) or not isinstance(steps, list) or not steps:
            builder.invalid("not a phase-2 solution (no problem or pre_generated_steps)", where, problem=problem)
            continue
        if row.get("is_quality_control_question") or row.get("is_initial_screening_question"):
            builder.skip("quality-control or screening row")
            continue
        outcome = {"solution": "correct", "found_error": "wrong"}.get(label.get("finish_reason"))
        if outcome is None:
            builder.skip(f"labelling ended with {label.get('finish_reason')!r}")
            continue
        text = "\n".join(step.strip() for step in steps)
        kept = solutions.setdefault(problem, {"correct": [], "wrong": []})[outcome]
        if any(existing == text for _, existing in kept):
            builder.skip("repeated solution")
            continue
        kept.append((where, text))
    for problem, by_outcome in solutions.items():
        if not by_outcome["correct"] or not by_outcome["wrong"]:
            builder.skip("problem without both a correct and a wrong solution")
            continue
        for (where_a, correct), (where_b, wrong) in itertools.product(by_outcome["correct"], by_outcome["wrong"]):
            builder.add(
                f"{where_a} / {where_b}", _human_turn(problem), render_response(correct), render_response(wrong)
            )
    return builder.finish()


def convert_prometheus_preference(
    rows: Iterable[Mapping[str, Any]], source: str = "prometheus-preference", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert Prometheus Preference Collection rows to pairs, the response named by `orig_preference` chosen.

    Args:
        rows: Raw rows (`orig_instruction`, `orig_response_A`, `orig_response_B`, `orig_preference`, ...).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for an `orig_preference` other than A or B, empty or identical responses.
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        preference = row.get("orig_preference")
        winner = preference.strip().upper() if isinstance(preference, str) else None
        if winner not in ("A", "B"):
            builder.invalid("orig_preference is not A or B", where, orig_preference=preference)
            continue
        loser = "B" if winner == "A" else "A"
        builder.add(
            where,
            _human_turn(row.get("orig_instruction")),
            _text(row.get(f"orig_response_{winner}")),
            _text(row.get(f"orig_response_{loser}")),
        )
    return builder.finish()


def _rated_pair(
    builder: PreferencePairsBuilder, where: str, prompt: str, chosen: str, rejected: str, ratings: tuple[Any, Any]
) -> None:
    """Add the pair unless its ratings tie (skipped) or are not numbers (invalid); both are counted."""
    chosen_rating, rejected_rating = (_number(value) for value in ratings)
    if chosen_rating is None or rejected_rating is None:
        builder.invalid("missing or unreadable rating", where, ratings=ratings)
    elif chosen_rating == rejected_rating:
        builder.skip("tie (equal ratings)")
    else:
        builder.add(where, prompt, chosen, rejected)


def convert_capybara(
    rows: Iterable[Mapping[str, Any]], source: str = "capybara", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert Argilla Capybara rows to pairs (the shared conversation as prompt), skipping ties.

    Args:
        rows: Raw rows (`chosen`, `rejected` conversations, `chosen_rating`, `rejected_rating`).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for conversations that do not share their prompt or do not end with an
            assistant reply, missing ratings, empty or identical replies.
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        split = split_shared_prompt(row.get("chosen"), row.get("rejected"))
        if isinstance(split, str):
            builder.invalid(split, where, chosen=row.get("chosen"), rejected=row.get("rejected"))
            continue
        prompt, chosen, rejected = split
        ratings = (row.get("chosen_rating"), row.get("rejected_rating"))
        _rated_pair(builder, where, prompt, render_response(chosen), render_response(rejected), ratings)
    return builder.finish()


def convert_math_preference(
    rows: Iterable[Mapping[str, Any]], source: str = "math-preference", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert Argilla Math-Preference rows to pairs, skipping ties.

    Args:
        rows: Raw rows (`instruction`, `chosen_response`, `chosen_rating`, `rejected_response`, `rejected_rating`).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for missing ratings, empty instructions, empty or identical responses.
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        ratings = (row.get("chosen_rating"), row.get("rejected_rating"))
        prompt = _human_turn(row.get("instruction"))
        _rated_pair(
            builder, where, prompt, _text(row.get("chosen_response")), _text(row.get("rejected_response")), ratings
        )
    return builder.finish()


def convert_codeultrafeedback(
    rows: Iterable[Mapping[str, Any]], source: str = "codeultrafeedback", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert CodeUltraFeedback rows to pairs: the best-rated response chosen over the worst-rated one.

    Args:
        rows: Raw rows (`instruction`, `preference`, `responses`, `annotations`).
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for an unknown preference, an annotation whose model has no response, a
            rating that is neither a number nor "N/A", empty instructions, empty or identical responses.
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        if row.get("preference") not in CODE_PREFERENCES:
            builder.invalid("unknown coding preference", where, preference=row.get("preference"))
            continue
        responses = {entry.get("model"): entry.get("response") for entry in row.get("responses") or []}
        annotations = row.get("annotations") or []
        orphans = [annotation.get("model") for annotation in annotations if annotation.get("model") not in responses]
        if orphans:
            builder.invalid("annotation for a model without a response", where, models=orphans)
            continue
        try:
            ratings = [
                (annotation["model"], parse_rating(annotation.get("rating"), ("N/A",))) for annotation in annotations
            ]
        except ValueError:
            builder.invalid(
                "rating is not a number", where, ratings=[annotation.get("rating") for annotation in annotations]
            )
            continue
        rated = [(model, rating) for model, rating in ratings if rating is not None]
        if len(rated) < 2:
            builder.skip("fewer than two rated responses")
            continue
        best = max(rated, key=lambda entry: entry[1])  # the first of equal ratings
        worst = min(rated, key=lambda entry: entry[1])
        if best[1] == worst[1]:
            builder.skip("all responses rated alike")
            continue
        prompt = _human_turn(row.get("instruction"))
        builder.add(where, prompt, _text(responses[best[0]]), _text(responses[worst[0]]))
    return builder.finish()
