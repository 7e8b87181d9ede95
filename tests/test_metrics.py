"""Accuracy, calibration errors, outlier statistics and temperature scaling against known answers (docs/calibration.md)."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from trl_more.metrics import (
    average_calibration_error,
    calibration_bins,
    confidence_calibration_error,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    preference_accuracy,
    preference_metrics,
    reward_difference_outliers,
    reward_temperature,
    set_reward_temperature,
)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def calibrated_margins(num_pairs, seed=0, scale=2.0):
    """Margins of a perfectly calibrated model: each pair's true order is drawn with probability sigmoid(margin)."""
    rng = np.random.default_rng(seed)
    margins = rng.normal(0.0, scale, num_pairs)
    agrees = rng.random(num_pairs) < sigmoid(margins)
    return np.where(agrees, margins, -margins)


def test_hand_check_of_the_spec():
    # margins +2 (correct) and -1 (wrong): p = .8808 (y=1), .1192 (y=0), .2689 (y=1), .7311 (y=0), each alone in
    # its bin, so ECE = (2 * .1192 + 2 * .7311) / 4.
    assert expected_calibration_error([2.0, -1.0], n_bins=10) == pytest.approx(0.425131, abs=1e-6)
    expected = (2 * sigmoid(-2.0) + 2 * sigmoid(1.0)) / 4
    assert expected_calibration_error([2.0, -1.0], n_bins=10) == pytest.approx(expected, abs=1e-12)


def test_inputs_as_tensor_array_list_or_column_give_the_same_result():
    values = [2.0, -1.0, 0.3]
    expected = expected_calibration_error(values)
    assert expected_calibration_error(np.array(values)) == expected
    assert expected_calibration_error(torch.tensor(values, dtype=torch.float64)) == pytest.approx(expected, abs=1e-15)
    assert expected_calibration_error(torch.tensor(values).view(-1, 1)) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")]])
def test_bad_margins_are_rejected(bad):
    with pytest.raises(ValueError):
        expected_calibration_error(bad)


def test_accuracy_counts_ties_as_wrong():
    assert preference_accuracy([1.0, 0.0, -1.0, 2.0]) == 0.5
    assert preference_accuracy(torch.zeros(3)) == 0.0


def test_a_value_on_a_bin_edge_goes_to_the_lower_bin():
    # sigmoid(log 3) = 0.75 lies on the edge between bins [0.5, 0.75] and (0.75, 1] of 4 bins; 0.25 likewise.
    bins = calibration_bins([math.log(3.0)], n_bins=4)
    np.testing.assert_array_equal(bins.counts, [1, 0, 1, 0])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_bins", [2, 4, 10, 20])
def test_the_two_ece_forms_agree_for_an_even_number_of_bins(seed, n_bins):
    margins = np.random.default_rng(seed).normal(0.5, 2.0, 500)
    assert expected_calibration_error(margins, n_bins) == pytest.approx(
        confidence_calibration_error(margins, n_bins // 2), abs=1e-12
    )


def test_ace_and_mce_are_the_mean_and_max_over_non_empty_bins():
    # Margins 2 and -1 fill 4 bins with gaps .1192, .7311, .7311, .1192; a third pair with margin 2 doubles one bin.
    gaps = [sigmoid(-2.0), sigmoid(1.0)]
    assert average_calibration_error([2.0, -1.0]) == pytest.approx(np.mean(gaps), abs=1e-12)
    assert maximum_calibration_error([2.0, -1.0]) == pytest.approx(sigmoid(1.0), abs=1e-12)
    assert average_calibration_error([2.0, 2.0, -1.0]) == pytest.approx(np.mean(gaps), abs=1e-12)
    assert expected_calibration_error([2.0, 2.0, -1.0]) == pytest.approx((4 * gaps[0] + 2 * gaps[1]) / 6, abs=1e-12)


def test_calibrated_margins_have_a_small_ece_and_overconfident_ones_a_large_one():
    margins = calibrated_margins(200_000)
    calibrated = expected_calibration_error(margins)
    overconfident = expected_calibration_error(5.0 * margins)
    assert calibrated < 0.005
    assert overconfident > 0.1
    assert preference_accuracy(5.0 * margins) == preference_accuracy(margins)


def test_outlier_statistics():
    stats = reward_difference_outliers([6.0, 8.0, 1.0, -0.5, -7.0, 5.0, -5.0], threshold=5.0)
    assert stats == {
        "positive_outliers": 2,
        "positive_outlier_mean": 7.0,
        "negative_outliers": 1,
        "negative_outlier_mean": -7.0,
    }
    none = reward_difference_outliers([0.1, -0.2], threshold=5.0)
    assert none["positive_outliers"] == none["negative_outliers"] == 0
    assert math.isnan(none["positive_outlier_mean"]) and math.isnan(none["negative_outlier_mean"])


def test_preference_metrics_row():
    row = preference_metrics([2.0, -1.0, 6.0], n_bins=10, outlier_threshold=5.0)
    assert row["num_pairs"] == 3
    assert row["preference_accuracy"] == pytest.approx(2 / 3)
    assert row["ece"] == pytest.approx(expected_calibration_error([2.0, -1.0, 6.0]))
    assert row["margin_mean"] == pytest.approx(7 / 3)
    assert row["margin_std"] == pytest.approx(np.std([2.0, -1.0, 6.0]))
    assert row["positive_outliers"] == 1 and row["negative_outliers"] == 0


def test_temperature_recovers_the_overconfidence_factor_and_lowers_ece():
    margins = 5.0 * calibrated_margins(50_000, seed=1)
    fit = fit_temperature(margins)
    assert fit.temperature == pytest.approx(5.0, rel=0.05)
    assert fit.ece_before > 0.1 and fit.ece_after < 0.01
    assert fit.nll_after < fit.nll_before
    assert preference_accuracy(margins / fit.temperature) == preference_accuracy(margins) == fit.accuracy


def test_temperature_is_the_exact_minimiser_of_the_nll():
    margins = np.array([3.0, 2.0, -1.0, 0.5, 4.0, -2.5, 1.0])
    fit = fit_temperature(margins)

    def nll(temperature):
        return np.mean(np.log1p(np.exp(-margins / temperature)))

    # Stationary: the derivative in 1/T is zero, and the NLL is larger a hair away on either side.
    s = 1.0 / fit.temperature
    assert np.mean(-margins * sigmoid(-s * margins)) == pytest.approx(0.0, abs=1e-12)
    assert fit.nll_after == pytest.approx(nll(fit.temperature), abs=1e-12)
    assert nll(fit.temperature * (1 + 1e-4)) > fit.nll_after < nll(fit.temperature * (1 - 1e-4))


def test_an_underconfident_model_gets_a_temperature_below_one():
    fit = fit_temperature(0.2 * calibrated_margins(20_000, seed=2))
    assert fit.temperature == pytest.approx(0.2, rel=0.05)


@pytest.mark.parametrize(("margins", "reason"), [([1.0, 2.0], "positive margin"), ([1.0, -2.0], "no better")])
def test_temperature_undefined_cases_are_explained(margins, reason):
    with pytest.raises(ValueError, match=reason):
        fit_temperature(margins)


def test_temperature_is_stored_in_the_config_and_survives_save_and_load(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from trl_more.testing import tiny_reward_model

    model = tiny_reward_model("qwen2")
    assert reward_temperature(model) == 1.0
    set_reward_temperature(model, 2.5)
    model.save_pretrained(tmp_path)
    assert reward_temperature(AutoModelForSequenceClassification.from_pretrained(tmp_path)) == 2.5
    with pytest.raises(ValueError, match="positive"):
        set_reward_temperature(model, 0.0)


def test_metrics_package_imports_without_torch_transformers_or_trl():
    code = "import sys, trl_more.metrics; print(sorted({'torch', 'transformers', 'trl'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
