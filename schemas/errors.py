"""The project's error tree root, and the one place that unwraps exception groups.

Every error the project can name derives from `ProjectError` and says, in one line, what went
wrong, where, and how to fix it. The command line prints that line and exits with `exit_code`;
it never prints a traceback for a `ProjectError`. Subclasses live with their layer:
`backends/errors.py` (engine faults and outages), `drpo/errors.py` (bad input).
"""

from __future__ import annotations


class ProjectError(Exception):
    """An error the project can name; `exit_code` is what the command line returns for it."""

    exit_code = 1


def first_leaf(error: BaseException) -> BaseException:
    """The first non-group exception inside (possibly nested) exception groups; `error` itself
    when it is not a group. Task groups wrap whatever a task raised; callers want the cause."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def first_of(error: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of `kind` anywhere in `error` (a group or a plain exception), or None."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := first_of(inner, kind)) is not None:
                return found
    return None
