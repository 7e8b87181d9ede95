"""Rejection-sampling fine-tuning (RJS / RAFT): sample N responses per prompt, score, keep the best, fine-tune.

- `RejectionSamplingConfig` / `RejectionSamplingTrainer`: the whole loop as one `train()` call of TRL's `SFTTrainer`.
- `select_samples`: which responses are trained on; `distinct_n`, `is_degenerate_response`: reward-hacking checks.
- `generation`: the sampling backends (transformers `generate`, colocated vLLM).

The method and its traps are described in docs/rejection_sampling.md.
"""

from .diversity import distinct_n, is_degenerate_response
from .iterations import IterationStore
from .rejection_sampling_config import RejectionSamplingConfig
from .rejection_sampling_trainer import RejectionSamplingTrainer
from .selection import SELECTION_STRATEGIES, max_selected, select_samples


__all__ = [
    "SELECTION_STRATEGIES",
    "IterationStore",
    "RejectionSamplingConfig",
    "RejectionSamplingTrainer",
    "distinct_n",
    "is_degenerate_response",
    "max_selected",
    "select_samples",
]
