"""Text statistics of sampled responses: distinct-n diversity and a check for degenerate responses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): unique word n-grams over all n-grams of all texts; 0.0 when there are none.

    Words are whitespace-separated tokens. A falling distinct-2 across iterations signals collapsing diversity (e.g. a
    reward hack spreading through the selected responses).
    """
    ngrams = Counter()
    for text in texts:
        words = text.split()
        ngrams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(ngrams.values())
    return len(ngrams) / total if total else 0.0


def is_degenerate_response(response: str, max_repeated_fraction: float = 0.5, min_units: int = 8) -> bool:
    """Whether a response is empty or dominated by one repeated word or character.

    A response is degenerate when it has no visible characters, or when one word makes up more than
    `max_repeated_fraction` of its words, or one character more than that fraction of its non-space characters
    (counted only when there are at least `min_units` words / characters, so short answers like "Yes." pass). English
    text has no character above ~15%, so the default 0.5 only catches runs such as "!!!!!!!!" or "the the the".
    """
    words = response.split()
    if not words:
        return True
    characters = "".join(words)
    for units in (words, characters):
        if len(units) >= min_units and Counter(units).most_common(1)[0][1] > max_repeated_fraction * len(units):
            return True
    return False
