"""Weight-averaged reward models (WARM): `average_reward_models`, `trl-more average`, `trl-more strength --save_models`."""

import copy
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from trl_more.cli import main as cli_main
from trl_more.constants import TRAINING_INITIALISATION_ATTRIBUTE, TRAINING_MAX_LENGTH_ATTRIBUTE
from trl_more.rewards import average_reward_models, averaging_weights, set_reward_statistics
from trl_more.testing import save_tiny_reward_model, tiny_reward_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_averaging_two_copies_of_one_model_gives_that_model(tokenizer):
    model = tiny_reward_model("qwen2", tokenizer, seed=0)
    averaged = average_reward_models([model, copy.deepcopy(model)])
    assert type(averaged) is type(model) and averaged is not model
    for (name, value), original in zip(averaged.state_dict().items(), model.state_dict().values()):
        assert torch.equal(value, original), name


def test_averaging_is_the_weighted_sum_of_the_parameters(tokenizer):
    first, second = (tiny_reward_model("qwen2", tokenizer, seed=seed) for seed in (0, 1))
    before = copy.deepcopy(first.state_dict())
    averaged = average_reward_models([first, second], weights=[1, 3])  # normalised to 0.25, 0.75
    head = averaged.score.weight
    assert torch.allclose(head, 0.25 * first.score.weight + 0.75 * second.score.weight, atol=1e-7)
    assert head[0, 0].item() == pytest.approx(
        0.25 * first.score.weight[0, 0].item() + 0.75 * second.score.weight[0, 0].item()
    )
    for name, value in averaged.state_dict().items():
        expected = 0.25 * first.state_dict()[name] + 0.75 * second.state_dict()[name]
        assert torch.allclose(value, expected, atol=1e-6), name
    assert all(torch.equal(value, before[name]) for name, value in first.state_dict().items())  # members untouched


def test_the_rewards_of_an_average_of_two_heads_are_the_average_rewards(tokenizer):
    """With the backbones equal, the reward is linear in the head: the average's reward is the members' mean."""
    first = tiny_reward_model("qwen2", tokenizer, seed=0)
    second = copy.deepcopy(first)
    torch.nn.init.normal_(second.score.weight)
    averaged = average_reward_models([first, second])
    inputs = tokenizer(["a b c", "d e"], return_tensors="pt", padding=True)
    with torch.no_grad():
        rewards = [model(**inputs).logits[:, 0] for model in (first, second, averaged)]
    assert torch.allclose(rewards[2], (rewards[0] + rewards[1]) / 2, atol=1e-5)


def test_weights_are_checked_and_normalised_by_their_sum():
    assert averaging_weights(None, 4) == [0.25] * 4
    assert averaging_weights([1, 1, 2], 3) == [0.25, 0.25, 0.5]
    for bad in ([0.5, -0.5, 1.0], [0, 0, 0], [float("nan"), 1, 1]):
        with pytest.raises(ValueError, match="non-negative with a positive sum"):
            averaging_weights(bad, 3)
    with pytest.raises(ValueError, match="one weight per model"):
        averaging_weights([1, 1], 3)


def test_another_base_model_is_refused_with_the_reason(tokenizer):
    qwen, llama = tiny_reward_model("qwen2", tokenizer), tiny_reward_model("llama", tokenizer)
    with pytest.raises(ValueError, match="another architecture.*fine-tuned from one pre-trained model"):
        average_reward_models([qwen, llama])
    wider = tiny_reward_model("qwen2", tokenizer, intermediate_size=48)
    with pytest.raises(ValueError, match="intermediate_size: 64 vs 48"):
        average_reward_models([qwen, wider])


def test_another_reward_head_shape_is_refused_with_the_reason(tokenizer):
    model = tiny_reward_model("qwen2", tokenizer)
    two_outputs = copy.deepcopy(model)
    two_outputs.score = torch.nn.Linear(model.config.hidden_size, 2, bias=False)
    with pytest.raises(ValueError, match=r"'score.weight' has shape \(1, 32\).*\(2, 32\).*reward-head shape"):
        average_reward_models([model, two_outputs])


def test_other_initialisations_and_reading_records_are_refused(tokenizer, caplog):
    first, second = (tiny_reward_model("qwen2", tokenizer, seed=seed) for seed in (0, 1))
    setattr(first.config, TRAINING_INITIALISATION_ATTRIBUTE, "aaaa")
    setattr(second.config, TRAINING_INITIALISATION_ATTRIBUTE, "bbbb")
    with pytest.raises(ValueError, match="different initialisations.*--save_models"):
        average_reward_models([first, second])
    setattr(second.config, TRAINING_INITIALISATION_ATTRIBUTE, "aaaa")
    setattr(first.config, TRAINING_MAX_LENGTH_ATTRIBUTE, 128)
    with pytest.raises(ValueError, match="read its input differently.*trained_max_length: 128 vs None"):
        average_reward_models([first, second])
    setattr(second.config, TRAINING_MAX_LENGTH_ATTRIBUTE, 128)
    set_reward_statistics(first, 1.0, 2.0)  # a member's reward scale does not describe the average's rewards
    averaged = average_reward_models([first, second])
    assert getattr(averaged.config, TRAINING_INITIALISATION_ATTRIBUTE) == "aaaa"
    assert getattr(averaged.config, TRAINING_MAX_LENGTH_ATTRIBUTE) == 128
    assert not hasattr(averaged.config, "reward_mean") and first.config.reward_mean == 1.0
    with caplog.at_level("WARNING", logger="trl_more"):
        average_reward_models([tiny_reward_model("qwen2", tokenizer), tiny_reward_model("qwen2", tokenizer)])
    assert "record no initialisation" in caplog.text


def test_lora_members_are_merged_before_averaging(tokenizer):
    from peft import LoraConfig, get_peft_model

    base = tiny_reward_model("qwen2", tokenizer)
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        lora = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        members.append(get_peft_model(copy.deepcopy(base), lora))
    merged = [copy.deepcopy(member).merge_and_unload() for member in members]
    averaged = average_reward_models(members)
    expected = average_reward_models(merged)
    for name, value in averaged.state_dict().items():
        assert torch.equal(value, expected.state_dict()[name]), name
    assert "lora_A" in str(members[0])  # the caller's adapters are left as they were


def test_trl_more_average_writes_a_loadable_model_with_its_card(tmp_path, tokenizer):
    paths = [save_tiny_reward_model(tmp_path / f"member-{seed}", seed=seed) for seed in (0, 1)]
    output = tmp_path / "warm"
    cli_main(
        [
            "average",
            "--model",
            str(paths[0]),
            "--model",
            str(paths[1]),
            "--weights",
            "3",
            "1",
            "--output_dir",
            str(output),
        ]
    )
    loaded = AutoModelForSequenceClassification.from_pretrained(output)
    members = [AutoModelForSequenceClassification.from_pretrained(path) for path in paths]
    assert torch.allclose(loaded.score.weight, 0.75 * members[0].score.weight + 0.25 * members[1].score.weight)
    card = (output / "README.md").read_text()
    assert f"| 0 | `{paths[0]}` | 0.75 |" in card and f"| 1 | `{paths[1]}` | 0.25 |" in card
    assert (output / "tokenizer.json").is_file()
    with pytest.raises(ValueError, match="at least two models"):
        cli_main(["average", "--model", str(paths[0]), "--output_dir", str(output)])


def test_strength_keeps_members_from_one_initialisation_that_average(tmp_path):
    model = save_tiny_reward_model(tmp_path / "model")
    out = tmp_path / "strength"
    cli_main(
        [
            "strength",
            "--demo",
            "--mode",
            "seeds",
            "--num_models",
            "2",
            "--model_name_or_path",
            str(model),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "6",
            "--output_dir",
            str(out),
            "--bf16",
            "false",
            "--report_to",
            "none",
            "--save_models",
            "--plots",
            "false",
        ]
    )
    configs = [json.loads((out / f"model-{index:02d}" / "config.json").read_text()) for index in range(2)]
    assert configs[0][TRAINING_INITIALISATION_ATTRIBUTE] == configs[1][TRAINING_INITIALISATION_ATTRIBUTE]
    members = [AutoModelForSequenceClassification.from_pretrained(out / f"model-{index:02d}") for index in range(2)]
    assert not torch.equal(members[0].score.weight, members[1].score.weight)  # trained on other data orders
    cli_main(["average", "--model", str(out / "model-00"), str(out / "model-01"), "--output_dir", str(tmp_path / "w")])
    averaged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "w")
    assert torch.allclose(averaged.score.weight, (members[0].score.weight + members[1].score.weight) / 2)


def test_lora_adapter_folders_are_loaded_on_their_base_and_merged(tmp_path, tokenizer):
    from peft import LoraConfig, get_peft_model

    base_folder = save_tiny_reward_model(tmp_path / "base")
    folders, merged = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForSequenceClassification.from_pretrained(base_folder)
        lora = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        member = get_peft_model(base, lora)
        member.save_pretrained(tmp_path / f"adapter-{seed}")
        folders.append(tmp_path / f"adapter-{seed}")
        merged.append(copy.deepcopy(member).merge_and_unload())
    averaged = average_reward_models(folders)
    expected = average_reward_models(merged)
    for name, value in averaged.state_dict().items():
        assert torch.allclose(value, expected.state_dict()[name], atol=1e-6), name
