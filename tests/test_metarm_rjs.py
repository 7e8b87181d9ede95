"""Rejection sampling with the reward model updated by MetaRM every iteration: end to end with tiny models, the
updated model scores the iteration, every iteration's model is saved, and a resumed run equals the uninterrupted one."""

import json
from pathlib import Path

import pytest
import torch
from test_rejection_sampling import PROMPTS, _counting_generate_calls, _CrashAfterSaving
from transformers import AutoModelForSequenceClassification

from trl_more import RejectionSamplingConfig, RejectionSamplingTrainer
from trl_more.rejection_sampling import IterationStore
from trl_more.testing import tiny_causal_lm, tiny_reward_model, tiny_tokenizer, toy_preference_sources
from trl_more.tokenization import tokenize_scored_response


REPO = Path(__file__).resolve().parents[1]


def config(output_dir, **overrides):
    settings = dict(
        num_iterations=2,
        prompts_per_iteration=3,
        num_samples_per_prompt=4,
        max_new_tokens=8,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        gradient_checkpointing=False,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        disable_tqdm=True,
        metarm=True,
        metarm_learning_rate=1e-3,
        metarm_meta_learning_rate=1.0,
        metarm_per_device_train_batch_size=4,
        metarm_per_device_meta_batch_size=3,
        metarm_steps_per_iteration=2,
    )
    settings.update(overrides)
    return RejectionSamplingConfig(str(output_dir), **settings)


def trainer(output_dir, callbacks=None, reward_models=None, pairs="default", **overrides):
    tokenizer = tiny_tokenizer()
    return RejectionSamplingTrainer(
        tiny_causal_lm("qwen2", tokenizer, seed=0),
        reward_models if reward_models is not None else tiny_reward_model("llama", tokenizer, seed=1),
        args=config(output_dir, **overrides),
        train_dataset=PROMPTS,
        processing_class=tokenizer,
        reward_processing_classes=tokenizer,
        reward_train_dataset=toy_preference_sources(8)["polite"] if pairs == "default" else pairs,
        callbacks=callbacks,
    )


def saved_reward_model(output_dir, iteration):
    return AutoModelForSequenceClassification.from_pretrained(
        output_dir / f"iteration-{iteration:02d}" / "reward_model"
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("metarm-rjs")
    run = trainer(output_dir)
    initial = {name: param.detach().clone() for name, param in run.reward_updater.module.named_parameters()}
    run.train()
    return output_dir, run, initial


def test_every_iteration_updates_saves_and_scores_with_the_updated_reward_model(finished):
    output_dir, run, initial = finished
    models = [saved_reward_model(output_dir, iteration) for iteration in (0, 1)]
    first = dict(models[0].named_parameters())
    changed = [name for name, value in initial.items() if not torch.equal(first[name], value)]
    assert "score.weight" in changed and len(changed) > len(initial) // 2  # trained in iteration 0
    assert any(not torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))
    tokenizer = tiny_tokenizer()
    for iteration, model in enumerate(models):
        folder = output_dir / f"iteration-{iteration:02d}"
        assert "MetaRM" in (folder / "reward_model" / "README.md").read_text()
        metrics = json.loads((folder / "metrics.json").read_text())
        assert {"metarm/difference", "metarm/difference_after", "metarm/loss"} <= set(metrics)
        assert metrics["metarm/difference_after"] > metrics["metarm/difference"]  # the meta steps raised J
        samples = IterationStore(output_dir).read(iteration)
        model.eval()
        with torch.no_grad():
            for sample in samples[:4]:  # stored rewards: the scores of the model as this iteration updated it
                ids, _ = tokenize_scored_response(
                    tokenizer, PROMPTS[sample["prompt_index"] % 6]["prompt"], sample["response"]
                )
                reward = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
                assert sample["reward"] == pytest.approx(reward, abs=1e-4)


def test_a_resumed_run_with_metarm_equals_the_uninterrupted_one(finished, tmp_path):
    full_dir, full, _ = finished
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path, callbacks=[_CrashAfterSaving()], save_strategy="epoch").train()
    assert IterationStore(tmp_path).is_complete(0) and not IterationStore(tmp_path).is_complete(1)
    resumed = trainer(tmp_path, save_strategy="epoch")
    with _counting_generate_calls() as calls:
        resumed.train(resume_from_checkpoint=True)
    assert len(calls) == 1  # only iteration 1 is generated again; iteration 0's reward model is read back
    assert IterationStore(tmp_path).read(1) == IterationStore(full_dir).read(1)
    for a, b in zip(saved_reward_model(tmp_path, 1).parameters(), saved_reward_model(full_dir, 1).parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for (name, a), b in zip(resumed.model.named_parameters(), full.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_metarm_options_that_cannot_work_are_refused(tmp_path):
    tokenizer = tiny_tokenizer()
    two = [tiny_reward_model("llama", tokenizer, seed=1), tiny_reward_model("llama", tokenizer, seed=2)]
    with pytest.raises(ValueError, match="updates one reward model, but 2 were given"):
        trainer(tmp_path, reward_models=two)
    with pytest.raises(ValueError, match="needs the preference pairs it was trained on"):
        trainer(tmp_path, pairs=None)
    with pytest.raises(ValueError, match="num_samples_per_prompt >= 2"):
        config(tmp_path, num_samples_per_prompt=1)
    frozen = tiny_reward_model("llama", tokenizer, seed=1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        trainer(tmp_path, reward_models=frozen)


def test_the_metarm_recipe_holds_the_papers_settings_and_its_smoke_run_updates_the_reward_model(shared_data, tmp_path):
    import runpy

    recipe = runpy.run_path(str(REPO / "recipes" / "rjs_alpaca_metarm.py"))
    defaults = recipe["PAPER_DEFAULTS"]
    assert (defaults["metarm_learning_rate"], defaults["metarm_meta_learning_rate"]) == (5e-6, 5e-6)
    assert (defaults["metarm_per_device_train_batch_size"], defaults["metarm_per_device_meta_batch_size"]) == (16, 16)
    assert (defaults["num_samples_per_prompt"], defaults["num_iterations"], defaults["metarm"]) == (5, 4, True)
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
    assert trainer.args.metarm and trainer.args.num_samples_per_prompt == 3
    for iteration in (0, 1):
        folder = tmp_path / f"iteration-{iteration:02d}"
        assert (folder / "reward_model" / "model.safetensors").is_file()
        assert "metarm/difference" in json.loads((folder / "metrics.json").read_text())
