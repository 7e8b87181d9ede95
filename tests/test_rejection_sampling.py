"""RejectionSamplingTrainer end to end on CPU (one process), its files and resumption, the recipe and its configs."""

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import GenerationMixin, TrainerCallback

from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer
from trl_more.rejection_sampling import IterationStore


REPO = Path(__file__).resolve().parents[1]
PROMPTS = Dataset.from_dict(
    {
        "prompt": [
            "Human: How do I bake bread at home? Assistant:",
            "Human: Can you tell me a joke? Assistant:",
            "Human: What is the capital of France? Assistant:",
            "Human: At what temperature does water boil? Assistant:",
            "Human: Write a short summary of the article. Assistant:",
            "Human: What is the answer to the question? Assistant:",
        ]
    }
)


def _config(output_dir, **overrides):
    settings = {
        "num_iterations": 2,
        "prompts_per_iteration": 3,
        "num_samples_per_prompt": 4,
        "max_new_tokens": 8,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "gradient_checkpointing": False,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 0,
    }
    settings.update(overrides)
    return RejectionSamplingConfig(str(output_dir), **settings)


def _trainer(
    output_dir, callbacks=None, response_filter=None, policy_seed=0, reward_seed=1, policy_dropout=0.0, **overrides
):
    from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    return RejectionSamplingTrainer(
        tiny_causal_lm("qwen2", tokenizer, seed=policy_seed, attention_dropout=policy_dropout),
        tiny_reward_model("llama", tokenizer, seed=reward_seed),
        args=_config(output_dir, **overrides),
        train_dataset=PROMPTS,
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
        response_filter=response_filter,
        callbacks=callbacks,
    )


@contextmanager
def _counting_generate_calls():
    calls = []
    original = GenerationMixin.generate

    def counting(self, *args, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return original(self, *args, **kwargs)

    GenerationMixin.generate = counting
    try:
        yield calls
    finally:
        GenerationMixin.generate = original


def _samples(output_dir, iteration):
    return IterationStore(output_dir).read(iteration)


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------


def test_config_sizes_the_run_and_refuses_settings_that_would_break_it(tmp_path):
    config = _config(tmp_path, num_iterations=3, num_epochs_per_iteration=2)
    assert config.num_train_epochs == 6
    for overrides, message in [
        ({"max_steps": 10}, "max_steps"),
        ({"packing": True}, "packing"),
        ({"dataloader_persistent_workers": True, "dataloader_num_workers": 1}, "persistent"),
        ({"train_sampling_strategy": "group_by_length"}, "train_sampling_strategy"),
        ({"selection": "random"}, "Unknown `selection`"),
        ({"ensemble": "max"}, "Unknown `ensemble`"),
        ({"top_fraction": 0.0}, "top_fraction"),
        ({"num_samples_per_prompt": 0}, "num_samples_per_prompt"),
        ({"reward_max_length": 8}, "reward_max_length"),
    ]:
        with pytest.raises(ValueError, match=message):
            _config(tmp_path, **overrides)


# ---------------------------------------------------------------------------------------------------------------------
# End to end: one run, several checks
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("rjs")
    trainer = _trainer(output_dir)
    before = {name: parameter.detach().clone() for name, parameter in trainer.model.named_parameters()}
    with _counting_generate_calls() as calls:
        trainer.train()
    return trainer, output_dir, before, calls


def test_every_iteration_writes_its_samples_and_selections(finished_run):
    trainer, output_dir, _, calls = finished_run
    assert len(calls) == 2  # one batched generate call per iteration (3 prompts x 4 samples)
    assert calls[0][0] == 3 * 4
    for iteration, prompt_indices in ((0, [0, 1, 2]), (1, [3, 4, 5])):
        folder = Path(output_dir) / f"iteration-{iteration:02d}"
        files = ["metrics.json", "provenance.json", "samples.jsonl", "selected.jsonl"]
        assert sorted(path.name for path in folder.iterdir()) == files
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["iteration"] == iteration and provenance["global_step"] == 2 * iteration
        assert provenance["initial_policy"] == trainer.initial_policy_fingerprint
        assert provenance["reward_models"] == trainer.reward_model_fingerprints
        assert ("training" in provenance) == (iteration > 0)  # training shapes the policy from iteration 1 on
        samples = _samples(output_dir, iteration)
        assert [(s["prompt_index"], s["sample_index"]) for s in samples] == [
            (index, sample) for index in prompt_indices for sample in range(4)
        ]
        selected = [json.loads(line) for line in (folder / "selected.jsonl").read_text().splitlines()]
        assert [(s["prompt_index"], s["response"]) for s in selected] == [
            (s["prompt_index"], s["response"]) for s in samples if s["selected"]
        ]
        assert not list(Path(output_dir).glob("*.tmp"))


def test_the_selected_response_of_every_prompt_has_the_highest_reward(finished_run):
    _, output_dir, _, _ = finished_run
    for iteration in (0, 1):
        samples = _samples(output_dir, iteration)
        for prompt_index in {s["prompt_index"] for s in samples}:
            own = [s for s in samples if s["prompt_index"] == prompt_index]
            chosen = [s for s in own if s["selected"]]
            assert len(chosen) == 1
            assert chosen[0]["reward"] == max(s["reward"] for s in own)


def test_stored_rewards_are_the_reward_models_scores_of_the_decoded_text(finished_run):
    trainer, output_dir, _, _ = finished_run
    tokenizer = trainer.reward_scorer.tokenizers[0]
    reward_model = trainer.reward_models[0]
    for sample in _samples(output_dir, 1)[:5]:
        assert sample["response"] == trainer.processing_class.decode(sample["response_ids"], skip_special_tokens=True)
        ids = tokenizer(sample["prompt"] + sample["response"] + tokenizer.eos_token)["input_ids"]
        with torch.no_grad():
            expected = reward_model(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert sample["reward"] == pytest.approx(expected, abs=1e-4)
        assert sample["rewards"] == [sample["reward"]]


def test_training_examples_are_prompt_plus_response_with_the_prompt_masked(finished_run):
    trainer, output_dir, _, _ = finished_run
    dataset = trainer.train_dataset
    assert len(dataset) == 4  # 3 selected responses, rounded up to the batch size 2
    selected = [s for s in _samples(output_dir, 1) if s["selected"]]
    assert len(dataset.examples) == 3
    for example, sample in zip(dataset.examples, selected):
        prompt_ids = trainer.prompt_ids[sample["prompt_index"]]
        assert example["input_ids"] == prompt_ids + sample["response_ids"]
        assert example["labels"] == [-100] * len(prompt_ids) + sample["response_ids"]
    assert dataset[3] == {"input_ids": [trainer.processing_class.pad_token_id], "labels": [-100]}


def test_the_policy_is_trained_and_the_metrics_are_logged(finished_run):
    trainer, _, before, _ = finished_run
    changed = [
        name for name, parameter in trainer.model.named_parameters() if not torch.equal(parameter, before[name])
    ]
    assert len(changed) == len(before)
    assert trainer.state.global_step == 4  # 2 iterations x 4 examples / batch 2
    logged = [entry for entry in trainer.state.log_history if "rjs/reward_mean" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert entry["rjs/reward_selected_mean"] >= entry["rjs/reward_mean"]
        assert entry["rjs/reward_max"] >= entry["rjs/reward_selected_mean"]
        assert entry["rjs/num_selected"] == 3
        assert entry["rjs/fraction_filtered"] == 0
        assert 0 < entry["rjs/distinct_2"] <= 1
        assert 1 <= entry["rjs/response_length"] <= 8


# ---------------------------------------------------------------------------------------------------------------------
# Selection variants
# ---------------------------------------------------------------------------------------------------------------------


def test_top_fraction_respects_the_filter_and_the_minimum_reward_over_several_epochs(tmp_path):
    def odd_length_only(prompt, response):
        assert prompt in PROMPTS["prompt"]
        return len(response) % 2 == 1

    trainer = _trainer(
        tmp_path,
        response_filter=odd_length_only,
        num_iterations=1,
        num_epochs_per_iteration=2,
        selection="top_fraction",
        top_fraction=0.5,
        min_reward=-0.05,
    )
    assert len(trainer.train_dataset) == 6  # ceil(0.5 * 3 * 4)
    with _counting_generate_calls() as calls:
        trainer.train()
    assert len(calls) == 1 and trainer.state.global_step == 2 * 3  # two epochs over one iteration's 6 examples
    samples = _samples(tmp_path, 0)
    eligible = [s for s in samples if len(s["response"]) % 2 == 1 and s["reward"] >= -0.05]
    expected = sorted(eligible, key=lambda s: -s["reward"])[:6]
    assert {(s["prompt_index"], s["sample_index"]) for s in samples if s["selected"]} == {
        (s["prompt_index"], s["sample_index"]) for s in expected
    }
    metrics = json.loads((tmp_path / "iteration-00" / "metrics.json").read_text())
    assert metrics["rjs/fraction_filtered"] == pytest.approx(1 - len(eligible) / len(samples))
    assert metrics["rjs/num_selected"] == len(expected)


def test_the_loop_runs_on_the_vllm_backend_unchanged(tmp_path, monkeypatch):
    import sys
    import types

    loaded = []

    class LLM:
        def __init__(self, **kwargs):
            model = types.SimpleNamespace(load_weights=lambda weights: loaded.extend(name for name, _ in weights))
            worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=model))
            self.llm_engine = types.SimpleNamespace(model_executor=types.SimpleNamespace(driver_worker=worker))

        def reset_prefix_cache(self):
            pass

        def generate(self, prompts, sampling_params, use_tqdm):
            # Response j of every prompt: tokens 100 + j, 101 + j, then the end of sequence (id 1).
            return [
                types.SimpleNamespace(
                    outputs=[types.SimpleNamespace(token_ids=[100 + j, 101 + j, 1]) for j in range(sampling_params.n)]
                )
                for _ in prompts
            ]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **kwargs: types.SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setattr(os, "environ", {**os.environ})  # the launcher variables the backend sets stay in this test
    trainer = _trainer(tmp_path, generation_backend="vllm", num_iterations=1)
    assert trainer.processing_class.eos_token_id == 1
    trainer.train()
    samples = _samples(tmp_path, 0)
    assert [s["response_ids"] for s in samples[:4]] == [[100, 101, 1], [101, 102, 1], [102, 103, 1], [103, 104, 1]]
    assert all(s["finished"] for s in samples)
    assert len(loaded) == len(list(trainer.model.named_parameters()))  # the policy's weights went to the engine
    assert [example["input_ids"][-3:] for example in trainer.train_dataset.examples] == [
        s["response_ids"] for s in samples if s["selected"]
    ]


def test_conversational_prompts_use_each_models_chat_template(tmp_path):
    from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    questions = ["How do I bake bread?", "Tell me a joke.", "Capital of France?"]
    conversations = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q in questions]})
    reward_model = tiny_reward_model("qwen2", tokenizer, seed=2)
    trainer = RejectionSamplingTrainer(
        tiny_causal_lm("qwen2", tokenizer),
        reward_model,
        args=_config(tmp_path, num_iterations=1, num_samples_per_prompt=2),
        train_dataset=conversations,
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
    )
    trainer.train()
    samples = _samples(tmp_path, 0)
    assert [s["prompt"] for s in samples[::2]] == [f"<|user|>{q}<|end|><|assistant|>" for q in questions]
    sample = samples[0]
    conversation = [*conversations[0]["prompt"], {"role": "assistant", "content": sample["response"]}]
    ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        assert sample["reward"] == pytest.approx(
            reward_model(input_ids=torch.tensor([ids])).logits[0, 0].item(), abs=1e-4
        )


def test_a_multi_objective_reward_model_with_its_own_tokenizer_is_steered_by_the_config(tmp_path):
    from trl_more.multi_objective import MultiObjectiveRewardModel
    from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer
    from trl_more.tokenization import tokenize_prompt_response

    policy_tokenizer, reward_tokenizer = tiny_tokenizer("bpe"), tiny_tokenizer("wordpiece")
    encoder = tiny_reward_model("bert", reward_tokenizer, seed=3)
    reward_model = MultiObjectiveRewardModel.from_backbone(encoder, ["helpful", "safe"]).eval()
    trainer = RejectionSamplingTrainer(
        tiny_causal_lm("qwen2", policy_tokenizer),
        reward_model,
        args=_config(tmp_path, num_iterations=1, num_samples_per_prompt=2, reward_objective_weights={"safe": 1.0}),
        train_dataset=PROMPTS,
        processing_class=policy_tokenizer,
        reward_processing_classes=reward_tokenizer,
    )
    trainer.train()
    samples = _samples(tmp_path, 0)
    gated = []
    for sample in samples:  # the decoded text, re-tokenized with the reward model's own tokenizer
        ids, prompt_length = tokenize_prompt_response(reward_tokenizer, sample["prompt"], sample["response"])
        inputs = dict(input_ids=torch.tensor([ids]), prompt_lengths=torch.tensor([prompt_length]))
        with torch.no_grad():
            steered = reward_model(**inputs).logits[0, 0].item()
            reward_model.set_steering(None)
            output = reward_model(**inputs)
            reward_model.set_steering({"safe": 1.0})
        assert sample["reward"] == pytest.approx(output.rewards[0, 1].item(), abs=1e-4) == steered
        gated.append(output.logits[0, 0].item())
    assert max(abs(g - s["reward"]) for g, s in zip(gated, samples)) > 1e-3  # the gate would have scored otherwise

    with pytest.raises(ValueError, match="none of the reward models is one"):
        _trainer(tmp_path / "plain", reward_objective_weights={"safe": 1.0})
    with pytest.raises(ValueError, match="Unknown objective 'harmless'"):
        RejectionSamplingTrainer(
            tiny_causal_lm("qwen2", policy_tokenizer),
            reward_model,
            args=_config(tmp_path / "typo", reward_objective_weights={"harmless": 1.0}),
            train_dataset=PROMPTS,
            processing_class=policy_tokenizer,
            reward_processing_classes=reward_tokenizer,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Files, crashes and resumption
# ---------------------------------------------------------------------------------------------------------------------


def test_an_iteration_folder_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    store = IterationStore(tmp_path)
    sample = {"prompt_index": 0, "sample_index": 0, "prompt": "p", "response": "r", "reward": 1.0, "selected": True}
    import trl_more.rejection_sampling.iterations as module

    original = module._write_jsonl
    written = []

    def crash_on_second_file(path, rows):
        written.append(path)
        if len(written) == 2:
            raise OSError("disk full")
        original(path, rows)

    monkeypatch.setattr(module, "_write_jsonl", crash_on_second_file)
    with pytest.raises(OSError):
        store.write(0, [sample], {})
    assert not store.is_complete(0) and not store.path(0).exists()
    monkeypatch.setattr(module, "_write_jsonl", original)
    store.write(0, [sample], {"rjs/reward_mean": 1.0})  # the stale temporary folder is replaced
    assert store.is_complete(0) and store.read(0) == [sample]
    assert not store.path(0).with_name("iteration-00.tmp").exists()


class _CrashAtIteration(TrainerCallback):
    """Simulates a crash right after an iteration's files are written, before training on them."""

    def __init__(self, iteration):
        self.iteration = iteration

    def on_epoch_begin(self, args, state, control, **kwargs):
        if round(state.epoch or 0) == self.iteration:
            raise RuntimeError("simulated crash")


def test_a_resumed_run_reuses_written_iterations_instead_of_generating_again(tmp_path):
    crashing = _trainer(tmp_path, callbacks=[_CrashAtIteration(1)], save_strategy="epoch")
    with pytest.raises(RuntimeError, match="simulated crash"), _counting_generate_calls() as calls:
        crashing.train()
    assert len(calls) == 2  # iterations 0 and 1 were generated
    assert IterationStore(tmp_path).is_complete(1)
    written = (tmp_path / "iteration-01" / "samples.jsonl").read_bytes()
    checkpoint = tmp_path / "checkpoint-2"  # saved at the end of iteration 0
    assert checkpoint.is_dir()

    resumed = _trainer(tmp_path, save_strategy="no")
    with _counting_generate_calls() as calls:
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert calls == []  # iteration 1 comes from its files
    assert resumed.state.global_step == 4
    assert (tmp_path / "iteration-01" / "samples.jsonl").read_bytes() == written
    selected = [s for s in _samples(tmp_path, 1) if s["selected"]]
    assert [example["input_ids"] for example in resumed.train_dataset.examples] == [
        resumed.prompt_ids[s["prompt_index"]] + s["response_ids"] for s in selected
    ]

    # Restarted from scratch in the same folder, the run also reuses both iterations.
    restarted = _trainer(tmp_path, save_strategy="no")
    with _counting_generate_calls() as calls:
        restarted.train()
    assert calls == []


class _CrashAfterSaving(TrainerCallback):
    """Simulates a crash right after the checkpoint at the end of iteration 0, before iteration 1 is generated."""

    def on_save(self, args, state, control, **kwargs):
        raise RuntimeError("simulated crash")


def test_a_resumed_run_samples_and_trains_exactly_as_the_uninterrupted_one(tmp_path):
    # Dropout and sampling both draw random numbers: the resumed run must draw the same ones.
    settings = {"temperature": 1.0, "policy_dropout": 0.1, "save_strategy": "epoch"}
    full = _trainer(tmp_path / "full", **settings)
    full.train()

    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(tmp_path / "resumed", callbacks=[_CrashAfterSaving()], **settings).train()
    assert not IterationStore(tmp_path / "resumed").is_complete(1)
    resumed = _trainer(tmp_path / "resumed", **settings)
    with _counting_generate_calls() as calls:
        resumed.train(resume_from_checkpoint=True)
    assert len(calls) == 1  # iteration 1, generated after resuming
    assert _samples(tmp_path / "resumed", 1) == _samples(tmp_path / "full", 1)
    for (name, p_full), (_, p_resumed) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(p_resumed, p_full, atol=0, rtol=0, msg=name)


def test_files_from_other_settings_are_not_reused(tmp_path):
    IterationStore(tmp_path).write(
        0,
        [{"prompt_index": 0, "sample_index": 0, "prompt": "", "response": "", "reward": 0.0, "selected": True}],
        {},
    )
    with pytest.raises(ValueError, match="no provenance.json"):
        _trainer(tmp_path, num_iterations=1).train()
    # Even when told to reuse it, a folder that does not hold this run's prompts cannot be trained on.
    with pytest.raises(ValueError, match="different prompts"):
        _trainer(tmp_path, num_iterations=1, reuse_mismatched_iterations=True).train()


@pytest.mark.parametrize(
    "change, difference",
    [
        ({"reward_seed": 2}, "reward_models"),
        ({"temperature": 0.7}, "generation"),
        ({"selection": "top_fraction"}, "selection"),
        ({"policy_seed": 5}, "initial_policy"),
    ],
    ids=["reward_model", "temperature", "selection", "policy"],
)
def test_a_new_run_with_other_settings_refuses_the_iterations_of_the_old_one(tmp_path, change, difference):
    _trainer(tmp_path, num_iterations=1).train()
    written = (tmp_path / "iteration-00" / "samples.jsonl").read_bytes()
    with pytest.raises(
        ValueError, match=rf"produced by another policy, reward model or other settings(.|\n)*{difference}:"
    ):
        _trainer(tmp_path, num_iterations=1, **change).train()
    assert (tmp_path / "iteration-00" / "samples.jsonl").read_bytes() == written  # nothing was overwritten
    forced = _trainer(tmp_path, num_iterations=1, reuse_mismatched_iterations=True, **change)
    with _counting_generate_calls() as calls:
        forced.train()
    assert calls == []  # reused, as asked


# ---------------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="`prompt` column"):
        _trainer_with_dataset(tmp_path, Dataset.from_dict({"text": ["a"]}))
    with pytest.raises(ValueError, match="exceeds the 1 usable prompts"):
        _trainer_with_dataset(tmp_path, Dataset.from_dict({"prompt": ["a"]}))
    with pytest.raises(ValueError, match="max_prompt_length"):
        _trainer_with_dataset(tmp_path, PROMPTS, max_prompt_length=2)


def test_disable_tqdm_silences_the_generation_progress_bar_too(tmp_path):
    assert _trainer(tmp_path).generation_backend.show_progress
    assert not _trainer(tmp_path, disable_tqdm=True).generation_backend.show_progress


def _trainer_with_dataset(output_dir, dataset, **overrides):
    from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    return RejectionSamplingTrainer(
        tiny_causal_lm("qwen2", tokenizer),
        tiny_reward_model("qwen2", tokenizer),
        args=_config(output_dir, **overrides),
        train_dataset=dataset,
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
    )


# ---------------------------------------------------------------------------------------------------------------------
# The Alpaca recipe and its accelerate configs
# ---------------------------------------------------------------------------------------------------------------------


def test_the_smoke_recipe_runs_end_to_end(shared_data, tmp_path):
    import runpy

    recipe = runpy.run_path(str(REPO / "recipes" / "rjs_alpaca.py"))
    hh = shared_data / "hh_rlhf"
    trainer = recipe["main"](
        [
            "--smoke",
            "--output_dir",
            str(tmp_path),
            "--prompt_sources",
            f"hh-helpful={hh / 'helpful-base.test.jsonl.gz'}",
            f"hh-harmless={hh / 'harmless-base.test.jsonl.gz'}",
        ]
    )
    args = trainer.args
    assert (args.num_iterations, args.prompts_per_iteration, args.num_samples_per_prompt) == (2, 8, 4)
    for iteration in (0, 1):
        samples = _samples(tmp_path, iteration)
        assert len(samples) == 8 * 4
        assert all(s["prompt"].startswith("Below is an instruction that describes a task.") for s in samples)
        assert all(s["prompt"].endswith("\n\n### Response:") for s in samples)
    assert all(
        prompt.startswith("\n\nHuman: ") and prompt.endswith("\n\nAssistant:") for prompt in trainer.reward_prompts
    )
    assert (tmp_path / "model.safetensors").is_file()


def test_recipe_defaults_are_the_paper_settings_and_yaml_and_flags_override_them(tmp_path):
    import runpy

    recipe = runpy.run_path(str(REPO / "recipes" / "rjs_alpaca.py"))
    from trl_more.cli import rjs

    parser = rjs.make_parser()
    parser.set_defaults(**recipe["PAPER_DEFAULTS"])
    config = tmp_path / "override.yaml"
    config.write_text("num_iterations: 5\nselection: top_fraction\n")
    script, training, model = parser.parse_args_and_config(
        [
            "--model_name_or_path",
            "alpaca",
            "--reward_model_path",
            "rm1",
            "rm2",
            "--config",
            str(config),
            "--temperature",
            "0.85",
        ]
    )
    assert (training.num_samples_per_prompt, training.temperature, training.top_p) == (4, 0.85, 1.0)
    # Alpaca's global batch on the recipe's 8 GPUs, and the launch check that keeps it
    from trl_more.trainer_utils import check_global_batch_size

    assert training.per_device_train_batch_size * training.gradient_accumulation_steps * 8 == 128
    assert training.expected_global_batch_size == 128 and training.learning_rate == 2e-5
    check_global_batch_size(training, 8)
    with pytest.raises(ValueError, match="set `per_device_train_batch_size=8`"):
        check_global_batch_size(training, 4)
    assert (training.num_iterations, training.selection) == (5, "top_fraction")
    assert script.prompt_template == "alpaca" and script.reward_prompt_format == "hh"
    assert script.reward_model_path == ["rm1", "rm2"]
    assert model.model_name_or_path == "alpaca" and model.dtype == "bfloat16"
    assert not training.bf16  # mixed precision follows the hardware: bf16 on the recipe's A100s, fp32 on this CPU
    assert rjs.alpaca_prompt("Name a color.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nName a color.\n\n### Response:"
    )
    assert "paired with an input that provides further context" in rjs.alpaca_prompt("Translate.", "Bonjour")
    assert rjs.alpaca_prompt("Translate.", "Bonjour").split("\n\n")[1:3] == [
        "### Instruction:\nTranslate.",
        "### Input:\nBonjour",
    ]


def test_recipe_prompts_keep_the_first_turn_or_the_whole_conversation():
    from trl_more.cli import rjs

    transcript = "\n\nHuman: Hi there\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant:"
    turns = rjs.dialogue_turns(transcript)
    assert turns == (("user", "Hi there"), ("assistant", "Hello"), ("user", "Bye"))
    assert rjs.dialogue_turns([{"role": "user", "content": " Hi "}]) == (("user", "Hi"),)
    assert rjs.select_turns(turns, "first") == (("user", "Hi there"),)

    first = rjs.format_prompts([rjs.select_turns(turns, "first")], "alpaca", "hh")[0]
    assert first == {"prompt": rjs.alpaca_prompt("Hi there"), "reward_prompt": "\n\nHuman: Hi there\n\nAssistant:"}
    whole = rjs.format_prompts([turns], "alpaca", "hh")[0]
    assert whole["reward_prompt"] == transcript  # HH's own prompt: everything up to the last assistant tag
    assert whole["prompt"] == rjs.alpaca_prompt("Bye", "Human: Hi there\n\nAssistant: Hello")
    chat = rjs.format_prompts([turns], "chat", "policy")[0]
    assert (
        chat["prompt"]
        == chat["reward_prompt"]
        == [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ]
    )


def test_recipe_refuses_a_misspelled_option_before_loading_anything(tmp_path):
    import runpy

    recipe = runpy.run_path(str(REPO / "recipes" / "rjs_alpaca.py"))
    config = tmp_path / "typo.yaml"
    config.write_text("num_samples_per_promt: 8\n")
    with pytest.raises(SystemExit, match="'num_samples_per_promt': did you mean 'num_samples_per_prompt'"):
        recipe["main"](["--model_name_or_path", "missing", "--reward_model_path", "missing", "--config", str(config)])
    flags = ["--model_name_or_path", "missing", "--reward_model_path", "missing", "--use_cpu"]  # bf16 needs use_cpu
    with pytest.raises(SystemExit, match="unrecognized arguments --temprature 0.7.*did you mean 'temperature'"):
        recipe["main"]([*flags, "--temprature", "0.7"])


@pytest.mark.parametrize(
    "name, distributed_type, num_processes, precision, zero_stage, offload_optimizer",
    [
        ("deepspeed_zero3.yaml", "DEEPSPEED", 8, "bf16", 3, "none"),
        ("deepspeed_zero2.yaml", "DEEPSPEED", 8, "bf16", 2, "none"),
        ("deepspeed_zero2_offload.yaml", "DEEPSPEED", 8, "bf16", 2, "cpu"),
        ("deepspeed_zero3_cpu_test.yaml", "DEEPSPEED", 2, None, 3, None),  # precision from the flags
        ("single_gpu.yaml", "NO", 1, "bf16", None, None),
        ("cpu.yaml", "NO", 1, "no", None, None),
    ],
)
def test_accelerate_configs_build_their_plugins(
    name, distributed_type, num_processes, precision, zero_stage, offload_optimizer
):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    config = load_config_from_file(str(REPO / "recipes" / "accelerate_configs" / name))
    assert (config.distributed_type, config.num_processes) == (distributed_type, num_processes)
    assert (config.mixed_precision, config.use_cpu) == (precision, name.startswith("cpu") or "cpu_test" in name)
    if zero_stage is None:  # plain launches: type, processes, precision and device are the whole config
        return
    options = dict(config.deepspeed_config)
    if "deepspeed_config_file" in options:
        plugin = DeepSpeedPlugin(hf_ds_config=str(REPO / options["deepspeed_config_file"]))
        assert plugin.deepspeed_config["zero_optimization"]["stage3_param_persistence_threshold"] == 0
    else:
        options.pop("deepspeed_multinode_launcher")
        plugin = DeepSpeedPlugin(**options)
        offload = plugin.deepspeed_config["zero_optimization"]["offload_optimizer"]["device"]
        assert offload == offload_optimizer
    assert plugin.zero_stage == zero_stage


def test_ensemble_disagreement_is_logged_and_uncalibrated_ensembles_are_refused(tmp_path):
    from trl_more.rejection_sampling.iterations import iteration_metrics
    from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

    samples = [
        {
            "reward": 2.0,
            "rewards": [1.0, 3.0],
            "selected": True,
            "eligible": True,
            "response": "a b",
            "response_ids": [1],
        },
        {
            "reward": 2.0,
            "rewards": [2.0, 2.0],
            "selected": False,
            "eligible": True,
            "response": "c d",
            "response_ids": [2],
        },
    ]
    metrics = iteration_metrics(samples)
    assert metrics["rjs/ensemble_std"] == 0.5  # population std across the models: 1 and 0
    assert metrics["rjs/ensemble_std_selected"] == 1.0

    tokenizer = tiny_tokenizer()
    models = [tiny_reward_model("llama", tokenizer, seed=seed) for seed in (1, 2)]
    with pytest.raises(ValueError, match="store no reward scale"):
        RejectionSamplingTrainer(
            tiny_causal_lm("qwen2", tokenizer),
            models,
            args=_config(tmp_path),
            train_dataset=PROMPTS,
            processing_class=tokenizer,
            reward_processing_classes=tokenizer,
        )
    trainer = RejectionSamplingTrainer(
        tiny_causal_lm("qwen2", tokenizer),
        models,
        args=_config(tmp_path, ensemble_calibration="none"),
        train_dataset=PROMPTS,
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
    )
    assert trainer.reward_scorer.scales == [None, None]


# Three members' rewards of the three responses to one prompt, chosen so that each ensemble mode picks another one:
# mean: A 2.0, B 1.5, C 1.9 -> A; mean - 1 x population std: A 2 - sqrt(8) = -0.83, B 1.5, C 1.9 - sqrt(0.18) = 1.48
# -> B; min: A -2, B 1.5, C 1.6 -> C.
THREE_MEMBERS = [[4.0, 1.5, 1.6], [4.0, 1.5, 1.6], [-2.0, 1.5, 2.5]]  # member m: its rewards of A, B, C


@pytest.mark.parametrize(("ensemble", "picked"), [("mean", 0), ("mean_minus_std", 1), ("min", 2)])
def test_conservative_ensemble_selection_picks_by_hand_on_three_members(tmp_path, monkeypatch, ensemble, picked):
    from trl_more.rewards import RewardModelScorer
    from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

    def member_rewards(self, model, tokenizer, max_length, prompts, responses):
        assert len(responses) == 3
        return torch.tensor(THREE_MEMBERS[self.models.index(model)])

    monkeypatch.setattr(RewardModelScorer, "_score_with", member_rewards)
    tokenizer = tiny_tokenizer()
    args = _config(
        tmp_path,
        num_iterations=1,
        prompts_per_iteration=1,
        num_samples_per_prompt=3,
        per_device_train_batch_size=1,
        ensemble=ensemble,
        ensemble_std_coef=1.0,
        ensemble_calibration="none",
    )
    trainer = RejectionSamplingTrainer(
        tiny_causal_lm("qwen2", tokenizer),
        [tiny_reward_model("llama", tokenizer, seed=seed) for seed in (1, 2, 3)],
        args=args,
        train_dataset=PROMPTS,
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
    )
    trainer.train()
    samples = _samples(tmp_path, 0)
    assert [sample["rewards"] for sample in samples] == [pytest.approx(rewards) for rewards in zip(*THREE_MEMBERS)]
    combined = {
        "mean": [2.0, 1.5, 1.9],
        "mean_minus_std": [2.0 - 8**0.5, 1.5, 1.9 - 0.18**0.5],
        "min": [-2.0, 1.5, 1.6],
    }[ensemble]
    assert [sample["reward"] for sample in samples] == pytest.approx(combined, abs=1e-6)
    assert [sample["selected"] for sample in samples] == [index == picked for index in range(3)]
