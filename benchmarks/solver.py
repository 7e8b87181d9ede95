"""`min_norm_weights` (exact: closed form / Wolfe active set) against the reference's plain Frank-Wolfe loop.

For K in {2, 5, 16, 64} and H in {384, 4096}, on random Gaussian gradients sharing a common component (as gradients
of related losses do), prints the time per solve and the optimality gap of each: the Frank-Wolfe duality gap
lambda^T M lambda - min_r (M lambda)_r, relative to max_i ||g_i||^2 (0 at the optimum).

    python benchmarks/solver.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trl_more.solvers import min_norm_weights


def frank_wolfe(grads: np.ndarray, iterations: int = 1000) -> np.ndarray:
    """The MGDA reference solver (docs/more.md): Frank-Wolfe with exact line search, from uniform weights."""
    gram = grads @ grads.T
    weights = np.full(len(grads), 1.0 / len(grads))
    for _ in range(iterations):
        gram_weights = gram @ weights
        target = int(np.argmin(gram_weights))
        a, b, c = weights @ gram_weights, gram_weights[target], gram[target, target]
        if b >= a:
            gamma = 1.0
        elif b >= c:
            gamma = 0.0
        else:
            gamma = (c - b) / (a + c - 2 * b)
        weights = gamma * weights
        weights[target] += 1 - gamma
    return weights


def relative_gap(grads: np.ndarray, weights: np.ndarray) -> float:
    gram = grads @ grads.T
    gram_weights = gram @ weights
    return float((weights @ gram_weights - gram_weights.min()) / np.max(np.diag(gram)))


def timed(solve, grads, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        weights = solve(grads)
    return (time.perf_counter() - start) / repeats, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| K | H | exact: time (ms) | exact: gap | Frank-Wolfe 1000: time (ms) | Frank-Wolfe: gap | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for num_sources in (2, 5, 16, 64):
        for width in (384, 4096):
            grads = rng.normal(size=(num_sources, width)) + 2.0 * rng.normal(size=(1, width))
            exact_time, exact = timed(min_norm_weights, grads, options.repeats)
            fw_time, fw = timed(frank_wolfe, grads, max(1, options.repeats // 4))
            print(
                f"| {num_sources} | {width} | {exact_time * 1e3:.3f} | {relative_gap(grads, exact):.1e} "
                f"| {fw_time * 1e3:.3f} | {relative_gap(grads, fw):.1e} | {fw_time / exact_time:.1f}x |"
            )


if __name__ == "__main__":
    main()
