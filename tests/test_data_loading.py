"""`load_preference_source`: the registry of known sources, the Hub call, and local files in every supported format."""

import gzip
import json
from pathlib import Path

import pytest
from datasets import Dataset

import trl_more.data.loading as loading
from trl_more.data import InvalidRowsError, known_source_names, load_preference_source, read_records


FIXTURES = Path(__file__).parent / "fixtures"
HH_ROWS = [
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?", "rejected": "\n\nHuman: Hi\n\nAssistant: What?"},
    {"chosen": "\n\nHuman: 2 + 2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2 + 2?\n\nAssistant: 5"},
    {"chosen": "\n\nHuman: no reply", "rejected": "\n\nHuman: no reply"},
]


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown preference source 'hh-helpfull'") as error:
        load_preference_source("hh-helpfull")
    message = str(error.value)
    for name in (
        "hh-helpful",
        "hh-harmless",
        "oasst1",
        "webgpt",
        "summarize",
        "ultrafeedback",
        "helpsteer",
        "topical-chat",
    ):
        assert f"  {name}: " in message
    assert "Anthropic/hh-rlhf" in message and "openai/webgpt_comparisons" in message
    assert {"hh-helpful", "Anthropic/hh-rlhf", "OpenAssistant/oasst1", "nvidia/HelpSteer"} <= set(known_source_names())


def test_unknown_option_names_the_options_of_the_source():
    with pytest.raises(
        ValueError, match=r"Unknown option\(s\) \['language'\] for source 'oasst1'; its options are: languages"
    ):
        load_preference_source("oasst1", FIXTURES / "oasst1_flat.jsonl", language="en")


def test_local_only_source_needs_a_path():
    with pytest.raises(ValueError, match="'topical-chat' has no Hub copy: give the `path`"):
        load_preference_source("topical-chat")


def test_hub_options_cannot_apply_to_a_local_path():
    with pytest.raises(ValueError, match="`data_dir` and `revision` select Hub files"):
        load_preference_source("hh-rlhf", FIXTURES / "helpsteer.jsonl", data_dir="helpful-base")


@pytest.mark.parametrize(
    ("name", "split", "options", "expected_call", "label"),
    [
        ("hh-helpful", "test", {}, ("Anthropic/hh-rlhf", None, "helpful-base", None, "test"), "hh-helpful"),
        (
            "Anthropic/hh-rlhf",
            "train",
            {"data_dir": "helpful-online"},
            ("Anthropic/hh-rlhf", None, "helpful-online", None, "train"),
            "Anthropic/hh-rlhf/helpful-online",
        ),
        ("oasst1", "test", {}, ("OpenAssistant/oasst1", None, None, None, "validation"), "oasst1"),
        (
            "summarize",
            "test",
            {},
            ("openai/summarize_from_feedback", "comparisons", None, "refs/convert/parquet", "validation"),
            "summarize",
        ),
        ("webgpt", "train", {}, ("openai/webgpt_comparisons", None, None, "refs/convert/parquet", "train"), "webgpt"),
        ("ultrafeedback", "test", {}, ("trl-lib/ultrafeedback_binarized", None, None, None, "test"), "ultrafeedback"),
        (  # the fixture has two invalid rows, which rating sets raise on by default
            "nvidia/HelpSteer",
            "test",
            {"on_invalid": "drop"},
            ("nvidia/HelpSteer", None, None, None, "validation"),
            "nvidia/HelpSteer",
        ),
    ],
)
def test_hub_sources_are_loaded_with_datasets_load_dataset(monkeypatch, name, split, options, expected_call, label):
    calls = []
    raw = {
        "Anthropic/hh-rlhf": HH_ROWS[:2],
        "OpenAssistant/oasst1": read_records(FIXTURES / "oasst1_flat.jsonl"),
        "openai/summarize_from_feedback": read_records(FIXTURES / "summarize_comparisons.jsonl"),
        "openai/webgpt_comparisons": read_records(FIXTURES / "webgpt_comparisons.jsonl"),
        "trl-lib/ultrafeedback_binarized": [{"prompt": "Hi", "chosen": "Hello!", "rejected": "What?"}],
        "nvidia/HelpSteer": read_records(FIXTURES / "helpsteer.jsonl"),
    }

    def fake_load_dataset(path, name=None, *, data_dir=None, revision=None, split=None):
        calls.append((path, name, data_dir, revision, split))
        return Dataset.from_list(raw[path])

    monkeypatch.setattr(loading.datasets, "load_dataset", fake_load_dataset)
    dataset, report = load_preference_source(name, split=split, **options)
    assert calls == [expected_call]
    assert report.source == label and set(dataset["source"]) == {label}
    assert report.rows_read == len(raw[expected_call[0]]) and len(dataset) > 0


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".json-lines.json"])
def test_local_files_in_every_supported_format(tmp_path, suffix):
    file = tmp_path / f"hh{suffix}"
    if suffix == ".parquet":
        Dataset.from_list(HH_ROWS).to_parquet(file)
    else:
        lines = suffix in (".jsonl", ".jsonl.gz", ".json-lines.json")
        text = "".join(json.dumps(row) + "\n" for row in HH_ROWS) if lines else json.dumps(HH_ROWS)
        if suffix.endswith(".gz"):
            with gzip.open(file, "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            file.write_text(text, encoding="utf-8")
    dataset, report = load_preference_source("hh-helpful", file)
    assert dataset["prompt"] == ["\n\nHuman: Hi\n\nAssistant:", "\n\nHuman: 2 + 2?\n\nAssistant:"]
    assert dataset["chosen"] == [" Hello! How can I help?", " 4"]
    assert report.rows_read == 3 and report.invalid == {"transcript without '\\n\\nAssistant:'": 1}
    with pytest.raises(InvalidRowsError, match="row 2: chosen='\\\\n\\\\nHuman: no reply'"):
        load_preference_source("hh-helpful", file, on_invalid="raise")


def test_several_files_are_read_in_order(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps(HH_ROWS[1]) + "\n")
    second.write_text(json.dumps(HH_ROWS[0]) + "\n")
    dataset, _ = load_preference_source("hh-helpful", [first, second], source="mine")
    assert dataset["chosen"] == [" 4", " Hello! How can I help?"] and dataset["source"] == ["mine", "mine"]


def test_bad_paths_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"resolved against the current directory, {tmp_path}"):
        read_records("missing.jsonl")
    (tmp_path / "data.tsv").write_text("chosen\trejected\n")
    with pytest.raises(ValueError, match="Unsupported file type: data.tsv. Use .json, .* .csv or .csv.gz"):
        read_records("data.tsv")
    (tmp_path / "object.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="holds a JSON dict; expected a list of records or JSON lines"):
        read_records("object.json")
