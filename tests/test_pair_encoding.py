"""Shared-prompt pair encoding, unpacked and packed: the layout by hand, rewards equal to separate encoding on every
decoder and attention implementation, and whole training runs (MORE, denoising, contrastive, LoRA, MetaRM) equal to
TRL's separate encoding."""

import pytest
import torch
from peft import LoraConfig

from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.pair_encoding import (
    DataCollatorForSharedPrompt,
    encode_shared_prompt,
    rewards_at,
    shared_prompt_length,
    shared_prompt_mask_mod,
)
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources


def test_the_layout_of_a_pair_by_hand():
    batch = encode_shared_prompt([[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [7, 9, 9]]], pad_token_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 9, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 2, 0]]
    assert batch.reward_positions.tolist() == [[3, 4], [1, 3]]
    assert batch.segments.tolist() == [[0, 0, 1, 1, 2], [0, 1, 2, 2, -1]]
    assert batch.num_tokens == 4 + 3 + 2 + 3  # what separate encoding feeds
    allowed = batch.attention_mask[0, 0] == 0
    assert allowed.tolist() == [
        [True, False, False, False, False],
        [True, True, False, False, False],
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, True, False, False, True],  # the rejected token sees the prompt, not the chosen response
    ]
    assert (batch.attention_mask[1, 0, 4] == 0).tolist() == [False, False, False, False, True]  # padding: itself only


def test_the_layout_of_packed_pairs_by_hand():
    groups = [[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [7, 9, 9]], [[6, 6], [5]]]
    batch = encode_shared_prompt(groups, pad_token_id=0, packed=True, pack_length=9)
    # First fit decreasing: the 5-token row, then the 4-token one beside it (9 tokens), the 2-token row in a new one.
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 7, 8, 9, 9], [6, 6, 5, 0, 0, 0, 0, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 2, 0, 1, 1, 2], [0, 1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch.reward_rows.tolist() == [0, 0, 1] and batch.group_starts.tolist() == [0, 5, 0]
    assert batch.reward_positions.tolist() == [[3, 4], [6, 8], [1, 2]]
    assert batch.group_ids[0].tolist() == [0] * 5 + [1] * 4
    assert batch.num_tokens == 4 + 3 + 2 + 3 + 2 + 1
    allowed = batch.attention_mask[0, 0] == 0
    assert allowed[5:, :5].sum() == 0 and allowed[:5, 5:].sum() == 0  # block-diagonal: pairs never see each other
    assert allowed[8].tolist() == [False] * 5 + [True, False, True, True]  # rejected: its prompt and itself
    unpacked = encode_shared_prompt(groups, pad_token_id=0)
    assert torch.equal(allowed[:5, :5], unpacked.attention_mask[0, 0] == 0)
    # A pack of one pair is the unpacked row; a pair is never split: a row longer than pack_length is a sequence alone.
    single = encode_shared_prompt(groups[:1], pad_token_id=0, packed=True)
    assert torch.equal(single.input_ids, unpacked.input_ids[:1, :5]) and single.reward_rows.tolist() == [0]
    over = encode_shared_prompt(groups, pad_token_id=0, packed=True, pack_length=4)  # rows of 5, 4 and 3 tokens
    assert over.input_ids.shape == (3, 5) and over.reward_rows.tolist() == [0, 1, 2]


def test_packing_by_default_never_makes_a_sequence_longer_than_the_longest_row():
    groups = [[[1] * 6, [1, 2]], [[3, 4], [3, 5]], [[6, 7], [6, 8]], [[9, 9, 9], [9, 1]]]  # rows of 7, 3, 3, 4
    batch = encode_shared_prompt(groups, pad_token_id=0, packed=True)
    # Bins of 7 tokens, longest first: [7], [4 + 3], [3]: three sequences of 7 instead of four.
    assert batch.input_ids.shape == (3, 7)
    assert batch.key_mask.sum(1).tolist() == [7, 7, 3] and batch.reward_rows.tolist() == [0, 1, 2, 1]


def test_shared_length_leaves_every_sequence_a_token_of_its_own():
    assert shared_prompt_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical: the last token is each one's own
    assert shared_prompt_length([[1, 2], [3, 4]]) == 0
    assert shared_prompt_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 6]]) == 2


@pytest.mark.parametrize("packed", [False, True])
def test_the_flex_attention_mask_mod_is_the_dense_mask(packed):
    from torch.nn.attention.flex_attention import create_mask

    groups = [[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [7, 9, 9]], [[6, 6], [5]]]
    batch = encode_shared_prompt(groups, pad_token_id=0, packed=packed, pack_length=9 if packed else None)
    rows, length = batch.input_ids.shape
    group_ids = batch.group_ids if packed else None
    dense = create_mask(shared_prompt_mask_mod(batch.segments, group_ids), rows, 1, length, length, device="cpu")
    assert torch.equal(dense, batch.attention_mask == 0)


PAIRS = [
    ("Human: How do I bake bread at home? Assistant:", " Mix flour, water and yeast.", " No idea, sorry."),
    ("Human: joke? Assistant:", " The scarecrow was outstanding in his field.", " No."),
    ("Human: capital of France? Assistant:", " Paris.", " Paris is the capital of France, of course."),
]


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt_neox"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("packed", [False, True])
def test_shared_rewards_equal_separate_rewards(architecture, attention, packed):
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model(architecture, tokenizer, seed=3, attn_implementation=attention).eval()
    examples = [
        {
            key: tokenizer(prompt + text + tokenizer.eos_token)["input_ids"]
            for key, text in (("chosen_ids", c), ("rejected_ids", r))
        }
        for prompt, c, r in PAIRS
    ]
    batch = DataCollatorForSharedPrompt(tokenizer.pad_token_id, packed=packed, pack_length=256)(examples)
    assert batch["input_ids"].shape[0] == (1 if packed else 3)  # packed: the three pairs in one sequence
    captured = {}
    handle = model.score.register_forward_hook(lambda module, args, output: captured.setdefault("rewards", output))
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])
    handle.remove()
    shared = rewards_at(captured["rewards"], batch["reward_positions"], batch.get("reward_rows"))[:, 0]
    with torch.no_grad():
        separate = [
            model(input_ids=torch.tensor([example[key]])).logits[0, 0]
            for key in ("chosen_ids", "rejected_ids")
            for example in examples
        ]  # TRL's layout: every chosen, then every rejected
    torch.testing.assert_close(shared, torch.stack(separate), atol=1e-5, rtol=0)


PACK_LENGTH = 4096  # every micro-batch of toy pairs in one sequence


def trained(tmp_path, pair_encoding, architecture="qwen2", sources=None, peft_config=None, **options):
    tokenizer = tiny_tokenizer("wordpiece" if architecture == "bert" else "bpe")
    if architecture == "bert":
        tokenizer.eos_token = "[SEP]"
    trainer = MORERewardTrainer(
        model=tiny_reward_model(architecture, tokenizer, seed=5),
        args=MORERewardConfig(
            **{"max_steps": 3, **options},
            output_dir=str(tmp_path / pair_encoding),
            per_device_train_batch_size=6,
            learning_rate=1e-2,
            logging_steps=1,
            report_to="none",
            bf16=False,
            save_strategy="no",
            seed=0,
            lambda_momentum=0.7,
            disable_tqdm=True,
            pair_encoding=pair_encoding,
            pack_length=PACK_LENGTH if pair_encoding == "packed" else None,
        ),
        train_dataset=sources if sources is not None else toy_preference_sources(8),
        eval_dataset=toy_preference_sources(4)["polite"],
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if trainer.args.max_steps > 0:
        trainer.train()
    return trainer


def assert_same_training(separate, shared, atol=1e-4):
    """Same weights after 3 AdamW steps (Adam turns float32 round-off of the gradients into ~1e-5 differences), same
    logged losses and metrics, same evaluation."""
    assert shared.shared_prompt and not separate.shared_prompt
    for (name, a), (_, b) in zip(separate.model.named_parameters(), shared.model.named_parameters()):
        torch.testing.assert_close(b, a, atol=atol, rtol=0, msg=name)
    keys = ("loss", "accuracy", "margin", "num_tokens")
    logs = [
        [{k: entry[k] for k in keys if k in entry} for entry in trainer.state.log_history if "loss" in entry]
        for trainer in (separate, shared)
    ]
    for a, b in zip(*logs):
        assert b == pytest.approx(a, abs=1e-4)
    evaluations = [trainer.evaluate() for trainer in (separate, shared)]
    assert evaluations[1]["eval_loss"] == pytest.approx(evaluations[0]["eval_loss"], abs=1e-5)
    assert evaluations[1]["eval_accuracy"] == evaluations[0]["eval_accuracy"]


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt_neox"])
@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_one_step_has_the_same_loss_and_gradients_in_both_encodings(tmp_path, encoding, architecture):
    def loss_and_gradients(encoding):
        trainer = trained(
            tmp_path, encoding, architecture, max_steps=0, contrastive_loss="simcse", contrastive_dropout=0.0
        )
        batch = next(iter(trainer.get_train_dataloader()))  # CPU tensors, as the model
        assert batch["input_ids"].shape[0] == (1 if encoding == "packed" else 6 if encoding == "shared_prompt" else 12)
        trainer.model.train()
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        return loss.item(), [param.grad.clone() for param in trainer.model.parameters()]

    (loss_a, grads_a), (loss_b, grads_b) = loss_and_gradients("separate"), loss_and_gradients(encoding)
    assert loss_b == pytest.approx(loss_a, abs=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_more_training_with_shared_prompts_equals_separate_encoding(tmp_path, encoding):
    separate, shared = (trained(tmp_path, name) for name in ("separate", encoding))
    assert_same_training(separate, shared)
    lambdas = [[e["lambda/polite"] for e in t.state.log_history if "lambda/polite" in e] for t in (separate, shared)]
    assert lambdas[1] == pytest.approx(lambdas[0], abs=1e-5)  # the head features at the two reward positions


@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_denoising_margin_and_contrastive_losses_with_shared_prompts_equal_separate_encoding(tmp_path, encoding):
    sources = toy_preference_sources(8, sources=("polite", "concise"))
    sources = {
        name: dataset.add_column("margin", [0.1 * i for i in range(len(dataset))]).add_column(
            "strength_mean", [(-1) ** i * 0.5 for i in range(len(dataset))]
        )
        for name, dataset in sources.items()
    }
    options = dict(label_smoothing=0.1, adaptive_margin=0.5, contrastive_loss="simcse", contrastive_dropout=0.0)
    separate, shared = (trained(tmp_path, name, sources=sources, **options) for name in ("separate", encoding))
    assert_same_training(separate, shared)


@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_lora_and_gradient_checkpointing_with_shared_prompts_equal_separate_encoding(tmp_path, encoding):
    lora = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS", target_modules=["q_proj", "v_proj"])
    runs = [
        trained(tmp_path, e, "llama", peft_config=lora, gradient_checkpointing=True) for e in ("separate", encoding)
    ]
    assert_same_training(*runs)


def test_encoders_keep_separate_encoding_and_custom_collators_are_refused(tmp_path, caplog):
    assert not trained(tmp_path, "shared_prompt", "bert").shared_prompt
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="cannot be combined with a custom `data_collator`"):
        MORERewardTrainer(
            model=tiny_reward_model("qwen2", tokenizer),
            args=MORERewardConfig(str(tmp_path), pair_encoding="shared_prompt", report_to="none", bf16=False),
            train_dataset=toy_preference_sources(6)["polite"],
            processing_class=tokenizer,
            data_collator=lambda examples: examples,
        )


@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])
@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_scoring_the_samples_of_a_prompt_in_one_row_gives_the_separate_rewards(architecture, encoding):
    from trl_more.rewards import RewardModelScorer

    tokenizer = tiny_tokenizer()
    model = tiny_reward_model(architecture, tokenizer, seed=4).eval()
    prompts = [prompt for prompt, _, _ in PAIRS for _ in range(3)]  # 3 samples per prompt, consecutive
    responses = [f"{chosen} {'and more ' * i}" for _, chosen, _ in PAIRS for i in range(3)]
    separate = RewardModelScorer([model], [tokenizer], batch_size=4).score(prompts, responses).combined
    shared = RewardModelScorer([model], [tokenizer], batch_size=9, pair_encoding=encoding)
    torch.testing.assert_close(shared.score(prompts, responses).combined, separate, atol=1e-5, rtol=0)
    uneven = RewardModelScorer([model], [tokenizer], pair_encoding=encoding).score(prompts[:-1], responses[:-1])
    torch.testing.assert_close(uneven.combined, separate[:-1], atol=1e-5, rtol=0)  # unequal groups: separate


@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_rejection_sampling_with_shared_prompt_scoring_stores_the_same_rewards(tmp_path, encoding):
    from test_rejection_sampling import _samples, _trainer

    runs = {}
    for name in ("separate", encoding):
        _trainer(tmp_path / name, reward_pair_encoding=name, num_iterations=1).train()
        runs[name] = _samples(tmp_path / name, 0)
    assert [s["response"] for s in runs["separate"]] == [s["response"] for s in runs[encoding]]
    for a, b in zip(runs["separate"], runs[encoding]):
        assert b["reward"] == pytest.approx(a["reward"], abs=1e-5)


@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_evaluation_with_shared_prompts_gives_the_separate_margins(encoding):
    from trl_more.metrics import evaluate_reward_model

    tokenizer = tiny_tokenizer()
    model = tiny_reward_model("qwen2", tokenizer, seed=6)
    sources = toy_preference_sources(6)
    separate = evaluate_reward_model(model, tokenizer, sources, batch_size=4, show_progress=False)
    shared = evaluate_reward_model(
        model, tokenizer, sources, batch_size=4, show_progress=False, pair_encoding=encoding
    )
    for source in sources:
        torch.testing.assert_close(
            torch.tensor(shared.margins[source]), torch.tensor(separate.margins[source]), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_swav_with_shared_prompts_equals_separate_encoding(tmp_path, encoding):
    options = dict(contrastive_loss="swav", contrastive_dropout=0.0, swav_prototypes=4)
    assert_same_training(*(trained(tmp_path, name, **options) for name in ("separate", encoding)))


@pytest.mark.parametrize("encoding", ["shared_prompt", "packed"])
def test_metarm_with_shared_prompts_logs_the_same_meta_losses(tmp_path, encoding):
    from trl_more import MetaRMConfig, MetaRMTrainer
    from trl_more.testing import toy_meta_dataset

    tokenizer = tiny_tokenizer()
    logs = {}
    for name in ("separate", encoding):
        trainer = MetaRMTrainer(
            model=tiny_reward_model("qwen2", tokenizer, seed=7),
            args=MetaRMConfig(
                str(tmp_path / name),
                per_device_train_batch_size=6,
                max_steps=2,
                logging_steps=1,
                report_to="none",
                bf16=False,
                save_strategy="no",
                seed=0,
                meta_learning_rate=1.0,
                meta_num_responses=3,
                per_device_meta_batch_size=2,
                pair_encoding=name,
                pack_length=PACK_LENGTH if name == "packed" else None,
                disable_tqdm=True,
            ),
            train_dataset=toy_preference_sources(8),
            meta_dataset=toy_meta_dataset(4, 3),
            processing_class=tokenizer,
        )
        trainer.train()
        logged = [e for e in trainer.state.log_history if "meta/loss_before" in e]
        logs[name] = [value for e in logged for value in (e["meta/loss_before"], e["meta/loss_after"])]
    assert len(logs["separate"]) == 4
    assert logs[encoding] == pytest.approx(logs["separate"], abs=1e-4)


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt_neox"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("packed", [False, True])
def test_multi_objective_pair_features_with_shared_prompts_equal_separate_features(architecture, pooling, packed):
    from trl_more.multi_objective import MultiObjectiveRewardModel
    from trl_more.multi_objective.features import extract_features, extract_pair_features
    from trl_more.tokenization import tokenize_prompt

    tokenizer = tiny_tokenizer()
    backbone = tiny_reward_model(architecture, tokenizer).base_model
    model = MultiObjectiveRewardModel.from_backbone(backbone, ["a", "b"], pooling=pooling)
    pairs = PAIRS + [("Human: why? Assistant:", " Because.", " Because")]  # ties the shared part to the prompt
    sides = {
        side: [
            tokenizer(prompt + response + tokenizer.eos_token)["input_ids"]
            for prompt, *responses in pairs
            for response in [responses[index]]
        ]
        for index, side in enumerate(("chosen", "rejected"))
    }
    prompt_lengths = [len(tokenize_prompt(tokenizer, prompt)) for prompt, *_ in pairs]
    chosen, rejected = extract_pair_features(
        model,
        sides["chosen"],
        sides["rejected"],
        prompt_lengths,
        prompt_lengths,
        batch_size=3,
        show_progress=False,
        packed=packed,
        pack_length=512 if packed else None,  # packed: each batch of 3 pairs in one sequence
    )
    for shared, side in ((chosen, "chosen"), (rejected, "rejected")):
        separate = extract_features(model, sides[side], prompt_lengths, batch_size=2, show_progress=False)
        torch.testing.assert_close(shared.pooled, separate.pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shared.prompt, separate.prompt, atol=1e-5, rtol=1e-5)
    # The gate reads the same prompt state for both responses of a pair.
    torch.testing.assert_close(chosen.prompt, rejected.prompt, atol=1e-5, rtol=1e-5)


def test_multi_objective_trainer_caches_the_same_features_with_shared_prompts(tmp_path, caplog):
    from trl_more.multi_objective import MultiObjectiveRewardModel
    from trl_more.multi_objective.multi_objective_config import MultiObjectiveRewardConfig
    from trl_more.multi_objective.multi_objective_trainer import MultiObjectiveRewardTrainer

    pairs = toy_preference_sources(12, sources=("polite",))["polite"]

    def cached(architecture, pair_encoding):
        tokenizer = tiny_tokenizer("wordpiece" if architecture == "bert" else "bpe")
        backbone = tiny_reward_model(architecture, tokenizer).base_model
        model = MultiObjectiveRewardModel.from_backbone(backbone, ["a"], gate_hidden_sizes=[8])
        args = MultiObjectiveRewardConfig(
            str(tmp_path),
            cache_features=True,
            pair_encoding=pair_encoding,
            per_device_eval_batch_size=5,
            report_to="none",
            max_length=64,
            bf16=False,
        )
        trainer = MultiObjectiveRewardTrainer(model, args=args, train_dataset=pairs, processing_class=tokenizer)
        return trainer.train_dataset

    separate = cached("qwen2", "separate")
    for encoding in ("shared_prompt", "packed"):
        shared = cached("qwen2", encoding)
        for side in ("chosen", "rejected"):
            for name in ("pooled", "prompt"):
                torch.testing.assert_close(
                    getattr(getattr(shared, side), name), getattr(getattr(separate, side), name), atol=1e-5, rtol=1e-5
                )
    with caplog.at_level("INFO"):
        bert = cached("bert", "shared_prompt")
    assert "computed with separate encoding" in caplog.text
    assert bert.chosen.pooled.shape[0] == len(pairs)
    for encoding in ("shared_prompt", "packed"):
        with pytest.raises(ValueError, match="set `cache_features=True`"):
            MultiObjectiveRewardConfig(str(tmp_path), pair_encoding=encoding, report_to="none", bf16=False)


def test_pack_length_needs_packing():
    with pytest.raises(ValueError, match="pack_length=64 needs pair_encoding='packed'"):
        MORERewardConfig("out", pair_encoding="shared_prompt", pack_length=64, report_to="none")
    with pytest.raises(ValueError, match="pack_length=0 needs pair_encoding='packed' and a positive length"):
        MORERewardConfig("out", pair_encoding="packed", pack_length=0, report_to="none")
