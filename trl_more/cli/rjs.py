"""`trl-more rjs`: rejection-sampling fine-tuning (RJS / RAFT) of a policy against one or several reward models.

Example:
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml -m trl_more.cli rjs \\
        --model_name_or_path my-org/alpaca-7b --reward_model_path runs/more-llama-7b \\
        --prompt_sources hh-helpful hh-harmless --output_dir runs/rjs-alpaca

Prompts are the first human turn of every conversation of the prompt sources (deduplicated, shuffled with `--seed`),
shown to the policy in `--prompt_template` and to the reward model in `--reward_prompt_format`. Every option of
`RejectionSamplingConfig` (iterations, samples per prompt, selection, generation, training) and of TRL's
`ModelConfig` (dtype, PEFT) is a flag, and `--config file.yaml` sets any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from ..rejection_sampling.rejection_sampling_config import RejectionSamplingConfig
from .common import leave_process_group, model_init_kwargs


# The Alpaca instruction template, without and with an input (docs/rejection_sampling.md).
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
ALPACA_TEMPLATE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n"
    "### Response:"
)
PROMPT_TEMPLATES = ("alpaca", "hh", "chat")
REWARD_PROMPT_FORMATS = ("hh", "chat", "policy")
PROMPT_TURNS = ("first", "all")


def alpaca_prompt(instruction: str, input: str | None = None) -> str:
    """An instruction (and optional input) in the Alpaca template the Alpaca models were fine-tuned with."""
    if input:
        return ALPACA_TEMPLATE_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_TEMPLATE.format(instruction=instruction)


@dataclass
class RejectionSamplingScriptArguments:
    r"""
    Data and reward-model options of `trl-more rjs` (the training options are `RejectionSamplingConfig`'s, the policy
    options TRL's `ModelConfig`'s).

    Parameters:
        reward_model_path (`list[str]`):
            One or several sequence-classification reward models (folders or Hub ids), e.g. a MORE reward model;
            several are combined by `--ensemble`.
        prompt_sources (`list[str]`, *optional*, defaults to `["hh-helpful", "hh-harmless"]`):
            Preference sources whose conversations give the prompts, as for `trl-more evaluate`: a known source `NAME`
            (loaded from the Hub split `--prompt_split`) or `NAME=PATH` (a local file in the source's raw format, e.g.
            `hh-helpful=../shared/data/hh_rlhf/helpful-base.test.jsonl.gz`).
        prompt_split (`str`, *optional*, defaults to `"train"`):
            Hub split of the sources given without a path.
        max_prompts (`int` or `None`, *optional*, defaults to `None`):
            Keep only this many prompts (after deduplication and shuffling).
        prompt_template (`str`, *optional*, defaults to `"alpaca"`):
            How the policy sees a question: `alpaca` (the Alpaca instruction template), `hh` (`"\n\nHuman: {q}\n\n
            Assistant:"`) or `chat` (a user message, rendered with the policy's chat template).
        reward_prompt_format (`str`, *optional*, defaults to `"hh"`):
            How the reward model sees the question before the response: `hh` (the HH transcript format MORE reward
            models are trained on), `chat` (a user message, with the reward model's chat template) or `policy` (the
            policy's prompt, unchanged).
        prompt_turns (`str`, *optional*, defaults to `"first"`):
            `first`: the opening user turn of every conversation, as a single question (the Alpaca setting); `all`:
            the whole conversation up to the reply (HH's own prompt), rendered as a transcript (`hh`), messages
            (`chat`) or, for `alpaca`, the last user turn as the instruction with the earlier turns as its input.
        filter_degenerate (`bool`, *optional*, defaults to `True`):
            Never select empty responses or responses dominated by one repeated word or character.
        reward_train_sources (`list[str]` or `None`, *optional*, defaults to `None`):
            With `--metarm`: the preference pairs the reward model keeps training on (sources as for
            `--prompt_sources`, split `--prompt_split`); `None` takes the pairs of the prompt sources.
    """

    reward_model_path: list[str] = field(
        metadata={"help": "Reward model folder(s) or Hub id(s); several: an ensemble."}
    )
    prompt_sources: list[str] = field(
        default_factory=lambda: ["hh-helpful", "hh-harmless"],
        metadata={"help": "Prompt sources: known source NAME (Hub) or NAME=PATH (local raw file)."},
    )
    prompt_split: str = field(default="train", metadata={"help": "Hub split of sources given without a path."})
    max_prompts: int | None = field(default=None, metadata={"help": "Keep only this many prompts."})
    prompt_template: str = field(
        default="alpaca", metadata={"help": "How the policy sees a question.", "choices": list(PROMPT_TEMPLATES)}
    )
    reward_prompt_format: str = field(
        default="hh",
        metadata={"help": "How the reward model sees the question.", "choices": list(REWARD_PROMPT_FORMATS)},
    )
    prompt_turns: str = field(
        default="first",
        metadata={"help": "The opening question only, or the whole conversation.", "choices": list(PROMPT_TURNS)},
    )
    filter_degenerate: bool = field(default=True, metadata={"help": "Never select empty or repetitive responses."})
    reward_train_sources: list[str] | None = field(
        default=None,
        metadata={
            "help": "With --metarm: preference sources the reward model trains on (default: the prompt sources)."
        },
    )


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser(
        (RejectionSamplingScriptArguments, RejectionSamplingConfig, ModelConfig),
        prog=prog,
        description=__doc__.split("\n\n")[0],
    )


Turns = tuple[tuple[str, str], ...]  # ((role, text), ...), roles "user" and "assistant", ending with a user turn


def dialogue_turns(prompt: str | list[dict[str, Any]]) -> Turns:
    """The conversation before the reply, from an HH transcript (`"\\n\\nHuman: ...\\n\\nAssistant:"`) or a message
    list."""
    from ..data import ASSISTANT_TAG, HUMAN_TAG

    if isinstance(prompt, list):
        return tuple((message["role"], message["content"].strip()) for message in prompt)
    if HUMAN_TAG not in prompt:
        return (("user", prompt.strip()),)
    turns = []
    for human_part in prompt.split(HUMAN_TAG)[1:]:
        question, _, answer = human_part.partition(ASSISTANT_TAG)
        turns.append(("user", question.strip()))
        if answer.strip():
            turns.append(("assistant", answer.strip()))
    return tuple(turns)


def select_turns(turns: Turns, prompt_turns: str) -> Turns:
    """All turns, or only the opening user turn (`prompt_turns="first"`)."""
    if prompt_turns == "first":
        return tuple(turn for turn in turns if turn[0] == "user")[:1]
    return turns


def format_prompts(dialogues: list[Turns], prompt_template: str, reward_prompt_format: str):
    """A prompt dataset (`prompt` for the policy, `reward_prompt` for the reward model) from conversations.

    The Alpaca template takes one instruction: a multi-turn conversation becomes the instruction (its last user
    turn) with the conversation before it as the template's input.
    """
    from datasets import Dataset

    from ..data.formats import ASSISTANT_TAG, render_dialogue

    def render(turns: Turns, style: str):
        if style == "alpaca":
            history = render_dialogue(turns[:-1]).removesuffix(ASSISTANT_TAG).strip() if len(turns) > 1 else None
            return alpaca_prompt(turns[-1][1], history)
        if style == "hh":
            return render_dialogue(turns)
        return [{"role": role, "content": text} for role, text in turns]

    prompts = [render(turns, prompt_template) for turns in dialogues]
    if reward_prompt_format == "policy":
        reward_prompts = prompts
    else:
        reward_prompts = [render(turns, reward_prompt_format) for turns in dialogues]
    return Dataset.from_dict({"prompt": prompts, "reward_prompt": reward_prompts})


def load_prompts(script_args: RejectionSamplingScriptArguments, seed: int):
    """The deduplicated, shuffled prompt dataset of `script_args`' sources."""
    import random

    from .evaluate import load_evaluation_sources

    dialogues = []
    for dataset in load_evaluation_sources(script_args.prompt_sources, script_args.prompt_split).values():
        dialogues.extend(
            select_turns(dialogue_turns(prompt), script_args.prompt_turns) for prompt in dataset["prompt"]
        )
    dialogues = [turns for turns in dict.fromkeys(dialogues) if turns and turns[-1][1]]  # first occurrences, in order
    random.Random(seed).shuffle(dialogues)
    if script_args.max_prompts is not None:
        dialogues = dialogues[: script_args.max_prompts]
    return format_prompts(dialogues, script_args.prompt_template, script_args.reward_prompt_format)


def main(
    script_args: RejectionSamplingScriptArguments, training_args: RejectionSamplingConfig, model_args: ModelConfig
):
    from ..pretrained import load_tokenizer
    from ..rejection_sampling import RejectionSamplingTrainer
    from ..rejection_sampling.diversity import is_degenerate_response

    if model_args.model_name_or_path is None:
        raise ValueError("Give the policy with `--model_name_or_path`.")
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    if training_args.reward_model_init_kwargs is None and model_args.dtype is not None:
        training_args.reward_model_init_kwargs = {"dtype": model_args.dtype}

    tokenizer = load_tokenizer(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    prompts = load_prompts(script_args, training_args.seed)
    reward_train_dataset = None
    if training_args.metarm:
        from datasets import concatenate_datasets

        from .evaluate import load_evaluation_sources

        sources = script_args.reward_train_sources or script_args.prompt_sources
        pairs = load_evaluation_sources(sources, script_args.prompt_split)
        reward_train_dataset = concatenate_datasets(
            [dataset.select_columns(["prompt", "chosen", "rejected"]) for dataset in pairs.values()]
        )
    trainer = RejectionSamplingTrainer(
        model=model_args.model_name_or_path,
        reward_train_dataset=reward_train_dataset,
        reward_models=script_args.reward_model_path,
        args=training_args,
        train_dataset=prompts,
        processing_class=tokenizer,
        response_filter=(lambda _, response: not is_degenerate_response(response))
        if script_args.filter_degenerate
        else None,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Policy saved to {training_args.output_dir}.")
    leave_process_group()
    return trainer
