"""OpenAssistant conversations (`OpenAssistant/oasst1`) as explicit-prompt preference pairs.

Reads both the flat Hub format (one row per message: `message_id`, `parent_id`, `role`, `rank`, `lang`, `text`,
`message_tree_id`, ...) and the nested tree export (one row per tree: `message_tree_id`, `prompt{..., replies[...]}`),
in any mix. Every two sibling assistant replies to the same prompter message with different ranks give one pair, the
lower rank (0 = best) being chosen; k ranked siblings give k(k-1)/2 pairs. Pairs with an unranked or deleted reply,
or with equal ranks, are skipped and counted.

The prompt is the conversation from the tree's root down to the parent prompter message, in the shared transcript
format (`"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant:"`). On the 100 English trees of
../shared/data/oasst this gives the 761 sibling pairs of the export, 754 of them ranked.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .conversion import ConvertedSource, PreferencePairsBuilder
from .formats import render_dialogue, render_response


__all__ = ["convert_oasst"]


def _flat_messages(row: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The messages of a row: the row itself (flat format) or every message of its tree (nested export)."""
    if not isinstance(row.get("prompt"), Mapping):
        yield dict(row)
        return
    tree_id = row.get("message_tree_id")
    stack = [(row["prompt"], None)]
    while stack:
        node, parent_id = stack.pop()
        yield {
            **{key: value for key, value in node.items() if key != "replies"},
            "parent_id": parent_id,
            "message_tree_id": tree_id,
        }
        stack.extend((reply, node.get("message_id")) for reply in node.get("replies") or [])


def _conversation(message: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]] | None:
    """The `(role, text)` turns from the root to `message`, or `None` if an ancestor is missing."""
    turns = []
    while message is not None:
        turns.append((message["role"], message["text"]))
        parent_id = message.get("parent_id")
        if parent_id is None:
            return turns[::-1]
        message = by_id.get(parent_id)
    return None


def convert_oasst(
    rows: Iterable[Mapping[str, Any]],
    source: str = "oasst1",
    on_invalid: str = "drop",
    languages: str | Sequence[str] | None = None,
) -> ConvertedSource:
    """Convert OASST messages or trees to `prompt`, `chosen`, `rejected`, `source` (ranked sibling replies).

    Args:
        rows: Flat message rows and/or nested tree rows.
        source: Value of the `source` column.
        on_invalid: `"drop"` or `"raise"` for messages without id, role or text, pairs whose conversation misses an
            ancestor message, empty replies.
        languages: Keep only pairs whose two replies are in these languages (e.g. `"en"` or `["en", "de"]`);
            `None` keeps every language.
    """
    builder = PreferencePairsBuilder(source, on_invalid)
    if isinstance(languages, str):
        languages = [languages]
    by_id: dict[str, dict[str, Any]] = {}
    replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for where, row in builder.read(rows):
        for message in _flat_messages(row):
            if (
                not message.get("message_id")
                or message.get("role") is None
                or not isinstance(message.get("text"), str)
            ):
                builder.invalid("message without message_id, role or text", where, **message)
                continue
            by_id[message["message_id"]] = message
            if message.get("parent_id") is not None:
                replies[message["parent_id"]].append(message)

    for parent_id, siblings in replies.items():
        parent = by_id.get(parent_id)
        assistants = [message for message in siblings if message["role"] == "assistant"]
        if parent is None or parent["role"] != "prompter" or len(assistants) < 2:
            continue
        prompt = None
        for first, second in itertools.combinations(assistants, 2):
            where = f"tree {parent.get('message_tree_id')}, replies {first['message_id']} / {second['message_id']}"
            if first.get("deleted") or second.get("deleted"):
                builder.skip("pair with a deleted reply")
            elif first.get("rank") is None or second.get("rank") is None:
                builder.skip("pair with an unranked reply")
            elif first["rank"] == second["rank"]:
                builder.skip("equal ranks")
            elif languages is not None and not (first.get("lang") in languages and second.get("lang") in languages):
                builder.skip(f"language not in {list(languages)}")
            else:
                if prompt is None:
                    turns = _conversation(parent, by_id)
                    if turns is None:
                        builder.invalid("conversation misses an ancestor message", where, parent=parent["text"])
                        continue
                    try:
                        prompt = render_dialogue(turns)
                    except ValueError as error:
                        builder.invalid(str(error), where, parent=parent["text"])
                        continue
                chosen, rejected = sorted((first, second), key=lambda message: message["rank"])
                builder.add(where, prompt, render_response(chosen["text"]), render_response(rejected["text"]))
    return builder.finish()
