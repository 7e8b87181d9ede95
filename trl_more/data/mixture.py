"""A K-source mixture: every source converted, split into train and test, and summarised.

The train split is what `MORERewardTrainer` (or `trl.RewardTrainer`) takes as `train_dataset`: one `Dataset` with
`prompt`, `chosen`, `rejected` and a `source` column naming each pair's source. The same mixture can be declared in a
YAML file (see recipes/mixtures/) and loaded with `load_mixture`. Balancing the sources by resampling is the trainer's
job (`MORERewardConfig.samples_per_source`), done after tokenization and the length limit.

Data of your own in TRL's preference format is a source too: an entry whose name is not a known source and that has a
`path` (or names a Hub dataset), e.g. `{name: my-data, path: my_pairs.jsonl}`; its rows are kept as they are (see
trl_more/data/trl_preferences.py), and a `source` column in it gives one source per value. A mixture has one format:
conversational sources keep their messages when every source is conversational, and are rendered in the transcript
format of the known sources (trl_more/data/formats.py) when plain-text sources are mixed in. A `margin` column is kept;
the sources without one get margin 0, which leaves TRL's loss unchanged.

Rating sets mix the same way: rated responses with the union of the sets' objective columns (NaN where a set does not
rate an objective), and `SourceMixture.rating_scales` gives every objective's scale for stage 1. A source can also
declare its ratings by column instead of naming a known set (`SourceConfig.ratings`, see trl_more/data/declared.py).

Example:
    >>> from trl_more.data import mix_sources
    >>> mixture = mix_sources(
    ...     [
    ...         {"name": "hh-helpful", "path": "../shared/data/hh_rlhf/helpful-base.test.jsonl.gz"},
    ...         {"name": "hh-harmless", "path": "../shared/data/hh_rlhf/harmless-base.test.jsonl.gz"},
    ...         {"name": "my-data", "path": "my_pairs.jsonl"},  # your own pairs, in any of TRL's preference formats
    ...     ],
    ...     test_size=0.2,
    ... )
    >>> print(mixture.summary)  # pairs read, dropped, train/test sizes and mean lengths, per source
    >>> args = MORERewardConfig("out", samples_per_source=1000)  # resample every source to 1,000 training pairs
    >>> trainer = MORERewardTrainer(model, args, train_dataset=mixture.train, eval_dataset=mixture.test_by_source())
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute
from datasets import Dataset, DatasetDict, Value, concatenate_datasets

from ..constants import SOURCE_COLUMN
from ..yaml_loading import load_yaml
from .conversion import ConversionReport, ConvertedSource, check_on_invalid
from .declared import DeclaredRatingSet
from .loading import (
    canonical_source_name,
    default_source_label,
    is_known_source,
    load_preference_source,
    load_trl_preferences,
    reads_trl_preferences,
)
from .ratings import RATING_SCALES
from .trl_preferences import is_conversational_source, render_as_transcripts


__all__ = [
    "MixtureConfig",
    "MixtureSummary",
    "SourceConfig",
    "SourceMixture",
    "SourceSummary",
    "load_mixture",
    "mix_sources",
]

logger = logging.getLogger(__name__)


@dataclass
class SourceConfig:
    """One source of a mixture, or, for data of your own with a `source` column, one per value of that column.

    What `name` means (`trl_more.data.reads_trl_preferences`): a known source (`trl_more.data.known_source_names()`),
    read from its raw schema by its converter; with `ratings`, a declared rating set. Any other name is data of your
    own in TRL's preference format (standard or conversational, explicit or implicit prompt, optional `margin` and
    `source` columns; trl_more/data/trl_preferences.py), kept as it is: with `path`, any name (in YAML,
    `{name: my-data, path: my_pairs.jsonl}`); without, a Hub dataset id or a local folder (of data files, or saved with
    `datasets`). A name close to a known one is read so too, with a warning that names the known source; an unknown
    name with no data is an error that lists the known sources and the closest.

    Attributes:
        name: A known source name or Hub id, or any name for data of your own in TRL's preference format (see above);
            with `ratings`, the Hub dataset id to load, or just a name when the rows come from `path` or `local_copy`.
        path: Local file(s) in the source's raw schema (for your own data: TRL's format), `.json`, `.jsonl`,
            `.parquet`, `.csv` or gzipped `.jsonl.gz`, `.json.gz`, `.csv.gz`; they must exist. `None` loads from the
            Hub.
        split: Hub split to load (ignored with `path`).
        local_copy: Local file(s) holding a copy of the Hub split (e.g. an offline mirror), read when they all exist;
            otherwise the Hub split is loaded, and a warning says so. For configs meant to run both offline next to
            the copy and online without it. Exclusive with `path`.
        label: Value of the `source` column; defaults to `name` (with `/<data_dir>` when `data_dir` is set). Data of
            your own with a `source` column names its sources there (each value is a label), so another `label` is an
            error.
        data_dir: Hub data directory, overriding the source's own.
        revision: Hub revision, overriding the source's own.
        test_path: Local file(s) holding this source's held-out pairs. Then nothing is carved out of the train data.
        test_split: Hub split holding this source's held-out pairs (e.g. `"test"`). Same effect as `test_path`.
        test_size: For this source, overrides the mixture's `test_size`. With a held-out split (`test_path` or
            `test_split`) it selects from that split instead (a fraction of it, or at most that many pairs), and
            `None` keeps all of it. With a `source` column, it applies to each of the data's sources, whose held-out
            split must hold the same sources.
        options: Options of the source's converter (e.g. `{"languages": "en"}` for OASST, `{"ties": "both"}` for
            WebGPT; for your own data, `{"source_column": "domain"}` to read the sources from another column, or
            `{"source_column": None}` to read all of it as one source).
        max_examples: Keep a random subset (the mixture's seed) of at most this many converted examples before the
            train/test split, e.g. for a quick run; the summary's `examples` count shows what was kept. `None` keeps
            all of them. With a `source` column, it applies to each of the data's sources.
        ratings: A declared rating set instead of a known source's converter: where the prompt, the response and
            each objective's rating are in a row, and each objective's scale (`trl_more.data.DeclaredRatingSet`; in
            YAML a mapping `{prompt, response | messages, objectives: [{name, column, scale}], missing_values}`).
            Exclusive with `options`.
        hub_config: Configuration of a Hub dataset of your own (the `name` argument of `datasets.load_dataset`, TRL's
            `--dataset_config`); known sources use their own.
    """

    name: str
    path: str | list[str] | None = None
    split: str = "train"
    local_copy: str | list[str] | None = None
    label: str | None = None
    data_dir: str | None = None
    revision: str | None = None
    test_path: str | list[str] | None = None
    test_split: str | None = None
    test_size: float | int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_examples: int | None = None
    ratings: DeclaredRatingSet | None = None
    hub_config: str | None = None

    def __post_init__(self):
        if self.label is None:
            self.label = default_source_label(self.name, self.data_dir)
        is_trl_data = self.is_trl_data  # an unknown name without data is an error here, before any source loads
        if self.hub_config is not None and not is_trl_data:
            raise ValueError(
                f"Source {self.label!r}: `hub_config` selects the configuration of a Hub dataset of your own in TRL's "
                f"preference format; {self.name!r} is a known source or a declared rating set, which has its own."
            )
        if self.hub_config is not None and self.path is not None:
            raise ValueError(
                f"Source {self.label!r}: `hub_config` selects a configuration of a Hub dataset; it cannot apply to the "
                f"local path {self.path}."
            )
        if self.test_path is not None and self.test_split is not None:
            raise ValueError(f"Source {self.label!r}: give `test_path` or `test_split`, not both.")
        if self.path is not None and self.local_copy is not None:
            raise ValueError(
                f"Source {self.label!r}: give `path` (local files, required) or `local_copy` (local files used when "
                "present, the Hub otherwise), not both."
            )
        if self.test_size is not None:
            _check_test_size(self.test_size, f"source {self.label!r}")
        if self.max_examples is not None and (
            isinstance(self.max_examples, bool) or not isinstance(self.max_examples, int) or self.max_examples < 1
        ):
            raise ValueError(
                f"Source {self.label!r}: `max_examples` must be a positive count of examples (or null for all), got "
                f"{self.max_examples!r}."
            )
        if not isinstance(self.options, Mapping):
            raise ValueError(f"Source {self.label!r}: `options` must be a mapping, got {self.options!r}.")
        if self.ratings is not None:
            self.ratings = DeclaredRatingSet.from_dict(self.ratings, origin=f"source {self.label!r}")
            if self.options:
                raise ValueError(
                    f"Source {self.label!r} declares its `ratings`: it has no converter, so `options` "
                    f"({sorted(self.options)}) cannot apply; put column settings in `ratings`."
                )

    @property
    def is_trl_data(self) -> bool:
        """Whether the source is data of your own in TRL's preference format (class docstring); an unknown name
        without data is an error that lists the known sources."""
        return self.ratings is None and reads_trl_preferences(
            self.name, has_local_files=self.path is not None or self.local_copy is not None
        )

    @property
    def is_rating_set(self) -> bool:
        """Whether the source gives rated responses (declared `ratings`, or a known rating set)."""
        return self.ratings is not None or (
            is_known_source(self.name) and canonical_source_name(self.name) in RATING_SCALES
        )

    @property
    def rating_scales(self) -> dict[str, tuple[float, float]]:
        """`{objective: (low, high)}` of a rating source: its declared `ratings`, or `RATING_SCALES` of a known set."""
        if self.ratings is not None:
            return self.ratings.scales
        scales = RATING_SCALES.get(canonical_source_name(self.name))
        if scales is None:
            raise ValueError(
                f"Source {self.label!r} ({self.name}) is not a rating set; the known rating sets are "
                f"{sorted(RATING_SCALES)}, or declare the source's `ratings`."
            )
        return dict(scales)

    @property
    def has_held_out_split(self) -> bool:
        return self.test_path is not None or self.test_split is not None

    def resolved_path(self) -> str | list[str] | None:
        """The local files to read: `path`, or `local_copy` when all its files exist; `None` for the Hub."""
        if self.local_copy is None:
            return self.path
        copies = [self.local_copy] if isinstance(self.local_copy, str) else list(self.local_copy)
        missing = [copy for copy in copies if not os.path.isfile(os.path.expanduser(copy))]
        if missing:
            logger.warning(
                f"Source {self.label!r}: no local copy at {', '.join(missing)}; loading split {self.split!r} of "
                f"{self.name!r} from the Hub."
            )
            return None
        return self.local_copy


@dataclass
class MixtureConfig:
    """A K-source mixture, as declared in Python or in a YAML file (`MixtureConfig.from_yaml`).

    Attributes:
        sources: The sources, each a `SourceConfig` (in YAML: a mapping of its fields, or just a name): known sources
            (e.g. `{name: hh-helpful, path: helpful-base.test.jsonl.gz}`) and data of your own in TRL's preference
            format (e.g. `{name: my-data, path: my_pairs.jsonl}`).
        test_size: Held-out pairs carved out of each source that has no held-out split of its own: a fraction in
            [0, 1) or a count. Sources with `test_path` or `test_split` use their own `test_size` instead.
        seed: Seed of the train/test split. Each source draws from its own stream seeded by `(seed, label)`, so adding
            a source does not change the others' splits.
        on_invalid: `"drop"` or `"raise"` for rows that cannot be converted (always counted in the reports).
    """

    sources: list[SourceConfig]
    test_size: float | int = 0.1
    seed: int = 0
    on_invalid: str = "drop"

    def __post_init__(self):
        self.sources = [_as_source_config(entry, f"sources[{index}]") for index, entry in enumerate(self.sources)]
        if not self.sources:
            raise ValueError("A mixture needs at least one source.")
        _check_distinct_labels([source.label for source in self.sources])
        _check_test_size(self.test_size, "the mixture")
        check_on_invalid(self.on_invalid)

    def rating_scales(self) -> dict[str, tuple[float, float]]:
        """The scale of every objective of a rating mixture, in order of first appearance (what stage 1 scales the
        ratings with, e.g. `prepare_rating_dataset(..., scales=config.rating_scales())`).

        Sources may share an objective (Math-Preference labels UltraFeedback's instruction following) only on one
        scale; two scales for one objective are an error that names both sources.
        """
        scales: dict[str, tuple[float, float]] = {}
        owners: dict[str, str] = {}
        for source in self.sources:
            for objective, scale in source.rating_scales.items():
                if objective in scales and tuple(scales[objective]) != tuple(scale):
                    raise ValueError(
                        f"Objective {objective!r} has the scale {list(scales[objective])} in source "
                        f"{owners[objective]!r} but {list(scale)} in source {source.label!r}; give the two one scale, "
                        "or name the objectives apart."
                    )
                scales.setdefault(objective, tuple(scale))
                owners.setdefault(objective, source.label)
        return scales

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "the mixture config") -> MixtureConfig:
        """Build from a mapping (e.g. parsed YAML); an unknown key is an error that names it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{origin} must be a mapping with a `sources` list, got {type(data).__name__}.")
        if "samples_per_source" in data:
            raise ValueError(
                f"`samples_per_source` in {origin}: resampling the sources is the trainer's option, applied after "
                "tokenization and the length limit. Move it to the training config (`MORERewardConfig."
                "samples_per_source`, e.g. the `trl-more reward` YAML or `--samples_per_source`)."
            )
        _check_keys(cls, data, origin)
        if not isinstance(data.get("sources"), list):
            raise ValueError(f"{origin} needs a `sources` list.")
        sources = [
            _as_source_config(entry, f"{origin}, sources[{index}]") for index, entry in enumerate(data["sources"])
        ]
        return cls(**{**data, "sources": sources})

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> MixtureConfig:
        """Read a YAML mixture file (see recipes/mixtures/). Relative data paths in it are resolved against the
        current directory when the sources are loaded."""
        return cls.from_dict(load_yaml(path), origin=os.fspath(path))


def _check_distinct_labels(labels: list[str]) -> None:
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"Several sources are labelled {repeated}; give each a distinct `label` (the values of a `source` column "
            "in data of your own label its sources too)."
        )


def _check_keys(cls: type, data: Mapping[str, Any], origin: str) -> None:
    known = [item.name for item in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise ValueError(f"Unknown key {key!r} in {origin}; the known keys are: {', '.join(known)}.")


def _as_source_config(entry: SourceConfig | Mapping[str, Any] | str, origin: str) -> SourceConfig:
    if isinstance(entry, SourceConfig):
        return entry
    if isinstance(entry, str):
        return SourceConfig(name=entry)
    if isinstance(entry, Mapping):
        _check_keys(SourceConfig, entry, origin)
        if "name" not in entry:
            raise ValueError(f"{origin} has no `name` (a known source name or Hub id).")
        return SourceConfig(**entry)
    raise ValueError(f"{origin} must be a source name or a mapping of SourceConfig fields, got {entry!r}.")


def _check_test_size(test_size: Any, where: str) -> None:
    valid_fraction = isinstance(test_size, float) and 0.0 <= test_size < 1.0
    valid_count = isinstance(test_size, int) and not isinstance(test_size, bool) and test_size >= 0
    if not (valid_fraction or valid_count):
        raise ValueError(
            f"`test_size` of {where} must be a fraction in [0, 1) or a non-negative count, got {test_size!r}."
        )


def _test_count(test_size: float | int, num_rows: int) -> int:
    return round(test_size * num_rows) if isinstance(test_size, float) else test_size


@dataclass
class SourceSummary:
    """Counts and mean lengths (characters) of one source of a mixture.

    `rows_read`, `invalid` and `skipped` count raw rows as the converter saw them; `examples` the converted pairs
    (or rated responses) of the training pool; `train` the pairs left for training after the test split; `test` the
    held-out pairs. Mean lengths are over the training pool; `mean_response_chars` averages chosen and rejected (or
    the rated responses).
    """

    source: str
    rows_read: int
    invalid: int
    skipped: int
    examples: int
    train: int
    test: int
    mean_prompt_chars: float
    mean_response_chars: float
    mean_chosen_chars: float | None
    mean_rejected_chars: float | None


@dataclass
class MixtureSummary:
    """Per-source summary of a mixture; `str()` gives a table."""

    sources: list[SourceSummary]

    def __str__(self) -> str:
        pairs = all(row.mean_chosen_chars is not None for row in self.sources)
        columns: list[tuple[str, list[Any]]] = [
            ("source", [row.source for row in self.sources]),
            ("read", [row.rows_read for row in self.sources]),
            ("invalid", [row.invalid for row in self.sources]),
            ("skipped", [row.skipped for row in self.sources]),
            ("examples", [row.examples for row in self.sources]),
            ("train", [row.train for row in self.sources]),
        ]
        columns.append(("test", [row.test for row in self.sources]))
        columns.append(("prompt chars", [round(row.mean_prompt_chars) for row in self.sources]))
        if pairs:
            columns.append(("chosen chars", [round(row.mean_chosen_chars) for row in self.sources]))
            columns.append(("rejected chars", [round(row.mean_rejected_chars) for row in self.sources]))
        else:
            columns.append(("response chars", [round(row.mean_response_chars) for row in self.sources]))
        widths = [max(len(title), *(len(str(value)) for value in values)) for title, values in columns]
        table = [[title for title, _ in columns]]
        table += [[str(values[position]) for _, values in columns] for position in range(len(self.sources))]
        lines = []
        for cells in table:
            label, *numbers = cells
            lines.append(
                "  ".join([label.ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(numbers, widths[1:])])
            )
        return "\n".join(lines)


@dataclass
class SourceMixture:
    """The result of `mix_sources` / `load_mixture`.

    Attributes:
        train: Training pairs of every source, concatenated in source order, with the `source` column.
        test: Held-out pairs of every source, likewise.
        summary: Per-source counts and mean lengths (`print(mixture.summary)`).
        reports: The `ConversionReport` of every loaded split, keyed by source label (`"<label> (test)"` for a
            held-out split loaded on its own).
        rating_scales: For a rating mixture, `{objective: (low, high)}` of every objective (`MixtureConfig.
            rating_scales`); empty for preference pairs.
    """

    train: Dataset
    test: Dataset
    summary: MixtureSummary
    reports: dict[str, ConversionReport]
    rating_scales: dict[str, tuple[float, float]] = field(default_factory=dict)

    def as_dataset_dict(self) -> DatasetDict:
        """`DatasetDict({"train": ..., "test": ...})`, e.g. to save or push the mixture."""
        return DatasetDict({"train": self.train, "test": self.test})

    def test_by_source(self) -> dict[str, Dataset]:
        """The test split as `{source: Dataset}`, e.g. as `eval_dataset` to get metrics per source."""
        return {
            name: self.test.filter(lambda row, name=name: row[SOURCE_COLUMN] == name)
            for name in self.test.unique(SOURCE_COLUMN)
        }

    def __str__(self) -> str:
        return str(self.summary)


def mix_sources(
    sources: Sequence[SourceConfig | Mapping[str, Any] | str],
    *,
    test_size: float | int = 0.1,
    seed: int = 0,
    on_invalid: str = "drop",
) -> SourceMixture:
    """Load K sources, split each into train and test, and concatenate.

    Args:
        sources: Each a `SourceConfig`, a mapping of its fields, or a known source name (loaded from the Hub).
        test_size, seed, on_invalid: As in `MixtureConfig`.

    Returns:
        A `SourceMixture` with `train`, `test`, `summary` and `reports`. All sources must be of one kind: preference
        pairs, or rating sets (whose objective columns are united, NaN where a set has no such rating).
    """
    return load_mixture(
        MixtureConfig(
            sources=list(sources),
            test_size=test_size,
            seed=seed,
            on_invalid=on_invalid,
        )
    )


def load_mixture(config: MixtureConfig | str | os.PathLike) -> SourceMixture:
    """Build the mixture a `MixtureConfig` (or a YAML file of one) declares; see `mix_sources`."""
    if not isinstance(config, MixtureConfig):
        config = MixtureConfig.from_yaml(config)
    if all(source.is_rating_set for source in config.sources):
        config.rating_scales()  # two scales for one objective: an error before any source is downloaded
    loaded = [part for source in config.sources for part in _load_source(source, config.on_invalid)]
    _check_distinct_labels([part.label for part in loaded])
    loaded = _in_one_format(loaded)
    train_parts, test_parts, rows, reports = [], [], [], {}
    for part in loaded:
        source, pool = part.config, part.pool.dataset
        reports[part.label] = part.pool.report
        rng = np.random.default_rng([config.seed, zlib.crc32(part.label.encode())])
        pool = _subsample(pool, source.max_examples, rng)
        if part.held_out is not None:
            reports[f"{part.label} (test)"] = part.held_out.report
            train, test = pool, _subsample(part.held_out.dataset, source.test_size, rng)
        else:
            train, test = _split(
                pool, config.test_size if source.test_size is None else source.test_size, rng, part.label
            )
        train_parts.append(train)
        test_parts.append(test)
        rows.append(_summarise(part.label, part.pool.report, pool, len(train), len(test)))
    all_train = _concatenate(train_parts)
    mixture = SourceMixture(
        train=all_train,
        test=_concatenate(test_parts),
        summary=MixtureSummary(rows),
        reports=reports,
        rating_scales={} if "chosen" in all_train.column_names else config.rating_scales(),
    )
    logger.info(f"Source mixture:\n{mixture.summary}")
    return mixture


@dataclass
class _LoadedSource:
    """One source of a mixture as loaded: its entry, its label, its converted pairs and its held-out split, if any."""

    config: SourceConfig
    label: str
    pool: ConvertedSource
    held_out: ConvertedSource | None


def _load_source(source: SourceConfig, on_invalid: str) -> list[_LoadedSource]:
    """The source(s) of one mixture entry: one, or, for data of your own with a `source` column, one per value."""
    path = source.resolved_path()
    hub = {"data_dir": source.data_dir, "revision": source.revision}
    if source.is_trl_data:
        load = functools.partial(load_trl_preferences, source.name, hub_config=source.hub_config, **source.options)
    else:

        def load(*args: Any, **kwargs: Any) -> dict[str, ConvertedSource]:
            converted = load_preference_source(source.name, *args, ratings=source.ratings, **source.options, **kwargs)
            return {source.label: converted}

    pools = load(path, source.split, source=source.label, on_invalid=on_invalid, **(hub if path is None else {}))
    _check_label_applies(source, pools)
    held_outs = None
    if source.has_held_out_split:
        test_split = source.test_split or source.split
        held_outs = load(source.test_path, test_split, source=source.label, on_invalid=on_invalid, **hub)
        if set(held_outs) != set(pools):
            raise ValueError(
                f"Source {source.name!r}: its held-out split has the sources {sorted(held_outs)} but its training data "
                f"{sorted(pools)}; give every source pairs in both (a `source` column names them)."
            )
    for label, pool in pools.items():
        if len(pool.dataset) == 0:
            raise ValueError(f"Source {label!r} has no examples after conversion:\n{pool.report}")
    return [
        _LoadedSource(source, label, pool, None if held_outs is None else held_outs[label])
        for label, pool in pools.items()
    ]


def _check_label_applies(source: SourceConfig, pools: Mapping[str, ConvertedSource]) -> None:
    """A `label` other than the default cannot apply to data that names its sources in a `source` column."""
    if list(pools) != [source.label] and source.label != default_source_label(source.name, source.data_dir):
        column = source.options.get("source_column", SOURCE_COLUMN)
        raise ValueError(
            f"Source {source.name!r} has the label {source.label!r}, but its data names its sources in its "
            f"`{column}` column ({', '.join(pools)}). Remove `label` to use those, or read the data as one source "
            f"labelled {source.label!r} with `options: {{source_column: null}}`."
        )


def _in_one_format(loaded: list[_LoadedSource]) -> list[_LoadedSource]:
    """The sources in one format: when plain-text sources (every known one) are mixed with conversational ones, those
    are rendered as transcripts; sources of one format are kept as they are."""
    tokenized = [part.label for part in loaded if "chosen_ids" in part.pool.dataset.column_names]
    if tokenized:
        raise ValueError(
            f"Source(s) {tokenized} hold tokenized pairs (`chosen_ids`, `rejected_ids`); a mixture holds texts, which "
            "the trainer tokenizes for its model. Give the texts, or pass tokenized data to the trainer directly."
        )
    conversational = [is_conversational_source(part.pool.dataset) for part in loaded]
    plain_text = [
        not chat and "chosen" in part.pool.dataset.column_names for part, chat in zip(loaded, conversational)
    ]
    if not (any(conversational) and any(plain_text)):
        return loaded
    rendered = [part.label for part, chat in zip(loaded, conversational) if chat]
    logger.info(f"Rendering the conversational source(s) {rendered} as transcripts, to mix them with plain-text ones.")
    return [
        dataclasses.replace(
            part,
            pool=render_as_transcripts(part.pool),
            held_out=part.held_out and render_as_transcripts(part.held_out),
        )
        if chat
        else part
        for part, chat in zip(loaded, conversational)
    ]


def _split(pool: Dataset, test_size: float | int, rng: np.random.Generator, label: str) -> tuple[Dataset, Dataset]:
    num_test = _test_count(test_size, len(pool))
    if num_test >= len(pool):
        raise ValueError(
            f"`test_size={test_size}` holds out {num_test} of the {len(pool)} pairs of source {label!r}, leaving none "
            "to train on; lower it."
        )
    order = rng.permutation(len(pool))
    return pool.select(np.sort(order[num_test:])), pool.select(np.sort(order[:num_test]))


def _subsample(held_out: Dataset, test_size: float | int | None, rng: np.random.Generator) -> Dataset:
    if test_size is None:
        return held_out
    num_test = min(_test_count(test_size, len(held_out)), len(held_out))
    return held_out.select(np.sort(rng.permutation(len(held_out))[:num_test]))


def _mean_chars(dataset: Dataset, column: str) -> float:
    """Mean characters of a text column, or of the message contents of a conversational one."""
    values = dataset.with_format("arrow")[column]
    if pyarrow.types.is_list(values.type) or pyarrow.types.is_large_list(values.type):
        contents = pyarrow.compute.struct_field(pyarrow.compute.list_flatten(values), "content")
        total = pyarrow.compute.sum(pyarrow.compute.utf8_length(contents)).as_py()
        return math.nan if total is None else total / len(dataset)
    mean = pyarrow.compute.mean(pyarrow.compute.utf8_length(values)).as_py()
    return math.nan if mean is None else float(mean)


def _summarise(label: str, report: ConversionReport, pool: Dataset, train: int, test: int) -> SourceSummary:
    is_pairs = "chosen" in pool.column_names
    chosen = _mean_chars(pool, "chosen") if is_pairs else None
    rejected = _mean_chars(pool, "rejected") if is_pairs else None
    return SourceSummary(
        source=label,
        rows_read=report.rows_read,
        invalid=report.num_invalid,
        skipped=report.num_skipped,
        examples=len(pool),
        train=train,
        test=test,
        mean_prompt_chars=_mean_chars(pool, "prompt"),
        mean_response_chars=(chosen + rejected) / 2 if is_pairs else _mean_chars(pool, "response"),
        mean_chosen_chars=chosen,
        mean_rejected_chars=rejected,
    )


def _concatenate(parts: list[Dataset]) -> Dataset:
    """Concatenate sources of one kind; rating sets get the union of their objective columns (NaN where missing), and
    pairs without a `margin` get margin 0 when other sources have one (TRL's loss without a margin)."""
    if len({"chosen" in part.column_names for part in parts}) > 1:
        raise ValueError(
            "The mixture mixes preference sources (prompt/chosen/rejected) with rating sets "
            "(prompt/response/ratings); mix each kind separately."
        )
    columns = list(dict.fromkeys(name for part in parts for name in part.column_names))
    columns = [column for column in columns if column != SOURCE_COLUMN] + [SOURCE_COLUMN]
    aligned = []
    for part in parts:
        for column in columns:
            if column not in part.column_names:
                fill = 0.0 if column == "margin" else math.nan
                part = part.add_column(column, [fill] * len(part), feature=Value("float64"))
        aligned.append(part.select_columns(columns))
    return concatenate_datasets(aligned)
