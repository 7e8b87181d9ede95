"""Stage-1 ridge: the closed-form multi-alpha solve against a loop of scikit-learn `Ridge` fits.

The reference fits every objective with `sklearn.linear_model.Ridge` once per alpha of the grid (1e-4 ... 1e4) on the
objective's labelled rows and keeps the alpha with the lowest validation MSE. `trl_more.solvers.fit_ridge` does the
same selection from one tridiagonal reduction per pattern of labelled rows. For several feature sizes, on features
with a decaying spectrum (like a backbone's hidden states) and k objectives, either all rated on every row (one label
pattern, like HelpSteer or Topical-Chat) or with missing labels (three patterns), this prints both times, their
ratio, and the largest difference between the validation MSEs of the two (per objective and alpha). `--armorm` adds
the ArmoRM paper's stage 1: 19 objectives from 8 rating sets, every row rated by one set on its own objectives only
(HelpSteer 5, UltraFeedback 5, BeaverTails 1, Prometheus 1, Capybara 1, OpenOrca 1, CodeUltraFeedback 5 taken as one
block, and Math-Preference on UltraFeedback's instruction following), so 8 label patterns.

    python benchmarks/ridge.py [--objectives 6] [--repeats 3] [--threads 1] [--large] [--armorm]

BLAS runs on `--threads` threads (default 1) for both methods: on a shared machine, a multi-threaded LAPACK routine
waiting for busy cores can be 100x slower than a single-threaded one, which would measure the machine, not the
methods.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from trl_more.data import ARMORM_OBJECTIVES
from trl_more.solvers import DEFAULT_ALPHAS, fit_ridge


# The ArmoRM rating sets as (share of the rows, columns of the 19 objectives they rate), in ARMORM_OBJECTIVES' order.
ARMORM_BLOCKS = (
    (0.10, range(0, 5)),  # HelpSteer
    (0.30, range(5, 10)),  # UltraFeedback
    (0.15, range(10, 11)),  # BeaverTails
    (0.15, range(11, 12)),  # Prometheus
    (0.05, range(12, 13)),  # Capybara
    (0.05, range(13, 14)),  # OpenOrca
    (0.15, range(14, 19)),  # CodeUltraFeedback
    (0.05, range(6, 7)),  # Math-Preference: UltraFeedback's instruction following
)


def make_problem(num_train: int, num_validation: int, width: int, num_objectives: int, patterns: int, seed: int = 0):
    """Features with a decaying spectrum and linear ratings in [0, 1]; `patterns` 1 (all rated), 3 (two objective
    groups partly missing) or 8 (the ArmoRM blocks: `num_objectives` must be 19)."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(1.0 + np.arange(width))  # decaying spectrum
    features = rng.normal(size=(num_train + num_validation, width)) * scales + 0.1
    weights = rng.normal(size=(width, num_objectives))
    targets = features @ weights + rng.normal(size=(len(features), num_objectives))
    targets = (targets - targets.min(0)) / np.ptp(targets, axis=0)  # ratings in [0, 1]
    if patterns == 3:  # complete, a third missing, half missing (rating sets that label different objectives)
        targets[rng.random(len(targets)) < 1 / 3, 1::3] = np.nan
        targets[rng.random(len(targets)) < 1 / 2, 2::3] = np.nan
    if patterns == len(ARMORM_BLOCKS):  # each row rated by one rating set, on that set's objectives only
        shares = [share for share, _ in ARMORM_BLOCKS]
        owner = rng.choice(len(ARMORM_BLOCKS), size=len(targets), p=shares)
        rated = np.zeros(targets.shape, dtype=bool)
        for block, (_, columns) in enumerate(ARMORM_BLOCKS):
            rated[np.ix_(owner == block, list(columns))] = True
        targets[~rated] = np.nan
    return features[:num_train], targets[:num_train], features[num_train:], targets[num_train:]


def sklearn_loop(train_x, train_y, validation_x, validation_y, alphas):
    """The reference: one Ridge fit per objective per alpha, on the objective's labelled rows."""
    mse = np.zeros((len(alphas), train_y.shape[1]))
    for objective in range(train_y.shape[1]):
        rows = ~np.isnan(train_y[:, objective])
        validation_rows = ~np.isnan(validation_y[:, objective])
        for index, alpha in enumerate(alphas):
            model = Ridge(alpha=alpha, fit_intercept=False).fit(train_x[rows], train_y[rows, objective])
            errors = model.predict(validation_x[validation_rows]) - validation_y[validation_rows, objective]
            mse[index, objective] = np.mean(errors**2)
    return mse


def best_time(function, arguments, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*arguments)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--large", action="store_true", help="also 8000 rows x 2048 features (minutes)")
    parser.add_argument("--armorm", action="store_true", help="also 19 objectives with the ArmoRM paper's 8 patterns")
    options = parser.parse_args()
    with threadpool_limits(limits=options.threads):
        run(options)


def run(options: argparse.Namespace) -> None:
    alphas = list(DEFAULT_ALPHAS)
    print(
        f"{options.objectives} objectives (19 in the ArmoRM cases) x {len(alphas)} alphas; best of {options.repeats} runs; "
        f"{options.threads} BLAS thread(s)\n"
    )
    sizes = ((2000, 384), (4000, 1024), (8000, 2048)) if options.large else ((2000, 384), (4000, 1024))
    cases = [(size, options.objectives, patterns) for size, patterns in itertools.product(sizes, (1, 3))]
    if options.armorm:
        cases += [(size, len(ARMORM_OBJECTIVES), len(ARMORM_BLOCKS)) for size in sizes]
    print(
        "| train rows | features | objectives | label patterns | closed form (s) | sklearn loop (s) | speed-up "
        "| max abs. diff. of validation MSE |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (num_train, width), num_objectives, patterns in cases:
        problem = make_problem(num_train, num_train // 4, width, num_objectives, patterns)
        ours_time, fit = best_time(fit_ridge, (*problem, alphas), options.repeats)
        reference_time, reference_mse = best_time(sklearn_loop, (*problem, alphas), options.repeats)
        difference = np.abs(fit.validation_mse - reference_mse).max()
        print(
            f"| {num_train} | {width} | {num_objectives} | {patterns} | {ours_time:.3f} | {reference_time:.3f} "
            f"| {reference_time / ours_time:.1f}x | {difference:.1e} |"
        )


if __name__ == "__main__":
    main()
