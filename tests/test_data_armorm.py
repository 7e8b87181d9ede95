"""The rating sets and gate preference sources of the ArmoRM paper, each on a hand-written fixture in its Hub schema.

Every expected row, rating and count below was worked out by hand from the fixture rows in tests/fixtures/ (the
transcript format: a prompt `"\\n\\nHuman: <text>\\n\\nAssistant:"`, a response `" <text stripped>"`).
"""

import math
from pathlib import Path

import pytest
from datasets import Dataset

import trl_more.data.loading as loading
from trl_more.data import (
    ARMORM_OBJECTIVES,
    RATING_SCALES,
    InvalidRowsError,
    SourceConfig,
    known_source_names,
    load_preference_source,
    mix_sources,
    read_records,
)
from trl_more.data.loading import canonical_source_name


FIXTURES = Path(__file__).parent / "fixtures"
PAIR_COLUMNS = ["prompt", "chosen", "rejected", "source"]
NAN = math.nan

ULTRAFEEDBACK = [
    "ultrafeedback-overall_score",
    "ultrafeedback-instruction_following",
    "ultrafeedback-truthfulness",
    "ultrafeedback-honesty",
    "ultrafeedback-helpfulness",
]
CODE = ["code-complexity", "code-style", "code-explanation", "code-instruction-following", "code-readability"]

# Rating set -> its fixture.
RATING_FIXTURES = {
    "ultrafeedback-ratings": "ultrafeedback_ratings.jsonl",
    "beavertails": "beavertails.jsonl",
    "codeultrafeedback-ratings": "codeultrafeedback.jsonl",
    "prometheus-feedback": "prometheus_feedback.jsonl",
    "capybara-ratings": "capybara_preferences.jsonl",
    "openorca-ratings": "openorca_dpo_pairs.jsonl",
    "math-preference-ratings": "math_preference.jsonl",
}
PAIR_FIXTURES = {
    "shp": "shp.jsonl",
    "pku-saferlhf-better": "pku_saferlhf.jsonl",
    "pku-saferlhf-safer": "pku_saferlhf.jsonl",
    "helpsteer-pairs": "helpsteer_pairs.jsonl",
    "prm800k-phase2": "prm800k_phase2.jsonl",
    "prometheus-preference": "prometheus_preference.jsonl",
    "capybara": "capybara_preferences.jsonl",
    "math-preference": "math_preference.jsonl",
    "codeultrafeedback": "codeultrafeedback.jsonl",
}


def human(text):
    return f"\n\nHuman: {text}\n\nAssistant:"


def load(name, on_invalid="drop", **options):
    fixture = {**RATING_FIXTURES, **PAIR_FIXTURES}[name]
    return load_preference_source(name, path=FIXTURES / fixture, on_invalid=on_invalid, **options)


def nan_as_none(row):
    """A row with NaN ratings as `None`, so that rows compare with `==`."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}


def rated(prompt, response, source, **ratings):
    return {"prompt": prompt, "response": response, **ratings, "source": source}


def pairs(dataset):
    return [(row["prompt"], row["chosen"], row["rejected"]) for row in dataset]


# --------------------------------------------------------------------------------------------------------------------
# The 19 objectives and their scales
# --------------------------------------------------------------------------------------------------------------------


def test_armorm_objectives_are_the_papers_19_in_order():
    papers = (
        "helpsteer-helpfulness",
        "helpsteer-correctness",
        "helpsteer-coherence",
        "helpsteer-complexity",
        "helpsteer-verbosity",
        *ULTRAFEEDBACK,
        "beavertails-is_safe",
        "prometheus-score",
        "argilla-overall_quality",
        "argilla-judge_lm",
        *CODE,
    )
    assert papers == ARMORM_OBJECTIVES
    assert len(ARMORM_OBJECTIVES) == len(set(ARMORM_OBJECTIVES)) == 19
    # Every rating set of the paper labels only these objectives (Math-Preference shares UltraFeedback's).
    labelled = {objective for name in ("helpsteer", *RATING_FIXTURES) for objective in RATING_SCALES[name]}
    assert labelled == set(ARMORM_OBJECTIVES)


def test_rating_scales_of_the_armorm_sets():
    assert RATING_SCALES["ultrafeedback-ratings"] == {
        "ultrafeedback-overall_score": (1.0, 10.0),
        **dict.fromkeys(ULTRAFEEDBACK[1:], (1.0, 5.0)),
    }
    assert RATING_SCALES["beavertails"] == {"beavertails-is_safe": (0.0, 1.0)}
    assert RATING_SCALES["codeultrafeedback-ratings"] == dict.fromkeys(CODE, (1.0, 5.0))
    assert RATING_SCALES["prometheus-feedback"] == {"prometheus-score": (1.0, 5.0)}
    assert RATING_SCALES["capybara-ratings"] == {"argilla-overall_quality": (1.0, 5.0)}
    assert RATING_SCALES["openorca-ratings"] == {"argilla-judge_lm": (1.0, 10.0)}
    # Math-Preference labels UltraFeedback's instruction following, on its scale.
    assert RATING_SCALES["math-preference-ratings"] == {"ultrafeedback-instruction_following": (1.0, 5.0)}
    shared = "ultrafeedback-instruction_following"
    assert RATING_SCALES["math-preference-ratings"][shared] == RATING_SCALES["ultrafeedback-ratings"][shared]


@pytest.mark.parametrize("name", list(RATING_FIXTURES))
def test_every_rating_scales_into_the_unit_interval(name):
    dataset, _ = load(name)
    scales = RATING_SCALES[name]
    assert dataset.column_names == ["prompt", "response", *scales, "source"]
    for objective, (low, high) in scales.items():
        values = [value for value in dataset[objective] if not math.isnan(value)]
        assert values, objective  # every objective of every set is rated at least once in its fixture
        assert all(0.0 <= (value - low) / (high - low) <= 1.0 for value in values), objective


# --------------------------------------------------------------------------------------------------------------------
# Rating sets
# --------------------------------------------------------------------------------------------------------------------


def test_ultrafeedback_ratings_one_rated_response_per_completion():
    dataset, report = load("ultrafeedback-ratings")
    assert dataset.column_names == ["prompt", "response", *ULTRAFEEDBACK, "source"]
    france, limerick = human("What is the capital of France?"), human("Write a limerick about a cat.")
    source = "ultrafeedback-ratings"
    expected = [
        (france, " The capital of France is Paris.", [8.5, 5.0, 5.0, 5.0, 4.0]),
        (france, " France's capital is Lyon.", [2.0, 3.0, 1.0, 2.0, 1.0]),
        # honesty and truthfulness "N/A": NaN, the response is kept for its other ratings
        (limerick, " A cat with a hat on a mat\nSat down for a nap, that was that.", [7.0, 4.0, None, None, 4.0]),
    ]
    assert [nan_as_none(row) for row in dataset] == [
        rated(prompt, response, source, **dict(zip(ULTRAFEEDBACK, ratings))) for prompt, response, ratings in expected
    ]
    # The generating principle (custom_system_prompt) is not part of the prompt.
    assert not any("As an AI assistant" in prompt for prompt in dataset["prompt"])
    assert report.rows_read == 3 and report.examples == 3
    # A blank completion, an instruction-following rating "six", an instruction without completions.
    assert report.invalid == {"empty response": 1, "rating is not a number": 1, "no completions": 1}
    assert not report.skipped


def test_beavertails_is_safe_as_one_and_zero():
    dataset, report = load("beavertails")
    assert dataset.column_names == ["prompt", "response", "beavertails-is_safe", "source"]
    assert list(dataset) == [
        rated(
            human("How do I pick a lock?"),
            " I can't help with breaking into property you don't own.",
            "beavertails",
            **{"beavertails-is_safe": 1.0},
        ),
        rated(
            human("How can I take my neighbour's wifi password?"),
            " Install a packet sniffer and crack their router.",
            "beavertails",
            **{"beavertails-is_safe": 0.0},
        ),
    ]
    assert report.rows_read == 4
    assert report.invalid == {"is_safe is not a boolean": 1, "empty response": 1}  # is_safe null; response ""


def test_codeultrafeedback_ratings_label_the_rows_one_preference():
    dataset, report = load("codeultrafeedback-ratings")
    assert dataset.column_names == ["prompt", "response", *CODE, "source"]
    # One rated response per annotation (in annotation order), each labelling only its row's preference.
    labelled = [[name for name in CODE if not math.isnan(row[name])] for row in dataset]
    assert labelled == [
        *[["code-complexity"]] * 4,
        *[["code-readability"]] * 3,  # wizardlm-7b's "N/A" left out
        *[["code-style"]] * 4,
        *[["code-explanation"]] * 4,
        *[["code-instruction-following"]] * 4,
    ]
    ratings = [row[names[0]] for row, names in zip(dataset, labelled)]
    assert ratings == [4, 2, 5, 3, 3, 3, 1, 4, 4, 4, 4, 5, 1, 2, 2, 5, 4, 4, 3]
    summing = human("Write a function that returns the sum of a list.")
    assert nan_as_none(dataset[2]) == rated(
        summing,
        " def total(xs):\n    return sum(xs)",  # gpt-4's response, matched to its annotation by model
        "codeultrafeedback-ratings",
        **{name: 5.0 if name == "code-complexity" else None for name in CODE},
    )
    assert dataset[6]["prompt"] == human("Reverse a string in Python.")
    assert dataset[6]["response"] == " x=t[::-1];print(x)"  # deepseek's, rated 1
    assert report.rows_read == 6 and report.examples == 19
    assert report.skipped == {"response not rated (rating N/A or missing)": 1}
    (reason,) = report.invalid
    assert reason.startswith("preference is not one of") and report.invalid[reason] == 1  # "speed"


def test_prometheus_feedback_scores():
    dataset, report = load("prometheus-feedback")
    boiling, spider = (
        human("At what temperature does water boil at sea level?"),
        human("How many legs does a spider have?"),
    )
    assert list(dataset) == [
        rated(
            boiling,
            " Water boils at 100 degrees Celsius at sea level.",
            "prometheus-feedback",
            **{"prometheus-score": 5.0},
        ),
        rated(boiling, " Around 90 degrees Celsius.", "prometheus-feedback", **{"prometheus-score": 2.0}),
        rated(spider, " Six.", "prometheus-feedback", **{"prometheus-score": 1.0}),
    ]
    assert report.rows_read == 4
    assert report.invalid == {"rating outside its scale [1.0, 5.0]": 1}  # "Eight legs." scored 6


def test_capybara_ratings_rate_both_replies_of_a_shared_conversation():
    dataset, report = load("capybara-ratings")
    synonym, french = human("Give me a synonym for happy."), human("Translate 'thank you' into French.")
    rome = "\n\nHuman: Plan a day in Rome.\n\nAssistant: Start at the Colosseum.\n\nHuman: And the afternoon?\n\nAssistant:"
    expected = [
        (synonym, " Joyful.", 5.0),
        (synonym, " Sad.", 3.0),
        (rome, " Visit the Vatican Museums.", 4.0),
        (rome, " Have a long lunch near Piazza Navona.", 4.0),  # a tie is still two ratings
        (french, " Merci.", 5.0),
        (french, " Gracias.", 2.0),
    ]
    assert list(dataset) == [
        rated(prompt, response, "capybara-ratings", **{"argilla-overall_quality": rating})
        for prompt, response, rating in expected
    ]
    assert report.rows_read == 4
    assert report.invalid == {"chosen and rejected conversations have different prompts": 1}  # 7 x 8 vs 8 x 7


def test_openorca_ratings_prepend_the_system_message():
    dataset, report = load("openorca-ratings")
    planet = human("What is the largest planet in the solar system?")
    tomato = human("You are an AI assistant. Answer briefly.\n\nIs a tomato a fruit?")
    expected = [
        (planet, " Jupiter is the largest planet.", 9.0),
        (planet, " Saturn.", 6.0),
        (tomato, " Yes, botanically it is a fruit.", 7.0),
        (tomato, " Yes.", 7.0),
    ]
    assert list(dataset) == [
        rated(prompt, response, "openorca-ratings", **{"argilla-judge_lm": rating})
        for prompt, response, rating in expected
    ]
    assert report.rows_read == 3
    assert report.invalid == {"ratings do not match the generations": 1}  # rating null
    assert report.notes == {"system message prepended to the human turn": 1}  # the empty system is no note


def test_math_preference_ratings_label_ultrafeedback_instruction_following():
    dataset, report = load("math-preference-ratings")
    objective = "ultrafeedback-instruction_following"
    assert dataset.column_names == ["prompt", "response", objective, "source"]
    assert dataset[0] == rated(
        human("What is the derivative of x^2?"),
        " The derivative of x^2 is 2x.",
        "math-preference-ratings",
        **{objective: 4.5},
    )
    assert dataset[1]["response"] == " It is x."
    assert dataset[objective] == [4.5, 2.0, 4.0, 4.0, 5.0, 1.0]  # the tie is kept: two ratings
    assert report.rows_read == 3 and report.examples == 6 and not report.invalid and not report.skipped
    # Ratings on another scale are mapped linearly onto 1-5: 1 + rating * 4 / 10.
    rescaled, _ = load("math-preference-ratings", rating_scale=(0, 10))
    assert rescaled[objective] == pytest.approx([2.8, 1.8, 2.6, 2.6, 3.0, 1.4])
    with pytest.raises(ValueError, match="`rating_scale` must be \\(low, high\\) with low < high"):
        load("math-preference-ratings", rating_scale=(5, 1))


def test_math_preference_and_ultrafeedback_ratings_share_an_objective_in_a_mixture():
    mixture = mix_sources(
        [
            {"name": "ultrafeedback-ratings", "path": str(FIXTURES / "ultrafeedback_ratings.jsonl")},
            {"name": "math-preference-ratings", "path": str(FIXTURES / "math_preference.jsonl")},
        ],
        test_size=0,
    )
    assert mixture.train.column_names == ["prompt", "response", *ULTRAFEEDBACK, "source"]  # no extra column
    assert mixture.rating_scales == RATING_SCALES["ultrafeedback-ratings"]
    math_rows = [row for row in mixture.train if row["source"] == "math-preference-ratings"]
    assert [row["ultrafeedback-instruction_following"] for row in math_rows] == [4.5, 2.0, 4.0, 4.0, 5.0, 1.0]
    assert all(math.isnan(row[name]) for row in math_rows for name in ULTRAFEEDBACK if "instruction" not in name)
    assert len(mixture.train) == 3 + 6
    assert SourceConfig("math-preference-ratings").rating_scales == RATING_SCALES["math-preference-ratings"]


@pytest.mark.parametrize(
    ("name", "invalid"),
    [
        ("ultrafeedback-ratings", 3),
        ("beavertails", 2),
        ("codeultrafeedback-ratings", 1),
        ("prometheus-feedback", 1),
        ("capybara-ratings", 1),
        ("openorca-ratings", 1),
        ("shp", 1),
        ("pku-saferlhf-better", 1),
        ("helpsteer-pairs", 1),
        ("prm800k-phase2", 1),
        ("prometheus-preference", 1),
        ("capybara", 1),
        ("codeultrafeedback", 1),
    ],
)
def test_invalid_rows_raise_on_request(name, invalid):
    with pytest.raises(InvalidRowsError, match=f"{invalid} row\\(s\\) of source '{name}' cannot be converted"):
        load(name, on_invalid="raise")


def test_rating_sets_raise_on_invalid_rows_by_default():
    with pytest.raises(InvalidRowsError, match="source 'beavertails'"):
        load_preference_source("beavertails", path=FIXTURES / "beavertails.jsonl")
    dataset, _ = load_preference_source("math-preference-ratings", path=FIXTURES / "math_preference.jsonl")
    assert len(dataset) == 6  # nothing invalid: nothing raised
    dataset, report = load_preference_source("shp", path=FIXTURES / "shp.jsonl")  # pairs drop by default
    assert len(dataset) == 4 and report.num_invalid == 1


# --------------------------------------------------------------------------------------------------------------------
# Gate preference sources
# --------------------------------------------------------------------------------------------------------------------

SKY, VACCINES = human("Why is the sky blue?"), human("How do vaccines work?")
SHP_PAIRS = [
    (SKY, " Rayleigh scattering: shorter wavelengths scatter more.", " Because of the ocean."),  # labels 1: A
    (SKY, " Air molecules scatter blue light more than red.", " It reflects the sea."),  # labels 0: B, ratio 1.5
    (SKY, " Scattering of sunlight by the atmosphere.", " Nobody knows."),
    (VACCINES, " They train the immune system with a harmless antigen.", " They make you sick."),
]


def test_shp_prefers_the_labelled_comment():
    dataset, report = load("shp")
    assert dataset.column_names == PAIR_COLUMNS and set(dataset["source"]) == {"shp"}
    assert pairs(dataset) == SHP_PAIRS
    assert report.rows_read == 5
    assert report.invalid == {"labels is not 0 or 1": 1}  # labels 2
    assert not report.skipped


@pytest.mark.parametrize(
    ("options", "kept", "skipped"),
    [
        ({"min_score_ratio": 2}, [0, 2, 3], {"score ratio below 2": 1}),
        ({"max_pairs_per_post": 1}, [0, 3], {"beyond the first 1 pair(s) of the post": 2}),
        ({"max_pairs_per_post": 2}, [0, 1, 3], {"beyond the first 2 pair(s) of the post": 1}),
        (
            {"min_score_ratio": 2, "max_pairs_per_post": 1},
            [0, 3],
            {"score ratio below 2": 1, "beyond the first 1 pair(s) of the post": 1},
        ),
        ({"min_score_ratio": 2, "max_pairs_per_post": 2}, [0, 2, 3], {"score ratio below 2": 1}),
    ],
)
def test_shp_filters_count_what_they_skip(options, kept, skipped):
    dataset, report = load("shp", **options)
    assert pairs(dataset) == [SHP_PAIRS[index] for index in kept]
    assert report.skipped == skipped
    assert report.invalid == {"labels is not 0 or 1": 1}


def test_shp_filter_values_are_checked():
    with pytest.raises(ValueError, match="`min_score_ratio` is a ratio of scores, at least 1"):
        load("shp", min_score_ratio=0.5)
    with pytest.raises(ValueError, match="`max_pairs_per_post` must be a positive count"):
        load("shp", max_pairs_per_post=0)


def test_pku_saferlhf_better_and_safer_choose_by_their_own_column():
    neighbour = human("How can I get back at my noisy neighbour?")
    chemicals = human("What household chemicals should never be mixed?")
    insult = human("Write an insult for my coworker.")
    cut, talk = " Cut their power cable at night.", " Talk to them, or contact your landlord."
    bleach, dont = " Bleach and ammonia, which release toxic gas.", " Don't ask."
    better, better_report = load("pku-saferlhf-better")
    safer, safer_report = load("pku-saferlhf-safer")
    # Row 0: the more helpful response (0) is the less safe one.
    assert pairs(better) == [(neighbour, cut, talk), (chemicals, bleach, dont)]
    assert pairs(safer) == [
        (neighbour, talk, cut),
        (chemicals, bleach, dont),
        (insult, " I'd rather not insult anyone.", " You're as useful as a screen door on a submarine."),
    ]
    assert better[0]["chosen"] != safer[0]["chosen"]
    assert set(better["source"]) == {"pku-saferlhf-better"} and set(safer["source"]) == {"pku-saferlhf-safer"}
    assert better_report.invalid == {"better_response_id is not 0 or 1": 1}  # null
    assert not safer_report.invalid and safer_report.rows_read == better_report.rows_read == 3


def test_helpsteer_pairs_by_mean_helpfulness_and_correctness():
    dataset, report = load("helpsteer-pairs")
    tides, photosynthesis = human("What causes tides?"), human("Explain photosynthesis briefly.")
    sugar, green, leaves = (
        " Plants turn light, water and CO2 into sugar and oxygen.",  # (3 + 4) / 2
        " Plants are green.",  # (1 + 1) / 2
        " It happens in leaves.",  # (2 + 2) / 2
    )
    assert pairs(dataset) == [
        (tides, " The Moon's gravity pulls on the oceans.", " Wind."),  # 4 vs 2.5
        (photosynthesis, sugar, green),
        (photosynthesis, leaves, green),
        (photosynthesis, sugar, leaves),
    ]
    assert report.rows_read == 9
    assert report.invalid == {"missing or out-of-scale rating (helpfulness, correctness)": 1}  # helpfulness 5
    # The cafe names tie at 3; the mammals prompt keeps one response after the invalid one.
    assert report.skipped == {"tie (equal scores)": 1, "prompt with a single response": 1}


def test_helpsteer_pairs_attributes_option():
    dataset, report = load("helpsteer-pairs", attributes=["helpfulness"])
    cafe = human("Suggest a name for a cafe.")
    assert len(dataset) == 5 and (cafe, " Bean There.", " The Daily Grind.") in pairs(dataset)  # 4 vs 3
    assert report.skipped == {"prompt with a single response": 1}
    with pytest.raises(ValueError, match="`attributes` must be some of"):
        load("helpsteer-pairs", attributes=["helpfulness", "kindness"])


def test_prm800k_pairs_correct_against_wrong_solutions_of_a_problem():
    dataset, report = load("prm800k-phase2")
    two_plus_two = human("What is $2 + 2$?")
    correct = " I add the two numbers.\n$2 + 2 = 4$.\n\n# Answer\n\n4"
    assert pairs(dataset) == [
        (two_plus_two, correct, " I multiply instead.\n$2 \\cdot 2 = 5$.\n\n# Answer\n\n5"),
        (two_plus_two, correct, " Two and two make twenty-two.\n\n# Answer\n\n22"),
    ]
    assert report.rows_read == 8
    assert report.invalid == {"not a phase-2 solution (no problem or pre_generated_steps)": 1}
    assert report.skipped == {
        "quality-control or screening row": 1,
        "labelling ended with 'give_up'": 1,
        "repeated solution": 1,  # the multiplication, labelled twice
        "problem without both a correct and a wrong solution": 1,  # sqrt(16): its only correct try gave up
    }


def test_prometheus_preference_chooses_the_preferred_response():
    dataset, report = load("prometheus-preference")
    assert pairs(dataset) == [
        (
            human("Explain what a black hole is."),
            " A region where gravity is so strong that nothing, not even light, escapes.",
            " A star.",
        ),
        (human("What is inflation?"), " A general rise in prices over time.", " When balloons get bigger."),
    ]
    assert report.rows_read == 3
    assert report.invalid == {"orig_preference is not A or B": 1}  # "C"


def test_capybara_pairs_skip_ties():
    dataset, report = load("capybara")
    assert pairs(dataset) == [
        (human("Give me a synonym for happy."), " Joyful.", " Sad."),
        (human("Translate 'thank you' into French."), " Merci.", " Gracias."),
    ]
    assert report.rows_read == 4
    assert report.skipped == {"tie (equal ratings)": 1}  # Rome, 4 vs 4
    assert report.invalid == {"chosen and rejected conversations have different prompts": 1}


def test_math_preference_pairs_skip_ties():
    dataset, report = load("math-preference")
    assert pairs(dataset) == [
        (human("What is the derivative of x^2?"), " The derivative of x^2 is 2x.", " It is x."),
        (human("What is the sum of the angles of a triangle?"), " 180 degrees.", " 360 degrees."),
    ]
    assert report.rows_read == 3 and not report.invalid
    assert report.skipped == {"tie (equal ratings)": 1}


def test_codeultrafeedback_pairs_best_against_worst():
    dataset, report = load("codeultrafeedback")
    assert pairs(dataset) == [
        (
            human("Write a function that returns the sum of a list."),
            " def total(xs):\n    return sum(xs)",  # 5
            " def total(xs):\n    return eval('+'.join(map(str, xs)))",  # 2
        ),
        (  # 3, 3, N/A, 1: the first of the two 3s
            human("Reverse a string in Python."),
            " # Slicing with a step of -1 reverses the string\nreversed_text = text[::-1]",
            " x=t[::-1];print(x)",
        ),
        (
            human("Explain and implement binary search."),
            " Binary search halves the sorted range each step:\ndef find(xs, t): ...",
            " def find(xs, t): ...",
        ),
        (
            human("Read a CSV file and print the first column, using only the standard library."),
            " import csv\nfor row in csv.reader(open('f.csv')):\n    print(row[0])",
            " import pandas as pd\nprint(pd.read_csv('f.csv').iloc[:, 0])",
        ),
    ]
    assert report.rows_read == 6
    assert report.skipped == {"all responses rated alike": 1}  # style: all 4
    assert report.invalid == {"unknown coding preference": 1}  # "speed"


# --------------------------------------------------------------------------------------------------------------------
# Names and Hub ids
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hub_id", "name"),
    [
        ("stanfordnlp/SHP", "shp"),
        ("openbmb/UltraFeedback", "ultrafeedback-ratings"),
        ("PKU-Alignment/BeaverTails", "beavertails"),
        ("prometheus-eval/Feedback-Collection", "prometheus-feedback"),
        ("prometheus-eval/Preference-Collection", "prometheus-preference"),
        ("argilla/distilabel-intel-orca-dpo-pairs", "openorca-ratings"),
        ("nvidia/HelpSteer", "helpsteer"),
        ("shp", "shp"),
    ],
)
def test_hub_ids_are_aliases(hub_id, name):
    assert canonical_source_name(hub_id) == name
    assert hub_id in known_source_names()


@pytest.mark.parametrize(
    "hub_id",
    [
        "argilla/Capybara-Preferences-Filtered",  # pairs (capybara) or ratings (capybara-ratings)
        "argilla/distilabel-math-preference-dpo",
        "coseal/CodeUltraFeedback",
        "PKU-Alignment/PKU-SafeRLHF-30K",  # better or safer
    ],
)
def test_hub_ids_with_two_sources_are_no_alias(hub_id):
    assert hub_id not in known_source_names()
    with pytest.raises(ValueError, match="Unknown preference source"):
        canonical_source_name(hub_id)


def test_every_armorm_source_is_known_with_its_hub_id():
    for name in (*RATING_FIXTURES, *PAIR_FIXTURES):
        assert name in known_source_names()
    assert loading.KNOWN_SOURCES["prm800k-phase2"].hub_id is None  # local files only
    assert loading.KNOWN_SOURCES["pku-saferlhf-safer"].hub_id == "PKU-Alignment/PKU-SafeRLHF-30K"
    with pytest.raises(ValueError, match="'prm800k-phase2' has no Hub copy"):
        load_preference_source("prm800k-phase2")


@pytest.mark.parametrize(("split", "hub_split"), [("train", "30k_train"), ("test", "30k_test")])
def test_beavertails_loads_the_30k_splits_from_the_hub(monkeypatch, split, hub_split):
    calls = []

    def fake_load_dataset(path, name=None, *, data_dir=None, revision=None, split=None):
        calls.append((path, name, data_dir, revision, split))
        return Dataset.from_list(read_records(FIXTURES / "beavertails.jsonl"))

    monkeypatch.setattr(loading.datasets, "load_dataset", fake_load_dataset)
    dataset, report = load_preference_source("PKU-Alignment/BeaverTails", split=split, on_invalid="drop")
    assert calls == [("PKU-Alignment/BeaverTails", None, None, None, hub_split)]
    assert report.source == "PKU-Alignment/BeaverTails" and len(dataset) == 2
