import numpy as np
import pytest
from scipy.stats import spearmanr

from trl_more.solvers.debias import REFERENCE_PENALTY_GRID, debias_transform, verbosity_penalties


def correlated_rewards(num_rows=400, seed=0):
    """Four objectives: verbosity (column 2) and three rewards that depend on it positively, negatively, not at all."""
    rng = np.random.default_rng(seed)
    verbosity = rng.normal(size=num_rows)
    helpful = 0.8 * verbosity + rng.normal(size=num_rows)
    terse = -0.5 * verbosity + rng.normal(size=num_rows)
    independent = rng.normal(size=num_rows)
    return np.stack([helpful, terse, verbosity, independent], axis=1)


def test_root_finding_removes_the_spearman_correlation():
    rewards = correlated_rewards()
    penalties = verbosity_penalties(rewards, verbosity_index=2)
    debiased = rewards @ debias_transform(penalties, 2)
    assert spearmanr(rewards[:, 0], rewards[:, 2])[0] > 0.3 and spearmanr(rewards[:, 1], rewards[:, 2])[0] < -0.2
    for objective in (0, 1, 3):
        assert abs(spearmanr(debiased[:, objective], rewards[:, 2])[0]) < 1e-3
    assert penalties[0] > 0 > penalties[1]  # a positive correlation is penalised, a negative one compensated
    np.testing.assert_array_equal(debiased[:, 2], 0.0)  # the verbosity objective itself is removed (lambda_v = 1)


def test_transform_follows_the_armorm_convention():
    penalties = np.array([0.2, -0.1, 1.0])
    transform = debias_transform(penalties, verbosity_index=2)
    np.testing.assert_array_equal(transform, [[1, 0, 0], [0, 1, 0], [-0.2, 0.1, 0]])
    rewards = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(rewards @ transform, [[1.0 - 0.2 * 3.0, 2.0 + 0.1 * 3.0, 0.0]])


def test_grid_method_matches_the_reference_rule():
    rewards = correlated_rewards(seed=1)
    verbosity = rewards[:, 2]
    penalties = verbosity_penalties(rewards, verbosity_index=2, method="grid", threshold=0.03)
    for objective in (0, 1, 3):
        expected = next(
            p for p in REFERENCE_PENALTY_GRID if spearmanr(rewards[:, objective] - p * verbosity, verbosity)[0] <= 0.03
        )
        assert penalties[objective] == expected
    assert penalties[1] == 0.0  # already negatively correlated: the reference leaves it alone
    assert 0.0 < penalties[0] < 0.95


def test_bad_input_errors():
    rewards = correlated_rewards(num_rows=50)
    with pytest.raises(ValueError, match="out of range"):
        verbosity_penalties(rewards, verbosity_index=4)
    constant = rewards.copy()
    constant[:, 2] = 1.0
    with pytest.raises(ValueError, match="'verbosity' is constant"):
        verbosity_penalties(constant, 2, objective_names=["a", "b", "verbosity", "c"])
    with pytest.raises(ValueError, match=r"No penalty in the grid .* \['a'\]"):
        strong = rewards.copy()
        strong[:, 0] = 5.0 * strong[:, 2]
        verbosity_penalties(strong, 2, method="grid", objective_names=["a", "b", "verbosity", "c"])
    with pytest.raises(ValueError, match="Unknown debiasing method"):
        verbosity_penalties(rewards, 2, method="bisect")
