"""The min-norm solver against the known answers of docs/more.md and the optimality conditions of the problem."""

import math

import numpy as np
import pytest
import torch

from trl_more.solvers import min_norm_weights, min_norm_weights_from_gram


S = 1 / math.sqrt(2)
KNOWN_ANSWERS = [
    ([[1, 0], [0, 1]], [0.5, 0.5]),
    ([[1, 0], [0, 2]], [0.8, 0.2]),
    ([[1, 0], [2, 0]], [1, 0]),
    ([[1, 0], [-2, 0]], [2 / 3, 1 / 3]),
    ([[1, 0, 0], [0, 2, 0], [0, 0, 3]], [36 / 49, 9 / 49, 4 / 49]),
    ([[1, 0], [0, 1], [1, 1]], [0.5, 0.5, 0]),
    ([[1, 0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]], [1 / 3, 1 / 3, 1 / 3]),
    ([[1, 0, 0], [0, 1, 0], [0, 0, 1], [S, S, 0], [0.6, 0.8, 0]], [1 / 3, 1 / 3, 1 / 3, 0, 0]),
]


@pytest.mark.parametrize(("vectors", "expected"), KNOWN_ANSWERS)
def test_known_answers(vectors, expected):
    np.testing.assert_allclose(min_norm_weights(np.array(vectors, dtype=float)), expected, atol=1e-6)


def test_opposite_vectors_reach_the_origin():
    grads = np.array([[1.0, 0.0], [-2.0, 0.0]])
    weights = min_norm_weights(grads)
    assert np.linalg.norm(weights @ grads) < 1e-12


def assert_optimal(grads: np.ndarray, weights: np.ndarray, tol: float = 1e-9):
    """KKT conditions of min ||G^T w|| on the simplex: g_i . w >= ||w||^2, with equality where the weight is positive."""
    assert np.all(weights >= 0) and abs(weights.sum() - 1) < 1e-12
    point = weights @ grads
    norm_sq = point @ point
    products = grads @ point
    scale = max(1.0, np.max(np.abs(grads)) ** 2)
    assert np.all(products >= norm_sq - tol * scale)
    active = weights > 1e-9
    np.testing.assert_allclose(products[active], norm_sq, atol=tol * scale)


@pytest.mark.parametrize("num_vectors", [2, 3, 5, 16, 64])
@pytest.mark.parametrize("width", [2, 7, 384])
def test_random_problems_satisfy_optimality(num_vectors, width):
    rng = np.random.default_rng(num_vectors * 1000 + width)
    for trial in range(5):
        grads = rng.normal(size=(num_vectors, width))
        if trial % 2:  # correlated gradients, the usual case in training: the optimum sits on a face of the simplex
            grads += 3.0 * rng.normal(size=(1, width))
        assert_optimal(grads, min_norm_weights(grads))


def test_zero_vector_takes_all_weight_without_nan():
    weights = min_norm_weights(np.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]]))
    np.testing.assert_allclose(weights, [0, 1, 0], atol=1e-12)


@pytest.mark.parametrize("num_vectors", [2, 3, 5])
def test_all_zero_vectors_give_uniform_weights(num_vectors):
    weights = min_norm_weights(np.zeros((num_vectors, 4)))
    np.testing.assert_allclose(weights, np.full(num_vectors, 1 / num_vectors))


def test_duplicate_vectors_share_their_weight_equally():
    weights = min_norm_weights(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(weights, [0.25, 0.25, 0.5], atol=1e-12)
    weights = min_norm_weights(np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]))
    np.testing.assert_allclose(weights, [36 / 49, 9 / 98, 9 / 98, 4 / 49], atol=1e-9)


def test_gram_matrix_entry_point_detects_duplicates():
    grads = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(min_norm_weights_from_gram(grads @ grads.T), [0.25, 0.25, 0.5], atol=1e-12)


def test_vectors_equal_up_to_round_off_are_merged_without_nan():
    # Their Gram matrix cannot tell them apart (M_11 + M_22 - 2 M_12 cancels to 0 or below), so the closed form
    # would divide 0 by 0; they are duplicates to working precision and share their weight like exact ones.
    near = np.array([[1.0, 1e-9], [1.0, 0.0]])
    np.testing.assert_allclose(min_norm_weights(near), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(min_norm_weights(np.vstack([near, [0.0, 1.0]])), [0.25, 0.25, 0.5], atol=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(50):  # float32 gradients one ulp apart, as the trainer's moving averages can be
        gradient = torch.from_numpy(rng.normal(size=(1, 64))).float()
        other = gradient.clone()
        index = int(rng.integers(64))
        other[0, index] = torch.nextafter(other[0, index], torch.tensor(math.inf))
        weights = min_norm_weights(torch.cat([gradient, other]))
        assert torch.isfinite(weights).all() and weights.sum().item() == pytest.approx(1.0)


def test_gram_entry_point_with_given_groups_survives_a_cancelled_distance():
    near = np.array([[1.0, 1e-9], [1.0, 0.0]])
    np.testing.assert_allclose(min_norm_weights_from_gram(near @ near.T, groups=[[0], [1]]), [0.5, 0.5])


def test_two_unit_vectors_always_get_equal_weights():
    # docs/more.md: with K = 2 and l2 normalisation MORE reduces to the balanced baseline.
    rng = np.random.default_rng(0)
    for _ in range(20):
        grads = rng.normal(size=(2, 10))
        grads /= np.linalg.norm(grads, axis=1, keepdims=True)
        np.testing.assert_allclose(min_norm_weights(grads), [0.5, 0.5], atol=1e-12)


def test_tensor_input_keeps_type_dtype_and_device():
    grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.bfloat16)
    weights = min_norm_weights(grads)
    assert isinstance(weights, torch.Tensor) and weights.dtype == torch.bfloat16
    torch.testing.assert_close(weights.float(), torch.tensor([0.8, 0.2]), atol=1e-2, rtol=0)


def test_float32_input_is_solved_in_float64():
    # Nearly parallel vectors whose min-norm point is inside the segment: the Gram-matrix differences the answer
    # depends on are ~1e-6 of its entries, so float32 arithmetic would be off by about 1e-2, float64 by about 1e-10.
    grads = torch.tensor([[1.0, 1e-3], [1.0, -2e-3]], dtype=torch.float32)
    y1, y2 = grads[0, 1].item(), grads[1, 1].item()
    exact = -y2 / (y1 - y2)  # the point's second coordinate is zero
    weights = min_norm_weights(grads)
    torch.testing.assert_close(weights, torch.tensor([exact, 1 - exact]), atol=1e-6, rtol=0)


def test_rejects_non_matrix_input():
    with pytest.raises(ValueError, match="K x H"):
        min_norm_weights(np.ones(3))
