"""Small exact numerical solvers used by the trainers and models."""

from .debias import debias_transform, verbosity_penalties
from .min_norm import min_norm_weights, min_norm_weights_from_gram
from .ridge import DEFAULT_ALPHAS, RidgeFit, fit_ridge, ridge_path


__all__ = [
    "DEFAULT_ALPHAS",
    "RidgeFit",
    "debias_transform",
    "fit_ridge",
    "min_norm_weights",
    "min_norm_weights_from_gram",
    "ridge_path",
    "verbosity_penalties",
]
