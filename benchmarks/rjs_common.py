"""What the rejection-sampling benchmarks (`rjs_gold.py` on real data, `world_rejection_sampling.py` in the
known-answer world) share: an evaluation hook after every iteration, and the upper-bound arm whose reward model is
updated on freshly labelled pairs of every iteration's samples.

Both reach the trainer only through its public configuration and one documented extension point, the reward-model
update of `metarm=True` (`RejectionSamplingTrainer._update_reward_model`): nothing in the package knows about them.
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback

from trl_more import RejectionSamplingTrainer
from trl_more.tokenization import fit_to_max_length, tokenize_scored_response


# (reward prompt, the responses of one prompt in sample order) -> the (chosen, rejected) texts they make.
PairLabeller = Callable[[str, list[str]], list[tuple[str, str]]]


class EveryIteration(TrainerCallback):
    """Calls `function(iterations_done)` before the first iteration (0) and after the last epoch of every iteration
    (1, 2, ...): the policy, and the reward model that selected the iteration's samples, as the iteration left them
    (the next iteration's update and generation run only at the next epoch's start)."""

    def __init__(self, function: Callable[[int], None]):
        self.function = function

    def on_train_begin(self, args, state, control, **kwargs):
        self.function(0)

    def on_epoch_end(self, args, state, control, **kwargs):
        epochs = round(state.epoch)
        if epochs % args.num_epochs_per_iteration == 0:
            self.function(epochs // args.num_epochs_per_iteration)


class LabelledUpdatesTrainer(RejectionSamplingTrainer):
    """Rejection sampling whose reward model is updated every iteration on labelled pairs of the samples of every
    iteration so far, instead of the pairs it was trained on: an upper bound no real run has (it needs new labels).
    Run it with `metarm=True` and `metarm_meta_learning_rate=0`: the update is then ordinary Bradley-Terry training
    with the `metarm_*` batch size, steps and learning rate.

    Args:
        label_pairs: makes the labelled (chosen, rejected) texts of one prompt's responses.
        *args, **kwargs: as for `RejectionSamplingTrainer` (`reward_train_dataset` is still required, and unused).
    """

    def __init__(self, *args, label_pairs: PairLabeller, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_pairs = label_pairs
        self.labelled_pairs: list[tuple[list[int], list[int]]] = []  # token ids of every iteration's pairs so far

    def _update_reward_model(self, iteration, pairs, responses):
        by_prompt: dict[int, list[tuple[int, str]]] = {}
        for (index, sample, _), response in zip(pairs, responses):
            by_prompt.setdefault(index, []).append((sample, response))
        tokenizer, max_length = self.reward_updater.tokenizer, self.reward_updater.max_length
        for index, answers in by_prompt.items():
            prompt = self.reward_prompts[index]
            for texts in self.label_pairs(prompt, [response for _, response in sorted(answers)]):
                self.labelled_pairs.append(
                    tuple(
                        fit_to_max_length(
                            *tokenize_scored_response(tokenizer, prompt, text or " "), max_length, "keep_end"
                        )[0]
                        for text in texts
                    )
                )
        self.reward_updater.pairs = list(self.labelled_pairs)
        return super()._update_reward_model(iteration, pairs, responses)
