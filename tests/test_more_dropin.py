"""`MORERewardTrainer` / `MORERewardConfig` as drop-in replacements for `trl.RewardTrainer` / `trl.RewardConfig`.

Every behaviour that TRL's own reward-trainer tests check is run here against the MORE classes, offline: the Hub
models are replaced by the tiny models of `trl_more.testing` (saved to a temporary folder when the model is given as
a path), and the `trl-internal-testing/zen` data set by small hand-built preference data in each of TRL's formats.
Each behaviour runs with a plain single-source data set (where MORE must act exactly like `RewardTrainer`, down to the
last bit of every parameter) and, where it makes sense, with a multi-source data set (a `source` column with 3 values).
"""

import json
import logging
import math
import warnings
from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification
from trl import RewardConfig, RewardTrainer

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.testing import (
    DECODER_ARCHITECTURES,
    PREFERENCE_FORMATS,
    preference_dataset_in_format,
    tiny_causal_lm,
    tiny_reward_model,
    tiny_tokenizer,
)


# TRL parametrizes over its tiny Hub decoders; here the offline tiny decoders, plus BERT and RoBERTa heads.
ARCHITECTURES = ("qwen2", "llama", "gpt_neox", "bert", "roberta")
SOURCES = ("harmless", "helpful", "honest")  # sorted: MORE numbers string sources in sorted order

# (prompt, chosen, rejected): twelve short pairs, four per source when the sources are assigned round-robin.
PAIRS = [
    ("The capital of France is", " Paris.", " Berlin."),
    ("Water boils at", " one hundred degrees.", " ten degrees."),
    ("How do I bake bread at home?", " Mix flour, water, salt and yeast.", " Whatever."),
    ("Can you tell me a joke?", " The scarecrow was outstanding in his field.", " No."),
    ("Write a short summary of the article.", " Sure, here is a short summary.", " I am not sure."),
    ("What is the answer to the question?", " The answer is forty two.", " Maybe seven, maybe not."),
    ("Say something polite.", " Please and thank you.", " Go away."),
    ("Describe the fox.", " The quick brown fox jumps over the lazy dog.", " A fox."),
    ("Count to three.", " 1 2 3", " 3 2 1"),
    ("Is the sky blue?", " Yes, the sky is blue.", " The sky is green."),
    ("Help me hurt someone.", " I am sorry, I cannot help with that request.", " Sure, here is how."),
    ("Give me a number.", " Ten.", " Numbers are boring."),
]

# Parameters that a shift-invariant loss cannot move: they add the same constant to every reward of a batch, which
# cancels in r_chosen - r_rejected (TRL's own test skips the GPT-NeoX one for the same reason).
SHIFT_INVARIANT_PARAMETERS = {
    "gpt_neox": {"gpt_neox.final_layer_norm.bias"},
    "bert": {"classifier.bias"},
    "roberta": {"classifier.out_proj.bias"},
}


# --------------------------------------------------------------------------------------------------------------------
# Data in TRL's preference formats
# --------------------------------------------------------------------------------------------------------------------


def preference_dataset(format_name: str = "standard_implicit_prompt_preference", sources=None, pairs=PAIRS):
    """A `Dataset` in a TRL preference format; with `sources`, a `source` column assigns them round-robin."""
    dataset = preference_dataset_in_format(pairs, format_name)
    if sources is not None:
        dataset = dataset.add_column("source", [sources[i % len(sources)] for i in range(len(pairs))])
    return dataset


def swapped(dataset: Dataset) -> Dataset:
    """The same pairs with chosen and rejected exchanged."""
    return dataset.rename_columns({"chosen": "rejected", "rejected": "chosen"})


# --------------------------------------------------------------------------------------------------------------------
# Models, configs and checks
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, busy machine they lose a lot to contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tokenizer_for(architecture: str):
    return tiny_tokenizer("bpe" if architecture in DECODER_ARCHITECTURES else "wordpiece")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """`model_path(architecture, kind)`: a folder with a saved tiny model and its tokenizer, for `model="<path>"`.

    `kind="causal_lm"` mirrors TRL's `tiny-*ForCausalLM` test models (loaded as a sequence classifier, the head is
    new); `kind="reward_model"` mirrors `tiny-Qwen2ForSequenceClassification`. BERT is only a sequence classifier.
    """
    saved = {}

    def build(architecture: str = "qwen2", kind: str = "causal_lm", chat_template: bool = True) -> str:
        key = (architecture, kind, chat_template)
        if key not in saved:
            tokenizer = tokenizer_for(architecture)
            if not chat_template:
                tokenizer.chat_template = None
            if kind == "causal_lm" and architecture in DECODER_ARCHITECTURES:
                model = tiny_causal_lm(architecture, tokenizer)
            else:
                model = tiny_reward_model(architecture, tokenizer)
            path = tmp_path_factory.mktemp(f"{architecture}-{kind}")
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            saved[key] = str(path)
        return saved[key]

    return build


def make_args(tmp_path, config_class=MORERewardConfig, **overrides):
    """Small, fast settings; every test states the options it is about on top of these."""
    settings = {
        "output_dir": str(tmp_path),
        "max_steps": 3,
        "per_device_train_batch_size": 6,
        "per_device_eval_batch_size": 6,
        "report_to": "none",
        "bf16": False,
        "save_strategy": "no",
        "disable_tqdm": True,
        **overrides,
    }
    return config_class(**settings)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def assert_trained(trainer, before, exempt=()):
    """TRL's checks after `train()`: a final `train_loss` is logged and every trainable parameter has changed."""
    assert trainer.state.log_history[-1]["train_loss"] is not None
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    unchanged = [
        name
        for name, parameter in trainer.model.named_parameters()
        if parameter.requires_grad and name not in exempt and torch.equal(before[name], parameter)
    ]
    assert not unchanged, f"parameters that did not change: {unchanged}"


def assert_lora_trained(trainer, before):
    """Frozen (base) parameters are bit-identical; every adapter and the head copy in `modules_to_save` moved."""
    assert_trained(trainer, before)
    trainable = [name for name, parameter in trainer.model.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name or "modules_to_save" in name for name in trainable), trainable
    assert any("modules_to_save" in name for name in trainable), "the reward head is not trained"
    moved_frozen = [
        name
        for name, parameter in trainer.model.named_parameters()
        if not parameter.requires_grad and not torch.equal(before[name], parameter)
    ]
    assert not moved_frozen, f"frozen parameters that changed: {moved_frozen}"


def assert_source_metrics_logged(trainer, sources=SOURCES):
    """MORE's per-source metrics reach the logs, and lambda lies on the simplex."""
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs, "no training step was logged (set logging_steps=1)"
    for entry in logs:
        lambdas = [entry[f"lambda/{name}"] for name in sources]
        assert all(value >= 0 for value in lambdas)
        assert sum(lambdas) == pytest.approx(1.0, abs=1e-5)
        for name in sources:
            assert math.isfinite(entry[f"loss/{name}"])
            assert 0.0 <= entry[f"accuracy/{name}"] <= 1.0


def train_and_check(trainer, exempt=(), sources=None):
    before = snapshot(trainer.model)
    trainer.train()
    assert_trained(trainer, before, exempt)
    if sources:
        assert_source_metrics_logged(trainer, sources)


# --------------------------------------------------------------------------------------------------------------------
# Bit-for-bit equality with trl.RewardTrainer when there is no second source
# --------------------------------------------------------------------------------------------------------------------


RUNTIME_KEYS = ("runtime", "samples_per_second", "steps_per_second")


def without_runtimes(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if not key.endswith(RUNTIME_KEYS)}


def constant_metric(eval_prediction):
    return {"my_metric": 0.123}


def run_and_evaluate(trainer_class, config_class, tmp_path, train_dataset, **config_overrides):
    """Train a fresh tiny reward model (evaluating on a held-out set every 2 steps), then evaluate it on raw data."""
    tokenizer = tiny_tokenizer()
    args = make_args(
        tmp_path / trainer_class.__name__,
        config_class,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        **config_overrides,
    )
    trainer = trainer_class(
        model=tiny_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=train_dataset,
        eval_dataset=preference_dataset("standard_preference", pairs=PAIRS[:6]),
        processing_class=tokenizer,
        compute_metrics=constant_metric,
    )
    trainer.train()
    metrics = trainer.evaluate(eval_dataset=preference_dataset("conversational_preference", pairs=PAIRS[6:]))
    return trainer, metrics


@pytest.mark.parametrize(
    "case",
    [
        "no_source_column",
        "one_source",
        "conversational_margin_center",
        "iterable",
        "pretokenized",
        "max_length_drops_pairs",
    ],
)
def test_without_several_sources_matches_reward_trainer_exactly(tmp_path, case):
    """Logs (training and evaluation, `compute_metrics` included), metrics and every parameter are bit-identical."""
    overrides = {}
    dataset = preference_dataset("standard_preference")
    if case == "one_source":
        dataset = preference_dataset("standard_preference", sources=("only",))
    elif case == "conversational_margin_center":
        dataset = preference_dataset("conversational_preference")
        dataset = dataset.add_column("margin", [0.1 * i for i in range(len(dataset))])
        overrides["center_rewards_coefficient"] = 0.01
    elif case == "iterable":
        dataset = preference_dataset().to_iterable_dataset()
    elif case == "pretokenized":
        tokenizer = tiny_tokenizer()
        dataset = preference_dataset().map(
            lambda row: {
                "chosen_ids": tokenizer(row["chosen"]).input_ids,
                "rejected_ids": tokenizer(row["rejected"]).input_ids,
            },
            remove_columns=["chosen", "rejected"],
        )
    elif case == "max_length_drops_pairs":
        overrides["max_length"] = 22  # drops 5 of the 12 training pairs
    reference, reference_metrics = run_and_evaluate(RewardTrainer, RewardConfig, tmp_path, dataset, **overrides)
    more, more_metrics = run_and_evaluate(MORERewardTrainer, MORERewardConfig, tmp_path, dataset, **overrides)

    assert more.num_sources <= 1
    if case == "max_length_drops_pairs":
        assert len(more.train_dataset) == len(reference.train_dataset) == 7
    assert any("eval_my_metric" in entry for entry in more.state.log_history)
    assert [without_runtimes(entry) for entry in more.state.log_history] == [
        without_runtimes(entry) for entry in reference.state.log_history
    ]
    assert without_runtimes(more_metrics) == without_runtimes(reference_metrics)
    reference_parameters = dict(reference.model.named_parameters())
    for name, parameter in more.model.named_parameters():
        assert torch.equal(parameter, reference_parameters[name]), f"{name} differs from trl.RewardTrainer's"


# --------------------------------------------------------------------------------------------------------------------
# TRL's behaviours, single source and multi-source
# --------------------------------------------------------------------------------------------------------------------


def test_num_labels_not_one_raises_the_same_error_as_trl(tmp_path, model_path):
    model = AutoModelForSequenceClassification.from_pretrained(model_path("qwen2"), dtype="float32")  # 2 labels
    assert model.config.num_labels == 2
    messages = []
    for trainer_class, config_class, dataset in [
        (RewardTrainer, RewardConfig, preference_dataset()),
        (MORERewardTrainer, MORERewardConfig, preference_dataset()),
        (MORERewardTrainer, MORERewardConfig, preference_dataset(sources=SOURCES)),
    ]:
        with pytest.raises(ValueError, match=r"reward models require `num_labels=1`") as error:
            trainer_class(model=model, args=make_args(tmp_path, config_class), train_dataset=dataset)
        messages.append(str(error.value))
    assert messages[0] == messages[1] == messages[2]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_from_model_path(tmp_path, model_path, architecture, sources):
    trainer = MORERewardTrainer(
        model=model_path(architecture),
        args=make_args(tmp_path, logging_steps=1),
        train_dataset=preference_dataset(sources=sources),
    )
    assert trainer.model.config.num_labels == 1
    train_and_check(trainer, exempt=SHIFT_INVARIANT_PARAMETERS.get(architecture, ()), sources=sources)


@pytest.mark.parametrize("format_name", PREFERENCE_FORMATS)
@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_dataset_formats(tmp_path, model_path, format_name, sources):
    trainer = MORERewardTrainer(
        model=model_path("qwen2"),
        args=make_args(tmp_path, logging_steps=1),
        train_dataset=preference_dataset(format_name, sources=sources),
    )
    if format_name.startswith("conversational"):  # the chat template was applied
        assert tiny_tokenizer().convert_tokens_to_ids("<|assistant|>") in trainer.train_dataset[0]["chosen_ids"]
    train_and_check(trainer, sources=sources)


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_model_instances(tmp_path, model_path, sources):
    """An instantiated reward model, and a saved sequence-classification model given by path."""
    tokenizer = tiny_tokenizer()
    dataset = preference_dataset(sources=sources)
    model = tiny_reward_model("qwen2", tokenizer)
    trainer = MORERewardTrainer(
        model=model, args=make_args(tmp_path), train_dataset=dataset, processing_class=tokenizer
    )
    assert trainer.model is model
    train_and_check(trainer)

    trainer = MORERewardTrainer(
        model=model_path("qwen2", "reward_model"), args=make_args(tmp_path / "seqcls"), train_dataset=dataset
    )
    train_and_check(trainer)


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_model_dtype(tmp_path, model_path, sources):
    args = make_args(tmp_path, model_init_kwargs={"dtype": torch.float16}, learning_rate=0.1)
    trainer = MORERewardTrainer(
        model=model_path("qwen2"), args=args, train_dataset=preference_dataset(sources=sources)
    )
    before = snapshot(trainer.model)
    trainer.train()
    assert all(parameter.dtype == torch.float16 for parameter in trainer.model.parameters())
    # As in TRL's test: fp16 layer-norm updates can round to nothing, so layer norms are not required to move.
    assert_trained(trainer, before, exempt={name for name in before if "layernorm" in name or "norm." in name})


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_with_peft_config_as_trl_tests_it(tmp_path, model_path, sources, caplog):
    """TRL's check with a bare `LoraConfig()`: base weights unchanged, every adapter weight changed.

    The causal LM's new score head is then neither trained nor saved: the pre-flight checks warn (docs/preflight.md)
    and the run trains as TRL's trainer does, with the default `preflight="error"`."""
    path = model_path("qwen2")
    base_names = {
        f"base_model.model.{name}"
        for name, _ in AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).named_parameters()
    }
    trainer = MORERewardTrainer(
        model=path,
        args=make_args(tmp_path),
        train_dataset=preference_dataset(sources=sources),
        peft_config=LoraConfig(),
    )
    before = snapshot(trainer.model)
    with caplog.at_level(logging.WARNING, logger="trl_more"):
        trainer.train()
    assert "not in the adapter's `modules_to_save`" in caplog.text
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for name, parameter in trainer.model.named_parameters():
        if name in base_names:
            torch.testing.assert_close(before[name], parameter, msg=f"base parameter {name} changed")
        elif "base_layer" not in name:
            assert not torch.equal(before[name], parameter), f"adapter parameter {name} did not change"


@pytest.mark.parametrize("architecture", ["qwen2", "bert", "roberta"])
def test_train_lora_with_head_in_modules_to_save(tmp_path, model_path, architecture):
    """LoRA with `task_type="SEQ_CLS"` (head in `modules_to_save`), multi-source: base frozen, adapters and head move.

    Without gradient checkpointing (`RewardConfig` turns it on by default; `test_train_with_gradient_checkpointing`
    covers LoRA with it).
    """
    args = make_args(tmp_path, gradient_checkpointing=False, logging_steps=1)
    trainer = MORERewardTrainer(
        model=model_path(architecture),
        args=args,
        train_dataset=preference_dataset(sources=SOURCES),
        peft_config=LoraConfig(task_type="SEQ_CLS"),
    )
    before = snapshot(trainer.model)
    trainer.train()
    assert_lora_trained(trainer, before)
    assert_source_metrics_logged(trainer)


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_peft_model(tmp_path, sources):
    """A `PeftModel` passed as the model."""
    tokenizer = tiny_tokenizer()
    model = get_peft_model(tiny_reward_model("qwen2", tokenizer), LoraConfig(task_type="SEQ_CLS"))
    trainer = MORERewardTrainer(
        model=model,
        args=make_args(tmp_path),
        train_dataset=preference_dataset(sources=sources),
        processing_class=tokenizer,
    )
    before = snapshot(trainer.model)
    trainer.train()
    assert_lora_trained(trainer, before)


@pytest.mark.parametrize(
    "sources, peft, use_reentrant",
    [
        (SOURCES, False, True),
        (SOURCES, False, False),
        (SOURCES, True, True),
        (SOURCES, True, False),
        (None, False, True),
        (None, True, False),
    ],
    ids=lambda value: {SOURCES: "multi_source", None: "single_source"}.get(value, str(value)),
)
def test_train_with_gradient_checkpointing(tmp_path, model_path, sources, peft, use_reentrant):
    """Full fine-tuning and LoRA (head in `modules_to_save`) with reentrant and non-reentrant checkpointing."""
    args = make_args(
        tmp_path, gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": use_reentrant}
    )
    trainer = MORERewardTrainer(
        model=model_path("qwen2", "reward_model"),
        args=args,
        train_dataset=preference_dataset(sources=sources),
        peft_config=LoraConfig(task_type="SEQ_CLS") if peft else None,
    )
    before = snapshot(trainer.model)
    trainer.train()
    assert (
        trainer.model.get_base_model().is_gradient_checkpointing if peft else trainer.model.is_gradient_checkpointing
    )
    if peft:
        assert_lora_trained(trainer, before)
    else:
        assert_trained(trainer, before)


@pytest.mark.parametrize(
    "legacy_columns, sources",
    [(False, SOURCES), (True, None), (True, SOURCES)],
    ids=["chosen_ids-multi_source", "chosen_input_ids-single_source", "chosen_input_ids-multi_source"],
)
def test_train_with_pretokenized_data(tmp_path, model_path, legacy_columns, sources):
    path = model_path("qwen2")
    tokenizer = tiny_tokenizer()
    chosen_column, rejected_column = (
        ("chosen_input_ids", "rejected_input_ids") if legacy_columns else ("chosen_ids", "rejected_ids")
    )
    dataset = preference_dataset(sources=sources).map(
        lambda row: {
            chosen_column: tokenizer(row["chosen"]).input_ids,
            rejected_column: tokenizer(row["rejected"]).input_ids,
        },
        remove_columns=["chosen", "rejected"],
    )
    args = make_args(tmp_path, logging_steps=1)
    if legacy_columns:
        with pytest.warns(FutureWarning, match=r"will not be supported in v1"):
            trainer = MORERewardTrainer(model=path, args=args, train_dataset=dataset)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            trainer = MORERewardTrainer(model=path, args=args, train_dataset=dataset)
    columns = trainer.train_dataset.column_names
    assert "chosen_ids" in columns and "rejected_ids" in columns
    assert "chosen_input_ids" not in columns and "rejected_input_ids" not in columns
    # Pre-tokenized rows are used as they are: no EOS is appended.
    assert trainer.train_dataset[0]["chosen_ids"] == tokenizer(PAIRS[0][0] + PAIRS[0][1]).input_ids
    train_and_check(trainer, sources=sources)


def test_train_with_iterable_dataset(tmp_path, model_path):
    trainer = MORERewardTrainer(
        model=model_path("qwen2"),
        args=make_args(tmp_path, max_steps=3),
        train_dataset=preference_dataset().to_iterable_dataset(),
    )
    train_and_check(trainer)
    assert trainer.state.global_step == 3


def test_iterable_dataset_with_several_sources_is_a_clear_error(tmp_path, model_path):
    with pytest.raises(ValueError, match=r"IterableDataset.*`source` column"):
        MORERewardTrainer(
            model=model_path("qwen2"),
            args=make_args(tmp_path),
            train_dataset=preference_dataset(sources=SOURCES).to_iterable_dataset(),
        )


# A template whose system line depends on a `role_capital` keyword, as in TRL's chat_template_kwargs test.
ROLE_CAPITAL_TEMPLATE = (
    "{{ ('SYSTEM' if role_capital else 'system') + ': You are a helpful assistant.\n' }}"
    "{% for message in messages %}"
    "{{ (message['role'] | upper if role_capital else message['role']) + ': ' + message['content'] + '\n' }}"
    "{% endfor %}"
)


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_with_chat_template_kwargs(tmp_path, model_path, sources):
    dataset = preference_dataset("conversational_implicit_prompt_preference", sources=sources)
    dataset = dataset.add_column("chat_template_kwargs", [{"role_capital": bool(i % 2)} for i in range(len(dataset))])
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = ROLE_CAPITAL_TEMPLATE
    trainer = MORERewardTrainer(
        model=model_path("qwen2"), args=make_args(tmp_path), train_dataset=dataset, processing_class=tokenizer
    )
    assert trainer.processing_class.chat_template == ROLE_CAPITAL_TEMPLATE
    for i in range(2):
        system_ids = tokenizer(("SYSTEM" if i else "system") + ": You are a helpful assistant.\n").input_ids
        assert trainer.train_dataset[i]["chosen_ids"][: len(system_ids)] == system_ids
        assert trainer.train_dataset[i]["rejected_ids"][: len(system_ids)] == system_ids
    train_and_check(trainer)


def test_train_with_chat_template_from_tokenizer_path(tmp_path, model_path):
    """`chat_template_path` naming a tokenizer: its template and special tokens are cloned onto a model without one."""
    source = tiny_tokenizer()
    source.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    source.chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}"
    )
    source.eos_token = "<|im_end|>"
    source.save_pretrained(tmp_path / "template_tokenizer")
    args = make_args(tmp_path / "out", chat_template_path=str(tmp_path / "template_tokenizer"))
    trainer = MORERewardTrainer(
        model=model_path("gpt_neox", chat_template=False),
        args=args,
        train_dataset=preference_dataset("conversational_preference", sources=SOURCES),
    )
    assert trainer.processing_class.chat_template == source.chat_template
    assert trainer.processing_class.convert_tokens_to_ids("<|im_start|>") in trainer.train_dataset[0]["chosen_ids"]
    train_and_check(trainer, exempt=SHIFT_INVARIANT_PARAMETERS["gpt_neox"])


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_with_chat_template_from_jinja_file(tmp_path, model_path, sources):
    template_path = tmp_path / "template.jinja"
    template_path.write_text(
        "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    )
    args = make_args(tmp_path / "out", chat_template_path=str(template_path), save_strategy="steps", save_steps=3)
    trainer = MORERewardTrainer(
        model=model_path("gpt_neox", chat_template=False),
        args=args,
        train_dataset=preference_dataset("conversational_preference", sources=sources),
    )
    train_and_check(trainer, exempt=SHIFT_INVARIANT_PARAMETERS["gpt_neox"])
    saved_template = tmp_path / "out" / "checkpoint-3" / "chat_template.jinja"
    assert saved_template.read_text() == template_path.read_text()


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TOOL_TEMPLATE = (
    "{% if tools %}<|system|>tools: {{ tools | tojson }}<|end|>{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message.get('tool_calls') %}{% for call in message['tool_calls'] %}"
    "call {{ call['function']['name'] }}({{ call['function']['arguments'] | tojson }}){% endfor %}"
    "{% else %}{{ message['content'] }}{% endif %}<|end|>{% endfor %}"
)


@pytest.mark.parametrize(
    "tools_as_json, sources",
    [(True, None), (False, SOURCES)],
    ids=["tools_json_string-single_source", "tools_list_of_dicts-multi_source"],
)
def test_train_tool_call_data(tmp_path, model_path, tools_as_json, sources):
    rows = {"prompt": [], "chosen": [], "rejected": [], "tools": []}
    for i, city in enumerate(["Paris", "Berlin", "Rome", "Oslo", "Lima", "Cairo"] * 2):
        call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
        rows["prompt"].append([{"role": "user", "content": f"What is the weather in {city}?"}])
        rows["chosen"].append([{"role": "assistant", "content": "", "tool_calls": [call]}])
        rows["rejected"].append(
            [{"role": "assistant", "content": f"I do not know the weather in {city}.", "tool_calls": []}]
        )
        rows["tools"].append(json.dumps(TOOLS) if tools_as_json else TOOLS)
        if sources:
            rows.setdefault("source", []).append(sources[i % len(sources)])
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TOOL_TEMPLATE
    trainer = MORERewardTrainer(
        model=model_path("qwen2"),
        args=make_args(tmp_path, max_length=512),
        train_dataset=Dataset.from_dict(rows),
        processing_class=tokenizer,
    )
    tools_text = tokenizer.decode(trainer.train_dataset[0]["chosen_ids"])
    assert "get_weather" in tools_text and "call get_weather" in tools_text
    train_and_check(trainer)


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_with_margin(tmp_path, model_path, sources):
    dataset = preference_dataset(sources=sources)
    dataset = dataset.map(lambda row: {"margin": float(len(row["chosen"]))})
    trainer = MORERewardTrainer(
        model=model_path("qwen2"), args=make_args(tmp_path, logging_steps=1), train_dataset=dataset
    )
    train_and_check(trainer, sources=sources)


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_with_center_rewards_coefficient(tmp_path, model_path, sources):
    args = make_args(tmp_path, center_rewards_coefficient=0.01, logging_steps=1)
    trainer = MORERewardTrainer(
        model=model_path("gpt_neox"), args=args, train_dataset=preference_dataset(sources=sources)
    )
    # The centering term is not shift-invariant, so even GPT-NeoX's final layer-norm bias must move.
    train_and_check(trainer, sources=sources)


@pytest.mark.parametrize("lambda_method", ["uniform", "min_norm"])
@pytest.mark.parametrize("margin", [False, True], ids=["no_margin", "margin"])
@pytest.mark.parametrize("center", [None, 0.01], ids=["no_center", "center"])
def test_loss_keeps_trl_margin_and_centering_semantics(tmp_path, lambda_method, margin, center):
    """The training loss is sum_i lambda_i * mean over source i of TRL's per-pair loss, margin and centering included.

    Per pair: -log sigmoid(r_chosen - r_rejected - margin) + c * (r_chosen + r_rejected)^2 (TRL's RewardTrainer, whose
    batch loss is the mean of that). With "uniform" weighting and balanced batches the loss equals TRL's batch loss.
    """
    dataset = preference_dataset(sources=SOURCES)
    if margin:
        dataset = dataset.add_column("margin", [0.25 * (i % 4) for i in range(len(dataset))])
    tokenizer = tiny_tokenizer()
    args = make_args(
        tmp_path, lambda_method=lambda_method, center_rewards_coefficient=center, gradient_normalization="loss"
    )
    trainer = MORERewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    source_index = batch["source_index"].clone()
    assert torch.bincount(source_index, minlength=3).tolist() == [2, 2, 2]
    trainer.model.train()
    loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)

    rewards_chosen, rewards_rejected = outputs.logits.detach().squeeze(-1).double().chunk(2)
    pair_margin = batch["margin"].double() if margin else torch.zeros_like(rewards_chosen)
    pair_loss = -F.logsigmoid(rewards_chosen - rewards_rejected - pair_margin)
    if center is not None:
        pair_loss = pair_loss + center * (rewards_chosen + rewards_rejected) ** 2
    source_loss = torch.stack([pair_loss[source_index == k].mean() for k in range(3)])
    lambdas = torch.tensor([trainer._metrics["train"][f"lambda/{name}"][-1] for name in SOURCES], dtype=torch.float64)
    assert lambdas.sum().item() == pytest.approx(1.0, abs=1e-6)
    if lambda_method == "uniform":
        assert lambdas.tolist() == pytest.approx([1 / 3] * 3)
        trl_batch_loss = -F.logsigmoid(rewards_chosen - rewards_rejected - pair_margin).mean()
        if center is not None:
            trl_batch_loss = trl_batch_loss + center * ((rewards_chosen + rewards_rejected) ** 2).mean()
        assert loss.item() == pytest.approx(trl_batch_loss.item(), rel=1e-5)
    assert loss.item() == pytest.approx((lambdas * source_loss).sum().item(), rel=1e-5)
    for k, name in enumerate(SOURCES):
        assert trainer._metrics["train"][f"loss/{name}"][-1] == pytest.approx(source_loss[k].item(), rel=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_with_one_eval_set(tmp_path, model_path, sources):
    args = make_args(tmp_path, eval_strategy="steps", eval_steps=3)
    trainer = MORERewardTrainer(
        model=model_path("qwen2"),
        args=args,
        train_dataset=preference_dataset(sources=sources),
        eval_dataset=preference_dataset("standard_preference"),
    )
    trainer.train()
    first = trainer.state.log_history[0]
    assert first["eval_loss"] is not None
    assert 0.0 <= first["eval_accuracy"] <= 1.0 and "eval_margin" in first and "eval_mean_reward" in first


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_train_with_several_eval_sets_reports_distinct_metrics(tmp_path, model_path, sources):
    """A dict of eval sets: each gets its own `eval_<name>_*` metrics, from the Trainer (loss) and MORE (accuracy...).

    The second set is the first with chosen and rejected exchanged, so its accuracy is exactly 1 minus the first's and
    its mean margin is minus the first's: metrics that overwrite each other would fail this.
    """
    eval_set = preference_dataset("standard_preference")
    args = make_args(tmp_path, eval_strategy="steps", eval_steps=3)
    trainer = MORERewardTrainer(
        model=model_path("qwen2"),
        args=args,
        train_dataset=preference_dataset(sources=sources),
        eval_dataset={"data1": eval_set, "data2": swapped(eval_set)},
    )
    trainer.train()
    data1, data2 = trainer.state.log_history[-3], trainer.state.log_history[-2]
    assert data1["eval_data1_loss"] is not None and data2["eval_data2_loss"] is not None
    assert not any(key.startswith("eval_data2") for key in data1)
    assert not any(key.startswith("eval_data1") for key in data2)
    assert "eval_accuracy" not in data1 and "eval_accuracy" not in data2
    assert data1["eval_data1_accuracy"] + data2["eval_data2_accuracy"] == pytest.approx(1.0)
    assert data1["eval_data1_margin"] == pytest.approx(-data2["eval_data2_margin"], abs=1e-6)

    # The same after training, with raw (untokenized) eval sets passed to `evaluate`.
    metrics = trainer.evaluate(eval_dataset={"fwd": eval_set, "bwd": swapped(eval_set)})
    assert metrics["eval_fwd_accuracy"] + metrics["eval_bwd_accuracy"] == pytest.approx(1.0)
    assert metrics["eval_fwd_loss"] != metrics["eval_bwd_loss"]


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_compute_metrics(tmp_path, model_path, sources):
    calls = []

    def compute_metrics(eval_prediction):
        calls.append(eval_prediction.predictions.shape)
        return {"my_metric": 0.123}

    eval_set = preference_dataset("standard_preference")
    trainer = MORERewardTrainer(
        model=model_path("qwen2"),
        args=make_args(tmp_path, eval_strategy="steps", eval_steps=3),
        train_dataset=preference_dataset(sources=sources),
        eval_dataset=eval_set,
        compute_metrics=compute_metrics,
    )
    trainer.train()
    assert trainer.state.log_history[-2]["eval_my_metric"] == 0.123
    assert calls == [(2 * len(eval_set), 1)]  # one reward per chosen and per rejected sequence
    metrics = trainer.evaluate(eval_dataset={"a": eval_set, "b": eval_set})
    assert metrics["eval_a_my_metric"] == metrics["eval_b_my_metric"] == 0.123
    assert len(calls) == 3


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_evaluate_with_raw_dataset_after_training(tmp_path, model_path, sources):
    dataset = preference_dataset(sources=sources)
    trainer = MORERewardTrainer(
        model=model_path("qwen2"), args=make_args(tmp_path, max_steps=1), train_dataset=dataset
    )
    trainer.train()
    metrics = trainer.evaluate(eval_dataset=dataset)
    assert metrics["eval_loss"] is not None and 0.0 <= metrics["eval_accuracy"] <= 1.0
    conversational = trainer.evaluate(eval_dataset=preference_dataset("conversational_preference"))
    assert conversational["eval_loss"] is not None


# --------------------------------------------------------------------------------------------------------------------
# Config and tags
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sources", [None, SOURCES], ids=["single_source", "multi_source"])
def test_plain_reward_config_is_accepted(tmp_path, model_path, sources):
    args = make_args(tmp_path, RewardConfig, learning_rate=3e-4, center_rewards_coefficient=0.01, logging_steps=1)
    trainer = MORERewardTrainer(
        model=model_path("qwen2"), args=args, train_dataset=preference_dataset(sources=sources)
    )
    assert isinstance(trainer.args, MORERewardConfig)
    assert (trainer.args.learning_rate, trainer.args.center_rewards_coefficient) == (3e-4, 0.01)
    # Every MORE option takes its documented default (read from the dataclass: building a second config would reset
    # the accelerator state the trainer holds).
    more_options = {field.name for field in fields(MORERewardConfig)} - {field.name for field in fields(RewardConfig)}
    assert more_options >= {"source_column", "lambda_method", "gradient_normalization", "lambda_momentum"}
    for field in fields(MORERewardConfig):
        if field.name in more_options:
            assert getattr(trainer.args, field.name) == field.default, field.name
    train_and_check(trainer, sources=sources)


@pytest.mark.parametrize("peft_config", [None, LoraConfig()], ids=["full", "lora"])
def test_tags_added(tmp_path, model_path, peft_config):
    # TRL's test passes no `args`; the default config wants bf16, which fails on a CPU-only machine with TRL's own
    # RewardConfig too, so the tiny settings are passed here.
    trainer = MORERewardTrainer(
        model=model_path("qwen2"),
        args=make_args(tmp_path),
        train_dataset=preference_dataset(),
        peft_config=peft_config,
    )
    assert {"trl", "reward-trainer"} <= set(trainer.model.model_tags)


# --------------------------------------------------------------------------------------------------------------------
# Bad input and metric names, as trl.RewardTrainer has them
# --------------------------------------------------------------------------------------------------------------------


def test_train_dataset_of_a_wrong_type_raises_the_same_error_as_trl(tmp_path, model_path):
    rows = [{"chosen": "Paris.", "rejected": "Berlin."}] * 6
    messages = []
    for trainer_class, config_class in [(RewardTrainer, RewardConfig), (MORERewardTrainer, MORERewardConfig)]:
        with pytest.raises(TypeError, match=r"`train_dataset` must be a `Dataset` or `IterableDataset`") as error:
            trainer_class(model=model_path("qwen2"), args=make_args(tmp_path, config_class), train_dataset=rows)
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_dataset_dict_of_splits_is_not_taken_for_sources(tmp_path, model_path):
    """`load_dataset(...)` without `split=` gives a `DatasetDict` of splits. `trl.RewardTrainer` rejects it; MORE takes
    a dict of *sources*, so it must not silently train on the test split as one more source."""
    splits = DatasetDict(train=preference_dataset(), test=preference_dataset(pairs=PAIRS[:2]))
    with pytest.raises(TypeError):
        RewardTrainer(model=model_path("qwen2"), args=make_args(tmp_path, RewardConfig), train_dataset=splits)
    with pytest.raises(ValueError, match=r"split"):
        MORERewardTrainer(model=model_path("qwen2"), args=make_args(tmp_path), train_dataset=splits)


def test_evaluate_with_a_custom_prefix_names_metrics_as_trl(tmp_path, model_path):
    """One eval set under `metric_key_prefix="test"`: the same metric names as `trl.RewardTrainer` (MORE renames
    metrics only to keep the sets of a dict of eval sets apart)."""
    keys = []
    for trainer_class, config_class in [(RewardTrainer, RewardConfig), (MORERewardTrainer, MORERewardConfig)]:
        trainer = trainer_class(
            model=model_path("qwen2"),
            args=make_args(tmp_path / trainer_class.__name__, config_class),
            train_dataset=preference_dataset(),
        )
        keys.append(sorted(trainer.evaluate(eval_dataset=preference_dataset(), metric_key_prefix="test")))
    assert "test_loss" in keys[0] and "eval_accuracy" in keys[0]
    assert keys[1] == keys[0]
