"""Whether an ensemble's spread predicts its errors (trl_more.metrics.uncertainty), against hand computations."""

import numpy as np
import pytest

from trl_more.metrics import spread_error_auroc, uncertainty_metrics


def test_the_docstring_example_by_hand():
    metrics = uncertainty_metrics([[1, 1], [2, 0], [-1, 3], [-3, 1]], num_quantiles=2)
    assert metrics["accuracy"] == 0.75
    assert metrics["auroc"] == pytest.approx(2.5 / 3)  # the wrong pair's spread 2 beats 0 and 1, ties 2
    assert metrics["spread_mean_wrong"] == 2.0 and metrics["spread_mean_right"] == 1.0
    assert metrics["by_quantile"] == [
        {"spread_max": 1.0, "pairs": 2, "accuracy": 1.0},
        {"spread_max": 2.0, "pairs": 2, "accuracy": 0.5},
    ]


def test_the_auroc_is_the_mann_whitney_probability():
    rng = np.random.default_rng(0)
    spread, wrong = rng.random(50), rng.random(50) < 0.3
    pairs = [(w, r) for w in spread[wrong] for r in spread[~wrong]]
    expected = np.mean([1.0 if w > r else 0.5 if w == r else 0.0 for w, r in pairs])
    assert spread_error_auroc(spread, wrong) == pytest.approx(expected)
    assert spread_error_auroc(spread, wrong) == pytest.approx(1 - spread_error_auroc(-spread, wrong))
    assert np.isnan(spread_error_auroc(spread, np.zeros(50, dtype=bool)))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"shape \(num_pairs >= 1, M >= 2\)"):
        uncertainty_metrics([[1.0], [2.0]])
