"""trl-more: better-calibrated reward models from diversified human preferences, as drop-in TRL components."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING


__version__ = "0.1.0"

# Public names and the module that defines each; imported on first use so that `import trl_more` stays fast and the
# light modules (solvers, metrics, data) do not pull in trl and transformers.
_EXPORTS = {
    "MORERewardConfig": "trl_more.trainer",
    "MORERewardTrainer": "trl_more.trainer",
    "min_norm_weights": "trl_more.solvers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trl_more' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .solvers import min_norm_weights  # noqa: F401
    from .trainer import MORERewardConfig, MORERewardTrainer  # noqa: F401
