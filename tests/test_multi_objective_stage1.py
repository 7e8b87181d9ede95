import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy.stats import spearmanr
from transformers import TrainingArguments

from trl_more.multi_objective import MultiObjectiveRewardModel
from trl_more.multi_objective.debiasing import debias_verbosity
from trl_more.multi_objective.features import extract_features
from trl_more.multi_objective.modeling_multi_objective import masked_mse_loss
from trl_more.multi_objective.regression import (
    DataCollatorForRatings,
    fit_regression_layer,
    prepare_rating_dataset,
    r2_per_objective,
    rating_targets,
    regression_trainer,
)
from trl_more.testing import tiny_reward_model, tiny_tokenizer
from trl_more.tokenization import tokenize_prompt


OBJECTIVES = ["helpfulness", "verbosity", "politeness"]
SCALES = {"helpfulness": (0, 4), "verbosity": (0, 4), "politeness": (1, 3)}


def ratings_dataset(num_rows=24, seed=0):
    rng = np.random.default_rng(seed)
    bodies = ["mix flour and water.", "Paris is the capital of France.", "the quick brown fox jumps over the dog."]
    rows = {"prompt": [], "response": [], "helpfulness": [], "verbosity": [], "politeness": []}
    for index in range(num_rows):
        repeats = int(rng.integers(1, 4))
        polite = bool(rng.integers(0, 2))
        rows["prompt"].append(f"Human: question number {index}? Assistant:")
        rows["response"].append(
            (" Thanks for asking!" if polite else " Whatever.") + f" {bodies[index % 3]}" * repeats
        )
        rows["helpfulness"].append(float(rng.integers(0, 5)) if index % 4 else None)  # missing every 4th
        rows["verbosity"].append(float(repeats))
        rows["politeness"].append(3.0 if polite else 1.0)
    return Dataset.from_dict(rows)


def tiny_model(**config_kwargs):
    tokenizer = tiny_tokenizer()
    backbone = tiny_reward_model("qwen2", tokenizer)
    torch.manual_seed(0)
    return MultiObjectiveRewardModel.from_backbone(
        backbone, OBJECTIVES, gate_hidden_sizes=[8], **config_kwargs
    ), tokenizer


def test_ratings_are_scaled_per_objective_and_missing_ones_stay_nan():
    dataset = ratings_dataset()
    targets = rating_targets(dataset, OBJECTIVES, SCALES)
    np.testing.assert_allclose(
        targets[1], [dataset[1]["helpfulness"] / 4, dataset[1]["verbosity"] / 4, (dataset[1]["politeness"] - 1) / 2]
    )
    assert set(np.unique(targets[:, 2])) <= {0.0, 1.0}  # politeness 1..3 -> 0..1
    assert np.isnan(targets[::4, 0]).all() and not np.isnan(targets[1::4, 0]).any()
    booleans = Dataset.from_dict({"safe": [True, False, None]})
    np.testing.assert_array_equal(rating_targets(booleans, ["safe"], {"safe": (0, 1)})[:, 0], [1.0, 0.0, np.nan])


def test_bad_ratings_give_clear_errors():
    dataset = ratings_dataset()
    outside = dataset.map(lambda row, i: {"verbosity": 7.0 if i == 2 else row["verbosity"]}, with_indices=True)
    with pytest.raises(
        ValueError, match=r"1 rating\(s\) of 'verbosity' lie outside its declared scale \[0, 4\] \(row 2: 7\)"
    ):
        rating_targets(outside, OBJECTIVES, SCALES)
    unlabelled = dataset.map(lambda row: {"politeness": None})
    with pytest.raises(ValueError, match="'politeness' has no rating at all"):
        rating_targets(unlabelled, OBJECTIVES, SCALES)
    with pytest.raises(ValueError, match=r"No rating scale declared for \['politeness'\]"):
        rating_targets(dataset, OBJECTIVES, {"helpfulness": (0, 4), "verbosity": (0, 4)})
    with pytest.raises(ValueError, match=r"Rating column\(s\) \['safety'\] are missing"):
        rating_targets(dataset, ["safety"], {"safety": (0, 1)})


def test_prepared_ratings_carry_prompt_lengths_and_labels():
    dataset = ratings_dataset()
    _, tokenizer = tiny_model()
    prepared = prepare_rating_dataset(dataset, tokenizer, OBJECTIVES, SCALES)
    assert prepared.column_names == ["input_ids", "prompt_length", "labels"]
    for row in (0, 5):
        prompt_ids = tokenize_prompt(tokenizer, dataset[row]["prompt"])
        assert prepared[row]["prompt_length"] == len(prompt_ids)
        assert prepared[row]["input_ids"][: len(prompt_ids)] == prompt_ids
        assert prepared[row]["input_ids"][-1] == tokenizer.eos_token_id
    assert math.isnan(prepared[0]["labels"][0]) and prepared[1]["labels"][1] == dataset[1]["verbosity"] / 4
    batch = DataCollatorForRatings(tokenizer.pad_token_id)([prepared[0], prepared[1]])
    assert batch["labels"].shape == (2, 3) and torch.isnan(batch["labels"][0, 0])
    with pytest.raises(ValueError, match="The prompt of row 0 is .* max_length=5"):
        prepare_rating_dataset(dataset, tokenizer, OBJECTIVES, SCALES, max_length=5)


def test_masked_mse_ignores_missing_ratings():
    predictions = torch.tensor([[0.5, 1.0], [0.0, 0.25]])
    labels = torch.tensor([[1.0, float("nan")], [float("nan"), 0.75]])
    assert masked_mse_loss(predictions, labels).item() == pytest.approx((0.25 + 0.25) / 2)


def test_r2_is_measured_against_the_reference_mean_on_labelled_rows_only():
    labels = np.array([[1.0, 0.0], [2.0, np.nan], [3.0, 1.0]])
    reference = np.array([[0.0, 0.0], [4.0, 1.0]])  # means 2.0 and 0.5
    predictions = np.array([[1.5, 0.0], [2.0, 9.0], [2.5, 0.5]])
    r2 = r2_per_objective(predictions, labels, reference, ["a", "b"])
    # a: SSE 0.25 + 0 + 0.25 = 0.5 against (1 + 0 + 1) = 2 -> 0.75; b: rows 0 and 2 only, SSE 0.25 against 0.5 -> 0.5
    assert r2 == pytest.approx({"a": 0.75, "b": 0.5})


def test_linear_probe_writes_the_ridge_solution_into_the_regression_layer():
    model, tokenizer = tiny_model(regression_bias=True)
    prepared = prepare_rating_dataset(ratings_dataset(40), tokenizer, OBJECTIVES, SCALES)
    features = extract_features(model, prepared["input_ids"], prepared["prompt_length"], show_progress=False)
    labels = np.array(prepared["labels"])
    fit = fit_regression_layer(model, features.pooled[:30], labels[:30], features.pooled[30:], labels[30:])
    with torch.no_grad():
        outputs = model(**DataCollatorForRatings(tokenizer.pad_token_id)([prepared[i] for i in range(30, 40)]))
    np.testing.assert_allclose(outputs.rewards.numpy(), fit.predict(features.pooled[30:].numpy()), atol=1e-4)
    r2 = r2_per_objective(outputs.rewards, labels[30:], labels[:30], OBJECTIVES)
    assert set(r2) == set(OBJECTIVES)


def test_end_to_end_regression_trains_backbone_and_regression_layer_only(tmp_path):
    model, tokenizer = tiny_model()
    prepared = prepare_rating_dataset(ratings_dataset(16), tokenizer, OBJECTIVES, SCALES)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    args = TrainingArguments(
        tmp_path,
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to="none",
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        per_device_eval_batch_size=8,
    )
    trainer = regression_trainer(model, args, prepared, eval_dataset=prepared)
    first = trainer.evaluate()["eval_loss"]
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] < first
    assert set(metrics) >= {f"eval_mse/{name}" for name in OBJECTIVES}
    after = model.state_dict()
    assert not torch.equal(before["regression_layer.weight"], after["regression_layer.weight"])
    assert not torch.equal(
        before["backbone.layers.0.mlp.up_proj.weight"], after["backbone.layers.0.mlp.up_proj.weight"]
    )
    assert all(torch.equal(before[name], after[name]) for name in before if name.startswith("gate."))


def test_verbosity_debiasing_of_the_model():
    model, tokenizer = tiny_model()
    prepared = prepare_rating_dataset(ratings_dataset(60), tokenizer, OBJECTIVES, SCALES)
    features = extract_features(model, prepared["input_ids"], prepared["prompt_length"], show_progress=False)
    with torch.no_grad():  # make the other objectives depend on verbosity, as real ones do
        model.regression_layer.weight[0] += 0.7 * model.regression_layer.weight[1]
        model.regression_layer.weight[2] -= 0.4 * model.regression_layer.weight[1]
    penalties = debias_verbosity(model, features.pooled, "verbosity")
    with torch.no_grad():
        outputs = model(pooled_hidden_states=features.pooled, objective_weights=[1.0, 1.0, 1.0])
    verbosity = outputs.rewards[:, 1].numpy()
    for objective in (0, 2):
        assert abs(spearmanr(outputs.transformed_rewards[:, objective].numpy(), verbosity)[0]) < 1e-3
    assert penalties[1] == 1.0 and model.config.reward_transform[1][0] == pytest.approx(-penalties[0])
    with pytest.raises(ValueError, match=r"Unknown objective 'length'; this model's objectives are"):
        debias_verbosity(model, features.pooled, "length")
