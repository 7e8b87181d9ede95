"""A user's own preference data in TRL's formats as a source: files, Hub datasets, `source` columns, names, errors,
and `trl-more reward --dataset_name` (issue 34, item 3)."""

import gzip
import json
import math
from collections import Counter
from pathlib import Path

import pandas
import pytest
from datasets import Dataset, DatasetDict

import trl_more.data.loading as loading
from trl_more import MORERewardConfig, MORERewardTrainer
from trl_more.cli import parse_subcommand_arguments
from trl_more.cli import reward as reward_cli
from trl_more.cli.evaluate import load_evaluation_sources as evaluate_sources
from trl_more.data import InvalidRowsError, SourceConfig, load_trl_preferences, mix_sources
from trl_more.testing import (
    PREFERENCE_FORMATS,
    preference_dataset_in_format,
    save_tiny_reward_model,
    tiny_reward_model,
    tiny_tokenizer,
)


FIXTURES = Path(__file__).parent / "fixtures"
# Texts with the characters a file format could mangle: leading spaces, commas, quotes, line breaks.
PAIRS = [
    ("What colour is the sky on a clear day?", " It is blue.", ' It is green, "obviously".'),
    ("Name a prime number.", " 7 is prime.", " 8 is prime.\nTrust me."),
    ("How do I boil an egg?", " Put it in boiling water for 8 minutes.", " Microwave it whole."),
    ("Translate 'chat' from French.", " Cat.", " Chat."),
    ("Is the Earth flat?", " No, it is roughly a sphere.", " Yes, it is flat."),
    ("What is 12 * 12?", " 144.", " 124."),
    ("Give me a synonym of 'happy'.", " Glad.", " Sad."),
    ("Who wrote Hamlet?", " William Shakespeare.", " Charles Dickens."),
]


RENDERED = "conversation rendered as a transcript, to mix with plain-text sources"  # the note in the report


def write_rows(rows: list[dict], path: Path) -> Path:
    """`rows` as the file type of `path`: parquet, csv or JSON lines (a `.json` name too), gzipped when it ends in .gz."""
    if path.name.endswith(".parquet"):
        Dataset.from_list(rows).to_parquet(path)
        return path
    if ".csv" in path.name:
        text = pandas.DataFrame(rows).to_csv(index=False)
    else:
        text = "".join(json.dumps(row) + "\n" for row in rows)
    with (gzip.open if path.name.endswith(".gz") else open)(path, "wt", encoding="utf-8") as handle:
        handle.write(text)
    return path


def user_rows(format_name: str, **columns: list) -> list[dict]:
    """`PAIRS` as rows of one of TRL's preference formats, with extra `columns`."""
    rows = preference_dataset_in_format(PAIRS, format_name).to_list()
    return [{**row, **{name: values[index] for name, values in columns.items()}} for index, row in enumerate(rows)]


def full_texts(dataset: Dataset) -> list[tuple[str, str]]:
    """Every pair as TRL's reward trainer reads it, `prompt + chosen` and `prompt + rejected`, sorted."""
    return sorted((row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]) for row in dataset)


def of_source(dataset: Dataset, label: str) -> Dataset:
    return dataset.filter(lambda row: row["source"] == label)


def train_a_few_steps(tmp_path: Path, train_dataset, batch_size: int = 2) -> MORERewardTrainer:
    tokenizer = tiny_tokenizer()
    args = MORERewardConfig(
        str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=batch_size,
        max_length=64,
        truncation_mode="keep_end",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
    )
    trainer = MORERewardTrainer(
        tiny_reward_model("qwen2", tokenizer), args, train_dataset=train_dataset, processing_class=tokenizer
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)
    return trainer


@pytest.fixture(scope="module")
def hh_helpful(shared_data):
    """The known source of the mixtures: HH-RLHF helpful-base, 8 of its pairs."""
    return {
        "name": "hh-helpful",
        "path": str(shared_data / "hh_rlhf" / "helpful-base.test.jsonl.gz"),
        "max_examples": 8,
    }


# --------------------------------------------------------------------------------------------------------------------
# A file of one's own, in each of TRL's formats, trains alongside a known source, its rows kept
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format_name", "suffix"),
    [
        *((format_name, ".jsonl") for format_name in PREFERENCE_FORMATS),
        ("standard_preference", ".jsonl.gz"),
        ("conversational_preference", ".parquet"),
        ("standard_implicit_prompt_preference", ".csv"),
        ("standard_preference", ".csv.gz"),
        ("conversational_implicit_prompt_preference", ".json.gz"),
    ],
)
def test_a_user_file_in_any_trl_format_trains_alongside_a_known_source_with_its_rows_kept(
    tmp_path, hh_helpful, format_name, suffix
):
    margins = [0.25 * index for index in range(len(PAIRS))]
    rows = user_rows(format_name, margin=margins)
    path = write_rows(rows, tmp_path / f"my_pairs{suffix}")
    mixture = mix_sources([{"name": "my-data", "path": str(path)}, hh_helpful], test_size=0.25, seed=0)

    mine = [of_source(split, "my-data") for split in (mixture.train, mixture.test)]
    assert [len(split) for split in mine] == [6, 2]  # every row, split 6 / 2
    kept = Dataset.from_list(mine[0].to_list() + mine[1].to_list())
    if format_name.startswith("conversational"):  # mixed with plain-text HH: rendered in its transcript format
        expected = [
            (f"\n\nHuman: {p}\n\nAssistant: {c.strip()}", f"\n\nHuman: {p}\n\nAssistant: {r.strip()}")
            for p, c, r in PAIRS
        ]
        assert dict(mixture.reports["my-data"].notes) == {RENDERED: 8}
    else:  # the text TRL's trainer reads is the file's, character for character
        expected = [(p + c, p + r) for p, c, r in PAIRS]
    assert full_texts(kept) == sorted(expected)
    if format_name == "standard_preference":  # an explicit prompt: the very columns of the file
        assert sorted(zip(kept["prompt"], kept["chosen"], kept["rejected"])) == sorted(PAIRS)
    assert sorted(kept["margin"]) == margins  # kept; the known source, which has none, gets margin 0
    assert set(of_source(mixture.train, "hh-helpful")["margin"]) == {0.0}
    summary = {row.source: row for row in mixture.summary.sources}
    assert (summary["my-data"].rows_read, summary["my-data"].invalid, summary["my-data"].examples) == (8, 0, 8)

    trainer = train_a_few_steps(tmp_path, mixture.train)
    assert trainer.sources == ["my-data", "hh-helpful"]


def test_conversational_sources_keep_their_messages_when_no_plain_text_source_is_mixed_in(tmp_path):
    first = write_rows(user_rows("conversational_preference"), tmp_path / "first.jsonl")
    second = write_rows(user_rows("conversational_implicit_prompt_preference"), tmp_path / "second.parquet")
    mixture = mix_sources(
        [{"name": "first", "path": str(first)}, {"name": "second", "path": str(second)}], test_size=0
    )

    expected = preference_dataset_in_format(PAIRS, "conversational_preference").to_list()
    for label in ("first", "second"):  # the implicit prompt split off: the messages both conversations start with
        kept = of_source(mixture.train, label).remove_columns("source").to_list()
        assert kept == expected
    assert "prompt chars" in str(mixture.summary) and mixture.summary.sources[0].mean_chosen_chars > 0
    assert train_a_few_steps(tmp_path, mixture.train).sources == ["first", "second"]  # the tokenizer's chat template


# --------------------------------------------------------------------------------------------------------------------
# A `source` column: one source per value
# --------------------------------------------------------------------------------------------------------------------


DOMAINS = ["science", "maths", "science", "cooking", "maths", "cooking", "science", "maths"]


def test_a_source_column_gives_one_source_per_value(tmp_path, hh_helpful):
    path = write_rows(user_rows("standard_preference", source=DOMAINS), tmp_path / "domains.jsonl")
    mixture = mix_sources([{"name": "my-data", "path": str(path), "test_size": 1}, hh_helpful], test_size=0.25)

    assert [row.source for row in mixture.summary.sources] == ["science", "maths", "cooking", "hh-helpful"]
    assert [(row.rows_read, row.train, row.test) for row in mixture.summary.sources[:3]] == [
        (3, 2, 1),
        (3, 2, 1),
        (2, 1, 1),
    ]
    assert set(mixture.reports) == {"science", "maths", "cooking", "hh-helpful"}
    assert list(mixture.test_by_source()) == ["science", "maths", "cooking", "hh-helpful"]
    for domain in ("science", "maths", "cooking"):  # each value's rows, exactly
        rows = [pair for pair, value in zip(PAIRS, DOMAINS) if value == domain]
        kept = of_source(mixture.train, domain).to_list() + of_source(mixture.test, domain).to_list()
        assert sorted((row["prompt"], row["chosen"], row["rejected"]) for row in kept) == sorted(rows)

    capped = mix_sources([{"name": "my-data", "path": str(path), "max_examples": 2}], test_size=0)
    assert Counter(capped.train["source"]) == {"science": 2, "maths": 2, "cooking": 2}  # per source

    trainer = train_a_few_steps(tmp_path, mixture.train, batch_size=4)
    assert trainer.sources == ["science", "maths", "cooking", "hh-helpful"]


def test_a_source_column_with_a_label_a_held_out_file_or_another_name(tmp_path):
    path = write_rows(user_rows("standard_preference", source=DOMAINS), tmp_path / "domains.jsonl")
    with pytest.raises(
        ValueError,
        match=r"has the label 'mine', but its data names its sources in its `source` column "
        r"\(science, maths, cooking\). Remove `label`.*options: \{source_column: null\}",
    ):
        mix_sources([{"name": "my-data", "path": str(path), "label": "mine"}])
    one = mix_sources([{"name": "my-data", "path": str(path), "label": "mine", "options": {"source_column": None}}])
    assert set(one.train["source"]) == {"mine"} and len(one.train) + len(one.test) == 8

    renamed = write_rows(user_rows("standard_preference", domain=DOMAINS), tmp_path / "renamed.csv")
    by_domain = mix_sources([{"name": "my-data", "path": str(renamed), "options": {"source_column": "domain"}}])
    assert [row.source for row in by_domain.summary.sources] == ["science", "maths", "cooking"]
    with pytest.raises(
        ValueError,
        match=r"Unknown option\(s\) \['column'\] for source 'my-data'; its options are: "
        "source_column",
    ):
        mix_sources([{"name": "my-data", "path": str(renamed), "options": {"column": "domain"}}])

    held_out = write_rows(user_rows("standard_preference", source=DOMAINS)[:6], tmp_path / "held_out.jsonl")
    split = mix_sources([{"name": "my-data", "path": str(path), "test_path": str(held_out)}])
    assert Counter(split.test["source"]) == {"science": 2, "maths": 2, "cooking": 2}
    assert Counter(split.train["source"]) == {"science": 3, "maths": 3, "cooking": 2}  # nothing carved out
    partial = write_rows(user_rows("standard_preference", source=DOMAINS)[:2], tmp_path / "partial.jsonl")
    with pytest.raises(
        ValueError,
        match=r"held-out split has the sources \['maths', 'science'\] but its training "
        r"data \['cooking', 'maths', 'science'\]",
    ):
        mix_sources([{"name": "my-data", "path": str(path), "test_path": str(partial)}])
    with pytest.raises(ValueError, match=r"Several sources are labelled \['science'\]"):
        mix_sources(
            [
                {"name": "my-data", "path": str(path)},
                {"name": "science", "path": str(path), "options": {"source_column": None}},
            ]
        )


# --------------------------------------------------------------------------------------------------------------------
# Known names, misspellings, unknown names
# --------------------------------------------------------------------------------------------------------------------


def test_known_names_misspellings_and_unknown_names(tmp_path, caplog, hh_helpful):
    path = write_rows(user_rows("standard_preference"), tmp_path / "pairs.jsonl")
    # Without data, a name that is no known source is a misspelling: the error lists the known ones and the closest.
    with pytest.raises(
        ValueError, match=r"Unknown preference source 'hh-helpfull'. Did you mean 'hh-helpful'\? Known"
    ):
        SourceConfig("hh-helpfull")
    with pytest.raises(
        ValueError, match=r"(?s)Unknown preference source 'my-data'.*\{name: my-data, path: my_pairs.jsonl\}"
    ):
        mix_sources(["my-data"])
    # With data, any other name is the user's own data; one close to a known name is read so, with a warning.
    with caplog.at_level("WARNING"):
        mixture = mix_sources([{"name": "hh-helpfull", "path": str(path)}], test_size=0)
    assert len(mixture.train) == 8 and "'hh-helpfull' is not a known source name" in caplog.text
    assert "Did you mean 'hh-helpful'?" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        mix_sources([{"name": "my-data", "path": str(path)}])
    assert "not a known source" not in caplog.text
    # A known source's raw file under a misspelled name: the warning says which source was meant, the error why.
    with caplog.at_level("WARNING"), pytest.raises(ValueError, match="none of TRL's preference formats: its columns"):
        mix_sources([{"name": "oasst", "path": str(FIXTURES / "oasst1_flat.jsonl")}])
    assert "Did you mean 'oasst1'?" in caplog.text
    # A known name is always that source, read by its converter: HH transcripts become prompt + reply.
    known = mix_sources([hh_helpful], test_size=0)
    assert all(prompt.endswith("\n\nAssistant:") for prompt in known.train["prompt"])
    with pytest.raises(ValueError, match="'hh-helpful' is a known source, read from its raw schema"):
        load_trl_preferences("hh-helpful", path)


def test_a_hub_dataset_in_trl_format_is_read_with_its_configuration_and_splits(monkeypatch, caplog):
    calls = []
    splits = {
        "train": user_rows("conversational_implicit_prompt_preference"),
        "test": user_rows("conversational_implicit_prompt_preference")[:2],
    }

    def fake_load_dataset(path, name=None, *, data_dir=None, revision=None, split=None):
        calls.append((path, name, split))
        return Dataset.from_list(splits[split])

    monkeypatch.setattr(loading.datasets, "load_dataset", fake_load_dataset)
    mixture = mix_sources([{"name": "someone/pairs", "hub_config": "en", "test_split": "test"}])
    assert calls == [("someone/pairs", "en", "train"), ("someone/pairs", "en", "test")]
    assert (len(mixture.train), len(mixture.test)) == (8, 2) and set(mixture.train["source"]) == {"someone/pairs"}
    with caplog.at_level("WARNING"):  # the Hub dataset of two known sources, read as it is: said
        mix_sources(["PKU-Alignment/PKU-SafeRLHF-30K"], test_size=0)
    assert "Did you mean 'pku-saferlhf-better' or 'pku-saferlhf-safer'?" in caplog.text
    with pytest.raises(ValueError, match="`hub_config` selects the configuration of a Hub dataset of your own"):
        SourceConfig("webgpt", hub_config="en")


# --------------------------------------------------------------------------------------------------------------------
# Bad files: clear errors that name the file and the line or column; nothing dropped unsaid
# --------------------------------------------------------------------------------------------------------------------


def test_bad_files_are_clear_errors_naming_the_file_and_the_line_or_column(tmp_path):
    rows = user_rows("standard_preference")
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(json.dumps(rows[0]) + "\n" + '{"prompt": "Hi", "chosen": " Hello"\n')
    with pytest.raises(ValueError, match=rf"{malformed}, line 2: not a JSON record"):
        mix_sources([{"name": "my-data", "path": str(malformed)}])
    for empty in (tmp_path / "empty.jsonl", tmp_path / "header_only.csv"):
        empty.write_text("prompt,chosen,rejected\n" if empty.suffix == ".csv" else "")
        with pytest.raises(ValueError, match=rf"{empty} holds no records"):
            mix_sources([{"name": "my-data", "path": str(empty)}])
    no_rejected = write_rows([{key: row[key] for key in ("prompt", "chosen")} for row in rows], tmp_path / "a.csv")
    with pytest.raises(
        ValueError, match=rf"{no_rejected} has no `rejected` column \(its columns: \['chosen', 'prompt'\]\)"
    ):
        mix_sources([{"name": "my-data", "path": str(no_rejected)}])
    ratings = write_rows([{"prompt": "Hi", "response": "Hello", "score": 3}], tmp_path / "ratings.jsonl")
    with pytest.raises(
        ValueError,
        match=rf"{ratings} is in none of TRL's preference formats: its columns are "
        r"\['prompt', 'response', 'score'\], and the formats read are `prompt`, `chosen`, `rejected`",
    ):
        mix_sources([{"name": "my-data", "path": str(ratings)}])
    # The evaluation reads such files with the same reader: the same errors.
    with pytest.raises(ValueError, match=rf"{no_rejected} has no `rejected` column"):
        evaluate_sources([f"mine={no_rejected}"], split="test")


def test_rows_that_are_not_pairs_are_counted_and_named_and_a_source_value_is_required(tmp_path, caplog):
    rows = user_rows("standard_preference", margin=[1.0] * len(PAIRS))
    rows[2]["rejected"], rows[5]["margin"] = None, "high"
    path = write_rows(rows, tmp_path / "pairs.jsonl")
    with caplog.at_level("WARNING"):
        converted = load_trl_preferences("my-data", path)["my-data"]
    assert len(converted.dataset) == 6 and "Dropped 2 row(s)" in caplog.text
    assert converted.report.invalid == {
        "`rejected` missing or not text": 1,
        "`margin` missing or not a finite number": 1,
    }
    with pytest.raises(InvalidRowsError, match="row 2: prompt='How do I boil an egg\\?'.*rejected=None"):
        mix_sources([{"name": "my-data", "path": str(path)}], on_invalid="raise")

    unlabelled = write_rows(
        user_rows("standard_preference", source=[*DOMAINS[:3], "", *DOMAINS[4:]]), tmp_path / "s.jsonl"
    )
    with pytest.raises(ValueError, match=rf"{unlabelled}, row 3: no source in the `source` column \(got ''\)"):
        mix_sources([{"name": "my-data", "path": str(unlabelled)}])


# --------------------------------------------------------------------------------------------------------------------
# trl-more reward --dataset_name, as trl reward
# --------------------------------------------------------------------------------------------------------------------


TINY_FLAGS = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "6",
    "--max_length",
    "64",
    "--truncation_mode",
    "keep_end",
    "--bf16",
    "false",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
]


def test_reward_trains_on_a_folder_saved_by_datasets_with_dataset_name(tmp_path):
    train_rows, test_rows = (
        user_rows("standard_preference", domain=DOMAINS) * 2,
        user_rows("standard_preference", domain=DOMAINS)[:6],
    )
    saved = DatasetDict({"train": Dataset.from_list(train_rows), "test": Dataset.from_list(test_rows)})
    saved.save_to_disk(tmp_path / "saved")
    model = save_tiny_reward_model(tmp_path / "base")
    arguments = ["--dataset_name", str(tmp_path / "saved"), "--source_column", "domain"]
    script_args, training_args, model_args = parse_subcommand_arguments(
        "reward", [*arguments, "--model_name_or_path", str(model), "--output_dir", str(tmp_path / "run"), *TINY_FLAGS]
    )
    assert (script_args.dataset_train_split, script_args.dataset_test_split) == ("train", "test")  # TRL's defaults

    train, test = reward_cli.load_training_sources(script_args, training_args.seed, training_args.source_column)
    held_out = {"science": 2, "maths": 2, "cooking": 2}  # the test split, by source
    assert len(train) == 16 and Counter(train["domain"]) == {"science": 6, "maths": 6, "cooking": 4}  # the train split
    assert {name: len(pairs) for name, pairs in test.items()} == held_out
    reward_cli.main(script_args, training_args, model_args)
    written = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert {name: values["num_pairs"] for name, values in written["sources"].items()} == held_out
    assert "| science |" in (tmp_path / "run" / "README.md").read_text()


def test_dataset_name_without_a_test_split_holds_out_a_tenth_and_excludes_the_other_data_options(tmp_path, capsys):
    Dataset.from_list(user_rows("standard_implicit_prompt_preference") * 5).save_to_disk(tmp_path / "one_split")
    data_file = write_rows(user_rows("conversational_preference") * 5, tmp_path / "pairs.parquet")
    for name in (tmp_path / "one_split", data_file):
        script_args, training_args, _ = parse_subcommand_arguments(
            "reward", ["--dataset_name", str(name), "--output_dir", str(tmp_path / "run"), "--bf16", "false"]
        )
        train, test = reward_cli.load_training_sources(script_args, training_args.seed)
        assert (len(train), [len(pairs) for pairs in test.values()]) == (36, [4])
        assert f"--dataset_name {name} has no 'test' split: holding out 10%" in capsys.readouterr().out
    no_dev_split = reward_cli.RewardScriptArguments(
        dataset_name=str(tmp_path / "one_split"), dataset_train_split="dev"
    )
    with pytest.raises(ValueError, match="has the split\\(s\\) train, not 'dev': choose the one to train on"):
        reward_cli.load_training_sources(no_dev_split, seed=0)
    with pytest.raises(ValueError, match="--mixture and --dataset_name exclude each other"):
        reward_cli.RewardScriptArguments(mixture="m.yaml", dataset_name=str(data_file))
    with pytest.raises(ValueError, match="`--dataset_config` selects a configuration of `--dataset_name`"):
        reward_cli.RewardScriptArguments(dataset_config="en")
