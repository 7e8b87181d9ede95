"""Small exact numerical solvers used by the trainers and models."""

from .min_norm import min_norm_weights, min_norm_weights_from_gram


__all__ = ["min_norm_weights", "min_norm_weights_from_gram"]
