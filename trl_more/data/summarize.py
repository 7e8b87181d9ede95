"""OpenAI summarize-from-feedback comparisons (`openai/summarize_from_feedback`, config `comparisons`) as pairs.

Raw rows: `info{post, title, subreddit, article, ...}`, `summaries[{text, policy, note}]` (two), `choice` (index of
the preferred summary). The prompt is one human turn asking for the summary, with the Reddit post in the TL;DR
layout of the original work (`SUBREDDIT: r/...`, `TITLE: ...`, `POST: ...`), or, for the CNN/DailyMail rows that have
an `article` instead of a post, the article. The chosen summary is `summaries[choice]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .conversion import ConvertedSource, PreferencePairsBuilder
from .formats import render_dialogue, render_response


__all__ = ["convert_summarize", "summary_request"]


def summary_request(info: Mapping[str, Any]) -> str | None:
    """The human turn asking to summarise the post (or article) of `info`, or `None` if it has no text."""
    if info.get("post"):
        return (
            "Write a TL;DR summary of this Reddit post.\n\n"
            f"SUBREDDIT: r/{info.get('subreddit') or ''}\nTITLE: {info.get('title') or ''}\nPOST: {info['post']}"
        )
    if info.get("article"):
        title = f"TITLE: {info['title']}\n" if info.get("title") else ""
        return f"Write a short summary of this news article.\n\n{title}ARTICLE: {info['article']}"
    return None


def convert_summarize(
    rows: Iterable[Mapping[str, Any]], source: str = "summarize", on_invalid: str = "drop"
) -> ConvertedSource:
    """Convert summarize-from-feedback comparison rows to `prompt`, `chosen`, `rejected`, `source`.

    Args:
        rows: Raw rows in the Hub schema.
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for rows without post or article, without two summaries and a choice of 0
            or 1, and with an empty summary.
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    for where, row in builder.read(rows):
        request = summary_request(row.get("info") or {})
        summaries, choice = row.get("summaries") or [], row.get("choice")
        if request is None:
            builder.invalid("no post or article to summarise", where, info=row.get("info"))
            continue
        if len(summaries) != 2 or choice not in (0, 1):
            builder.invalid("expected two summaries and a choice of 0 or 1", where, summaries=summaries, choice=choice)
            continue
        texts = [summary.get("text") or "" for summary in summaries]
        builder.add(
            where,
            render_dialogue([("human", request)]),
            render_response(texts[choice]),
            render_response(texts[1 - choice]),
        )
    return builder.finish()
