"""MORE's lambda: per-source loss weights from the min-norm point of the smoothed, normalised head gradients.

Every step updates one moving average per source, m_i <- (1 - a) m_i + a g_i (m_i starting at zero), normalises
the averages (MGDA's options: l2, loss, loss+, none), and solves for the simplex weights lambda of the point of
minimum norm in their convex hull (docs/more.md). The moving averages are the only state; they are saved in
checkpoints, together with the source names they belong to, so that a resumed run continues the same trajectory and
a run resumed with other sources is refused instead of silently mixing them up.

A source whose moving average is zero (all its pairs tied so far, e.g. chosen identical to rejected after
truncation) carries no information about a direction: the zero vector would be the min-norm point on its own and
take all the weight. Such sources get lambda = 0 and the others are solved without them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..constants import check_choice
from ..solvers import min_norm_weights
from .more_config import GRADIENT_NORMALIZATIONS


__all__ = ["MinNormLambda", "normalize_gradients"]


def normalize_gradients(gradients: torch.Tensor, losses: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale every row of `gradients` (K x H) as MGDA does: by its L2 norm (`"l2"`), by its source's loss
    (`"loss"`), by both (`"loss+"`), or not at all (`"none"`). A zero scale leaves the row unchanged."""
    check_choice("gradient normalization", mode, GRADIENT_NORMALIZATIONS, option=False)
    if mode == "none":
        return gradients
    norms = gradients.norm(dim=1)
    scales = {"l2": norms, "loss": losses, "loss+": losses * norms}[mode]
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    return gradients / scales[:, None]


class MinNormLambda:
    """Turns per-source head gradients into MORE's lambda, step after step.

    Args:
        sources: names of the K sources, in the order of the gradient rows (saved with the state and checked when
            it is loaded).
        momentum: weight `a` of the newest gradient in the moving average (1.0: no smoothing).
        normalization: `"l2"`, `"loss"`, `"loss+"` or `"none"`.
    """

    def __init__(self, sources: Sequence[str], momentum: float = 0.99, normalization: str = "l2"):
        self.sources = list(sources)
        self.momentum = momentum
        self.normalization = normalization
        self.moving_gradients: torch.Tensor | None = None

    def __call__(self, gradients: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """lambda (K,) for the head `gradients` (K x H) and source `losses` (K,) of the current batch."""
        gradients = gradients.detach().float()
        if self.moving_gradients is None:
            self.moving_gradients = torch.zeros_like(gradients)
        self.moving_gradients = self.moving_gradients.to(gradients.device)
        self.moving_gradients.mul_(1.0 - self.momentum).add_(gradients, alpha=self.momentum)
        # Normalised in float64, like the solve, so that e.g. unit vectors are unit to round-off.
        normalized = normalize_gradients(self.moving_gradients.double(), losses.detach().double(), self.normalization)
        informative = self.moving_gradients.abs().amax(dim=1) > 0
        lambdas = torch.zeros(len(self.sources), dtype=torch.float64, device=gradients.device)
        if not informative.any():  # nothing seen yet from any source: no preference between them
            return lambdas.fill_(1.0 / len(self.sources)).to(gradients.dtype)
        lambdas[informative] = min_norm_weights(normalized[informative])
        return lambdas.to(gradients.dtype)

    def state_dict(self) -> dict:
        moving = None if self.moving_gradients is None else self.moving_gradients.cpu()
        return {
            "moving_gradients": moving,
            "sources": self.sources,
            "momentum": self.momentum,
            "normalization": self.normalization,
        }

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("sources")
        if saved is not None and list(saved) != self.sources:
            raise ValueError(
                f"The checkpoint's MORE state belongs to the sources {list(saved)}, but this run trains on "
                f"{self.sources}. Resume with the same sources in the same order (a dict of datasets: the same keys in "
                "the same order; a source column: the same values, first appearing in the same order), or start a "
                "new run in another `output_dir`."
            )
        self.moving_gradients = state["moving_gradients"]
