"""The command line's error boundary: any exception that reaches it becomes one line and an exit code.

- a `ProjectError` (bad input, an engine that is down or refuses, a damaged run folder, ...):
  `error: <its message>` and its own `exit_code`; never a traceback;
- Ctrl-C: `interrupted`, exit code 130;
- anything else is a bug: `internal error: <Type>: <message> (a bug; ...)`, exit code 1; its
  traceback is shown only with `--verbose`.

Task groups wrap what their tasks raised in exception groups; `schemas.errors.first_of` and
`first_leaf` (the project's one unwrapper) find the error that matters inside them. Every line
passes the current run's redactor (telemetry/redact.py): an engine's error text may echo a key.
"""

from __future__ import annotations

import sys

from drpo.errors import UserInputError
from schemas.errors import ProjectError, first_leaf, first_of
from telemetry.redact import current

INTERRUPTED = 130
"""The shell's code for a process ended by SIGINT (128 + 2)."""
INTERNAL = 1

FAILURES: tuple[type[BaseException], ...] = (Exception, KeyboardInterrupt, BaseExceptionGroup)
"""What the boundary catches: everything but SystemExit (argparse's --help) and cancellation."""

def is_bad_input(error: BaseException) -> bool:
    """True when the error that matters in `error` is the user's input, not the run."""
    return isinstance(first_of(error, ProjectError), UserInputError)


def describe(error: BaseException) -> tuple[int, str]:
    """The exit code and the one line (scrubbed) for an exception that reached the command line."""
    redactor = current()
    if first_of(error, KeyboardInterrupt) is not None:
        return INTERRUPTED, "interrupted"
    known = first_of(error, ProjectError)
    if known is not None:
        return known.exit_code, f"error: {redactor.scrub_exception(known)}"
    leaf = first_leaf(error)
    text = redactor.scrub_exception(leaf)
    detail = f"{type(leaf).__name__}: {text}" if text != type(leaf).__name__ else text
    return INTERNAL, f"internal error: {detail} (a bug; please report it with run.log)"


def report(error: BaseException, hint: str | None = None, *, verbose: bool = False) -> int:
    """Print the error's line (and `hint`, when the run can be continued) on stderr; return its code.
    `verbose` adds the scrubbed traceback of an internal error, for whoever reports the bug."""
    code, line = describe(error)
    if verbose and code == INTERNAL and first_of(error, ProjectError) is None:
        print(current().format_exception(error).rstrip(), file=sys.stderr)
    print(f"{line}; {hint}" if hint else line, file=sys.stderr)
    return code
