import numpy as np
import pytest

from trl_more.solvers.ridge import DEFAULT_ALPHAS, fit_ridge, ridge_path


def explicit_ridge(features, targets, alpha, fit_intercept=False):
    """Textbook ridge: solve (X^T X + alpha I) w = X^T y on centred data when fitting an intercept."""
    x_mean = features.mean(0) if fit_intercept else np.zeros(features.shape[1])
    y_mean = targets.mean(0) if fit_intercept else np.zeros(targets.shape[1])
    centred = features - x_mean
    weights = np.linalg.solve(centred.T @ centred + alpha * np.eye(features.shape[1]), centred.T @ (targets - y_mean))
    return weights.T, y_mean - x_mean @ weights


def random_problem(num_rows, num_features, num_objectives, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_rows, num_features)) + 0.5
    true_weights = rng.normal(size=(num_features, num_objectives))
    targets = features @ true_weights + 0.3 + noise * rng.normal(size=(num_rows, num_objectives))
    return features, targets, true_weights


# Covariance route, Gram route, and the 1 x 1 systems of a single feature or a single row.
@pytest.mark.parametrize("num_rows, num_features", [(80, 12), (10, 30), (15, 1), (1, 4)])
@pytest.mark.parametrize("fit_intercept", [False, True])
def test_path_matches_explicit_solve_for_every_alpha(num_rows, num_features, fit_intercept):
    features, targets, _ = random_problem(num_rows, num_features, 3)
    coefficients, intercepts = ridge_path(features, targets, DEFAULT_ALPHAS, fit_intercept=fit_intercept)
    assert coefficients.shape == (len(DEFAULT_ALPHAS), 3, num_features)
    for index, alpha in enumerate(DEFAULT_ALPHAS):
        weights, intercept = explicit_ridge(features, targets, alpha, fit_intercept)
        np.testing.assert_allclose(coefficients[index], weights, atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(intercepts[index], intercept, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_path_matches_scikit_learn(fit_intercept):
    linear_model = pytest.importorskip("sklearn.linear_model", reason="scikit-learn is part of the test extra")
    features, targets, _ = random_problem(60, 20, 2, seed=1)
    coefficients, intercepts = ridge_path(features, targets, DEFAULT_ALPHAS, fit_intercept=fit_intercept)
    for index, alpha in enumerate(DEFAULT_ALPHAS):
        for objective in range(2):
            reference = linear_model.Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(
                features, targets[:, objective]
            )
            np.testing.assert_allclose(coefficients[index, objective], reference.coef_, atol=1e-6, rtol=1e-6)
            np.testing.assert_allclose(intercepts[index, objective], reference.intercept_, atol=1e-6)


def test_masked_objectives_fit_only_their_labelled_rows():
    features, targets, _ = random_problem(50, 6, 3, seed=2)
    targets[::3, 1] = np.nan
    targets[:20, 2] = np.nan
    coefficients, _ = ridge_path(features, targets, [0.5])
    for objective in range(3):
        labelled = ~np.isnan(targets[:, objective])
        weights, _ = explicit_ridge(features[labelled], targets[labelled, objective : objective + 1], 0.5)
        np.testing.assert_allclose(coefficients[0, objective], weights[0], atol=1e-9)
    # Rows without a label for objective 2 cannot influence its fit, whatever their features.
    changed = features.copy()
    changed[:20] = 1e3
    np.testing.assert_allclose(ridge_path(changed, targets, [0.5])[0][0, 2], coefficients[0, 2], atol=1e-9)


def test_armorm_scale_nineteen_objectives_in_eight_label_patterns():
    """Stage 1 of the ArmoRM paper: every row rated by one of 8 rating sets on that set's objectives only (one set,
    Math-Preference, on an objective of another); each objective still fits exactly its own labelled rows."""
    features, targets, _ = random_problem(160, 10, 19, seed=6)
    blocks = [range(0, 5), range(5, 10), [10], [11], [12], [13], range(14, 19), [6]]
    owner = np.arange(len(features)) % len(blocks)
    rated = np.zeros(targets.shape, dtype=bool)
    for block, columns in enumerate(blocks):
        rated[np.ix_(owner == block, list(columns))] = True
    targets[~rated] = np.nan
    coefficients, intercepts = ridge_path(features, targets, [0.1, 10.0], fit_intercept=True)
    for index, alpha in enumerate([0.1, 10.0]):
        for objective in range(19):
            labelled = rated[:, objective]
            weights, intercept = explicit_ridge(
                features[labelled], targets[labelled, objective : objective + 1], alpha, fit_intercept=True
            )
            np.testing.assert_allclose(coefficients[index, objective], weights[0], atol=1e-8)
            np.testing.assert_allclose(intercepts[index, objective], intercept[0], atol=1e-8)
    assert rated[:, 6].sum() == 2 * rated[:, 5].sum()  # instruction following: UltraFeedback and Math-Preference


def test_alpha_is_chosen_per_objective_by_validation_mse():
    features, targets, _ = random_problem(40, 25, 2, seed=3, noise=2.0)
    targets[:, 1] = features[:, 0]  # noise-free: the smallest alpha predicts best
    validation_features, validation_targets, _ = random_problem(30, 25, 2, seed=4, noise=2.0)
    validation_targets[:, 1] = validation_features[:, 0]
    validation_targets[:5, 0] = np.nan
    fit = fit_ridge(features, targets, validation_features, validation_targets, objective_names=["noisy", "exact"])
    for objective in range(2):
        labelled = ~np.isnan(validation_targets[:, objective])
        mse = []
        for alpha in DEFAULT_ALPHAS:
            weights, _ = explicit_ridge(features, targets[:, objective : objective + 1], alpha)
            errors = validation_features[labelled] @ weights[0] - validation_targets[labelled, objective]
            mse.append(np.mean(errors**2))
        np.testing.assert_allclose(fit.validation_mse[:, objective], mse, rtol=1e-6)
        best = int(np.argmin(mse))
        assert fit.alphas[objective] == DEFAULT_ALPHAS[best]
        weights, _ = explicit_ridge(features, targets[:, objective : objective + 1], DEFAULT_ALPHAS[best])
        np.testing.assert_allclose(fit.weights[objective], weights[0], atol=1e-6)
    assert fit.alphas[1] == DEFAULT_ALPHAS[0]
    np.testing.assert_allclose(fit.weights[1], np.eye(25)[0], atol=1e-4)
    np.testing.assert_allclose(fit.predict(validation_features)[:, 1], validation_features[:, 0], atol=1e-3)


def test_intercepts_recover_offsets_and_shrink_to_the_mean():
    features, targets, true_weights = random_problem(200, 5, 3, seed=5, noise=0.0)
    targets += np.array([0.0, 1.0, -2.0])  # offsets 0.3, 1.3, -1.7
    targets[:50, 2] = np.nan
    fit = fit_ridge(features, targets, features, targets, alphas=[1e-6], fit_intercept=True)
    np.testing.assert_allclose(fit.weights, true_weights.T, atol=1e-5)
    np.testing.assert_allclose(fit.intercepts, [0.3, 1.3, -1.7], atol=1e-5)
    # With an overwhelming penalty the weights vanish and every objective predicts its own mean rating.
    fit = fit_ridge(features, targets, features, targets, alphas=[1e12], fit_intercept=True)
    np.testing.assert_allclose(fit.predict(features[:3]), np.tile(np.nanmean(targets, 0), (3, 1)), atol=1e-4)


def test_bad_input_errors():
    features, targets, _ = random_problem(20, 4, 2)
    unlabelled = targets.copy()
    unlabelled[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"\['coherence'\] have no labels in the training set"):
        fit_ridge(features, unlabelled, features, targets, objective_names=["helpful", "coherence"])
    with pytest.raises(ValueError, match="no labels in the validation set"):
        fit_ridge(features, targets, features, unlabelled)
    broken = features.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ValueError, match="features contain NaN"):
        ridge_path(broken, targets)
    with pytest.raises(ValueError, match="positive"):
        ridge_path(features, targets, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match="same n"):
        ridge_path(features, targets[:5])
