"""`trl-more average`: one reward model from the weight average of several fine-tuned from one initialisation (WARM).

Example:
    trl-more strength --config recipes/strength/cpu-minilm-cross-fit.yaml --save_models
    trl-more average --model runs/hh-strength/model-00 --model runs/hh-strength/model-01 --output_dir runs/hh-warm

Checks that the models share architecture, reward-head shape, initialisation and reading record (refusing otherwise
with the reason), merges LoRA adapters into their base, averages the weights (uniform, or `--weights`, divided by
their sum) and writes to `--output_dir` a reward model that `AutoModelForSequenceClassification` loads, its tokenizer
(the first member's; every member's must be the same) and a model card listing the members and their weights
(docs/robust_rewards.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser


@dataclass
class AverageConfig:
    r"""
    Options of `trl-more average`.

    Parameters:
        model (`list[str]`):
            The members: reward model folders or Hub ids (LoRA adapter folders too), fine-tuned from one
            initialisation. `--model a --model b` and `--model a b` both work.
        output_dir (`str`):
            Folder the averaged model, its tokenizer and its model card are written to.
        weights (`list[float]` or `None`, *optional*, defaults to `None`):
            One non-negative weight per member, divided by their sum (`1 1 2` means 0.25, 0.25, 0.5); `None`: uniform.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Run code shipped with a model folder. Only for folders whose code you have read.
    """

    model: list[str] = field(
        metadata={
            "help": "Member reward models (folders or Hub ids); repeat --model or list them.",
            "action": "extend",
        }
    )
    output_dir: str = field(metadata={"help": "Folder for the averaged model, its tokenizer and its card."})
    weights: list[float] | None = field(
        default=None, metadata={"help": "One non-negative weight per member (divided by their sum); default uniform."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped with a model folder (only if you have read it)."}
    )

    def __post_init__(self):
        if len(self.model) < 2:
            raise ValueError(f"Give at least two models to average with --model, got {self.model}.")


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser(AverageConfig, prog=prog, description=__doc__.split("\n\n")[0])


def main(config: AverageConfig) -> Path:
    from ..fingerprints import fingerprint
    from ..pretrained import load_tokenizer
    from ..rewards.averaging import average_reward_models, averaging_weights, write_averaged_model_card

    kwargs = {"trust_remote_code": config.trust_remote_code}
    tokenizers = [load_tokenizer(path, trust_remote_code=config.trust_remote_code) for path in config.model]
    identities = [
        fingerprint([sorted(tokenizer.get_vocab().items()), tokenizer.special_tokens_map]) for tokenizer in tokenizers
    ]
    if len(set(identities)) > 1:
        raise ValueError(
            f"The members' tokenizers differ ({dict(zip(config.model, identities))}): models fine-tuned from one "
            "initialisation share their tokenizer. Average only members of one training run setup."
        )
    weights = averaging_weights(config.weights, len(config.model))
    model = average_reward_models(config.model, weights, model_init_kwargs=kwargs)
    output_dir = Path(config.output_dir)
    model.save_pretrained(output_dir)
    tokenizers[0].save_pretrained(output_dir)
    write_averaged_model_card(output_dir, config.model, weights)
    print(f"Averaged {len(config.model)} reward models with weights {[round(w, 4) for w in weights]}: {output_dir}")
    return output_dir
