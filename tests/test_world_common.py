"""The command line the world benchmarks share (`benchmarks/world_common.world_options`)."""

import dataclasses
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from world_common import world_options  # noqa: E402


@dataclasses.dataclass(frozen=True)
class _Settings:
    steps: int = 100


SMOKE = _Settings(steps=3)


def test_defaults_are_five_seeds_two_workers_and_the_full_settings():
    options = world_options("d", "h", "bench", _Settings(), SMOKE, argv=[])
    assert options.seeds == [0, 1, 2, 3, 4]
    assert options.workers == 2
    assert not options.smoke
    assert options.settings == {"steps": 100}
    assert options.report == "bench"


def test_smoke_takes_seed_0_and_the_smoke_settings_whatever_seeds_say():
    options = world_options("d", "h", "bench", _Settings(), SMOKE, argv=["--smoke", "--seeds", "3", "4"])
    assert options.seeds == [0]
    assert options.settings == {"steps": 3}
    assert options.report == "bench_smoke"


def test_seeds_and_workers_are_read():
    options = world_options("d", "h", "bench", _Settings(), SMOKE, argv=["--seeds", "1", "2", "--workers", "1"])
    assert (options.seeds, options.workers) == ([1, 2], 1)


def test_an_unknown_option_is_refused():
    with pytest.raises(SystemExit):
        world_options("d", "h", "bench", _Settings(), SMOKE, argv=["--steps", "1"])
