"""Reward modelling on noisy and ambiguous preferences ("Secrets of RLHF in Large Language Models Part II").

- `estimate_preference_strength`: the strength mu and sigma of every pair from an ensemble of reward models, in-sample
  (`"seeds"`, the paper's) or out-of-sample (`"cross_fit"`, the default); `trl-more strength` on the command line.
- The denoising losses (flipping, label smoothing, adaptive margin) and contrastive learning (SimCSE, SwAV) are options
  of `MORERewardConfig`, implemented in `denoising` and `contrastive`.

MetaRM, the follow-up that keeps a reward model sharp on a moving policy, lives in `trl_more.metarm`. The methods are
described in docs/noisy_preferences.md.
"""

from .contrastive import SwAVPrototypes, simcse_loss, sinkhorn, swav_loss
from .denoising import PairLossTerms, flip_weak_pairs
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
