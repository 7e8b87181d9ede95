"""Per-source loss weights: MORE's min-norm weighting of smoothed, normalised head gradients."""

from __future__ import annotations

import torch

from ..solvers import min_norm_weights


__all__ = ["MinNormSourceWeighting", "normalize_gradients"]


def normalize_gradients(gradients: torch.Tensor, losses: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale every row of `gradients` (K x H) as MGDA does: by its L2 norm (`"l2"`), by its source's loss
    (`"loss"`), by both (`"loss+"`), or not at all (`"none"`). A zero scale leaves the row unchanged."""
    if mode == "none":
        return gradients
    norms = gradients.norm(dim=1)
    scales = {"l2": norms, "loss": losses, "loss+": losses * norms}.get(mode)
    if scales is None:
        raise ValueError(f"Unknown gradient normalization {mode!r}; choose 'l2', 'none', 'loss' or 'loss+'.")
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    return gradients / scales[:, None]


class MinNormSourceWeighting:
    """Turns per-source head gradients into simplex weights, step after step (SPEC section 1).

    Every call updates the moving averages m_i <- (1 - momentum) m_i + momentum g_i (m_i starting at zero),
    normalises them and returns the min-norm weights over them. The moving averages are the only state; they are
    saved in checkpoints through `state_dict` so that a resumed run continues the same trajectory.
    """

    def __init__(self, num_sources: int, momentum: float = 0.99, normalization: str = "l2"):
        self.num_sources = num_sources
        self.momentum = momentum
        self.normalization = normalization
        self.moving_gradients: torch.Tensor | None = None

    def __call__(self, gradients: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Weights (K,) for the head `gradients` (K x H) and source `losses` (K,) of the current batch."""
        gradients = gradients.detach().float()
        if self.moving_gradients is None:
            self.moving_gradients = torch.zeros_like(gradients)
        self.moving_gradients = self.moving_gradients.to(gradients.device)
        self.moving_gradients.mul_(1.0 - self.momentum).add_(gradients, alpha=self.momentum)
        # Normalised in float64, like the solve, so that e.g. unit vectors are unit to round-off.
        normalized = normalize_gradients(self.moving_gradients.double(), losses.detach().double(), self.normalization)
        return min_norm_weights(normalized)

    def state_dict(self) -> dict:
        moving = None if self.moving_gradients is None else self.moving_gradients.cpu()
        return {"moving_gradients": moving, "momentum": self.momentum, "normalization": self.normalization}

    def load_state_dict(self, state: dict) -> None:
        self.moving_gradients = state["moving_gradients"]
