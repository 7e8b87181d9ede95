"""MORE's lambda: moving averages, normalisations, zero gradients and the saved state, against hand computations."""

import pytest
import torch

from trl_more.more.lambdas import MinNormLambda, normalize_gradients


SOURCES = ["a", "b", "c"]


def test_the_moving_average_is_the_references_and_starts_at_zero():
    lambdas = MinNormLambda(SOURCES[:2], momentum=0.25, normalization="none")
    first, second = torch.tensor([[4.0, 0.0], [0.0, 8.0]]), torch.tensor([[0.0, 4.0], [8.0, 0.0]])
    lambdas(first, torch.ones(2))
    torch.testing.assert_close(lambdas.moving_gradients, 0.25 * first)  # m = (1 - a) * 0 + a * g
    lambdas(second, torch.ones(2))
    torch.testing.assert_close(lambdas.moving_gradients, 0.75 * 0.25 * first + 0.25 * second)


def test_normalisations_by_hand():
    gradients = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
    losses = torch.tensor([2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(normalize_gradients(gradients, losses, "none"), gradients)
    torch.testing.assert_close(
        normalize_gradients(gradients, losses, "l2"), torch.tensor([[0.6, 0.8], [0.0, 1.0]]).double()
    )
    torch.testing.assert_close(
        normalize_gradients(gradients, losses, "loss"), torch.tensor([[1.5, 2.0], [0.0, 4.0]]).double()
    )
    torch.testing.assert_close(
        normalize_gradients(gradients, losses, "loss+"), torch.tensor([[0.3, 0.4], [0.0, 2.0]]).double()
    )
    with pytest.raises(ValueError, match="Unknown gradient normalization"):
        normalize_gradients(gradients, losses, "max")


def test_known_min_norm_answers_through_the_moving_average():
    # No smoothing: lambda is the min-norm solution of the batch's own (unnormalised) gradients.
    lambdas = MinNormLambda(SOURCES[:2], momentum=1.0, normalization="none")
    torch.testing.assert_close(
        lambdas(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.ones(2)), torch.tensor([0.8, 0.2])
    )
    with_l2 = MinNormLambda(SOURCES[:2], momentum=1.0, normalization="l2")  # two unit vectors: always the midpoint
    torch.testing.assert_close(
        with_l2(torch.tensor([[5.0, 1.0], [-1.0, 3.0]]), torch.ones(2)), torch.tensor([0.5, 0.5])
    )


def test_a_source_without_gradient_gets_no_weight_instead_of_all_of_it():
    # A zero vector alone would be the min-norm point (lambda = 1 on it); it carries no direction, so it gets 0.
    lambdas = MinNormLambda(SOURCES, momentum=1.0, normalization="l2")
    gradients = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(lambdas(gradients, torch.ones(3)), torch.tensor([0.5, 0.0, 0.5]))
    nothing = MinNormLambda(SOURCES, momentum=1.0)
    torch.testing.assert_close(nothing(torch.zeros(3, 2), torch.ones(3)), torch.full((3,), 1 / 3))


def test_the_state_round_trips_and_belongs_to_its_sources():
    lambdas = MinNormLambda(SOURCES, momentum=0.5)
    lambdas(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), torch.ones(3))
    restored = MinNormLambda(SOURCES, momentum=0.5)
    restored.load_state_dict(lambdas.state_dict())
    torch.testing.assert_close(restored.moving_gradients, lambdas.moving_gradients)
    gradients = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(restored(gradients, torch.ones(3)), lambdas(gradients, torch.ones(3)))
    for other in (["a", "c", "b"], ["a", "b"]):
        with pytest.raises(ValueError, match=r"belongs to the sources \['a', 'b', 'c'\]"):
            MinNormLambda(other).load_state_dict(lambdas.state_dict())
