"""Min-norm point of the convex hull of K gradients (the MGDA sub-problem MORE solves every step).

Given K vectors g_1..g_K, find simplex weights lambda minimising ||sum_i lambda_i g_i||^2. The answer depends on the
vectors only through their Gram matrix M = G G^T, so the solve runs on a K x K float64 matrix whatever the width H.

K = 2 has a closed form. For K > 2 we use Wolfe's min-norm-point algorithm (1976): an active-set method that is
exact in a finite number of steps, unlike the Frank-Wolfe loop of the reference code, which stops up to ~3e-3 away
from the optimum. Duplicates up to round-off (zero vectors included) are merged before the solve and share their
weight equally, so ties are broken symmetrically and no singular system is ever solved. Duplicates are found from the
vectors themselves when they are given: from the Gram matrix, ||g_i - g_j||^2 = M_ii + M_jj - 2 M_ij cancels to
noise when the two vectors agree to about half the float64 digits.
"""

from __future__ import annotations

import numpy as np
import torch


__all__ = ["min_norm_weights", "min_norm_weights_from_gram"]

# Relative tolerance (w.r.t. the largest squared norm) for optimality, for dropping vanishing weights and for
# merging duplicates.
_TOL = 1e-12
# Pairs whose Gram-matrix distance is above this (relative) are distinct for sure; below it they are measured exactly.
_SCREEN = 1e-8


def min_norm_weights(grads: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Simplex weights of the min-norm point of the convex hull of the rows of `grads` (shape K x H).

    Returns a vector of K non-negative weights summing to one, of the input's type (and, for tensors, its device and
    floating dtype). Computed in float64.

    Example:
        >>> min_norm_weights(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        tensor([0.8000, 0.2000])
    """
    if grads.ndim != 2:
        raise ValueError(f"`grads` must be a K x H matrix, got shape {tuple(grads.shape)}.")
    if isinstance(grads, torch.Tensor):
        weights = _min_norm_weights_of_vectors(grads.detach().to(torch.float64).cpu().numpy())
        dtype = grads.dtype if grads.is_floating_point() else torch.float32
        return torch.from_numpy(weights).to(device=grads.device, dtype=dtype)
    return _min_norm_weights_of_vectors(np.asarray(grads, dtype=np.float64))


def _min_norm_weights_of_vectors(vectors: np.ndarray) -> np.ndarray:
    gram = vectors @ vectors.T
    return min_norm_weights_from_gram(gram, _duplicate_groups(vectors, gram))


def min_norm_weights_from_gram(gram: np.ndarray, groups: list[list[int]] | None = None) -> np.ndarray:
    """Min-norm simplex weights from the Gram matrix `gram` (K x K) of the vectors.

    `groups` lists indices of identical vectors; each group is solved as one vector and its weight is split equally.
    Without it, duplicates are detected from the Gram matrix (rows i, j identical when M_ii + M_jj - 2 M_ij is zero up
    to round-off).
    """
    gram = np.asarray(gram, dtype=np.float64)
    k = gram.shape[0]
    if gram.shape != (k, k) or k == 0:
        raise ValueError(f"`gram` must be a non-empty square matrix, got shape {gram.shape}.")
    if groups is None:
        groups = _duplicate_groups_from_gram(gram)
    representatives = [group[0] for group in groups]
    reduced = gram[np.ix_(representatives, representatives)]
    scale = float(np.max(np.diag(reduced)))
    if len(groups) == 1 or scale <= 0.0:  # one distinct vector, or all vectors are zero: every weighting is optimal
        reduced_weights = np.full(len(groups), 1.0 / len(groups)) if len(groups) > 1 else np.ones(1)
    elif len(groups) == 2:
        reduced_weights = _two_vectors(reduced)
    else:
        reduced_weights = _wolfe(reduced / scale)
    weights = np.zeros(k)
    for group, weight in zip(groups, reduced_weights):
        weights[group] = weight / len(group)
    return weights


def _two_vectors(gram: np.ndarray) -> np.ndarray:
    """Closed form for two distinct vectors: weight on g1 is clip((g2.g2 - g1.g2) / ||g1 - g2||^2, 0, 1)."""
    distance = gram[0, 0] + gram[1, 1] - 2.0 * gram[0, 1]
    if distance <= 0.0:  # the vectors agree to round-off in their Gram matrix: any weighting is optimal
        return np.array([0.5, 0.5])
    gamma = float(np.clip((gram[1, 1] - gram[0, 1]) / distance, 0.0, 1.0))
    return np.array([gamma, 1.0 - gamma])


def _wolfe(gram: np.ndarray) -> np.ndarray:
    """Wolfe's min-norm-point algorithm on distinct vectors given by their (scaled) Gram matrix."""
    k = gram.shape[0]
    weights = np.zeros(k)
    start = int(np.argmin(np.diag(gram)))
    weights[start] = 1.0
    support = [start]
    for _ in range(50 * k):  # Wolfe's algorithm is finite; the bound only guards against round-off cycling
        gw = gram @ weights
        norm_sq = float(weights @ gw)
        entering = int(np.argmin(gw))
        if gw[entering] >= norm_sq - _TOL or entering in support:  # optimality: g_j . w >= ||w||^2 for every j
            break
        support.append(entering)
        while True:  # minor cycle: move towards the affine minimiser of the support, dropping vertices that leave it
            affine = _affine_minimizer(gram, support)
            if np.all(affine > _TOL):
                weights[:] = 0.0
                weights[support] = affine
                break
            current = weights[support]
            leaving = affine <= _TOL
            step = np.min(current[leaving] / (current[leaving] - affine[leaving]))
            current = current + step * (affine - current)
            current[current <= _TOL] = 0.0
            weights[:] = 0.0
            weights[support] = current
            support = [index for index in support if weights[index] > 0.0]
    weights = np.clip(weights, 0.0, None)
    return weights / weights.sum()


def _affine_minimizer(gram: np.ndarray, support: list[int]) -> np.ndarray:
    """Weights (summing to one, any sign) of the min-norm point of the affine hull of the support vectors."""
    n = len(support)
    system = np.zeros((n + 1, n + 1))
    system[:n, :n] = gram[np.ix_(support, support)]
    system[:n, n] = 1.0
    system[n, :n] = 1.0
    rhs = np.zeros(n + 1)
    rhs[n] = 1.0
    try:
        solution = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:  # affinely dependent up to round-off: the least-squares answer is still a minimiser
        solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
    return solution[:n]


def _duplicate_groups(vectors: np.ndarray, gram: np.ndarray) -> list[list[int]]:
    """Indices of rows equal up to round-off, grouped, in order of first appearance.

    The Gram matrix screens the pairs: its distances are exact to ~1e-15 of the largest squared norm, so only pairs
    it puts within `_SCREEN` of each other are measured on the vectors themselves.
    """
    scale = max(float(np.max(np.diag(gram))), np.finfo(np.float64).tiny)
    close = _gram_distances(gram) <= _SCREEN * scale
    for i, j in zip(*np.nonzero(np.triu(close, k=1))):
        close[i, j] = close[j, i] = float(np.sum((vectors[i] - vectors[j]) ** 2)) <= _TOL * scale
    return _groups(close)


def _duplicate_groups_from_gram(gram: np.ndarray) -> list[list[int]]:
    scale = max(float(np.max(np.diag(gram))), np.finfo(np.float64).tiny)
    return _groups(_gram_distances(gram) <= _TOL * scale)


def _gram_distances(gram: np.ndarray) -> np.ndarray:
    """Squared distances ||g_i - g_j||^2 from the Gram matrix (with round-off of ~1e-16 of the squared norms)."""
    diagonal = np.diag(gram)
    return diagonal[:, None] + diagonal[None, :] - 2.0 * gram


def _groups(close: np.ndarray) -> list[list[int]]:
    """Greedy groups: every index joins the first group whose first member it is close to."""
    groups: list[list[int]] = []
    firsts: list[int] = []
    for index in range(len(close)):
        matches = np.flatnonzero(close[index, firsts]) if firsts else ()
        if len(matches):
            groups[matches[0]].append(index)
        else:
            groups.append([index])
            firsts.append(index)
    return groups
