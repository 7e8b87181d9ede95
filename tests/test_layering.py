"""The import graph of `trl_more` runs one way: every module imports only from its own unit or from lower layers.

A unit is a subpackage (`trl_more/more/`) or a top-level module (`trl_more/constants.py`); the generation backends
(`trl_more/rejection_sampling/generation/`) are a unit of their own, below `metrics` (best-of-n samples with them).
`LAYERS` lists the units from the bottom up; an import from a unit to a unit of the same or a higher layer fails this
test, lazy imports inside functions included (they are parsed, not run). A new module must be given a layer here.

The layer order, bottom up, and why:
  foundation    constants, _compat, solvers, ... : no imports of the package, or only of `constants`-level modules
  reading       tokenization, pair encoding, losses, the reward head: how a model reads a pair, and what it learns
  input_settings the reading record, built on pair encoding
  data, generation
  rewards       scoring with a reward model (one scorer for everything above)
  metrics       evaluation, calibration, benchmarks: they score with `rewards`
  plots, preflight  draw metrics' results; check a training run with metrics' audits
  multi_objective   ArmoRM (its trainer runs the pre-flight checks)
  more          MORERewardTrainer: trains with the losses, evaluates with metrics, plots lambda
  metarm        MetaRM on top of MORE
  noisy_preferences, rejection_sampling, synthetic: train or use MORE / MetaRM reward models
  serve, cli, and the package's own `__init__` on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trl_more


PACKAGE = Path(trl_more.__file__).parent

LAYERS: list[tuple[str, ...]] = [
    ("constants", "_compat", "yaml_loading", "fingerprints", "hub", "batching", "trainer_utils", "reports"),
    ("solvers", "testing", "tokenization", "pair_encoding", "pretrained", "losses", "reward_head"),
    ("input_settings",),
    ("data", "generation"),
    ("rewards",),
    ("metrics",),
    ("plots", "preflight"),
    ("multi_objective",),
    ("more",),
    ("metarm",),
    ("noisy_preferences", "rejection_sampling", "synthetic"),
    ("serve",),
    ("cli",),
    ("trl_more",),
]
LAYER = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[1:3] == ["rejection_sampling", "generation"]:
        return "generation"
    return parts[1] if len(parts) > 1 else "trl_more"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, certain) of every import of `trl_more` in the file, relative ones resolved; `certain` is False
    for `from package import name`, where `name` may be a module or a name defined in the package."""
    package = list(path.relative_to(PACKAGE.parent).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            if node.module:
                found.append((node.lineno, base, True))
            else:  # `from .. import multi_objective`
                found += [(node.lineno, f"{base}.{alias.name}", False) for alias in node.names]
    return [found_ for found_ in found if found_[1] == "trl_more" or found_[1].startswith("trl_more.")]


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(path)) for path in package_files()}
    assert not units - LAYER.keys(), f"give these units a layer in LAYERS: {sorted(units - LAYER.keys())}"


def exists(module: str) -> bool:
    relative = PACKAGE.joinpath(*module.split(".")[1:])
    return relative.with_suffix(".py").is_file() or (relative / "__init__.py").is_file()


def test_every_imported_module_exists():
    # Lazy imports inside functions run only when called: a module moved without updating one fails here, not later.
    missing = []
    for path in package_files():
        for line, module, certain in imported_modules(path):
            if not (exists(module) or (not certain and exists(module.rpartition(".")[0]))):
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}, which does not exist")
    assert not missing, "\n".join(missing)


def test_no_import_runs_up_the_layers():
    upward = []
    for path in package_files():
        source = unit_of(module_name(path))
        for line, module, _ in imported_modules(path):
            target = unit_of(module)
            if target != source and LAYER.get(target, -1) >= LAYER.get(source, -1):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({source}) imports {module} ({target})")
    assert not upward, "imports from a lower layer to a higher (or the same) one:\n" + "\n".join(upward)
