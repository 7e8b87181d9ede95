"""Contrastive learning on the reward head's input: SimCSE and SwAV losses from two dropout views of every pair.

The representation f(x, y) of a response is the input of the reward head at the pooled token (what MORE's hook
captures). A batch of N pairs gives 2N vectors: the chosen and the rejected responses (`"pair"`), or the differences
f_chosen - f_rejected and f_rejected - f_chosen (`"difference"`). The trainer runs the batch twice over in one forward
pass, the second copy with dropout on its token embeddings (`embedding_dropout`): the first copy is the training
view, the second the augmented one (one pass, because DeepSpeed ZeRO-3 does not support two forward passes of the same
modules before one backward pass).

Why there and not in every layer, as SimCSE does: many decoders have no dropout modules at all (Llama and Qwen2 only
drop attention weights, through a float attribute), TRL switches the others off for reward models, and under gradient
checkpointing the layers are recomputed in the backward pass with whatever dropout is set then, which would silently
give other values than the forward pass. The embedding output is computed once, outside the checkpointed layers, so
the second view is the same in the backward pass for every architecture. docs/noisy_preferences.md has the formulas.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import CONTRASTIVE_REPRESENTATIONS, check_choice
from .side_parameter import SideParameter


__all__ = ["SwAVPrototypes", "embedding_dropout", "representations", "simcse_loss", "sinkhorn", "swav_loss"]


def representations(features: torch.Tensor, mode: str) -> torch.Tensor:
    """The 2N vectors compared by the contrastive loss, from TRL-layout head inputs (2N, H), chosen rows first."""
    check_choice("contrastive representation", mode, CONTRASTIVE_REPRESENTATIONS, option=False)
    if mode == "pair":
        return features
    chosen, rejected = features.chunk(2)
    return torch.cat([chosen - rejected, rejected - chosen])  # "difference"


def simcse_loss(view_a: torch.Tensor, view_b: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """SimCSE with in-batch negatives: -mean_i log(exp(cos(a_i, b_i)/tau) / sum_j exp(cos(a_i, b_j)/tau))."""
    similarities = F.normalize(view_a.float(), dim=-1) @ F.normalize(view_b.float(), dim=-1).T / temperature
    return F.cross_entropy(similarities, torch.arange(len(view_a), device=view_a.device))


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Balanced soft assignments (codes) of B examples to K prototypes from their scores (B, K), Sinkhorn-Knopp.

    Every row sums to 1 (one example's code) and every column to B / K (the examples spread evenly over the
    prototypes): alternating normalisations of exp(scores / epsilon).
    """
    codes = torch.exp((scores.float() - scores.float().max()) / epsilon).T  # (K, B); the shift cancels out
    codes /= codes.sum()
    num_prototypes, batch = codes.shape
    for _ in range(iterations):
        codes /= codes.sum(dim=1, keepdim=True) * num_prototypes  # every prototype gets 1/K of the mass
        codes /= codes.sum(dim=0, keepdim=True) * batch  # every example 1/B
    return (codes * batch).T


def swav_loss(
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
) -> torch.Tensor:
    """SwAV's swapped prediction: each view predicts the other's Sinkhorn codes over the prototypes.

    l = -mean[sum_k q_b^k log softmax_k(z_a . c_k / tau) + sum_k q_a^k log softmax_k(z_b . c_k / tau)] / 2, with z
    the l2-normalised views and c_k the l2-normalised prototypes; the codes q carry no gradient.
    """
    unit_prototypes = F.normalize(prototypes, dim=-1)
    scores_a = F.normalize(view_a.float(), dim=-1) @ unit_prototypes.T
    scores_b = F.normalize(view_b.float(), dim=-1) @ unit_prototypes.T
    codes_a, codes_b = sinkhorn(scores_a, epsilon, iterations), sinkhorn(scores_b, epsilon, iterations)
    log_a = F.log_softmax(scores_a / temperature, dim=-1)
    log_b = F.log_softmax(scores_b / temperature, dim=-1)
    return -0.5 * ((codes_b * log_a).sum(-1) + (codes_a * log_b).sum(-1)).mean()


@contextlib.contextmanager
def embedding_dropout(model: nn.Module, probability: float, first_row: int = 0) -> Iterator[None]:
    """Within the block, the model's token embeddings of the batch rows from `first_row` on are dropped out with
    `probability` (inverted dropout, as `nn.Dropout`): a forward hook on `model.get_input_embeddings()`."""

    def drop(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return torch.cat([output[:first_row], F.dropout(output[first_row:], p=probability, training=True)])

    handle = model.get_input_embeddings().register_forward_hook(drop)
    try:
        yield
    finally:
        handle.remove()


class SwAVPrototypes(SideParameter):
    """SwAV's K prototype vectors, trained next to the reward model (see `SideParameter`) and kept at unit length: each
    AdamW step is followed by normalising the prototypes."""

    def __init__(self, num_prototypes: int, hidden_size: int, learning_rate: float, seed: int, device: torch.device):
        generator = torch.Generator().manual_seed(seed)
        initial = torch.randn(num_prototypes, hidden_size, generator=generator) / math.sqrt(hidden_size)
        super().__init__(F.normalize(initial, dim=-1).to(device), learning_rate)

    def _after_step(self) -> None:
        with torch.no_grad():
            self.weight.copy_(F.normalize(self.weight, dim=-1))
