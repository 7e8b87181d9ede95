"""Generation backends and the batching, sharding and text statistics behind them."""

import os
import sys
import types

import pytest
import torch
from accelerate import Accelerator

from trl_more.batching import length_sorted_batches, shard_for_process
from trl_more.rejection_sampling import distinct_n, is_degenerate_response
from trl_more.rejection_sampling.generation import (
    SamplingSettings,
    TransformersGenerationBackend,
    VLLMGenerationBackend,
    truncate_after_eos,
)
from trl_more.testing import tiny_causal_lm, tiny_tokenizer


# ---------------------------------------------------------------------------------------------------------------------
# Batching and sharding
# ---------------------------------------------------------------------------------------------------------------------


def test_length_sorted_batches_groups_longest_first_and_keeps_every_index_once():
    lengths = [3, 9, 1, 7, 5]
    assert length_sorted_batches(lengths, 2) == [[1, 3], [4, 0], [2]]
    assert length_sorted_batches(lengths, 2, sort=False) == [[0, 1], [2, 3], [4]]
    assert length_sorted_batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size"):
        length_sorted_batches(lengths, 0)


@pytest.mark.parametrize("num_items", [0, 1, 4, 5, 7])
@pytest.mark.parametrize("num_processes", [1, 2, 3])
def test_shards_cover_every_item_once_and_have_equal_sizes(num_items, num_processes):
    lengths = [(7 * index) % 11 for index in range(num_items)]
    shards = [shard_for_process(lengths, num_processes, rank) for rank in range(num_processes)]
    sizes = {len(positions) for positions, _ in shards}
    assert len(sizes) == 1  # every process calls generate equally often
    assert sizes.pop() == -(-num_items // num_processes)
    real = [position for positions, num_real in shards for position in positions[:num_real]]
    assert sorted(real) == list(range(num_items))


def test_shards_deal_sorted_lengths_round_robin_and_pad_with_a_repeat():
    lengths = [5, 1, 4, 2, 3]  # sorted longest first: positions 0, 2, 4, 3, 1
    assert shard_for_process(lengths, 2, 0) == ([0, 4, 1], 3)
    assert shard_for_process(lengths, 2, 1) == ([2, 3, 3], 2)  # one item fewer: its shortest item again
    assert shard_for_process([5], 3, 2) == ([0], 0)  # no own item: the shortest item overall, as padding
    with pytest.raises(ValueError, match="process_index"):
        shard_for_process(lengths, 2, 2)


def test_truncate_after_eos_keeps_the_first_eos_and_drops_what_follows():
    assert truncate_after_eos([5, 6, 2, 0, 0], {2}) == [5, 6, 2]
    assert truncate_after_eos([5, 6, 7], {2}) == [5, 6, 7]
    assert truncate_after_eos([9, 3, 2], {2, 3}) == [9, 3]


# ---------------------------------------------------------------------------------------------------------------------
# Text statistics
# ---------------------------------------------------------------------------------------------------------------------


def test_distinct_n_counts_unique_ngrams_over_all_texts():
    # bigrams: (a b) (b a) (a b) | (a b) (b c) -> 3 unique of 5
    assert distinct_n(["a b a b", "a b c"], 2) == pytest.approx(3 / 5)
    assert distinct_n(["x y z"], 1) == 1.0
    assert distinct_n(["one", ""], 2) == 0.0


def test_degenerate_responses_are_empty_or_dominated_by_one_word_or_character():
    assert is_degenerate_response("")
    assert is_degenerate_response("   \n ")
    assert is_degenerate_response("!!!!!!!!!!!!")
    assert is_degenerate_response("the the the the the the the good")
    assert not is_degenerate_response("Yes.")
    assert not is_degenerate_response("Mix flour, water, salt and yeast, then bake the dough in a hot oven.")


# ---------------------------------------------------------------------------------------------------------------------
# transformers backend
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_and_tokenizer():
    tokenizer = tiny_tokenizer()
    return tiny_causal_lm("qwen2", tokenizer), tokenizer


def _backend(tokenizer, batch_size, temperature=0.0, max_new_tokens=6):
    return TransformersGenerationBackend(
        Accelerator(cpu=True),
        SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_ids={tokenizer.eos_token_id},
        batch_size=batch_size,
        show_progress=False,
    )


def test_batched_left_padded_generation_matches_one_prompt_at_a_time(policy_and_tokenizer):
    model, tokenizer = policy_and_tokenizer
    texts = ["Human: hi", "Human: How do I bake bread at home today?", "Hello", "The capital of France is"]
    prompt_ids = [tokenizer(text)["input_ids"] for text in texts]
    batched = _backend(tokenizer, batch_size=3).generate(model, prompt_ids, num_samples=2, seed=0)
    single = _backend(tokenizer, batch_size=1).generate(model, prompt_ids, num_samples=1, seed=0)
    assert len(batched) == len(texts)
    for prompt_samples, reference in zip(batched, single):
        assert len(prompt_samples) == 2
        # Greedy decoding: every sample equals the unpadded, unbatched continuation of its own prompt.
        assert prompt_samples[0] == prompt_samples[1] == reference[0]


def test_generation_samples_with_cache_and_restores_training_state(policy_and_tokenizer, monkeypatch):
    model, tokenizer = policy_and_tokenizer
    model.train()
    model.activation_checkpointing_enable()
    seen = {}
    original = type(model).generate

    def spy(self, *args, **kwargs):
        seen.update(
            training=self.training,
            checkpointing=self.is_activation_checkpointing,
            use_cache=kwargs["generation_config"].use_cache,
            do_sample=kwargs["generation_config"].do_sample,
            padding_side_left=bool((kwargs["attention_mask"][:, 0] == 0).any()),
        )
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "generate", spy)
    prompts = [tokenizer("a")["input_ids"], tokenizer("a much longer prompt here")["input_ids"]]
    samples = _backend(tokenizer, batch_size=2, temperature=1.0, max_new_tokens=5).generate(model, prompts, 3, seed=0)
    assert seen == {
        "training": False,
        "checkpointing": False,
        "use_cache": True,
        "do_sample": True,
        "padding_side_left": True,
    }
    assert model.training and model.is_activation_checkpointing
    model.activation_checkpointing_disable()
    assert [len(prompt_samples) for prompt_samples in samples] == [3, 3]
    for sample in (sample for prompt_samples in samples for sample in prompt_samples):
        assert 1 <= len(sample) <= 5
        assert tokenizer.eos_token_id not in sample[:-1]  # nothing kept after an end of sequence


def test_a_round_samples_by_its_seed_and_leaves_the_training_random_state_alone(policy_and_tokenizer):
    model, tokenizer = policy_and_tokenizer
    backend = _backend(tokenizer, batch_size=2, temperature=1.0, max_new_tokens=6)
    prompts = [tokenizer("a")["input_ids"], tokenizer("The capital of France is")["input_ids"]]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = backend.generate(model, prompts, 4, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)  # training continues with its own random numbers
    torch.manual_seed(999)  # whatever state the run is in, the seed decides the samples
    assert backend.generate(model, prompts, 4, seed=7) == first
    assert backend.generate(model, prompts, 4, seed=8) != first


# ---------------------------------------------------------------------------------------------------------------------
# vLLM backend, against a stand-in `vllm` module (vLLM needs a GPU)
# ---------------------------------------------------------------------------------------------------------------------


def _fake_vllm(calls):
    class SamplingParams:
        def __init__(self, **kwargs):
            calls["sampling_params"] = kwargs
            self.n = kwargs["n"]

    class EngineModel:
        def load_weights(self, weights):
            calls.setdefault("loaded", []).extend(name for name, _ in weights)

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs
            runner = types.SimpleNamespace(model=EngineModel())
            worker = types.SimpleNamespace(model_runner=runner)
            self.llm_engine = types.SimpleNamespace(model_executor=types.SimpleNamespace(driver_worker=worker))

        def reset_prefix_cache(self):
            calls["reset"] = calls.get("reset", 0) + 1

        def generate(self, prompts, sampling_params, use_tqdm):
            calls["prompts"] = prompts
            return [
                types.SimpleNamespace(
                    outputs=[
                        types.SimpleNamespace(token_ids=[prompt["prompt_token_ids"][0], 7, 2, 0][: 2 + sample])
                        for sample in range(sampling_params.n)
                    ]
                )
                for prompt in prompts
            ]

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    return module


def test_vllm_backend_builds_a_colocated_engine_syncs_weights_and_samples_n_per_prompt(monkeypatch):
    calls = {}
    monkeypatch.setattr(os, "environ", {**os.environ})  # the launcher variables the backend sets stay in this test
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(calls))
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm("qwen2", tokenizer)
    model.name_or_path = "/checkpoints/policy"
    settings = SamplingSettings(max_new_tokens=12, temperature=0.9, top_p=0.95, top_k=0)
    backend = VLLMGenerationBackend(model, Accelerator(cpu=True), settings, eos_token_ids={2}, seed=3)

    assert calls["llm"]["model"] == "/checkpoints/policy"
    assert calls["llm"]["distributed_executor_backend"] == "external_launcher"
    assert calls["llm"]["seed"] == 3  # process 0
    samples = backend.generate(model, [[11, 12], [13]], num_samples=3, seed=41)

    assert calls["sampling_params"] == {
        "n": 3,
        "seed": 41,
        "temperature": 0.9,
        "top_p": 0.95,
        "top_k": -1,
        "repetition_penalty": 1.0,
        "max_tokens": 12,
    }
    assert calls["prompts"] == [{"prompt_token_ids": [11, 12]}, {"prompt_token_ids": [13]}]
    assert sorted(calls["loaded"]) == sorted(name for name, _ in model.named_parameters())
    assert calls["reset"] == 1
    assert samples == [[[11, 7], [11, 7, 2], [11, 7, 2]], [[13, 7], [13, 7, 2], [13, 7, 2]]]


def test_vllm_backend_without_vllm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    tokenizer = tiny_tokenizer()
    with pytest.raises(ImportError, match=r"trl-more\[vllm\]"):
        VLLMGenerationBackend(
            tiny_causal_lm("qwen2", tokenizer), Accelerator(cpu=True), SamplingSettings(4), eos_token_ids={2}
        )
