"""Reading the YAML files trl-more takes (command-line configs, mixtures) strictly: a key given twice is an error.

PyYAML keeps the last of two equal keys without a word, so a config that sets `learning_rate` twice trains with
whichever comes last; here the file and both lines are named instead.
"""

from __future__ import annotations

import os
from typing import Any

import yaml


__all__ = ["load_yaml"]


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping with a repeated key."""


def _mapping_without_repeats(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key!r} is given twice (first on line {seen[key] + 1}); keep one",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def load_yaml(path: str | os.PathLike) -> Any:
    """The content of a YAML file; a key repeated within one mapping raises a `ValueError` naming the file and lines."""
    with open(path, encoding="utf-8") as handle:
        try:
            return yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.constructor.ConstructorError as error:
            line = error.problem_mark.line + 1 if error.problem_mark is not None else "?"
            raise ValueError(f"{os.fspath(path)}, line {line}: {error.problem}.") from error
