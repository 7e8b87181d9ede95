"""The `trl-more` command line: one subcommand per job, each parsed with TRL's `TrlParser`.

Every subcommand lives in its own module `trl_more.cli.<name>` that defines `make_parser(prog)` (a `TrlParser` over
the job's config dataclasses, so `--config file.yaml` works) and `main(*parsed_dataclasses)`. Under several
processes, launch the same module: `accelerate launch -m trl_more.cli <subcommand> ...`.
"""

from __future__ import annotations

import importlib
import sys


SUBCOMMANDS = {
    "reward": ("trl_more.cli.reward", "train a reward model on a source mixture (MORE or MultiTask)"),
    "evaluate": ("trl_more.cli.evaluate", "score preference sources: accuracy, ECE, reward margins, plots"),
    "rjs": ("trl_more.cli.rjs", "rejection-sampling fine-tuning (RJS/RAFT) of a policy against reward models"),
    "armo": ("trl_more.cli.armo", "multi-objective reward model with a gate (ArmoRM): stage 1 ratings, stage 2 gate"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        lines = [f"  {name:<10} {description}" for name, (_, description) in SUBCOMMANDS.items()]
        print("usage: trl-more <subcommand> [options] [--config file.yaml]\n\nsubcommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            raise SystemExit(f"trl-more: unknown subcommand {argv[0]!r}; choose one of {', '.join(SUBCOMMANDS)}.")
        return
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    parser = module.make_parser(prog=f"trl-more {argv[0]}")
    module.main(*parser.parse_args_and_config(argv[1:]))
