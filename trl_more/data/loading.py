"""Loading a known preference or rating source by name, from the Hub or from local files, converted to TRL's format;
and a user's own data already in TRL's preference format, from local files, a Hub dataset or a saved folder.

Which is which (`reads_trl_preferences`): a known name (`known_source_names()`) is that source, read by its converter.
Any other name with local files, or one that names a Hub dataset (`owner/name`) or a local folder, is data in TRL's
preference format (trl_more/data/trl_preferences.py); a warning names the known sources it resembles (a misspelling,
or their Hub dataset), since their converters would read their raw schema. Any other name is an error that lists the
known sources and the closest one.

Example:
    >>> from trl_more.data import load_preference_source, load_trl_preferences
    >>> helpful, report = load_preference_source("hh-helpful", split="test")  # Anthropic/hh-rlhf, helpful-base
    >>> local, report = load_preference_source("hh-helpful", path="../shared/data/hh_rlhf/helpful-base.test.jsonl.gz")
    >>> print(report)  # rows read, pairs, and every row that was not converted, by reason, with examples
    >>> mine = load_trl_preferences("my-data", path="my_pairs.jsonl")  # {label: (dataset, report)}, a label per source
"""

from __future__ import annotations

import difflib
import gzip
import inspect
import json
import logging
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from .armorm_preferences import (
    convert_capybara,
    convert_codeultrafeedback,
    convert_helpsteer_pairs,
    convert_math_preference,
    convert_pku_saferlhf_better,
    convert_pku_saferlhf_safer,
    convert_prm800k,
    convert_prometheus_preference,
    convert_shp,
)
from .armorm_ratings import (
    convert_beavertails,
    convert_capybara_ratings,
    convert_codeultrafeedback_ratings,
    convert_math_preference_ratings,
    convert_openorca_ratings,
    convert_prometheus_feedback,
    convert_ultrafeedback_ratings,
)
from .conversion import ConvertedSource
from .declared import DeclaredRatingSet, convert_declared_ratings
from .hh_rlhf import convert_hh_rlhf
from .hh_rlhf_strength import convert_hh_rlhf_strength
from .oasst import convert_oasst
from .ratings import convert_helpsteer, convert_topical_chat
from .strength_records import convert_strength_records
from .summarize import convert_summarize
from .trl_preferences import convert_trl_preferences
from .ultrafeedback import convert_ultrafeedback
from .webgpt import convert_webgpt


__all__ = [
    "KNOWN_SOURCES",
    "SourceSpec",
    "canonical_source_name",
    "default_source_label",
    "dataset_split_names",
    "is_known_source",
    "known_source_names",
    "load_preference_source",
    "load_trl_preferences",
    "read_records",
    "reads_trl_preferences",
]

logger = logging.getLogger(__name__)

# Script-based Hub datasets cannot be loaded by `datasets>=4`; the Hub's automatic Parquet export of them can.
_PARQUET_EXPORT = "refs/convert/parquet"


@dataclass(frozen=True)
class SourceSpec:
    """Where a known source lives on the Hub and which converter turns its rows into TRL's format.

    Attributes:
        converter: Function `(rows, source=..., on_invalid=..., **options) -> ConvertedSource`.
        hub_id: Hub dataset id, or `None` for a source that is only available as a local file.
        description: One line for listings.
        hub_config: Hub configuration name, if any.
        data_dir: Hub data directory, if any (HH-RLHF's subsets).
        revision: Hub revision to load.
        split_names: Hub split name for each split name a user may give (e.g. `{"test": "validation"}`).
        aliases: Other names of the source (e.g. its Hub id).
    """

    converter: Callable[..., ConvertedSource]
    hub_id: str | None
    description: str
    hub_config: str | None = None
    data_dir: str | None = None
    revision: str | None = None
    split_names: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


KNOWN_SOURCES: dict[str, SourceSpec] = {
    "hh-helpful": SourceSpec(
        convert_hh_rlhf, "Anthropic/hh-rlhf", "HH-RLHF helpful-base transcript pairs", data_dir="helpful-base"
    ),
    "hh-harmless": SourceSpec(
        convert_hh_rlhf, "Anthropic/hh-rlhf", "HH-RLHF harmless-base transcript pairs", data_dir="harmless-base"
    ),
    "hh-rlhf": SourceSpec(
        convert_hh_rlhf,
        "Anthropic/hh-rlhf",
        "HH-RLHF transcript pairs, any subset via data_dir (default: all preference subsets)",
        aliases=("Anthropic/hh-rlhf",),
    ),
    "hh-rlhf-strength": SourceSpec(
        convert_hh_rlhf_strength,
        "fnlp/hh-rlhf-strength-cleaned",
        "HH-RLHF re-split with the ensemble preference strengths of Secrets of RLHF II (splits train, valid)",
        split_names={"test": "valid", "validation": "valid"},
        aliases=("fnlp/hh-rlhf-strength-cleaned",),
    ),
    "trl-more-strength": SourceSpec(
        convert_strength_records,
        None,
        "pairs with preference strengths written by `trl-more strength` (strength.jsonl or .parquet), local files "
        "only; option only_source",
    ),
    "oasst1": SourceSpec(
        convert_oasst,
        "OpenAssistant/oasst1",
        "OpenAssistant ranked sibling replies (flat messages or nested trees); option languages",
        split_names={"test": "validation"},
        aliases=("OpenAssistant/oasst1",),
    ),
    "webgpt": SourceSpec(
        convert_webgpt,
        "openai/webgpt_comparisons",
        "WebGPT answer comparisons (train split only); option ties='drop'|'both'",
        revision=_PARQUET_EXPORT,
        aliases=("openai/webgpt_comparisons",),
    ),
    "summarize": SourceSpec(
        convert_summarize,
        "openai/summarize_from_feedback",
        "OpenAI TL;DR summary comparisons (config comparisons)",
        hub_config="comparisons",
        revision=_PARQUET_EXPORT,
        split_names={"test": "validation"},
        aliases=("openai/summarize_from_feedback",),
    ),
    "ultrafeedback": SourceSpec(
        convert_ultrafeedback,
        "trl-lib/ultrafeedback_binarized",
        "UltraFeedback binarized (conversational or plain-text layouts)",
        aliases=("trl-lib/ultrafeedback_binarized", "HuggingFaceH4/ultrafeedback_binarized"),
    ),
    "helpsteer": SourceSpec(
        convert_helpsteer,
        "nvidia/HelpSteer",
        "HelpSteer ratings (5 attributes, 0-4) for multi-objective regression",
        split_names={"test": "validation"},
        aliases=("nvidia/HelpSteer",),
    ),
    "topical-chat": SourceSpec(
        convert_topical_chat,
        None,
        "Topical-Chat USR ratings (6 attributes), local file only; option include_knowledge",
    ),
    # The ArmoRM paper's rating sets (trl_more/data/armorm_ratings.py). A Hub id that also gives preference pairs
    # below is not an alias of either, so that the name says which one is meant.
    "ultrafeedback-ratings": SourceSpec(
        convert_ultrafeedback_ratings,
        "openbmb/UltraFeedback",
        "UltraFeedback fine-grained ratings, one rated response per completion (5 objectives)",
        aliases=("openbmb/UltraFeedback",),
    ),
    "beavertails": SourceSpec(
        convert_beavertails,
        "PKU-Alignment/BeaverTails",
        "BeaverTails-30k is_safe ratings (splits 30k_train, 30k_test; also 330k_train, 330k_test)",
        split_names={"train": "30k_train", "test": "30k_test", "validation": "30k_test"},
        aliases=("PKU-Alignment/BeaverTails",),
    ),
    "codeultrafeedback-ratings": SourceSpec(
        convert_codeultrafeedback_ratings,
        "coseal/CodeUltraFeedback",
        "CodeUltraFeedback ratings, one of 5 coding preferences per instruction (5 objectives)",
    ),
    "prometheus-feedback": SourceSpec(
        convert_prometheus_feedback,
        "prometheus-eval/Feedback-Collection",
        "Prometheus Feedback Collection scores (1-5)",
        aliases=("prometheus-eval/Feedback-Collection",),
    ),
    "capybara-ratings": SourceSpec(
        convert_capybara_ratings,
        "argilla/Capybara-Preferences-Filtered",
        "Argilla Capybara overall-quality ratings of the chosen and rejected replies",
    ),
    "openorca-ratings": SourceSpec(
        convert_openorca_ratings,
        "argilla/distilabel-intel-orca-dpo-pairs",
        "Argilla OpenOrca JudgeLM ratings (1-10) of both generations",
        aliases=("argilla/distilabel-intel-orca-dpo-pairs",),
    ),
    "math-preference-ratings": SourceSpec(
        convert_math_preference_ratings,
        "argilla/distilabel-math-preference-dpo",
        "Argilla Math-Preference ratings as UltraFeedback instruction following; option rating_scale",
    ),
    # The preference sources of the ArmoRM gate (trl_more/data/armorm_preferences.py).
    "shp": SourceSpec(
        convert_shp,
        "stanfordnlp/SHP",
        "Stanford Human Preferences (Reddit); options min_score_ratio, max_pairs_per_post",
        aliases=("stanfordnlp/SHP",),
    ),
    "pku-saferlhf-better": SourceSpec(
        convert_pku_saferlhf_better,
        "PKU-Alignment/PKU-SafeRLHF-30K",
        "PKU-SafeRLHF-30K pairs, the more helpful response (better_response_id) chosen",
    ),
    "pku-saferlhf-safer": SourceSpec(
        convert_pku_saferlhf_safer,
        "PKU-Alignment/PKU-SafeRLHF-30K",
        "PKU-SafeRLHF-30K pairs, the safer response (safer_response_id) chosen",
    ),
    "helpsteer-pairs": SourceSpec(
        convert_helpsteer_pairs,
        "nvidia/HelpSteer",
        "HelpSteer responses to one prompt paired by their mean rating; option attributes",
        split_names={"test": "validation"},
    ),
    "prm800k-phase2": SourceSpec(
        convert_prm800k,
        None,
        "PRM800K phase-2 correct vs wrong solutions, local file only (github.com/openai/prm800k, prm800k/data)",
    ),
    "prometheus-preference": SourceSpec(
        convert_prometheus_preference,
        "prometheus-eval/Preference-Collection",
        "Prometheus Preference Collection pairs",
        aliases=("prometheus-eval/Preference-Collection",),
    ),
    "capybara": SourceSpec(
        convert_capybara,
        "argilla/Capybara-Preferences-Filtered",
        "Argilla Capybara conversation pairs, ties skipped",
    ),
    "math-preference": SourceSpec(
        convert_math_preference,
        "argilla/distilabel-math-preference-dpo",
        "Argilla Math-Preference pairs, ties skipped",
    ),
    "codeultrafeedback": SourceSpec(
        convert_codeultrafeedback,
        "coseal/CodeUltraFeedback",
        "CodeUltraFeedback pairs, best- vs worst-rated response",
    ),
}

_NAMES = {alias: name for name, spec in KNOWN_SOURCES.items() for alias in (name, *spec.aliases)}


def known_source_names() -> list[str]:
    """Every name `load_preference_source` accepts (short names and Hub ids)."""
    return sorted(_NAMES)


def is_known_source(name: str) -> bool:
    """Whether `name` is a known source's name or Hub id alias (`known_source_names()`)."""
    return name in _NAMES


def reads_trl_preferences(name: str, has_local_files: bool) -> bool:
    """Whether a source named `name` is read as data in TRL's preference format rather than by a known converter.

    A known name is that source (`False`). Any other name with local files, or naming a Hub dataset (`owner/name`) or
    a local folder, is TRL data (`True`). Any other name is an error that lists the known sources and the closest.
    """
    if is_known_source(name):
        return False
    if has_local_files or "/" in name or os.path.isdir(os.path.expanduser(name)):
        return True
    raise _unknown_source_error(name)


def _known_lookalikes(name: str) -> list[str]:
    """Known sources that `name` may have meant: close misspellings, and those reading the Hub dataset `name`."""
    close = difflib.get_close_matches(name, list(_NAMES), n=3, cutoff=0.8)
    same_dataset = [known for known, spec in KNOWN_SOURCES.items() if spec.hub_id == name]
    return list(dict.fromkeys(close + same_dataset))


def canonical_source_name(name: str) -> str:
    """The `KNOWN_SOURCES` key of a known source name or Hub id (e.g. `"helpsteer"` for `"nvidia/HelpSteer"`)."""
    _spec(name)  # an unknown name is an error that lists the known ones
    return _NAMES[name]


def default_source_label(name: str, data_dir: str | None = None) -> str:
    """The `source` column value of a source loaded without an explicit label: its name, plus `/<data_dir>`."""
    return f"{name}/{data_dir}" if data_dir else name


def _spec(name: str) -> SourceSpec:
    if name not in _NAMES:
        raise _unknown_source_error(name)
    return KNOWN_SOURCES[_NAMES[name]]


def _unknown_source_error(name: str) -> ValueError:
    """The error for a name that is no known source: the known ones, the closest, and how to give data of your own."""
    listing = "\n".join(f"  {known}: {spec.description}" for known, spec in KNOWN_SOURCES.items())
    aliases = ", ".join(alias for alias in sorted(_NAMES) if alias not in KNOWN_SOURCES)
    close = difflib.get_close_matches(name, list(_NAMES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"Unknown preference source {name!r}.{hint} Known sources:\n{listing}\nAlso accepted: {aliases}.\n"
        "Data of your own in TRL's preference format is a source under any other name, with its local file "
        "(`{name: my-data, path: my_pairs.jsonl}` in a mixture, `trl_more.data.load_trl_preferences`) or as a Hub "
        "dataset id (`owner/name`)."
    )


def _check_options(name: str, converter: Callable[..., ConvertedSource], options: Mapping[str, Any]) -> None:
    accepted = [
        parameter
        for parameter in inspect.signature(converter).parameters
        if parameter not in ("rows", "source", "on_invalid", "origin")
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for source {name!r}; its options are: {', '.join(accepted) or 'none'}."
        )


def load_preference_source(
    name: str,
    path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    split: str = "train",
    *,
    source: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
    on_invalid: str | None = None,
    ratings: DeclaredRatingSet | Mapping[str, Any] | None = None,
    **options: Any,
) -> ConvertedSource:
    """Load a known source and convert it: preference pairs (`prompt`, `chosen`, `rejected`, `source`) or, for rating
    sets, rated responses (`prompt`, `response`, `source`, one float column per objective).

    Args:
        name: A known source (`known_source_names()`: e.g. `"hh-helpful"`, `"oasst1"`, `"webgpt"`, `"summarize"`,
            `"ultrafeedback"`, `"helpsteer"`, `"topical-chat"`, the ArmoRM paper's `"ultrafeedback-ratings"`,
            `"shp"`, ...) or its Hub id (e.g. `"Anthropic/hh-rlhf"`). With `ratings`, any name: the Hub dataset id
            to load, or just a name for local files.
        path: Local file(s) to read instead of the Hub: `.json` (a list of records, or JSON lines), `.jsonl`,
            `.jsonl.gz`, `.json.gz`, `.parquet`, `.csv` or `.csv.gz`, in the source's raw schema.
        split: Hub split (`"test"` is mapped to the source's held-out split name, e.g. `"validation"`); ignored
            with `path`.
        source: Value of the `source` column; defaults to `name` (with `/<data_dir>` when a `data_dir` is given).
        data_dir: Hub data directory, overriding the source's own (e.g. `"helpful-online"` with `"hh-rlhf"`).
        revision: Hub revision, overriding the source's default.
        on_invalid: `"drop"` or `"raise"` for rows that cannot be converted; either way they are counted in the
            report, with examples. Defaults to the converter's own: `"drop"` for preference pairs, `"raise"` for
            rating sets (a rating outside its scale usually means a wrong scale).
        ratings: A declared rating set (`trl_more.data.DeclaredRatingSet` or a mapping of its fields): the rows are
            rated responses converted by its column mapping instead of a known source's converter.
        **options: Options of the source's converter (e.g. `languages` for OASST, `ties` for WebGPT).

    Returns:
        A `ConvertedSource` named tuple `(dataset, report)`.
    """
    if ratings is not None:
        if options:
            raise ValueError(
                f"Source {name!r} is a declared rating set: it takes no converter options, got {sorted(options)}."
            )
        declaration = DeclaredRatingSet.from_dict(ratings, origin=f"source {name!r}")
        spec = SourceSpec(convert_declared_ratings, name, "declared rating set")
    else:
        spec = _spec(name)
        _check_options(name, spec.converter, options)
    if source is None:
        source = default_source_label(name, data_dir)
    rows = _read_rows(spec, name, path, split, data_dir, revision)
    if on_invalid is not None:
        options["on_invalid"] = on_invalid
    if ratings is not None:
        return convert_declared_ratings(rows, declaration, source=source, **options)
    return spec.converter(rows, source=source, **options)


def load_trl_preferences(
    name: str,
    path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    split: str = "train",
    *,
    source: str | None = None,
    hub_config: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
    on_invalid: str = "drop",
    **options: Any,
) -> dict[str, ConvertedSource]:
    """Load data of your own in TRL's preference format (trl_more/data/trl_preferences.py), kept as it is: one
    source, or one per value of its `source_column`.

    Args:
        name: Any name that is not a known source. With `path`, just the source's name; without, the Hub dataset
            id to load (as `trl reward --dataset_name` takes it), or a local folder: of data files, or written by
            `datasets`' `save_to_disk` (a `Dataset` saved alone is its `train` split).
        path: Local file(s): `.json` (a list of records, or JSON lines), `.jsonl`, `.parquet`, `.csv`, or gzipped
            `.jsonl.gz`, `.json.gz`, `.csv.gz`. A file is one split: `split` does not apply.
        split: Split of the Hub dataset or the folder.
        source: Label of the pairs when the data has no `source_column`; defaults to `name` (with `/<data_dir>` when
            a `data_dir` is given).
        hub_config: Hub configuration (the `name` of `datasets.load_dataset`; TRL's `--dataset_config`).
        data_dir: Hub data directory.
        revision: Hub revision.
        on_invalid: `"drop"` or `"raise"` for rows that are not a pair in the data's format (counted either way).
        **options: Options of `convert_trl_preferences`: `source_column`, the column naming each pair's source
            (default `"source"`; its values become the labels), or `None` to read all the data as `source`.

    Returns:
        `{label: ConvertedSource}`, in order of first appearance.
    """
    if is_known_source(name):
        raise ValueError(
            f"{name!r} is a known source, read from its raw schema by `load_preference_source`; give data of your "
            "own in TRL's preference format another name."
        )
    spec = SourceSpec(convert_trl_preferences, name, "preference data in TRL's format", hub_config=hub_config)
    _check_options(name, spec.converter, options)
    origin = (
        f"{name} (split {split})"
        if path is None
        else ", ".join(os.fspath(entry) for entry in ([path] if isinstance(path, str | os.PathLike) else path))
    )
    lookalikes = _known_lookalikes(name)
    if lookalikes:
        logger.warning(
            f"{name!r} is not a known source name: reading {origin} as preference data in TRL's format, as it is. Did "
            f"you mean {' or '.join(map(repr, lookalikes))}? A known source is read from its raw schema by its own "
            "converter; name your own data apart from the known sources to silence this warning."
        )
    rows = _read_rows(spec, name, path, split, data_dir, revision)
    return convert_trl_preferences(
        rows,
        source=source or default_source_label(name, data_dir),
        on_invalid=on_invalid,
        origin=origin,
        **options,
    )


def dataset_split_names(name: str, hub_config: str | None = None) -> list[str]:
    """The splits of a Hub dataset or a local folder (of data files, or saved with `datasets`), as `load_trl_preferences`
    reads them."""
    saved = _saved_dataset(name)
    return list(saved) if saved is not None else datasets.get_dataset_split_names(name, hub_config)


def _read_rows(
    spec: SourceSpec,
    name: str,
    path: str | os.PathLike | Sequence[str | os.PathLike] | None,
    split: str,
    data_dir: str | None,
    revision: str | None,
):
    """The raw rows of a source: its local files, or its Hub split."""
    if path is not None:
        if data_dir is not None or revision is not None:
            raise ValueError(
                f"`data_dir` and `revision` select Hub files; they cannot apply to the local path {path}."
            )
        return read_records(path)
    if spec.hub_id is None:
        raise ValueError(f"Source {name!r} has no Hub copy: give the `path` of a local file.")
    return _load_from_hub(spec, name, split, data_dir or spec.data_dir, revision or spec.revision)


def _saved_dataset(name: str) -> datasets.DatasetDict | None:
    """The folder `name` as written by `save_to_disk` (a `Dataset` saved alone as the `train` split), or `None` when it
    is no such folder."""
    folder = Path(os.path.expanduser(name))
    if not ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()):
        return None
    saved = datasets.load_from_disk(str(folder))
    return saved if isinstance(saved, datasets.DatasetDict) else datasets.DatasetDict({"train": saved})


def _load_from_hub(spec: SourceSpec, name: str, split: str, data_dir: str | None, revision: str | None):
    saved = _saved_dataset(spec.hub_id)
    if saved is not None:
        if split not in saved:
            raise ValueError(
                f"{spec.hub_id} (saved with `datasets`) has the split(s) {', '.join(saved)}, not {split!r}; choose "
                "one of those."
            )
        return saved[split]
    where = ", ".join(
        part for part in (spec.hub_id, spec.hub_config, data_dir and f"data_dir {data_dir}", f"split {split}") if part
    )
    try:
        return datasets.load_dataset(
            spec.hub_id,
            spec.hub_config,
            data_dir=data_dir,
            revision=revision,
            split=spec.split_names.get(split, split),
        )
    except Exception as error:  # network, authentication, a wrong split or data_dir: say which source and how to go on
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "false", "") or os.environ.get(
            "HF_DATASETS_OFFLINE", "0"
        ) not in ("0", "false", "")
        hint = " (the Hub is switched off here: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if offline else ""
        raise RuntimeError(
            f"Could not load source {name!r} from the Hub ({where}){hint}: {type(error).__name__}: {error}\n"
            "Give local files in the source's raw schema instead (`path` in a mixture, `NAME=PATH` on the command "
            "line, `--data_dir` for the default sources of `trl-more reward`), or try `trl-more reward --demo` for "
            "the bundled toy sources."
        ) from error


def read_records(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The records of one or several local files (json, jsonl, jsonl.gz, json.gz, parquet, csv, csv.gz), in order.

    Relative paths are resolved against the current directory; `~` and `$VARIABLES` are expanded. CSV columns get
    the types their values show (as `datasets` reads CSV: numbers become numbers). A file without any record is an
    error that names it, since it is most likely the wrong file or an incomplete one.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    records: list[dict[str, Any]] = []
    for entry in paths:
        file = Path(os.path.expandvars(os.path.expanduser(os.fspath(entry))))
        if not file.is_file():
            raise FileNotFoundError(
                f"No file {file} (relative paths are resolved against the current directory, {Path.cwd()})."
            )
        suffix = file.name.lower()
        if suffix.endswith(".parquet"):
            import pyarrow.parquet

            file_records = pyarrow.parquet.read_table(file).to_pylist()
        elif suffix.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
            file_records = _read_json(file)
        elif suffix.endswith((".csv", ".csv.gz")):
            file_records = _read_csv(file)
        else:
            raise ValueError(
                f"Unsupported file type: {file.name}. Use .json, .jsonl, .jsonl.gz, .json.gz, .parquet, .csv or "
                ".csv.gz."
            )
        if not file_records:
            raise ValueError(f"{file} holds no records: is it the right file, and complete?")
        records.extend(file_records)
    return records


def _read_csv(file: Path) -> list[dict[str, Any]]:
    import pyarrow
    import pyarrow.csv  # reads .csv.gz too, by its extension

    try:
        options = pyarrow.csv.ParseOptions(newlines_in_values=True)  # texts hold line breaks, quoted
        return pyarrow.csv.read_csv(file, parse_options=options).to_pylist()
    except (pyarrow.ArrowInvalid, OSError, EOFError, zlib.error) as error:  # a broken row, an empty or damaged file
        raise ValueError(f"{file} is not a readable CSV file: {error}") from error


def _read_json(file: Path) -> list[dict[str, Any]]:
    name = file.name.lower()
    try:
        with (gzip.open if name.endswith(".gz") else open)(file, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as error:  # e.g. a truncated download
        raise ValueError(
            f"Cannot read {file}: {type(error).__name__}: {error}. The file is damaged or incomplete (a truncated "
            "download?); fetch it again."
        ) from error
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _json_lines(text, file)
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("["):  # a JSON document (a list of records) that breaks somewhere
            raise ValueError(
                f"{file} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
            ) from error
        return _json_lines(text, file)  # a .json file holding JSON lines
    if not isinstance(content, list):
        raise ValueError(f"{file} holds a JSON {type(content).__name__}; expected a list of records or JSON lines.")
    return content


def _json_lines(text: str, file: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{file}, line {number}: not a JSON record ({error.msg}, column {error.colno}): {line[:80]!r}"
            ) from error
    return records
