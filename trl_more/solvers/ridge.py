"""Closed-form ridge regression of several objectives at once, for every regularisation strength at once.

Stage 1 of the multi-objective reward model (docs/multi_objective.md) fits a linear layer on frozen features, one objective at
a time, choosing the ridge strength alpha per objective from a grid by validation MSE. Refitting for every alpha and
every objective (what a loop of `sklearn.linear_model.Ridge` fits does) repeats the same expensive work: the feature
covariance X^T X and its factorisation. Here both are computed once per set of labelled rows. The covariance is
reduced to X^T X = Q T Q^T with T tridiagonal (the first, and cheaper, half of a symmetric eigendecomposition; the
second half would cost twice as much again), after which the solution for any alpha and any target column,

    w(alpha) = Q (T + alpha I)^-1 Q^T X^T y,

costs one O(d) tridiagonal solve and two multiplications by Q. When there are fewer rows than features the n x n Gram
matrix X X^T is reduced instead, using (X^T X + alpha I)^-1 X^T = X^T (X X^T + alpha I)^-1. Objectives with missing
labels (NaN) are fitted on their labelled rows only: one reduction per distinct pattern of labelled rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas, lapack


__all__ = ["DEFAULT_ALPHAS", "RidgeFit", "fit_ridge", "ridge_path"]

# The reference's grid: 1e-4, 1e-3, ..., 1e4.
DEFAULT_ALPHAS = tuple(float(10.0**exponent) for exponent in range(-4, 5))


@dataclass
class RidgeFit:
    """Ridge regression layer chosen per objective by validation MSE.

    Attributes:
        weights: (k, d) weights, laid out like `torch.nn.Linear.weight` (predictions are `features @ weights.T`).
        intercepts: (k,) intercepts; zeros when fitted without intercept.
        alphas: (k,) ridge strength chosen for every objective.
        alpha_grid: (n_alphas,) the grid that was searched.
        validation_mse: (n_alphas, k) validation MSE of every objective for every alpha, on its labelled rows.
        objective_names: names of the k objectives, when given.
    """

    weights: np.ndarray
    intercepts: np.ndarray
    alphas: np.ndarray
    alpha_grid: np.ndarray
    validation_mse: np.ndarray
    objective_names: list[str] | None = None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions (n, k) for features (n, d)."""
        return np.asarray(features, dtype=np.float64) @ self.weights.T + self.intercepts


class _RidgeSystem:
    """The ridge problems of one set of rows: one tridiagonal reduction, then any alpha and target in closed form."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, fit_intercept: bool):
        self.feature_mean = features.mean(axis=0) if fit_intercept else np.zeros(features.shape[1])
        self.target_mean = targets.mean(axis=0) if fit_intercept else np.zeros(targets.shape[1])
        if fit_intercept:
            features = features - self.feature_mean
            targets = targets - self.target_mean
        num_rows, num_features = features.shape
        # syrk fills only the lower triangle, which is all the reduction reads: half the work of a full product.
        self._dual_features = features if num_rows < num_features else None
        if self._dual_features is not None:
            matrix, right_hand_side = blas.dsyrk(1.0, features.T, trans=1, lower=1), targets
        else:
            matrix, right_hand_side = blas.dsyrk(1.0, features.T, lower=1), features.T @ targets
        # Only argument errors make dsytrd and dormqr report a nonzero info, and the arguments are built here.
        reduced, self._diagonal, self._off_diagonal, self._tau, _ = lapack.dsytrd(matrix, lower=1, overwrite_a=1)
        self._reflectors = reduced[1:, :-1]  # Q's Householder vectors, in the layout of a QR factorisation
        self._projected_targets = self._multiply_by_q(right_hand_side, transpose=True)

    def _multiply_by_q(self, matrix: np.ndarray, transpose: bool) -> np.ndarray:
        """Q^T @ matrix (or Q @ matrix); Q fixes the first coordinate and acts on the others, as in LAPACK's dormtr."""
        result = np.array(matrix, order="F")
        if self._tau.size == 0:  # a 1 x 1 problem: Q is the identity
            return result
        trans = "T" if transpose else "N"
        _, query, _ = lapack.dormqr("L", trans, self._reflectors, self._tau, result[1:], lwork=-1)
        result[1:], _, _ = lapack.dormqr("L", trans, self._reflectors, self._tau, result[1:], lwork=int(query[0]))
        return result

    def _solve_shifted(self, alpha: float) -> np.ndarray:
        """(T + alpha I)^-1 @ Q^T y, by Gaussian elimination with partial pivoting (stable even when round-off
        leaves T slightly indefinite)."""
        diagonal = self._diagonal + alpha
        if diagonal.size == 1:
            return self._projected_targets / diagonal[0]
        *_, solution, info = lapack.dgtsv(self._off_diagonal, diagonal, self._off_diagonal, self._projected_targets)
        if info != 0:
            raise np.linalg.LinAlgError(
                f"The ridge system is singular for alpha={alpha}: use a larger ridge strength."
            )
        return solution

    def coefficients(self, alphas: np.ndarray) -> np.ndarray:
        """(n_alphas, d, k) coefficients."""
        # One multiplication by Q for all alphas: it reads all of Q, while the tridiagonal solves are cheap.
        shifted = np.concatenate([self._solve_shifted(alpha) for alpha in alphas], axis=1)  # (r, n_alphas * k)
        size, num_targets = self._projected_targets.shape
        solutions = self._multiply_by_q(shifted, transpose=False).reshape(size, len(alphas), num_targets)
        solutions = solutions.transpose(1, 0, 2)
        if self._dual_features is not None:
            return self._dual_features.T @ solutions
        return solutions

    def intercepts(self, coefficients: np.ndarray) -> np.ndarray:
        """(n_alphas, k) intercepts of the coefficients."""
        return self.target_mean[None] - self.feature_mean @ coefficients

    def predict(self, coefficients: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(n_alphas, m, k) predictions of the coefficients for features (m, d)."""
        return (features - self.feature_mean) @ coefficients + self.target_mean


def _check_inputs(
    features: np.ndarray, targets: np.ndarray, name: str, objective_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim == 1:
        targets = targets[:, None]
    if features.ndim != 2 or targets.ndim != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError(
            f"The {name} features must be (n, d) and the targets (n, k) with the same n, got {features.shape} and "
            f"{targets.shape}."
        )
    if not np.isfinite(features).all():
        raise ValueError(f"The {name} features contain NaN or infinite values; only targets may be missing (NaN).")
    if np.isinf(targets).any():
        raise ValueError(f"The {name} targets contain infinite values; mark missing labels with NaN.")
    if objective_names is not None and len(objective_names) != targets.shape[1]:
        raise ValueError(f"Got {len(objective_names)} objective names for {targets.shape[1]} target columns.")
    return features, targets


def _check_alphas(alphas: Sequence[float]) -> np.ndarray:
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if alphas.size == 0 or not (alphas > 0).all():
        raise ValueError(f"Ridge strengths must be a non-empty list of positive numbers, got {alphas.tolist()}.")
    return alphas


def _mask_groups(
    targets: np.ndarray, name: str, objective_names: Sequence[str] | None
) -> list[tuple[np.ndarray | slice, np.ndarray]]:
    """Groups of objectives labelled on exactly the same rows: [(rows, objective indices), ...]."""
    labelled = ~np.isnan(targets)
    empty = np.flatnonzero(~labelled.any(axis=0))
    if empty.size:
        names = [objective_names[i] for i in empty] if objective_names is not None else empty.tolist()
        raise ValueError(
            f"Objective(s) {names} have no labels in the {name} set; every objective needs labelled rows there. "
            "Remove the objective or add rated examples for it."
        )
    groups: dict[bytes, list[int]] = {}
    for objective in range(labelled.shape[1]):
        groups.setdefault(labelled[:, objective].tobytes(), []).append(objective)
    # A slice selects all rows without copying the features.
    return [
        (slice(None) if labelled[:, objectives[0]].all() else labelled[:, objectives[0]], np.array(objectives))
        for objectives in groups.values()
    ]


def ridge_path(
    features: np.ndarray,
    targets: np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    fit_intercept: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge solutions of every target column for every alpha.

    Minimises ||X w + c - y||^2 + alpha ||w||^2 for each column y of `targets` over its labelled (non-NaN) rows; the
    intercept c is zero unless `fit_intercept` (then it is not penalised, as in scikit-learn).

    Args:
        features: (n, d) features.
        targets: (n, k) targets, NaN where a row is not labelled for an objective.
        alphas: ridge strengths (positive).
        fit_intercept: also fit an unpenalised intercept per objective.

    Returns:
        coefficients (n_alphas, k, d) and intercepts (n_alphas, k).
    """
    features, targets = _check_inputs(features, targets, "training", None)
    alphas = _check_alphas(alphas)
    coefficients = np.zeros((alphas.size, targets.shape[1], features.shape[1]))
    intercepts = np.zeros((alphas.size, targets.shape[1]))
    for rows, objectives in _mask_groups(targets, "training", None):
        system = _RidgeSystem(features[rows], targets[rows][:, objectives], fit_intercept)
        group_coefficients = system.coefficients(alphas)
        coefficients[:, objectives] = group_coefficients.transpose(0, 2, 1)
        intercepts[:, objectives] = system.intercepts(group_coefficients)
    return coefficients, intercepts


def fit_ridge(
    train_features: np.ndarray,
    train_targets: np.ndarray,
    validation_features: np.ndarray,
    validation_targets: np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    fit_intercept: bool = False,
    objective_names: Sequence[str] | None = None,
) -> RidgeFit:
    """Fit every objective by ridge regression, choosing its alpha from `alphas` by validation MSE.

    Each objective is fitted on the training rows where it is labelled and validated on the validation rows where it
    is labelled (NaN marks a missing label). Ties between alphas go to the smallest. The returned weights are the
    training-set solutions at the chosen alphas.

    Raises:
        ValueError: if an objective has no label in the training set or in the validation set, if features contain
            NaN, or if shapes or alphas are invalid.
    """
    train_features, train_targets = _check_inputs(train_features, train_targets, "training", objective_names)
    validation_features, validation_targets = _check_inputs(
        validation_features, validation_targets, "validation", objective_names
    )
    if (
        validation_features.shape[1] != train_features.shape[1]
        or validation_targets.shape[1] != train_targets.shape[1]
    ):
        raise ValueError(
            f"Training data is {train_features.shape[1]} features x {train_targets.shape[1]} objectives but the "
            f"validation data is {validation_features.shape[1]} x {validation_targets.shape[1]}."
        )
    _mask_groups(validation_targets, "validation", objective_names)  # every objective needs validation labels
    alphas = _check_alphas(alphas)
    num_objectives = train_targets.shape[1]
    validation_labelled = ~np.isnan(validation_targets)
    validation_mse = np.zeros((alphas.size, num_objectives))
    weights = np.zeros((num_objectives, train_features.shape[1]))
    intercepts = np.zeros(num_objectives)
    chosen = np.zeros(num_objectives, dtype=int)
    for rows, objectives in _mask_groups(train_targets, "training", objective_names):
        system = _RidgeSystem(train_features[rows], train_targets[rows][:, objectives], fit_intercept)
        coefficients = system.coefficients(alphas)  # (n_alphas, d, group size)
        group_intercepts = system.intercepts(coefficients)
        predictions = system.predict(coefficients, validation_features)  # (n_alphas, m, group size)
        for position, objective in enumerate(objectives):
            labelled = validation_labelled[:, objective]
            errors = predictions[:, labelled, position] - validation_targets[labelled, objective]
            validation_mse[:, objective] = (errors**2).mean(axis=1)
        chosen[objectives] = validation_mse[:, objectives].argmin(axis=0)
        for position, objective in enumerate(objectives):
            weights[objective] = coefficients[chosen[objective], :, position]
            intercepts[objective] = group_intercepts[chosen[objective], position]
    return RidgeFit(
        weights=weights,
        intercepts=intercepts,
        alphas=alphas[chosen],
        alpha_grid=alphas,
        validation_mse=validation_mse,
        objective_names=list(objective_names) if objective_names is not None else None,
    )
