"""Reward modelling on noisy and ambiguous preferences ("Secrets of RLHF in Large Language Models Part II").

- `estimate_preference_strength`: the strength mu and sigma of every pair from an ensemble of reward models, in-sample
  (`"seeds"`, the paper's) or out-of-sample (`"cross_fit"`, the default); `trl-more strength` on the command line.
- The denoising losses (flipping, label smoothing, adaptive margin) and contrastive learning (SimCSE, SwAV) are options
  of `MORERewardConfig`, implemented in `trl_more.losses.denoising` and `trl_more.losses.contrastive` (below
  `trl_more.more`, which trains with them; this package, whose strength estimate trains ensembles of MORE reward
  models, stands above it), and exported here too.

MetaRM, the follow-up that keeps a reward model sharp on a moving policy, lives in `trl_more.metarm`. The methods are
described in docs/noisy_preferences.md.
"""

from ..losses.contrastive import SwAVPrototypes, simcse_loss, sinkhorn, swav_loss
from ..losses.denoising import PairLossTerms, flip_weak_pairs
from .strength import STRENGTH_MODES, PreferenceStrength, estimate_preference_strength, strength_summary


__all__ = [
    "STRENGTH_MODES",
    "PairLossTerms",
    "PreferenceStrength",
    "SwAVPrototypes",
    "estimate_preference_strength",
    "flip_weak_pairs",
    "simcse_loss",
    "sinkhorn",
    "strength_summary",
    "swav_loss",
]
