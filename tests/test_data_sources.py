"""Every source converter on real data (../shared/data) or on hand-written rows in the exact Hub schema.

The fixtures in tests/fixtures/ reproduce the Hub schemas of WebGPT, Summarize, HelpSteer and flat OASST1, which
have no offline copy; the expected pairs below were worked out by hand from those rows.
"""

import gzip
import json
import math
from pathlib import Path

import pytest

from trl_more.data import (
    ASSISTANT_TAG,
    RATING_SCALES,
    InvalidRowsError,
    convert_helpsteer,
    convert_hh_rlhf,
    convert_oasst,
    convert_summarize,
    convert_topical_chat,
    convert_ultrafeedback,
    convert_webgpt,
    read_records,
)


FIXTURES = Path(__file__).parent / "fixtures"
PAIR_COLUMNS = ["prompt", "chosen", "rejected", "source"]


def read_jsonl_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


# --------------------------------------------------------------------------------------------------------------------
# HH-RLHF (real test splits)
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hh_rows(shared_data):
    return {
        subset: read_jsonl_gz(shared_data / "hh_rlhf" / f"{subset}.test.jsonl.gz")
        for subset in ("helpful-base", "harmless-base")
    }


@pytest.mark.parametrize(
    ("subset", "rows", "pairs", "identical"), [("helpful-base", 2354, 2352, 2), ("harmless-base", 2312, 2312, 0)]
)
def test_hh_counts_on_the_real_test_splits(hh_rows, subset, rows, pairs, identical):
    dataset, report = convert_hh_rlhf(hh_rows[subset], source=subset)
    # Every raw row is read; the only rows not converted are the pairs with identical transcripts, which leaves the
    # test sizes of the MORE paper (helpful 2,352, harmless 2,312).
    assert report.rows_read == rows
    assert report.invalid == ({"chosen identical to rejected": identical} if identical else {})
    assert len(dataset) == report.examples == pairs
    assert dataset.column_names == PAIR_COLUMNS
    assert set(dataset["source"]) == {subset}


@pytest.mark.parametrize("subset", ["helpful-base", "harmless-base"])
def test_hh_prompts_end_with_the_assistant_tag_and_rebuild_the_transcripts(hh_rows, subset):
    raw = [row for row in hh_rows[subset] if row["chosen"] != row["rejected"]]
    dataset, _ = convert_hh_rlhf(raw)
    for row, pair in zip(raw, dataset):
        assert pair["prompt"].endswith(ASSISTANT_TAG)
        assert pair["prompt"].startswith("\n\nHuman:")
        assert pair["prompt"] not in pair["chosen"] and pair["prompt"] not in pair["rejected"]
        assert pair["prompt"] + pair["chosen"] == row["chosen"]
        assert pair["prompt"] + pair["rejected"] == row["rejected"]


def test_hh_pairs_whose_transcripts_continue_differently_use_the_shared_prefix(hh_rows):
    _, report = convert_hh_rlhf(hh_rows["helpful-base"])
    (reason,) = [reason for reason in report.notes if reason.startswith("transcripts continue differently")]
    assert report.notes[reason] == 9
    # Raw row 168: the rejected transcript has an extra ("Humans: ...") turn; the prompt is the shared first question.
    dataset, _ = convert_hh_rlhf([hh_rows["helpful-base"][168]])
    assert dataset[0]["prompt"] == "\n\nHuman: What are some famous world music artists?\n\nAssistant:"
    assert "\n\nAssistant:" in dataset[0]["rejected"]


def test_hh_empty_replies_are_kept_as_annotated_outcomes_or_dropped_on_request(hh_rows):
    harmless = hh_rows["harmless-base"]
    dataset, report = convert_hh_rlhf(harmless)
    assert report.notes["empty reply kept (an annotated outcome)"] == 4
    assert sum(pair["chosen"] == " " for pair in dataset) == 4  # in harmless-base, saying nothing was preferred
    dataset, report = convert_hh_rlhf(harmless, keep_empty_responses=False)
    assert len(dataset) == 2308
    assert report.invalid == {"empty response": 4}


def test_hh_bad_rows_are_counted_with_examples_and_raise_on_request():
    rows = [
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
        {"chosen": "\n\nHuman: Hi there", "rejected": "\n\nHuman: Hi there, friend"},  # no assistant turn
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Same.", "rejected": "\n\nHuman: Hi\n\nAssistant: Same."},
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"},  # different prompts
        {"chosen": None, "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
    ]
    dataset, report = convert_hh_rlhf(rows)
    assert dataset["chosen"] == [" Hello!"] and dataset["rejected"] == [" Go away."]
    assert report.rows_read == 5 and report.num_invalid == 4
    assert report.invalid == {
        "transcript without '\\n\\nAssistant:'": 1,
        "chosen identical to rejected": 1,
        "chosen and rejected share no assistant turn": 1,
        "missing chosen or rejected transcript": 1,
    }
    assert report.samples["transcript without '\\n\\nAssistant:'"][0].startswith("row 1: ")
    assert "row 2" in str(report) and "Hi there" in str(report)
    with pytest.raises(InvalidRowsError, match="4 row\\(s\\) of source 'hh-rlhf' cannot be converted") as error:
        convert_hh_rlhf(rows, on_invalid="raise")
    assert error.value.report.invalid == report.invalid
    with pytest.raises(ValueError, match="Unknown `on_invalid` 'skip'"):
        convert_hh_rlhf(rows, on_invalid="skip")


# --------------------------------------------------------------------------------------------------------------------
# OASST (real nested trees, and flat Hub rows)
# --------------------------------------------------------------------------------------------------------------------


def test_oasst_trees_give_the_754_ranked_sibling_pairs_with_the_lower_rank_chosen(shared_data):
    trees = read_records(shared_data / "oasst" / "en_100_tree.jsonl")
    dataset, report = convert_oasst(trees)
    assert report.rows_read == 100
    assert len(dataset) == 754
    assert report.skipped == {"pair with an unranked reply": 7}  # 761 sibling pairs in the export, 7 unranked
    ranks, texts = {}, {}

    def walk(message, context):
        texts[message["message_id"]] = message["text"]
        for reply in message.get("replies", []):
            if reply["role"] == "assistant":
                ranks[(context, reply["text"].strip())] = reply.get("rank")
            walk(reply, context + (message["text"],))

    for tree in trees:
        walk(tree["prompt"], ())
    by_reply = {text: rank for (_, text), rank in ranks.items()}
    for pair in dataset:
        assert pair["prompt"].startswith("\n\nHuman:") and pair["prompt"].endswith(ASSISTANT_TAG)
        assert by_reply[pair["chosen"].strip()] < by_reply[pair["rejected"].strip()]
    multi_turn = [pair["prompt"] for pair in dataset if pair["prompt"].count(ASSISTANT_TAG) > 1]
    assert multi_turn, "replies deeper in the trees give multi-turn prompts"
    assert all(prompt.count("\n\nHuman:") == prompt.count(ASSISTANT_TAG) for prompt in multi_turn)


def test_oasst_flat_hub_rows():
    rows = read_records(FIXTURES / "oasst1_flat.jsonl")
    dataset, report = convert_oasst(rows)
    assert report.rows_read == 11
    assert list(dataset) == [
        {
            "prompt": "\n\nHuman: How do I boil an egg?\n\nAssistant:",
            "chosen": " Put the egg in boiling water for about eight minutes.",
            "rejected": " Eggs come from chickens.",
            "source": "oasst1",
        },
        {
            "prompt": "\n\nHuman: How do I boil an egg?\n\nAssistant: Put the egg in boiling water for about eight "
            "minutes.\n\nHuman: And for a soft yolk?\n\nAssistant:",
            "chosen": " Six minutes, then cool it in cold water so it stops cooking.",  # rank 0, listed second
            "rejected": " About six minutes.",
            "source": "oasst1",
        },
        {
            "prompt": "\n\nHuman: Wie spät ist es?\n\nAssistant:",
            "chosen": " Ich habe keine Uhr, aber dein Gerät zeigt die Uhrzeit an.",
            "rejected": " Zeit.",
            "source": "oasst1",
        },
    ]
    # a3 is unranked (pairs a1/a3, a2/a3); a4 is deleted (pairs with a1, a2, a3).
    assert report.skipped == {"pair with an unranked reply": 2, "pair with a deleted reply": 3}
    english, report = convert_oasst(rows, languages="en")
    assert len(english) == 2 and report.skipped["language not in ['en']"] == 1


def test_oasst_flat_and_nested_formats_agree(shared_data):
    trees = read_records(shared_data / "oasst" / "en_100_tree.jsonl")[:10]
    flat = []

    def flatten(message, parent_id, tree_id):
        flat.append(
            {
                **{k: v for k, v in message.items() if k != "replies"},
                "parent_id": parent_id,
                "message_tree_id": tree_id,
            }
        )
        for reply in message.get("replies", []):
            flatten(reply, message["message_id"], tree_id)

    for tree in trees:
        flatten(tree["prompt"], None, tree["message_tree_id"])
    nested_pairs, _ = convert_oasst(trees)
    flat_pairs, _ = convert_oasst(flat)
    assert len(nested_pairs) > 0
    assert sorted(map(tuple, nested_pairs.to_pandas().values)) == sorted(map(tuple, flat_pairs.to_pandas().values))


def test_oasst_missing_ancestor_is_invalid():
    rows = read_records(FIXTURES / "oasst1_flat.jsonl")
    without_root = [row for row in rows if row["message_id"] != "p1"]
    dataset, report = convert_oasst(without_root)
    # p2's replies need p1 (the root) for their context; p1's own replies lose their parent and form no pair.
    assert report.invalid == {"conversation misses an ancestor message": 1}
    assert dataset["rejected"] == [" Zeit."]


# --------------------------------------------------------------------------------------------------------------------
# WebGPT and Summarize (Hub-schema fixtures)
# --------------------------------------------------------------------------------------------------------------------


def test_webgpt_higher_score_wins_ties_dropped_and_counted():
    rows = read_records(FIXTURES / "webgpt_comparisons.jsonl")
    dataset, report = convert_webgpt(rows)
    assert dataset["prompt"] == [
        "\n\nHuman: Why is the sky blue?\n\nAssistant:",
        "\n\nHuman: How do vaccines work?\n\nAssistant:",
    ]
    assert dataset["chosen"] == [
        " Sunlight scatters off air molecules, and blue light scatters the most [1].",
        " They show the immune system a harmless piece of a germ, so it learns to recognise it [1].",
    ]
    assert dataset["rejected"] == [" Because the ocean reflects onto it.", " They make you sick on purpose."]
    assert report.skipped == {"tie (equal scores)": 1}
    assert report.invalid == {"empty response": 1}  # row 3: answer_1 is empty
    assert report.samples["empty response"][0].startswith("row 3: ")


def test_webgpt_ties_kept_both_ways():
    rows = read_records(FIXTURES / "webgpt_comparisons.jsonl")
    dataset, report = convert_webgpt(rows, ties="both")
    tie = [pair for pair in dataset if "Australia" in pair["prompt"]]
    assert [(pair["chosen"], pair["rejected"]) for pair in tie] == [
        (" Canberra is the capital of Australia [1].", " The capital is Canberra [1]."),
        (" The capital is Canberra [1].", " Canberra is the capital of Australia [1]."),
    ]
    assert len(dataset) == 4 and not report.skipped
    with pytest.raises(ValueError, match="Unknown `ties` policy 'keep'"):
        convert_webgpt(rows, ties="keep")


def test_summarize_choice_wins_for_posts_and_articles():
    rows = read_records(FIXTURES / "summarize_comparisons.jsonl")
    dataset, report = convert_summarize(rows)
    assert dataset[0] == {
        "prompt": "\n\nHuman: Write a TL;DR summary of this Reddit post.\n\nSUBREDDIT: r/relationships\n"
        "TITLE: Roommate ignores our chore rota\nPOST: My roommate never does the dishes and I am tired of it. We "
        "agreed on a rota.\n\nAssistant:",
        "chosen": " Roommate ignores the dish rota we agreed on.",
        "rejected": " I like dishes.",
        "source": "summarize",
    }
    assert dataset[1]["chosen"] == " Finished my first marathon in four hours after six months of training."
    assert dataset[1]["rejected"] == " Ran."
    assert dataset[2]["prompt"] == (
        "\n\nHuman: Write a short summary of this news article.\n\nTITLE: Storm hits coast\nARTICLE: A strong storm "
        "hit the coast on Monday, cutting power to thousands of homes.\n\nAssistant:"
    )
    assert len(dataset) == 3
    assert report.invalid == {"chosen identical to rejected": 1}


def test_summarize_malformed_rows_are_invalid():
    rows = [
        {"info": {"post": None, "article": None, "title": "t", "subreddit": "s"}, "summaries": [], "choice": 0},
        {"info": {"post": "p", "title": "t", "subreddit": "s"}, "summaries": [{"text": "a"}], "choice": 0},
        {
            "info": {"post": "p", "title": "t", "subreddit": "s"},
            "summaries": [{"text": "a"}, {"text": "b"}],
            "choice": 2,
        },
    ]
    # Rows all invalid: even with on_invalid="drop" this is an error (an empty source is never returned silently).
    with pytest.raises(InvalidRowsError, match="No row could be converted; the rows have the columns") as raised:
        convert_summarize(rows + [rows[0]], on_invalid="drop")
    assert raised.value.report.invalid == {
        "no post or article to summarise": 2,
        "expected two summaries and a choice of 0 or 1": 2,
    }
    valid = {"info": {"post": "p", "title": "t", "subreddit": "s"}, "summaries": [{"text": "a"}, {"text": "b"}]}
    dataset, report = convert_summarize([*rows, {**valid, "choice": 1}])
    assert len(dataset) == 1 and dataset.column_names == PAIR_COLUMNS
    assert report.invalid == {"no post or article to summarise": 1, "expected two summaries and a choice of 0 or 1": 2}


# --------------------------------------------------------------------------------------------------------------------
# UltraFeedback (real plain-text sample, and the conversational Hub layouts)
# --------------------------------------------------------------------------------------------------------------------


def test_ultrafeedback_sample_loads_with_the_right_columns(shared_data):
    rows = read_records(shared_data / "ultrafeedback" / "train_clean.jsonl")
    dataset, report = convert_ultrafeedback(rows)
    assert dataset.column_names == PAIR_COLUMNS
    assert report.rows_read == 1000
    # 4 rows have identical chosen and rejected replies, 2 an empty (whitespace-only) reply.
    assert report.invalid == {"chosen identical to rejected": 4, "empty response": 2}
    assert len(dataset) == 994
    first = rows[0]
    assert dataset[0]["prompt"] == f"\n\nHuman: {first['prompt'].strip()}\n\nAssistant:"
    assert dataset[0]["chosen"] == f" {first['chosen'].strip()}"


def test_ultrafeedback_conversational_layouts():
    user = {"role": "user", "content": "What is 2 + 2?"}
    good, bad = {"role": "assistant", "content": "4"}, {"role": "assistant", "content": "5"}
    rows = [
        {"chosen": [user, good], "rejected": [user, bad], "score_chosen": 9.0, "score_rejected": 2.0},  # trl-lib
        {"prompt": "What is 2 + 2?", "prompt_id": "x", "chosen": [user, good], "rejected": [user, bad]},  # H4
        {"prompt": [user], "chosen": [good], "rejected": [bad]},  # TRL conversational explicit prompt
        {"chosen": [user, good], "rejected": [{"role": "user", "content": "What is 3 + 3?"}, bad]},
        {
            "chosen": [{"role": "system", "content": "Be brief."}, user, good],
            "rejected": [{"role": "system", "content": "Be brief."}, user, bad],
        },
    ]
    dataset, report = convert_ultrafeedback(rows)
    expected = {
        "prompt": "\n\nHuman: What is 2 + 2?\n\nAssistant:",
        "chosen": " 4",
        "rejected": " 5",
        "source": "ultrafeedback",
    }
    assert list(dataset) == [expected] * 3
    assert report.invalid["chosen and rejected conversations have different prompts"] == 1
    assert report.num_invalid == 2  # the system message has no place in the transcript format


# --------------------------------------------------------------------------------------------------------------------
# Rating sets
# --------------------------------------------------------------------------------------------------------------------


def test_topical_chat_loads_with_the_right_columns_and_scales(shared_data):
    rows = json.loads((shared_data / "topical_chat" / "topical_chat.json").read_text())
    dataset, report = convert_topical_chat(rows)
    objectives = list(RATING_SCALES["topical-chat"])
    assert dataset.column_names == ["prompt", "response", *objectives, "source"]
    assert len(dataset) == report.rows_read == 360 and not report.invalid
    for name, (low, high) in RATING_SCALES["topical-chat"].items():
        values = dataset[name]
        assert min(values) == pytest.approx(low) and max(values) == pytest.approx(high)
    row, raw = dataset[0], rows[0]
    assert row["topical-chat-overall"] == raw["scores"]["overall"]
    assert row["response"] == f" {raw['system_output'].strip()}"
    last_turn = raw["source"].strip().split("\n")[-1].strip()
    assert row["prompt"].startswith(f"Knowledge: {raw['context'].strip()}\n\nHuman: ")
    assert row["prompt"].endswith(f"\n\nHuman: {last_turn}{ASSISTANT_TAG}")
    without_knowledge, _ = convert_topical_chat(rows[:1], include_knowledge=False)
    assert without_knowledge[0]["prompt"].startswith("\n\nHuman: ")


def test_helpsteer_ratings_keep_their_raw_scale_and_bad_rows_are_counted():
    rows = read_records(FIXTURES / "helpsteer.jsonl")
    with pytest.raises(InvalidRowsError, match=r"1 x rating outside its scale \[0.0, 4.0\]"):
        convert_helpsteer(rows)  # ratings raise by default: an off-scale value usually means a wrong scale
    dataset, report = convert_helpsteer(rows, on_invalid="drop")
    assert dataset.column_names == ["prompt", "response", *RATING_SCALES["helpsteer"], "source"]
    assert RATING_SCALES["helpsteer"]["helpsteer-helpfulness"] == (0.0, 4.0)
    assert dataset[0] == {
        "prompt": "\n\nHuman: What is the boiling point of water at sea level?\n\nAssistant:",
        "response": " Water boils at 100 degrees Celsius at sea level.",
        "helpsteer-helpfulness": 4.0,
        "helpsteer-correctness": 4.0,
        "helpsteer-coherence": 4.0,
        "helpsteer-complexity": 1.0,
        "helpsteer-verbosity": 1.0,
        "source": "helpsteer",
    }
    assert len(dataset) == 2
    assert report.invalid == {"rating outside its scale [0.0, 4.0]": 1, "empty response": 1}
    missing = {**rows[0], "verbosity": None}
    dataset, _ = convert_helpsteer([missing])
    assert math.isnan(dataset[0]["helpsteer-verbosity"]) and dataset[0]["helpsteer-helpfulness"] == 4.0
