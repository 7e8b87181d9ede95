"""The one text format every converted source shares, and the columns of the converted data sets.

Every source is rendered as an Anthropic-HH style transcript, so that a reward model sees one format whatever the
source: the prompt is the conversation so far, `"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant:"`
ending with the assistant tag, and each response starts with the space that follows the tag (`" Sure, ..."`), so that
`prompt + chosen` is the full transcript (TRL's reward trainer concatenates them exactly so).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..constants import SOURCE_COLUMN


__all__ = [
    "ASSISTANT_TAG",
    "HUMAN_TAG",
    "PREFERENCE_COLUMNS",
    "RATING_TEXT_COLUMNS",
    "render_dialogue",
    "render_reply",
    "render_response",
]

HUMAN_TAG = "\n\nHuman:"
ASSISTANT_TAG = "\n\nAssistant:"

# Columns of a converted preference source (TRL's explicit-prompt standard preference format plus the source).
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected", SOURCE_COLUMN)
# Text columns of a converted rating source; one float column per objective follows.
RATING_TEXT_COLUMNS = ("prompt", "response", SOURCE_COLUMN)

_ROLE_TAGS = {
    "human": HUMAN_TAG,
    "user": HUMAN_TAG,
    "prompter": HUMAN_TAG,
    "assistant": ASSISTANT_TAG,
}


def render_dialogue(turns: Sequence[tuple[str, str]]) -> str:
    """The prompt for the next assistant reply: every `(role, text)` turn after its tag, then the assistant tag.

    Roles are `"human"`, `"user"` or `"prompter"` (rendered `Human:`) and `"assistant"`; any other role is a
    `ValueError`, because this format has no place for it (e.g. a system message).
    """
    return _render_turns(turns) + ASSISTANT_TAG


def render_response(text: str) -> str:
    """A response as it follows the assistant tag: one space, then the text without surrounding whitespace."""
    return f" {text.strip()}"


def render_reply(turns: Sequence[tuple[str, str]]) -> str:
    """The turns that follow a rendered prompt (e.g. a conversational `chosen`): the first, the assistant's reply,
    as `render_response`, then any later turns after their tags. A reply that does not start with an assistant turn
    is a `ValueError`, since the prompt ends with the assistant tag."""
    if not turns or turns[0][0] != "assistant":
        first = repr(turns[0][0]) if turns else "nothing"
        raise ValueError(f"a reply must start with an assistant turn, not {first}")
    (_, text), *later = turns
    return render_response(text) + _render_turns(later)


def _render_turns(turns: Sequence[tuple[str, str]]) -> str:
    parts = []
    for role, text in turns:
        if role not in _ROLE_TAGS:
            raise ValueError(f"unsupported role {role!r} (the transcript format has {sorted(_ROLE_TAGS)})")
        parts.append(f"{_ROLE_TAGS[role]} {text.strip()}")
    return "".join(parts)
