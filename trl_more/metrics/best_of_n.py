"""Best-of-N against a gold reward: does picking responses with a reward model raise what it is meant to measure?

For prompts with K sampled responses each, a proxy (the reward model under evaluation, or an ensemble of them) and a
gold reward (any reward model, or a Python function of (prompt, response) through `FunctionRewardModel`) score every
response. For N = 1, 2, 4, ... up to K (and K itself), the curves are the gold reward of

- the **proxy's pick**: the response with the highest proxy reward among N;
- with an ensemble, the **lower-bound pick**: the highest mean - k std over the members (`ensemble="mean_minus_std"`,
  the uncertainty-penalised choice of Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization");
- the **gold pick**: the highest gold reward among N (the ceiling any proxy can reach);
- a **random pick**: one of the N at random (its expectation is the mean gold reward of all K: a flat line),

against the KL-like cost of best-of-N, log N - (N - 1) / N (the KL divergence of the best-of-N distribution from the
policy for a continuous reward; Stiennon et al. 2020, used by Gao et al. 2023, "Scaling Laws for Reward Model
Overoptimization", whose best-of-N analysis, like GRM's and reward-bench's, this reproduces), and the proxy reward
of the proxy's pick (what the proxy believes it gains).

Every value is an exact expectation over the N-subsets of a prompt's K responses, not a simulation (Gao et al.'s
unbiased estimator): sorted by the picking reward, the response of rank r (1 = lowest) is the pick of a uniformly
random N-subset with probability C(r - 1, N - 1) / C(K, N); responses tied on the picking reward share their weight
(a tie is broken at random). The curves are means over prompts, with percentile bootstrap intervals over prompts.

The **over-optimisation point** of a selector (the proxy's pick, the lower-bound pick) is the smallest N of the grid
such that no larger N gives a higher mean gold reward of its pick: the first N at the maximum of its curve, after
which picking from more samples stops gaining gold reward. When that is the largest N the selector is still gaining
and there is no point (`None`). Its change, gold reward at the largest N minus at the point (with a paired bootstrap
interval over prompts), tells a real decline (an interval below 0) from a plateau or noise.

- `best_of_n_curves(proxy_rewards, gold_rewards, lower_bound_rewards)`: the curves from (prompts, K) rewards alone.
- `load_best_of_n_samples(path)`: prompts with K responses each (`prompt`, `responses`, optionally `gold_rewards`).
- `sample_best_of_n(policy, tokenizer, prompts, K)`: K responses per prompt from a policy, sampled with the
  rejection-sampling generation backends.
- `score_best_of_n(models, tokenizers, samples, gold=...)`: scores with the proxy (or ensemble) and the gold.
- `BestOfNCallback`: the curves with the model under training as the proxy, at every evaluation.

See docs/evaluation.md#best-of-n-against-a-gold-reward.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..constants import check_choice
from ..reports import json_text, markdown_row, markdown_table
from .benchmark_scoring import (
    TEMPLATES,
    BenchmarkCallback,
    column,
    column_names,
    is_conversation,
    score_sequences,
    snake_case,
)


if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase, Trainer

    from ..rejection_sampling.generation import GenerationBackend, SamplingSettings


__all__ = [
    "GOLD_PICK",
    "LOWER_BOUND_PICK",
    "PROXY_PICK",
    "RANDOM_PICK",
    "BestOfNCallback",
    "BestOfNResult",
    "best_of_n_curves",
    "best_of_n_sizes",
    "check_best_of_n_samples",
    "check_gold_source",
    "expected_pick",
    "gold_rewards_of",
    "kl_cost",
    "load_best_of_n_samples",
    "load_prompts",
    "sample_best_of_n",
    "score_best_of_n",
]

PROXY_PICK, LOWER_BOUND_PICK, GOLD_PICK, RANDOM_PICK = "proxy pick", "lower-bound pick", "gold pick", "random pick"
SELECTORS = (PROXY_PICK, LOWER_BOUND_PICK)  # the picks whose over-optimisation point is reported
# Relative difference under which two curve values count as equal (sums of weighted rewards, rounded differently).
_EQUAL = 1e-12


# ---------------------------------------------------------------------------------------------------------------------
# Exact best-of-N expectations
# ---------------------------------------------------------------------------------------------------------------------


def best_of_n_sizes(num_samples: int) -> list[int]:
    """N = 1, 2, 4, ... up to `num_samples`, and `num_samples` itself when it is not a power of 2."""
    if num_samples < 1:
        raise ValueError(f"Best-of-N needs at least one sample per prompt, got {num_samples}.")
    sizes = [2**power for power in range(num_samples.bit_length()) if 2**power <= num_samples]
    return sizes if sizes[-1] == num_samples else [*sizes, num_samples]


def kl_cost(n: int) -> float:
    """log N - (N - 1) / N: the KL divergence of best-of-N sampling from the policy (continuous reward, no ties)."""
    return math.log(n) - (n - 1) / n


def _reward_matrix(values: Any, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A float64 (prompts, samples) array of finite rewards; accepts arrays, nested lists and tensors."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(
            f"`{name}` must be a (prompts, samples) array with the same number of samples for every prompt; got "
            f"shape {array.shape}."
        )
    if shape is not None and array.shape != shape:
        raise ValueError(f"`{name}` has shape {array.shape}; the proxy rewards have shape {shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` has NaN or infinite rewards; check the model outputs (e.g. half precision).")
    return array


def expected_pick(keys: Any, values: Any, n: int) -> np.ndarray:
    """Per prompt, the expected `values` of the response with the highest `keys` among N drawn without replacement.

    Exact over all N-subsets of a prompt's K responses: sorted by key, the response of rank r (1 = lowest) is the
    pick with probability C(r - 1, N - 1) / C(K, N); responses with equal keys share their weight (ties are broken
    uniformly at random), which is the same as giving each of them the mean value of its tie group.

    Args:
        keys: (prompts, K) rewards that pick (the proxy's, or the gold's for the gold pick).
        values: (prompts, K) rewards of the picked response to average (the gold's).
        n: responses per draw, 1 <= n <= K.
    """
    keys, values = _reward_matrix(keys, "keys"), _reward_matrix(values, "values")
    if keys.shape != values.shape:
        raise ValueError(f"`keys` and `values` must have the same shape; got {keys.shape} and {values.shape}.")
    samples = keys.shape[1]
    if not 1 <= n <= samples:
        raise ValueError(f"N must be between 1 and the {samples} samples per prompt, got {n}.")
    total = math.comb(samples, n)
    weights = np.array([math.comb(rank, n - 1) / total for rank in range(samples)])  # rank 0 = lowest key
    order = np.argsort(keys, axis=1, kind="stable")
    sorted_keys, sorted_values = np.take_along_axis(keys, order, 1), np.take_along_axis(values, order, 1)
    picks = np.empty(keys.shape[0])
    for row, (row_keys, row_values) in enumerate(zip(sorted_keys, sorted_values)):
        _, group = np.unique(row_keys, return_inverse=True)
        group_means = np.bincount(group, weights=row_values) / np.bincount(group)
        picks[row] = weights @ group_means[group]
    return picks


def _bootstrap_interval(per_prompt: np.ndarray, samples: int, confidence: float, seed: int) -> np.ndarray:
    """(2, columns) percentile bootstrap interval of the column means of a (prompts, columns) array, prompts
    resampled with replacement (the same draws for every column: differences of columns are paired)."""
    prompts = per_prompt.shape[0]
    if samples == 0 or prompts == 1:
        means = per_prompt.mean(axis=0)
        return np.stack([means, means])
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, samples, 256):  # counts of every prompt in each resample, a chunk at a time
        counts = rng.multinomial(prompts, np.full(prompts, 1.0 / prompts), size=min(256, samples - start))
        means.append(counts @ per_prompt / prompts)
    tail = (1.0 - confidence) / 2
    return np.quantile(np.concatenate(means), [tail, 1.0 - tail], axis=0)


# ---------------------------------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class BestOfNResult:
    """Best-of-N curves against a gold reward.

    Attributes:
        ns: the N of every point (1, 2, 4, ..., K).
        kl: log N - (N - 1) / N at every N.
        curves: `{name: {"mean", "lower", "upper"}}`, one value per N, for `PROXY_PICK`, `LOWER_BOUND_PICK` (an
            ensemble only), `GOLD_PICK` and `RANDOM_PICK`: the mean gold reward of the pick over prompts and its
            bootstrap interval.
        proxy_reward: the same for the proxy reward of the proxy's pick (in the proxy's units).
        overoptimisation: `{selector: row}` for the proxy's pick (and the lower-bound pick): `peak_n` (the first N of
            the highest gold reward), `n` (the over-optimisation point: `peak_n` when a larger N exists, else `None`),
            `gold_at_peak`, `gold_at_largest` (at the largest N), `change` (`gold_at_largest - gold_at_peak`) and its
            bootstrap interval `change_lower`, `change_upper`.
        num_prompts, num_samples: prompts, and responses per prompt (K).
        bootstrap_samples, confidence, seed: the bootstrap's resamples, interval level and seed.
        std_coef: the k of the lower bound (`None` without an ensemble).
        num_proxy_models: members of the proxy (1: a single model).
        num_truncated: `{"proxy" | "proxy <i>" | "gold": count}` of the sequences that lost the start of their
            prompt to the model's token limit, for the models scored here.
        proxy_rewards, gold_rewards, lower_bound_rewards: the (prompts, K) rewards the curves come from.
    """

    ns: list[int]
    kl: list[float]
    curves: dict[str, dict[str, list[float]]]
    proxy_reward: dict[str, list[float]]
    overoptimisation: dict[str, dict[str, Any]]
    num_prompts: int
    num_samples: int
    bootstrap_samples: int
    confidence: float
    seed: int
    std_coef: float | None = None
    num_proxy_models: int = 1
    num_truncated: dict[str, int] = field(default_factory=dict)
    proxy_rewards: Any = field(default=None, repr=False)
    gold_rewards: Any = field(default=None, repr=False)
    lower_bound_rewards: Any = field(default=None, repr=False)

    def log_metrics(self, prefix: str = "best_of_n") -> dict[str, float]:
        """`{prefix/<selector>_n<N>: gold reward of the pick, prefix/<selector>_peak_n: N}` for the proxy's pick (and
        the lower-bound pick): what changes while the proxy trains (the gold and random picks do not)."""
        logs = {}
        for selector, row in self.overoptimisation.items():
            name = snake_case(selector)
            logs.update({f"{prefix}/{name}_n{n}": value for n, value in zip(self.ns, self.curves[selector]["mean"])})
            logs[f"{prefix}/{name}_peak_n"] = float(row["peak_n"])
        return logs

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (JSON-ready), without the per-sample rewards."""
        return {
            "ns": list(self.ns),
            "kl": list(self.kl),
            "curves": {
                name: {key: list(values) for key, values in curve.items()} for name, curve in self.curves.items()
            },
            "proxy_reward": {key: list(values) for key, values in self.proxy_reward.items()},
            "overoptimisation": {name: dict(row) for name, row in self.overoptimisation.items()},
            "num_prompts": self.num_prompts,
            "num_samples": self.num_samples,
            "bootstrap_samples": self.bootstrap_samples,
            "confidence": self.confidence,
            "seed": self.seed,
            "std_coef": self.std_coef,
            "num_proxy_models": self.num_proxy_models,
            "num_truncated": dict(self.num_truncated),
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The `to_dict` result as JSON text, also written to `path` when given."""
        return json_text(self.to_dict(), path)

    def to_markdown(self) -> str:
        """A Markdown table, one row per N (mean and bootstrap interval of every curve), then notes with the
        over-optimisation points."""
        level = f"{100 * self.confidence:g}%"
        header = ["N", "KL", *(f"gold reward: {name}" for name in self.curves), "proxy reward: proxy pick"]
        lines = markdown_table(header)
        for index, (n, kl) in enumerate(zip(self.ns, self.kl)):
            cells = [str(n), f"{kl:.3f}", *(_cell(curve, index) for curve in self.curves.values())]
            lines.append(markdown_row([*cells, _cell(self.proxy_reward, index)]))
        notes = [
            f"{self.num_prompts} prompts with {self.num_samples} responses each; the gold reward of the response "
            "each selector picks among N, an exact expectation over the N-subsets of every prompt's responses, "
            f"averaged over prompts, with a {level} bootstrap interval over prompts ({self.bootstrap_samples} "
            "resamples). KL = log N - (N - 1) / N. The random pick's expectation is the mean gold reward of all the "
            "responses, whatever N."
        ]
        if self.std_coef is not None:
            notes.append(
                f"Proxy: an ensemble of {self.num_proxy_models} reward models; its pick is the highest mean reward, "
                f"the lower-bound pick the highest mean - {self.std_coef:g} x std over the members."
            )
        for selector, row in self.overoptimisation.items():
            notes.append(_overoptimisation_note(selector, row, self.ns[-1], level))
        truncated = {name: count for name, count in self.num_truncated.items() if count}
        if truncated:
            notes.append(
                "Sequences that lost the start of their prompt to the model's token limit: "
                + ", ".join(f"{name} {count}" for name, count in truncated.items())
                + "."
            )
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


def _cell(curve: dict[str, list[float]], index: int) -> str:
    return f"{curve['mean'][index]:.3f} [{curve['lower'][index]:.3f}, {curve['upper'][index]:.3f}]"


def _overoptimisation_note(selector: str, row: dict[str, Any], largest: int, level: str) -> str:
    if row["n"] is None:
        return (
            f"{selector}: still gaining gold reward at N = {largest} (highest there, {row['gold_at_peak']:.3f}): no "
            f"over-optimisation point within {largest} samples."
        )
    change = f"{row['change']:+.3f} [{row['change_lower']:+.3f}, {row['change_upper']:+.3f}]"
    verdict = (
        "a decline (its interval lies below 0)"
        if row["change_upper"] < 0
        else "no decline its interval can tell from a plateau"
    )
    return (
        f"{selector}: over-optimisation point N = {row['n']}, the first N after which more samples gain no gold reward "
        f"({row['gold_at_peak']:.3f} there); at N = {largest} the change is {change} ({level} paired bootstrap): "
        f"{verdict}."
    )


def best_of_n_curves(
    proxy_rewards: Any,
    gold_rewards: Any,
    lower_bound_rewards: Any = None,
    ns: Sequence[int] | None = None,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BestOfNResult:
    """Best-of-N curves from the rewards of every prompt's K responses (see the module docstring).

    Args:
        proxy_rewards: (prompts, K) rewards of the proxy (an ensemble's mean), which picks.
        gold_rewards: (prompts, K) gold rewards.
        lower_bound_rewards: (prompts, K) rewards of an ensemble's lower bound (mean - k std), or `None`.
        ns: the N to report, each between 1 and K; by default 1, 2, 4, ..., K (`best_of_n_sizes`).
        bootstrap_samples: resamples of the prompts for the intervals (0: none, the intervals are the means).
        confidence: the level of the percentile intervals.
        seed: seed of the resampling.
    """
    proxy = _reward_matrix(proxy_rewards, "proxy_rewards")
    gold = _reward_matrix(gold_rewards, "gold_rewards", proxy.shape)
    lower_bound = (
        None
        if lower_bound_rewards is None
        else _reward_matrix(lower_bound_rewards, "lower_bound_rewards", proxy.shape)
    )
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be between 0 and 1, got {confidence}.")
    if bootstrap_samples < 0:
        raise ValueError(f"`bootstrap_samples` must be 0 or more, got {bootstrap_samples}.")
    ns = sorted(set(ns)) if ns is not None else best_of_n_sizes(proxy.shape[1])
    if not ns or ns[0] < 1 or ns[-1] > proxy.shape[1]:
        raise ValueError(f"Every N must be between 1 and the {proxy.shape[1]} samples per prompt; got {ns}.")

    def per_prompt(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.stack([expected_pick(keys, values, n) for n in ns], axis=1)

    values = {PROXY_PICK: per_prompt(proxy, gold)}
    if lower_bound is not None:
        values[LOWER_BOUND_PICK] = per_prompt(lower_bound, gold)
    values[GOLD_PICK] = per_prompt(gold, gold)
    values[RANDOM_PICK] = np.repeat(gold.mean(axis=1, keepdims=True), len(ns), axis=1)
    values["proxy reward"] = per_prompt(proxy, proxy)
    stacked = np.concatenate(list(values.values()), axis=1)
    intervals = _bootstrap_interval(stacked, bootstrap_samples, confidence, seed)
    curves = {}
    for index, (name, table) in enumerate(values.items()):
        columns = slice(index * len(ns), (index + 1) * len(ns))
        curves[name] = {
            "mean": table.mean(axis=0).tolist(),
            "lower": intervals[0, columns].tolist(),
            "upper": intervals[1, columns].tolist(),
        }
    overoptimisation = {
        selector: _overoptimisation(ns, values[selector], bootstrap_samples, confidence, seed)
        for selector in SELECTORS
        if selector in values
    }
    return BestOfNResult(
        ns=list(ns),
        kl=[kl_cost(n) for n in ns],
        curves={name: curve for name, curve in curves.items() if name != "proxy reward"},
        proxy_reward=curves["proxy reward"],
        overoptimisation=overoptimisation,
        num_prompts=proxy.shape[0],
        num_samples=proxy.shape[1],
        bootstrap_samples=bootstrap_samples,
        confidence=confidence,
        seed=seed,
        proxy_rewards=proxy,
        gold_rewards=gold,
        lower_bound_rewards=lower_bound,
    )


def _overoptimisation(
    ns: list[int], per_prompt: np.ndarray, bootstrap_samples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """The over-optimisation point of one selector from its (prompts, len(ns)) gold rewards (module docstring)."""
    means = per_prompt.mean(axis=0)
    top = means.max()
    peak = int(np.flatnonzero(means >= top - _EQUAL * (1.0 + abs(top)))[0])
    change = per_prompt[:, -1] - per_prompt[:, peak]
    lower, upper = _bootstrap_interval(change[:, None], bootstrap_samples, confidence, seed)[:, 0]
    return {
        "peak_n": ns[peak],
        "n": ns[peak] if peak < len(ns) - 1 else None,
        "gold_at_peak": float(means[peak]),
        "gold_at_largest": float(means[-1]),
        "change": float(change.mean()),
        "change_lower": float(lower),
        "change_upper": float(upper),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Samples: loading, checking and sampling them from a policy
# ---------------------------------------------------------------------------------------------------------------------


def check_best_of_n_samples(samples: Any, source: str = "The samples") -> None:
    """Raise a `ValueError` naming the problem and its fix unless every row has a `prompt` (a text or a list of
    `{"role", "content"}` messages) and `responses` (texts), as many for every prompt, and `gold_rewards`, when
    present, one finite number per response."""
    if len(samples) == 0:
        raise ValueError(f"{source} has no rows.")
    names = column_names(samples)
    missing = [name for name in ("prompt", "responses") if name not in names]
    if missing:
        raise ValueError(
            f"{source}: column(s) {missing} missing in some or all rows (it has {sorted(names)}). Best-of-N rows hold "
            "a `prompt` and its sampled `responses` (a list of texts), optionally their `gold_rewards`; to sample the "
            "responses from a policy instead, give prompts only and the policy (`sample_best_of_n`, or "
            "`--best_of_n_policy`)."
        )
    prompts, responses = column(samples, "prompt"), column(samples, "responses")
    gold = column(samples, "gold_rewards") if "gold_rewards" in names else [None] * len(prompts)
    counts = [len(texts) if isinstance(texts, list) else 0 for texts in responses]
    for index, (prompt, texts, rewards) in enumerate(zip(prompts, responses, gold)):
        where = f"{source}, row {index}"
        if not (isinstance(prompt, str) or is_conversation(prompt)):
            raise ValueError(f"{where}: `prompt` must be a text or a list of {{'role', 'content'}} messages.")
        if not (isinstance(texts, list) and texts and all(isinstance(text, str) for text in texts)):
            raise ValueError(f"{where}: `responses` must be a non-empty list of texts.")
        if rewards is not None and (
            not isinstance(rewards, list)
            or len(rewards) != len(texts)
            or not all(isinstance(value, int | float) and math.isfinite(value) for value in rewards)
        ):
            raise ValueError(f"{where}: `gold_rewards` must hold one finite number per response ({len(texts)}).")
    if len(set(counts)) > 1:
        rows = [index for index, count in enumerate(counts) if count != counts[0]]
        raise ValueError(
            f"{source}: every prompt needs as many responses (best-of-N compares N up to that number); row 0 has "
            f"{counts[0]}, but rows {rows[:10]}{' ...' if len(rows) > 10 else ''} have "
            f"{sorted({counts[index] for index in rows})}. Sample the same number per prompt, or drop those rows."
        )


def load_best_of_n_samples(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a local json/jsonl(.gz)/parquet/csv file of prompts with their sampled responses, checked by
    `check_best_of_n_samples` (a file of prompts only, for `sample_best_of_n`, is read by `load_prompts`)."""
    from ..data import read_records

    rows = read_records(path)
    check_best_of_n_samples(rows, str(path))
    return rows


def load_prompts(path: str | os.PathLike) -> list[Any]:
    """The `prompt` of every row of a local file (texts or conversations), for `sample_best_of_n`."""
    from ..data import read_records

    rows = read_records(path)
    if "responses" in column_names(rows):
        raise ValueError(
            f"{path} already holds `responses`: score them (give no policy), or give a file of prompts to sample from."
        )
    if "prompt" not in column_names(rows):
        raise ValueError(f"{path}: every row needs a `prompt` (a text or a list of {{'role', 'content'}} messages).")
    prompts = column(rows, "prompt")
    bad = [index for index, prompt in enumerate(prompts) if not (isinstance(prompt, str) or is_conversation(prompt))]
    if bad:
        raise ValueError(
            f"{path}, rows {bad[:10]}: `prompt` must be a text or a list of {{'role', 'content'}} messages."
        )
    return prompts


def sample_best_of_n(
    policy: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Any],
    num_samples: int,
    settings: SamplingSettings | None = None,
    backend: GenerationBackend | None = None,
    batch_size: int = 8,
    seed: int = 0,
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """`num_samples` responses to every prompt from `policy`, as rows `{"prompt", "responses"}` for `score_best_of_n`.

    Prompts are tokenized as rejection sampling tokenizes them (a text as it is, a conversation with the chat
    template's generation prompt) and sampled with a generation backend of `trl_more.rejection_sampling.generation`:
    `backend`, or by default `TransformersGenerationBackend` on the policy's device (batched, length-sorted, seeded:
    the same seed gives the same responses). Responses are decoded without special tokens.

    Args:
        policy: a causal language model.
        tokenizer: its tokenizer (its eos token pads when it has no pad token).
        prompts: texts or conversations.
        num_samples: responses per prompt (K).
        settings: how to sample; by default temperature 1 and at most 256 new tokens.
        backend: a `GenerationBackend` (e.g. `VLLMGenerationBackend`); by default the transformers one.
        batch_size: prompts per `generate` call of the default backend.
        seed: the sampling seed.
        show_progress: show a progress bar over the batches.
    """
    from accelerate import Accelerator

    from ..rejection_sampling.generation import SamplingSettings, TransformersGenerationBackend, eos_token_ids
    from ..tokenization import tokenize_prompt

    if num_samples < 1:
        raise ValueError(f"`num_samples` must be at least 1, got {num_samples}.")
    if backend is None:
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        device = next(policy.parameters()).device
        backend = TransformersGenerationBackend(
            Accelerator(cpu=device.type == "cpu"),
            settings or SamplingSettings(max_new_tokens=256),
            pad_token_id=pad_token_id,
            eos_token_ids=eos_token_ids(policy, tokenizer),
            batch_size=batch_size,
            show_progress=show_progress,
        )
    prompt_ids = [tokenize_prompt(tokenizer, prompt) for prompt in prompts]
    generated = backend.generate(policy, prompt_ids, num_samples, seed=seed)
    return [
        {"prompt": prompt, "responses": [tokenizer.decode(ids, skip_special_tokens=True) for ids in group]}
        for prompt, group in zip(prompts, generated)
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Scoring with models
# ---------------------------------------------------------------------------------------------------------------------


def _flat(samples: Any) -> tuple[list[Any], list[str], int]:
    """Every (prompt, response) of the samples, prompt by prompt, and K."""
    prompts, responses = [], []
    for prompt, texts in zip(column(samples, "prompt"), column(samples, "responses")):
        prompts += [prompt] * len(texts)
        responses += texts
    return prompts, responses, len(column(samples, "responses")[0])


def check_gold_source(samples_have_gold: bool, gold_given: bool) -> None:
    """A `ValueError` unless the gold rewards come from exactly one place: the samples' `gold_rewards`, or a gold."""
    if not samples_have_gold and not gold_given:
        raise ValueError(
            "Best-of-N needs a gold reward: give a gold reward model or a Python function of (prompt, response) "
            "(`gold=`, `--gold_model`), or samples with a `gold_rewards` column."
        )
    if samples_have_gold and gold_given:
        raise ValueError(
            "The samples hold `gold_rewards` and a gold was given too: drop the column to score with the gold, or "
            "give no gold to use the column."
        )


def gold_rewards_of(
    samples: Any,
    gold: nn.Module | Callable[[str, str], float] | None,
    gold_tokenizer: PreTrainedTokenizerBase | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    chat_template: str = "auto",
    show_progress: bool = False,
) -> tuple[np.ndarray, int]:
    """(prompts, K) gold rewards of the samples and the sequences the gold model truncated.

    `gold` is a reward model (with `gold_tokenizer`), a `FunctionRewardModel`, or a Python function of (prompt,
    response) texts, which becomes a `FunctionRewardModel` decoding with `gold_tokenizer` (give one that reproduces
    your texts: byte-level BPE tokenizers do, uncased ones lowercase them). A function reads the prompt as the samples
    hold it (template `"plain"`); a reward model reads it with `chat_template`. With `gold=None` the samples' own
    `gold_rewards` are used.
    """
    import torch

    from ..rewards.function_reward import FunctionRewardModel

    check_gold_source("gold_rewards" in column_names(samples), gold is not None)
    if gold is None:
        return _reward_matrix(column(samples, "gold_rewards"), "gold_rewards"), 0
    if not isinstance(gold, torch.nn.Module):
        if not callable(gold):
            raise TypeError(f"`gold` must be a reward model or a function of (prompt, response); got {type(gold)}.")
        if gold_tokenizer is None:
            raise ValueError("A gold function needs `gold_tokenizer`, the tokenizer its inputs are decoded with.")
        gold = FunctionRewardModel(gold, gold_tokenizer)
    if isinstance(gold, FunctionRewardModel):
        gold_tokenizer, chat_template = gold.tokenizer, "plain"
    elif gold_tokenizer is None:
        raise ValueError("A gold reward model needs its tokenizer (`gold_tokenizer`).")
    prompts, responses, samples_per_prompt = _flat(samples)
    scored = score_sequences(
        gold, gold_tokenizer, prompts, responses, batch_size, max_length, chat_template, show_progress
    )
    return scored.rewards.reshape(-1, samples_per_prompt), scored.num_truncated


def score_best_of_n(
    models: nn.Module | Sequence[nn.Module],
    tokenizers: PreTrainedTokenizerBase | Sequence[PreTrainedTokenizerBase],
    samples: Any,
    gold: nn.Module | Callable[[str, str], float] | None = None,
    gold_tokenizer: PreTrainedTokenizerBase | None = None,
    std_coef: float = 1.0,
    calibration: str = "stored",
    batch_size: int = 8,
    max_length: int | None = None,
    chat_template: str = "auto",
    ns: Sequence[int] | None = None,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    show_progress: bool = False,
) -> BestOfNResult:
    """Best-of-N curves of a proxy reward model (or ensemble) against a gold reward on prompts with K responses each.

    Every response is scored by every proxy model and by the gold through the benchmarks' shared path
    (`trl_more.metrics.benchmark_scoring.score_sequences`: each model reads the prompt rendered by `chat_template`,
    at its own token limit unless `max_length` is given). Several proxy models form an ensemble, their rewards put
    on one scale first (`calibration`, as in rejection sampling's `ensemble_calibration`): the proxy's pick is the
    highest mean, the lower-bound pick the highest mean - `std_coef` x std. See `best_of_n_curves` for the curves.

    Args:
        models: the proxy reward model, or several (an ensemble).
        tokenizers: the tokenizer of each.
        samples: rows with `prompt` and `responses` (`load_best_of_n_samples`, `sample_best_of_n`), or a path.
        gold: the gold reward (see `gold_rewards_of`); `None` reads the samples' `gold_rewards`.
        gold_tokenizer: the gold model's tokenizer, or the one a gold function's inputs are decoded with (default for
            a function: the first proxy tokenizer).
        std_coef: the k of the ensemble's lower bound.
        calibration: `"stored"` (each member's stored reward statistics or temperature) or `"none"` (raw rewards).
        batch_size, max_length, chat_template, show_progress: as for `score_sequences`.
        ns, bootstrap_samples, confidence, seed: as for `best_of_n_curves`.
    """
    import torch

    from ..rewards import ENSEMBLE_CALIBRATIONS, combine_rewards, ensemble_scales

    models = [models] if not isinstance(models, Sequence) else list(models)
    tokenizers = [tokenizers] if not isinstance(tokenizers, Sequence) else list(tokenizers)
    if not models or len(models) != len(tokenizers):
        raise ValueError(f"Give one tokenizer per proxy model: {len(models)} models, {len(tokenizers)} tokenizers.")
    check_choice("calibration", calibration, ENSEMBLE_CALIBRATIONS)
    check_choice("chat_template", chat_template, TEMPLATES)
    if isinstance(samples, str | os.PathLike):
        samples = load_best_of_n_samples(samples)
    check_best_of_n_samples(samples)
    settings = dict(batch_size=batch_size, max_length=max_length, chat_template=chat_template)
    if gold is not None and not isinstance(gold, torch.nn.Module) and gold_tokenizer is None:
        gold_tokenizer = tokenizers[0]  # a function's inputs are decoded with the proxy's tokenizer
    gold_rewards, gold_truncated = gold_rewards_of(
        samples, gold, gold_tokenizer, show_progress=show_progress, **settings
    )
    prompts, responses, samples_per_prompt = _flat(samples)
    per_model, truncated = [], {}
    for index, (model, tokenizer) in enumerate(zip(models, tokenizers)):
        scored = score_sequences(model, tokenizer, prompts, responses, show_progress=show_progress, **settings)
        per_model.append(torch.from_numpy(scored.rewards))
        truncated["proxy" if len(models) == 1 else f"proxy {index}"] = scored.num_truncated
    if gold is not None:
        truncated["gold"] = gold_truncated
    scaled = torch.stack(
        [
            rewards if scale is None else scale.apply(rewards)
            for rewards, scale in zip(per_model, ensemble_scales(models, calibration))
        ],
        dim=1,
    )
    ensemble = len(models) > 1
    result = best_of_n_curves(
        combine_rewards(scaled, "mean").reshape(-1, samples_per_prompt),
        gold_rewards,
        combine_rewards(scaled, "mean_minus_std", std_coef).reshape(-1, samples_per_prompt) if ensemble else None,
        ns=ns,
        bootstrap_samples=bootstrap_samples,
        confidence=confidence,
        seed=seed,
    )
    result.std_coef = std_coef if ensemble else None
    result.num_proxy_models, result.num_truncated = len(models), truncated
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Training callback
# ---------------------------------------------------------------------------------------------------------------------


class BestOfNCallback(BenchmarkCallback):
    """Best-of-N curves with the model under training as the proxy, at every evaluation of a reward trainer.

    The gold rewards of the samples are computed once, when the callback is built (the gold model is not kept); at
    every evaluation the samples are scored with `trainer.model` and the curves computed (`score_best_of_n`), and the
    gold reward of the proxy's pick at every N and its over-optimisation peak are logged
    (`best_of_n/proxy_pick_n<N>`, `best_of_n/proxy_pick_peak_n`). The latest `BestOfNResult` is kept in
    `last_result`, and the model card of `MORERewardTrainer` shows its table. See docs/evaluation.md.

    Args:
        trainer: the reward trainer.
        samples: rows with `prompt` and `responses`, or a path (`load_best_of_n_samples`).
        gold, gold_tokenizer: the gold reward (see `gold_rewards_of`; a gold function's tokenizer defaults to the
            trainer's `processing_class`); `None` reads the samples' `gold_rewards`.
        batch_size, max_length, chat_template: as for `score_best_of_n`.
        ns, bootstrap_samples, confidence, seed: as for `best_of_n_curves`.
        prefix: the prefix of the logged names.
    """

    title = "Best-of-N against a gold reward"

    def __init__(
        self,
        trainer: Trainer,
        samples: Any,
        gold: nn.Module | Callable[[str, str], float] | None = None,
        gold_tokenizer: PreTrainedTokenizerBase | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
        chat_template: str = "auto",
        ns: Sequence[int] | None = None,
        bootstrap_samples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
        prefix: str = "best_of_n",
    ):
        import torch

        check_choice("chat_template", chat_template, TEMPLATES)
        if isinstance(samples, str | os.PathLike):
            samples = load_best_of_n_samples(samples)
        check_best_of_n_samples(samples)
        if gold is not None and not isinstance(gold, torch.nn.Module) and gold_tokenizer is None:
            gold_tokenizer = trainer.processing_class
        gold_rewards, _ = gold_rewards_of(samples, gold, gold_tokenizer, batch_size, max_length, chat_template)
        super().__init__(trainer, prefix)
        self.samples = [
            {"prompt": prompt, "responses": responses, "gold_rewards": rewards.tolist()}
            for prompt, responses, rewards in zip(
                column(samples, "prompt"), column(samples, "responses"), gold_rewards
            )
        ]
        self.settings = dict(
            batch_size=batch_size,
            max_length=max_length,
            chat_template=chat_template,
            ns=ns,
            bootstrap_samples=bootstrap_samples,
            confidence=confidence,
            seed=seed,
        )

    def score(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> BestOfNResult:
        return score_best_of_n(model, tokenizer, self.samples, **self.settings)
