"""MetaRM ("Secrets of RLHF in Large Language Models Part II", Section 4): reward training with a meta step on the
policy's unlabeled responses, so that the reward model keeps telling them apart as the policy moves.

- `MetaRMConfig` / `MetaRMTrainer`: `MORERewardTrainer` (MORE, the denoising losses) plus the meta step.
- `difference_loss`: J, the difference loss of k responses per prompt.
- `MetaAscent`: the meta step theta' = theta + eta * grad J and its undo, shared with rejection sampling.
- `meta_data`: the meta dataset, tokenized, and its deterministic batches.

The method, its formulas and our choices are in docs/metarm.md.
"""

from .difference import difference_loss
from .meta_ascent import MetaAscent
from .meta_data import MetaBatches, tokenize_meta_dataset
from .metarm_config import MetaRMConfig
from .metarm_trainer import MetaRMTrainer


__all__ = ["MetaAscent", "MetaBatches", "MetaRMConfig", "MetaRMTrainer", "difference_loss", "tokenize_meta_dataset"]
