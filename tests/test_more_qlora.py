"""QLoRA reward training with MORE on CPU: 4-bit base, LoRA adapters, the head in `modules_to_save`."""

import pytest
import torch
from peft import LoraConfig


bitsandbytes = pytest.importorskip("bitsandbytes", reason="QLoRA needs the `bitsandbytes` extra")

from transformers import BitsAndBytesConfig  # noqa: E402

from trl_more import MORERewardConfig, MORERewardTrainer  # noqa: E402
from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources  # noqa: E402


def test_qlora_more_training_moves_adapters_and_head_only(tmp_path):
    tokenizer = tiny_tokenizer()
    tiny_reward_model("qwen2", tokenizer, seed=2).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    args = MORERewardConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=6,
        max_steps=3,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        bf16=True,  # TRL casts QLoRA adapters to bf16 (the QLoRA recipe); CPU autocast runs them
        use_cpu=True,
        save_strategy="no",
        model_init_kwargs={"device_map": "cpu", "dtype": torch.float32},
    )
    trainer = MORERewardTrainer(
        model=str(tmp_path / "base"),
        args=args,
        train_dataset=toy_preference_sources(12),
        processing_class=tokenizer,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
        peft_config=LoraConfig(task_type="SEQ_CLS", r=4, target_modules="all-linear", modules_to_save=["score"]),
    )
    assert any(type(module).__name__ == "Linear4bit" for module in trainer.model.modules())
    before = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}
    trainer.train()

    lambdas = [entry["lambda/polite"] for entry in trainer.state.log_history if "lambda/polite" in entry]
    assert len(lambdas) == 3 and all(0.0 <= value <= 1.0 for value in lambdas)
    for name, param in trainer.model.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        if "lora_" in name or "modules_to_save" in name:
            assert changed, f"{name} did not train"
        else:
            assert not changed, f"frozen {name} changed"


def test_qlora_more_training_continues_after_an_evaluation(tmp_path):
    """bitsandbytes repacks 4-bit weights for CPU inference on an eval pass (on AVX512-BF16 CPUs, like CI's); the
    training steps after it must still run. Width 64: that CPU kernel packs inputs in blocks of 64."""
    tokenizer = tiny_tokenizer()
    tiny_reward_model("qwen2", tokenizer, seed=2, hidden_size=64, intermediate_size=128).save_pretrained(
        tmp_path / "base"
    )
    tokenizer.save_pretrained(tmp_path / "base")
    sources = toy_preference_sources(12)
    args = MORERewardConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=6,
        max_steps=4,
        learning_rate=1e-2,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        report_to="none",
        bf16=True,
        use_cpu=True,
        save_strategy="no",
        model_init_kwargs={"device_map": "cpu", "dtype": torch.float32},
    )
    trainer = MORERewardTrainer(
        model=str(tmp_path / "base"),
        args=args,
        train_dataset=sources,
        eval_dataset=sources["polite"],
        processing_class=tokenizer,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
        peft_config=LoraConfig(task_type="SEQ_CLS", r=4, target_modules="all-linear", modules_to_save=["score"]),
    )
    trainer.train()
    assert trainer.state.global_step == 4
    assert len([entry for entry in trainer.state.log_history if "eval_loss" in entry]) == 2
