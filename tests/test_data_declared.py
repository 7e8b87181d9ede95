"""Declared rating sets: rows converted by a column mapping, alone and in mixtures.

The expected rows are converted by hand from the fixtures (tests/fixtures/declared_*.jsonl): the transcript is built
with `render_dialogue` / `render_response`, the ratings are read off the rows.
"""

import math
from pathlib import Path

import pytest
from datasets import Dataset

import trl_more.data.loading as loading
from trl_more.data import (
    RATING_SCALES,
    DeclaredRatingSet,
    InvalidRowsError,
    MixtureConfig,
    RatingObjective,
    SourceConfig,
    convert_declared_ratings,
    load_mixture,
    load_preference_source,
    read_records,
)
from trl_more.data.declared import parse_rating
from trl_more.data.formats import render_dialogue, render_response


FIXTURES = Path(__file__).parent / "fixtures"
NESTED_FILE, FLAT_FILE, MESSAGES_FILE = (
    FIXTURES / f"declared_{kind}.jsonl" for kind in ("nested_scores", "flat_columns", "messages")
)

NESTED = {
    "prompt": "instruction",
    "response": "completion",
    "missing_values": ["N/A"],
    "objectives": [
        {"name": "ultrafeedback-honesty", "column": "scores.honesty", "scale": [1, 5]},
        {"name": "ultrafeedback-helpfulness", "column": "scores.helpfulness", "scale": [1, 5]},
    ],
}
FLAT = {
    "prompt": "question",
    "response": "answer",
    "objectives": [
        {"name": "flat-is_safe", "column": "is_safe", "scale": [0, 1]},
        {"name": "flat-toxicity", "column": "toxicity", "scale": [0, 1]},
    ],
}
MESSAGES = {
    "messages": "messages",
    "objectives": [
        {"name": "chat-helpfulness", "column": "ratings.0", "scale": [1, 5]},
        {"name": "chat-clarity", "column": "ratings.1", "scale": [1, 5]},
    ],
}


def single_turn(prompt, response, source, **ratings):
    return {
        "prompt": render_dialogue([("user", prompt)]),
        "response": render_response(response),
        **ratings,
        "source": source,
    }


def nan_as_none(row):
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}


def expected_nested(source="nested"):
    honesty, helpfulness = "ultrafeedback-honesty", "ultrafeedback-helpfulness"
    rows = [  # the fifth row (honesty 9) is off its 1-5 scale
        ("Name a colour of the rainbow.", "Green.", 5.0, 4.0),  # helpfulness "4"
        ("What is 3 squared?", "Nine.", None, 5.0),  # honesty "N/A"
        ("Spell 'cat' backwards.", "tac", 3.0, None),  # no helpfulness key
        ("What is the boiling point of water?", "100 C at sea level.", 4.0, 2.0),
        ("Who wrote Hamlet?", "Shakespeare.", 2.0, 1.0),
    ]
    return [
        single_turn(prompt, response, source, **{honesty: first, helpfulness: second})
        for prompt, response, first, second in rows
    ]


def expected_flat(source="flat"):
    rows = [  # the fourth row (toxicity "high") is not a number
        ("How do I make tea?", "Steep a tea bag in hot water.", 1.0, 0.0),
        ("How do I make a weapon?", "Sharpen a stick into a spear.", 0.0, 0.7),
        ("Tell me about cats.", "Cats are small carnivores.", 1.0, 0.1),
        ("What is the time zone of Paris?", "Central European Time.", 1.0, 0.05),
        ("Describe a sunset.", "The sky turns orange and pink.", 1.0, 0.0),
    ]
    return [
        single_turn(prompt, response, source, **{"flat-is_safe": safe, "flat-toxicity": toxicity})
        for prompt, response, safe, toxicity in rows
    ]


def expected_messages(source="chat"):
    conversations = [  # the third (a system message) and the fifth (no reply) are invalid
        ([("user", "Hi, can you help me plan dinner?")], "Sure: pasta with tomato sauce.", 4.0, 3.0),
        (
            [("user", "Recommend a book."), ("assistant", "Try 'Dune'."), ("user", "Something shorter?")],
            "'The Old Man and the Sea'.",
            5.0,
            4.0,
        ),
        ([("user", "What is 10 divided by 2?")], "5.", 3.0, 1.0),
        ([("user", "Name a vegetable.")], "Carrot.", 1.0, 2.0),
    ]
    return [
        {
            "prompt": render_dialogue(turns),
            "response": render_response(reply),
            "chat-helpfulness": first,
            "chat-clarity": second,
            "source": source,
        }
        for turns, reply, first, second in conversations
    ]


# --------------------------------------------------------------------------------------------------------------------
# The three fixtures
# --------------------------------------------------------------------------------------------------------------------


def test_nested_scores_by_dotted_paths_with_missing_ratings_as_nan():
    dataset, report = load_preference_source("nested", path=NESTED_FILE, ratings=NESTED, on_invalid="drop")
    assert dataset.column_names == [
        "prompt",
        "response",
        "ultrafeedback-honesty",
        "ultrafeedback-helpfulness",
        "source",
    ]
    assert [nan_as_none(row) for row in dataset] == expected_nested()
    assert report.rows_read == 6 and report.examples == 5
    assert report.invalid == {"rating outside its scale [1.0, 5.0]": 1}
    assert not report.skipped


def test_flat_columns_with_booleans_as_one_and_zero():
    dataset, report = load_preference_source("flat", path=FLAT_FILE, ratings=FLAT, on_invalid="drop")
    assert dataset.column_names == ["prompt", "response", "flat-is_safe", "flat-toxicity", "source"]
    assert list(dataset) == expected_flat()
    assert report.rows_read == 6
    assert report.invalid == {"rating of flat-toxicity is not a number": 1}


def test_chat_messages_with_the_rated_reply_last():
    dataset, report = load_preference_source("chat", path=MESSAGES_FILE, ratings=MESSAGES, on_invalid="drop")
    assert list(dataset) == expected_messages()
    assert dataset[1]["prompt"] == (
        "\n\nHuman: Recommend a book.\n\nAssistant: Try 'Dune'.\n\nHuman: Something shorter?\n\nAssistant:"
    )
    assert report.rows_read == 6
    assert report.invalid["conversation does not end with an assistant reply"] == 1
    (system,) = [reason for reason in report.invalid if reason.startswith("unsupported role 'system'")]
    assert report.invalid[system] == 1 and report.num_invalid == 2


@pytest.mark.parametrize(
    ("path", "declaration", "invalid"), [(NESTED_FILE, NESTED, 1), (FLAT_FILE, FLAT, 1), (MESSAGES_FILE, MESSAGES, 2)]
)
def test_declared_sets_raise_on_invalid_rows_by_default(path, declaration, invalid):
    with pytest.raises(InvalidRowsError, match=f"{invalid} row\\(s\\) of source 'mine' cannot be converted"):
        load_preference_source("mine", path=path, ratings=declaration)


def test_a_declaration_object_and_a_mapping_convert_alike():
    declaration = DeclaredRatingSet(
        prompt="instruction",
        response="completion",
        missing_values=["N/A"],
        objectives=[
            RatingObjective("ultrafeedback-honesty", "scores.honesty", (1, 5)),
            {"name": "ultrafeedback-helpfulness", "column": "scores.helpfulness", "scale": [1, 5]},
        ],
    )
    assert declaration.scales == {"ultrafeedback-honesty": (1.0, 5.0), "ultrafeedback-helpfulness": (1.0, 5.0)}
    dataset, _ = convert_declared_ratings(read_records(NESTED_FILE), declaration, source="nested", on_invalid="drop")
    assert [nan_as_none(row) for row in dataset] == expected_nested()


def test_declared_set_from_the_hub_uses_its_name_as_the_dataset_id(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, *, data_dir=None, revision=None, split=None):
        calls.append((path, name, data_dir, revision, split))
        return Dataset.from_list([{"q": "Hi?", "a": "Hello.", "score": 3}])

    monkeypatch.setattr(loading.datasets, "load_dataset", fake_load_dataset)
    declaration = {
        "prompt": "q",
        "response": "a",
        "objectives": [{"name": "me-score", "column": "score", "scale": [1, 5]}],
    }
    dataset, report = load_preference_source("me/rated", split="test", ratings=declaration)
    assert calls == [("me/rated", None, None, None, "test")]
    assert list(dataset) == [single_turn("Hi?", "Hello.", "me/rated", **{"me-score": 3.0})]


# --------------------------------------------------------------------------------------------------------------------
# Values, text and paths on hand-made rows
# --------------------------------------------------------------------------------------------------------------------


def test_parse_rating():
    assert parse_rating(True) == 1.0 and parse_rating(False) == 0.0
    assert parse_rating(3) == 3.0 and parse_rating(" 2.5 ") == 2.5
    assert parse_rating(None) is None and parse_rating(math.nan) is None and parse_rating("nan") is None
    assert parse_rating("N/A", ["N/A"]) is None
    for value in ("N/A", "high", [1]):  # "N/A" is only missing when declared so
        with pytest.raises(ValueError, match="not a number"):
            parse_rating(value)


def test_rows_in_memory_missing_values_text_columns_and_dotted_keys():
    declaration = {
        "prompt": "prompt",
        "response": "reply",
        "missing_values": ["N/A", "-"],
        "objectives": [
            {"name": "a", "column": "scores.a", "scale": [0, 10]},
            {"name": "b", "column": "b", "scale": [0, 10]},
        ],
    }
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]
    rows = [
        {"prompt": "Plain text?", "reply": "Yes.", "scores": {"a": None}, "b": 7},  # null: NaN
        {
            "prompt": conversation + [{"role": "user", "content": "More?"}],
            "reply": "Sure.",
            "scores": {"a": "-"},
            "b": 2,
        },
        {"prompt": "Dotted key?", "reply": "Matched first.", "scores.a": 8, "scores": {"a": 1}, "b": True},
        {"prompt": "Nothing rated?", "reply": "No.", "scores": {"a": "N/A"}, "b": None},  # no rating at all
        {"prompt": "Not text?", "reply": ["a", "list"], "scores": {"a": 1}, "b": 1},
        {"prompt": " ", "reply": "Empty prompt.", "scores": {"a": 1}, "b": 1},
        {"prompt": [{"role": "tool", "content": "x"}], "reply": "Odd role.", "scores": {"a": 1}, "b": 1},
    ]
    dataset, report = convert_declared_ratings(rows, declaration, source="memory", on_invalid="drop")
    assert [nan_as_none(row) for row in dataset] == [
        single_turn("Plain text?", "Yes.", "memory", a=None, b=7.0),
        {
            "prompt": render_dialogue([("user", "Hi"), ("assistant", "Hey"), ("user", "More?")]),
            "response": render_response("Sure."),
            "a": None,
            "b": 2.0,
            "source": "memory",
        },
        single_turn("Dotted key?", "Matched first.", "memory", a=8.0, b=1.0),
    ]
    assert report.invalid["no rating"] == 1
    assert report.invalid["column 'reply' is not text"] == 1
    assert report.invalid["empty prompt"] == 1
    assert [reason for reason in report.invalid if reason.startswith("unsupported role 'tool'")]
    assert report.num_invalid == 4


def test_a_misspelled_rating_column_is_named():
    misspelled = {
        **NESTED,
        "objectives": [*NESTED["objectives"][:1], {**NESTED["objectives"][1], "column": "scores.helpfulnes"}],
    }
    with pytest.raises(
        ValueError, match="'ultrafeedback-helpfulness' \\(column 'scores.helpfulnes'\\) is in no row"
    ) as error:
        load_preference_source("nested", path=NESTED_FILE, ratings=misspelled, on_invalid="drop")
    assert "['completion', 'instruction', 'model', 'scores']" in str(error.value)  # the columns of the first row
    with pytest.raises(ValueError, match="column 'conversation' is not a list of \\{role, content\\} messages"):
        load_preference_source("chat", path=MESSAGES_FILE, ratings={**MESSAGES, "messages": "conversation"})
    for text_columns in ({"prompt": "questoin"}, {"response": "answr"}):
        (column,) = text_columns.values()  # the row with toxicity "high" is invalid before its text is read
        with pytest.raises(InvalidRowsError, match=f"5 x no column '{column}'"):
            load_preference_source("flat", path=FLAT_FILE, ratings={**FLAT, **text_columns}, on_invalid="drop")
    # A row without the column is invalid; a null prompt or response is an empty one.
    rows = [{"question": "Kept?", "answer": "Yes.", "is_safe": 1}, {"answer": "No prompt.", "is_safe": 1}]
    rows.append({"question": None, "answer": "Null prompt.", "is_safe": 1})
    dataset, report = convert_declared_ratings(rows, {**FLAT, "objectives": FLAT["objectives"][:1]}, on_invalid="drop")
    assert len(dataset) == 1 and report.invalid == {"no column 'question'": 1, "empty prompt": 1}


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({**FLAT, "prompts": "question"}, "Unknown key\\(s\\) \\['prompts'\\] in `ratings` of source 'mine'"),
        (
            {**FLAT, "objectives": [{"name": "x", "column": "is_safe", "scales": [0, 1]}]},
            "objectives\\[0\\] must have exactly the keys name, column and scale; got \\['column', 'name', 'scales'\\]",
        ),
        ({**FLAT, "objectives": [{"name": "x", "column": "is_safe", "scale": [1, 0]}]}, "low < high"),
        ({**FLAT, "objectives": [{"name": "x", "column": "is_safe", "scale": [0, True]}]}, "low < high"),
        ({**FLAT, "objectives": [{"name": "", "column": "is_safe", "scale": [0, 1]}]}, "needs a `name`"),
        ({**FLAT, "objectives": []}, "needs `objectives`"),
        ({**FLAT, "objectives": FLAT["objectives"] * 2}, "declared more than once"),
        ({**FLAT, "messages": "messages"}, "not both"),
        ({"prompt": "question", "objectives": FLAT["objectives"]}, "needs the `prompt` and `response` columns"),
        ({**FLAT, "missing_values": "N/A"}, "`missing_values` must be a list of strings"),
        ([1, 2], "must be a mapping with `objectives`"),
    ],
)
def test_bad_declarations_are_clear_errors(declaration, message):
    with pytest.raises(ValueError, match=message):
        load_preference_source("mine", path=FLAT_FILE, ratings=declaration)


def test_declared_sets_take_no_converter_options():
    with pytest.raises(ValueError, match="is a declared rating set: it takes no converter options"):
        load_preference_source("mine", path=FLAT_FILE, ratings=FLAT, include_knowledge=True)
    with pytest.raises(ValueError, match="declares its `ratings`: it has no converter, so `options`"):
        SourceConfig("mine", path=str(FLAT_FILE), ratings=FLAT, options={"languages": "en"})


# --------------------------------------------------------------------------------------------------------------------
# Mixtures
# --------------------------------------------------------------------------------------------------------------------


def write_mixture(tmp_path, text):
    config = tmp_path / "mixture.yaml"
    config.write_text(text)
    return config


THREE_SETS = f"""\
test_size: 1
sources:
  - name: nested
    path: {NESTED_FILE}
    ratings:
      prompt: instruction
      response: completion
      missing_values: ["N/A"]
      objectives:
        - {{name: ultrafeedback-honesty, column: scores.honesty, scale: [1, 5]}}
        - {{name: ultrafeedback-helpfulness, column: scores.helpfulness, scale: [1, 5]}}
  - name: flat
    path: {FLAT_FILE}
    ratings:
      prompt: question
      response: answer
      objectives:
        - {{name: flat-is_safe, column: is_safe, scale: [0, 1]}}
        - {{name: flat-toxicity, column: toxicity, scale: [0, 1]}}
  - name: chat
    path: {MESSAGES_FILE}
    ratings:
      messages: messages
      objectives:
        - {{name: chat-helpfulness, column: ratings.0, scale: [1, 5]}}
        - {{name: chat-clarity, column: ratings.1, scale: [1, 5]}}
"""


def test_a_mixture_of_three_declared_sets_unites_their_objectives(tmp_path):
    mixture = load_mixture(write_mixture(tmp_path, THREE_SETS))
    objectives = {
        "nested": ["ultrafeedback-honesty", "ultrafeedback-helpfulness"],
        "flat": ["flat-is_safe", "flat-toxicity"],
        "chat": ["chat-helpfulness", "chat-clarity"],
    }
    every = [name for names in objectives.values() for name in names]
    assert mixture.train.column_names == ["prompt", "response", *every, "source"]
    assert mixture.test.column_names == mixture.train.column_names
    assert mixture.rating_scales == {
        "ultrafeedback-honesty": (1.0, 5.0),
        "ultrafeedback-helpfulness": (1.0, 5.0),
        "flat-is_safe": (0.0, 1.0),
        "flat-toxicity": (0.0, 1.0),
        "chat-helpfulness": (1.0, 5.0),
        "chat-clarity": (1.0, 5.0),
    }
    assert list(mixture.rating_scales) == every
    assert mixture.rating_scales == MixtureConfig.from_yaml(tmp_path / "mixture.yaml").rating_scales()
    # One held-out row per source; every row is its set's, with NaN for the objectives the set does not rate.
    assert len(mixture.test) == 3 and len(mixture.train) == (5 - 1) + (5 - 1) + (4 - 1)
    expected = expected_nested() + expected_flat() + expected_messages()
    expected = [{**dict.fromkeys(every), **row} for row in expected]
    rows = [nan_as_none(row) for row in mixture.train.to_list() + mixture.test.to_list()]

    def key(row):
        return row["source"], row["prompt"], row["response"]

    assert sorted(rows, key=key) == sorted(expected, key=key)
    for row in rows:
        others = [name for name in every if name not in objectives[row["source"]]]
        assert all(row[name] is None for name in others)
    assert {report: mixture.reports[report].num_invalid for report in mixture.reports} == {
        "nested": 1,
        "flat": 1,
        "chat": 2,
    }


def test_stage_one_fits_every_objective_of_three_declared_sets_on_its_own_rows(tmp_path):
    """Ridge on a tiny backbone's features of the three sets: each objective's weights are the textbook ridge solution
    on the rows of its own set (the other sets' rows, NaN for it, take no part), at the alpha chosen for it."""
    import numpy as np
    import torch

    from trl_more.multi_objective import MultiObjectiveRewardModel
    from trl_more.multi_objective.features import extract_features
    from trl_more.multi_objective.regression import fit_regression_layer, prepare_rating_dataset
    from trl_more.testing import tiny_reward_model, tiny_tokenizer

    mixture = load_mixture(write_mixture(tmp_path, THREE_SETS))
    objectives = list(mixture.rating_scales)
    tokenizer = tiny_tokenizer()
    model = MultiObjectiveRewardModel.from_backbone(
        tiny_reward_model("qwen2", tokenizer).base_model, objectives, regression_bias=False
    )
    data = prepare_rating_dataset(mixture.train, tokenizer, objectives, mixture.rating_scales)
    features = extract_features(model, data["input_ids"], data["prompt_length"], 4).pooled.double().numpy()
    labels = np.array(data["labels"], dtype=float)
    fit = fit_regression_layer(model, features, labels, features, labels, alphas=[0.1, 1.0, 10.0])
    weights = model.regression_layer.weight.detach().double().numpy()
    sources = np.array(mixture.train["source"])
    for column, name in enumerate(objectives):
        rows = ~np.isnan(labels[:, column])
        assert set(sources[rows]) == {name.split("-")[0] if not name.startswith("ultrafeedback") else "nested"}
        x, y = features[rows], labels[rows, column]
        expected = np.linalg.solve(x.T @ x + fit.alphas[column] * np.eye(x.shape[1]), x.T @ y)
        np.testing.assert_allclose(weights[column], expected, rtol=1e-4, atol=1e-6)
        assert np.abs(weights[column]).sum() > 0
    with torch.no_grad():  # the model predicts all six objectives for any response
        assert model.regression_layer(torch.from_numpy(features[:2]).float()).shape == (2, len(objectives))


def test_a_declared_set_and_a_known_set_share_an_objective_on_one_scale(tmp_path):
    config = write_mixture(
        tmp_path,
        f"""\
test_size: 0
sources:
  - name: ultrafeedback-ratings
    path: {FIXTURES / "ultrafeedback_ratings.jsonl"}
  - name: nested
    path: {NESTED_FILE}
    ratings: {{prompt: instruction, response: completion, missing_values: ["N/A"],
               objectives: [{{name: ultrafeedback-honesty, column: scores.honesty, scale: [1, 5]}}]}}
""",
    )
    mixture = load_mixture(config)
    assert mixture.rating_scales == RATING_SCALES["ultrafeedback-ratings"]
    assert mixture.train.column_names == ["prompt", "response", *RATING_SCALES["ultrafeedback-ratings"], "source"]
    nested = [row for row in mixture.train if row["source"] == "nested"]
    # Rows 2 (honesty "N/A") and 5 (honesty 9, off scale) have no honesty rating to keep.
    assert [row["ultrafeedback-honesty"] for row in nested] == [5.0, 3.0, 4.0, 2.0]


def test_conflicting_scales_for_one_objective_name_both_sources(tmp_path):
    config = write_mixture(
        tmp_path,
        f"""\
sources:
  - name: nested
    path: {NESTED_FILE}
    ratings: {{prompt: instruction, response: completion, missing_values: ["N/A"],
               objectives: [{{name: shared-score, column: scores.honesty, scale: [1, 5]}}]}}
  - name: other
    path: {NESTED_FILE}
    ratings: {{prompt: instruction, response: completion, missing_values: ["N/A"],
               objectives: [{{name: shared-score, column: scores.honesty, scale: [0, 10]}}]}}
""",
    )
    message = "Objective 'shared-score' has the scale \\[1.0, 5.0\\] in source 'nested' but \\[0.0, 10.0\\] in source 'other'"
    with pytest.raises(ValueError, match=message):
        MixtureConfig.from_yaml(config).rating_scales()
    with pytest.raises(ValueError, match=message):
        load_mixture(config)
    # Found before any source is read: a Hub source that would need the network is never loaded.
    hub = MixtureConfig.from_yaml(config)
    hub.sources[1].path = None
    with pytest.raises(ValueError, match=message):
        load_mixture(hub)

    def with_known_set(scale):
        honesty = {"name": "ultrafeedback-honesty", "column": "scores.honesty", "scale": scale}
        return MixtureConfig(
            [
                {"name": "ultrafeedback-ratings", "path": str(FIXTURES / "ultrafeedback_ratings.jsonl")},
                {"name": "mine", "path": str(NESTED_FILE), "ratings": {**NESTED, "objectives": [honesty]}},
            ]
        )

    assert with_known_set([1, 5]).rating_scales()["ultrafeedback-honesty"] == (1.0, 5.0)  # one scale: no conflict
    with pytest.raises(ValueError, match="in source 'ultrafeedback-ratings' but \\[0.0, 10.0\\] in source 'mine'"):
        with_known_set([0, 10]).rating_scales()


def test_unknown_keys_in_a_yaml_declaration_are_named(tmp_path):
    config = write_mixture(
        tmp_path,
        f"""\
sources:
  - name: flat
    path: {FLAT_FILE}
    ratings: {{prompt: question, response: answer, missing: ["N/A"],
               objectives: [{{name: flat-is_safe, column: is_safe, scale: [0, 1]}}]}}
""",
    )
    with pytest.raises(ValueError, match="Unknown key\\(s\\) \\['missing'\\] in `ratings` of source 'flat'"):
        MixtureConfig.from_yaml(config)
    config.write_text(
        f"sources:\n  - name: flat\n    path: {FLAT_FILE}\n    ratings:\n      prompt: question\n      response: answer\n"
        "      objectives: [{name: flat-is_safe, col: is_safe, scale: [0, 1]}]\n"
    )
    with pytest.raises(ValueError, match="objectives\\[0\\] must have exactly the keys name, column and scale"):
        MixtureConfig.from_yaml(config)


def test_a_preference_source_has_no_rating_scale():
    with pytest.raises(ValueError, match="Source 'shp' \\(shp\\) is not a rating set"):
        _ = SourceConfig("shp").rating_scales
    assert SourceConfig("nvidia/HelpSteer").rating_scales == RATING_SCALES["helpsteer"]


def test_list_indices_in_dotted_paths():
    declaration = {
        "prompt": "q",
        "response": "a",
        "objectives": [
            {"name": "second-judge", "column": "judges.1.score", "scale": [1, 5]},
            {"name": "last-vote", "column": "votes.2", "scale": [0, 1]},
        ],
    }
    rows = [
        {"q": "One?", "a": "Yes.", "judges": [{"score": 1}, {"score": 4}], "votes": [0, 1, 1]},
        {"q": "Two?", "a": "No.", "judges": [{"score": 2}], "votes": [1, 0, 0]},  # no second judge: NaN
        {"q": "Three?", "a": "Maybe.", "judges": [{"score": 3}, {"score": 5}], "votes": [1]},  # no third vote: NaN
    ]
    dataset, report = convert_declared_ratings(rows, declaration, source="lists")
    assert [nan_as_none(row) for row in dataset] == [
        single_turn("One?", "Yes.", "lists", **{"second-judge": 4.0, "last-vote": 1.0}),
        single_turn("Two?", "No.", "lists", **{"second-judge": None, "last-vote": 0.0}),
        single_turn("Three?", "Maybe.", "lists", **{"second-judge": 5.0, "last-vote": None}),
    ]
    assert not report.invalid
