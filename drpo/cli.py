"""The command line (run.py). Thin: parse, build the config, run the command, map errors.

    python run.py                       the demo: embedded model, small preset, runs/<run-id>/
    python run.py optimize [options]    a full optimization (see --help)
    python run.py curate [options]      improve a pool of in-context examples
    python run.py answer [options] Q    answer a query with an aligned prompt and examples
    python run.py eval [options]        score an artifact against baselines (drpo/evaluate.py)
    python run.py report RUN_DIR        write RUN_DIR/report.html (drpo/report.py)

`main` is the one error boundary (drpo/cli_errors.py): a project error prints one line and exits
with its code (bad input: 2), Ctrl-C exits 130, anything else is reported as a bug with exit 1,
and no traceback reaches the console (`--verbose` shows an internal error's). `main` also owns
the process's console (telemetry/logs.py `configure_console`, per `--quiet`/`--verbose`) and makes
the run's redactor current, so no line it prints holds a key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from drpo.cli_errors import FAILURES, report
from drpo.errors import UserInputError
from telemetry.logs import Verbosity, configure_console, remove_console
from telemetry.redact import Redactor, redacting
from schemas.config import RunConfig

DEMO_ARGV = ["optimize", "--demo"]
"""What `python run.py` with no arguments runs."""


Command = Callable[[argparse.Namespace, RunConfig], int]


def parse(argv: list[str]) -> tuple[Command, argparse.Namespace, RunConfig]:
    """The command to run, its flags and its validated config; raises `UserInputError` for bad input.
    The command modules are imported here, not at the top, so that even a broken install fails
    inside the boundary, as one line."""
    from drpo.cli_commands import COMMANDS
    from drpo.cli_config import build_config
    from drpo.cli_parser import build_parser

    args = build_parser().parse_args(argv or DEMO_ARGV)
    if args.command not in COMMANDS:
        raise UserInputError("run.py: unknown command; try `python run.py --help`")
    return COMMANDS[args.command], args, build_config(args)


def verbosity(args: argparse.Namespace) -> Verbosity:
    return "quiet" if args.quiet else "verbose" if args.verbose else "normal"


def main(argv: list[str] | None = None) -> int:
    try:
        command, args, config = parse(sys.argv[1:] if argv is None else argv)
    except FAILURES as exc:
        return report(exc)
    configure_console(verbosity(args), root=True)  # the command line owns its process's console
    try:
        with redacting(Redactor.for_config(config)):  # every line printed masks the run's keys
            try:
                return command(args, config)
            except FAILURES as exc:
                return report(exc, verbose=args.verbose)
    finally:
        remove_console()
