"""The `trl-more` command line: one subcommand per job, each parsed with TRL's `TrlParser`.

Every subcommand lives in its own module `trl_more.cli.<name>` that defines `make_parser(prog)` (a `TrlParser` over
the job's config dataclasses, so `--config file.yaml` works) and `main(*parsed_dataclasses)`. Under several
processes, launch the same module: `accelerate launch -m trl_more.cli <subcommand> ...`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import sys


SUBCOMMANDS = {
    "reward": ("trl_more.cli.reward", "train a reward model on a source mixture (MORE or MultiTask)"),
    "evaluate": ("trl_more.cli.evaluate", "score preference sources: accuracy, ECE, reward margins, plots"),
    "rjs": ("trl_more.cli.rjs", "rejection-sampling fine-tuning (RJS/RAFT) of a policy against reward models"),
    "armo": ("trl_more.cli.armo", "multi-objective reward model with a gate (ArmoRM): stage 1 ratings, stage 2 gate"),
    "strength": ("trl_more.cli.strength", "preference strength of every pair from an ensemble of reward models"),
    "average": ("trl_more.cli.average", "one reward model from the weight average of several (WARM)"),
    "serve": ("trl_more.cli.serve", "serve reward models over HTTP (OpenRLHF's schema and calibrated scores)"),
    "doctor": (
        "trl_more.cli.doctor",
        "pre-flight checks and audits of a reward model on preference data, no training",
    ),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        lines = [f"  {name:<10} {description}" for name, (_, description) in SUBCOMMANDS.items()]
        print("usage: trl-more <subcommand> [options] [--config file.yaml]\n\nsubcommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            raise SystemExit(f"trl-more: unknown subcommand {argv[0]!r}; choose one of {', '.join(SUBCOMMANDS)}.")
        return
    show_info_lines()
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    module.main(*parse_subcommand_arguments(argv[0], argv[1:]))


def show_info_lines() -> None:
    """Print trl-more's info lines (the precision chosen, sources resampled, pairs flipped, ...) on the command line,
    where no logging is configured; a program that configured the `trl_more` logger itself keeps its settings."""
    package_logger = logging.getLogger("trl_more")
    if not package_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)


def parse_subcommand_arguments(subcommand: str, args: list[str]) -> tuple:
    """The config dataclasses of `trl-more <subcommand> <args>`, from the flags and the `--config` YAML file."""
    parser = importlib.import_module(SUBCOMMANDS[subcommand][0]).make_parser(prog=f"trl-more {subcommand}")
    return parse_strictly(parser, args)


def parse_strictly(parser, args: list[str]) -> tuple:
    """`parser.parse_args_and_config(args)` for a `TrlParser`, refusing anything that is not one of its options.

    Every YAML key and every flag must be an option of the parser: an unknown one (e.g. a misspelled key) stops the
    command with a message that names it, the file and the closest option, before anything runs.
    """
    prog = parser.prog
    options = {field.name for dtype in parser.dataclass_types for field in dataclasses.fields(dtype) if field.init}
    if "--config" in args and args.index("--config") + 1 < len(args):
        _check_config_keys(args[args.index("--config") + 1], options, prog)
    # Flags are checked by name before the configs are built, whose own checks (e.g. bf16 on a CPU) would otherwise
    # answer a misspelled flag with an unrelated error.
    known = options | {f"no_{option}" for option in options} | {"config", "help"}
    unknown = []
    for position, argument in enumerate(args):
        if argument.startswith("--") and argument[2:].split("=")[0] not in known:
            value = args[position + 1 : position + 2]
            unknown += [argument, *(value if value and not value[0].startswith("--") and "=" not in argument else [])]
    _refuse_unknown(unknown, options, prog)
    *parsed, unknown = parser.parse_args_and_config(args, return_remaining_strings=True)
    _refuse_unknown(unknown, options, prog)
    return tuple(parsed)


def _refuse_unknown(arguments: list[str], options: set[str], prog: str) -> None:
    if arguments:
        flags = [argument for argument in arguments if argument.startswith("-")]
        raise SystemExit(
            f"{prog}: unrecognized arguments {' '.join(arguments)}"
            + "".join(_suggestion(flag.lstrip("-").split("=")[0], options) for flag in flags)
            + f". `{prog} --help` lists the options."
        )


def _check_config_keys(path: str, options: set[str], prog: str) -> None:
    from ..yaml_loading import load_yaml

    try:
        config = load_yaml(path)
    except ValueError as error:
        raise SystemExit(f"{prog}: {error}") from error
    if not isinstance(config, dict):
        raise SystemExit(f"{prog}: {path} must be a YAML mapping of option names to values.")
    unknown = [key for key in config if key not in options and key != "env"]  # `env`: variables TrlParser sets
    if unknown:
        raise SystemExit(
            f"{prog}: unknown key(s) {', '.join(map(repr, unknown))} in {path}"
            + "".join(_suggestion(key, options) for key in unknown)
            + f". Every key must be an option of `{prog}` (`{prog} --help` lists them)."
        )


def _suggestion(name: str, options: set[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" ({name!r}: did you mean {close[0]!r}?)" if close else ""
