"""Logging without global state: the project's loggers, a run's files, the console.

    log = get_logger("drpo.beam")            # instead of structlog.get_logger(...)
    with run_logs(out, redactor):            # what `drpo.session.run_session` does for a run
        log.info("level.done", level=3)      # -> <out>/run.log (and the console, if configured)
    configure_console("normal")              # the command line's choice; a library user may call it

- `<run>/run.log`: every event of the project's loggers, one JSON line each;
- `<run>/trace.jsonl`: the agent messages (`drpo.trace`) and the engine's fault lines (`drpo.backend`);
- the console: progress lines and warnings, `HH:MM:SS event key=value`.

Why no `structlog.configure` and no root handler: the library runs inside applications that have
their own logging. A project logger is a structlog logger with its own processor chain (it never
reads structlog's global configuration) over a small sink that hands each event to the handlers
of the run this code runs in (held in a context variable, so each run's lines go to its own files,
even for runs side by side) and then to the stdlib logger of the same name, which the application
(or `configure_console`) governs. The run's files get every event whatever the logging levels,
and the application sees only what its own levels let through, as from any library.

Context (run id, level, beam, node, call ids) comes from structlog contextvars on every line.
Every line is rendered first and then passes the redactor (telemetry/redact.py), for every handler.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson
import structlog

from telemetry import redact
from telemetry.redact import Redactor

RUN_LOG = "run.log"
TRACE = "trace.jsonl"
TRACE_LOGGERS = ("drpo.trace", "drpo.backend")
"""Loggers whose lines go to the trace (and their children)."""
PROJECT = "drpo"
"""The stdlib logger namespace of every project logger."""

_EVENT = "drpo_event"
_REDACTOR = "drpo_redactor"
_CONSOLE_TAG = "_drpo_console"
_RENDERED = "_drpo_json"
_run_handlers: ContextVar[tuple[logging.Handler, ...]] = ContextVar("drpo_run_handlers", default=())


def add_severity(_: Any, method_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """The log level as `severity`: `level` belongs to the search (the beam level of a line)."""
    event["severity"] = _SEVERITY.get(method_name, method_name)
    return event


_SEVERITY = {"warn": "warning", "exception": "error", "fatal": "critical"}


def _to_sink(_: Any, __: str, event: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (event,), {}


_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.PositionalArgumentsFormatter(),
    add_severity,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    _to_sink,
]


def _resolved(redactor: Redactor | None) -> Redactor:
    return redactor if redactor is not None else redact.current()


class _Message:
    """A record's message for handlers that are not ours: `event key=value`, scrubbed when read."""

    __slots__ = ("event", "redactor")

    def __init__(self, event: dict[str, Any], redactor: Redactor | None) -> None:
        self.event, self.redactor = event, redactor

    def __str__(self) -> str:
        return _resolved(self.redactor).scrub(_fields_line(self.event))


class _Sink:
    """What a project logger writes to: the current run's handlers, then the stdlib logger."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stdlib = logging.getLogger(name)

    def _emit(self, levelno: int, event: dict[str, Any]) -> None:
        handlers = _run_handlers.get()
        forward = self.stdlib.isEnabledFor(levelno)
        if not handlers and not forward:
            return
        redactor = redact.active()  # the run's; resolved from the environment only when a line is shown
        record = self.stdlib.makeRecord(self.name, levelno, "(drpo)", 0, _Message(event, redactor), (), None,
                                        extra={_EVENT: event, _REDACTOR: redactor})
        for handler in handlers:
            if levelno >= handler.level:
                handler.handle(record)
        if forward:
            self.stdlib.handle(record)

    def debug(self, event: dict[str, Any]) -> None:
        self._emit(logging.DEBUG, event)

    def info(self, event: dict[str, Any]) -> None:
        self._emit(logging.INFO, event)

    def warning(self, event: dict[str, Any]) -> None:
        self._emit(logging.WARNING, event)

    def error(self, event: dict[str, Any]) -> None:
        self._emit(logging.ERROR, event)

    def critical(self, event: dict[str, Any]) -> None:
        self._emit(logging.CRITICAL, event)

    exception = error


def get_logger(name: str = PROJECT) -> structlog.stdlib.BoundLogger:
    """A project logger: drop-in for `structlog.get_logger(name)`, independent of structlog's
    global configuration. `name` should be under `drpo.` so `configure_console` governs it."""
    return structlog.stdlib.BoundLogger(_Sink(name), processors=_PROCESSORS, context={})


def event_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured event of a record: a project logger's own, or one made from a plain record."""
    event = getattr(record, _EVENT, None)
    if event is not None:
        return event
    return {
        "event": record.getMessage(),
        **structlog.contextvars.get_contextvars(),
        "severity": record.levelname.lower(),
        "logger": record.name,
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
    }


_JSON = structlog.processors.JSONRenderer(sort_keys=False)


def render_json(event: dict[str, Any]) -> str:
    """One event as a JSON object: orjson (a tenth of the cost, which a server pays on every
    request), and structlog's renderer for what orjson refuses (a lone surrogate, an int past 64
    bits, a key that is not a string). Numpy scalars are numbers (a score or a similarity from numpy
    is one); other objects orjson cannot serialize are written as their repr, as structlog writes them."""
    try:
        return orjson.dumps(event, default=repr, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _JSON(None, "", event)


class JsonLines(logging.Formatter):
    """One JSON object per line, scrubbed after rendering (so JSON-escaped secrets go too)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get(_RENDERED)
        if cached is not None and cached[0] is self.redactor:  # run.log and trace.jsonl share a line
            return cached[1]
        line = self.redactor.scrub(render_json(event_of(record)))
        record.__dict__[_RENDERED] = (self.redactor, line)
        return line


class OnlyTrace(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return any(record.name == name or record.name.startswith(name + ".") for name in TRACE_LOGGERS)


@contextmanager
def run_logs(run_dir: Path, redactor: Redactor) -> Iterator[None]:
    """Write this context's events to `<run_dir>/run.log` and `trace.jsonl` until the block ends.

    Appends (a resumed run continues its files). Only code running in this context, and the tasks
    it starts, writes here; the handlers are closed at the end however the block ends."""
    run_log = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8")
    trace = logging.FileHandler(run_dir / TRACE, encoding="utf-8")
    trace.addFilter(OnlyTrace())
    for handler in (run_log, trace):
        handler.setLevel(logging.INFO)
        handler.setFormatter(JsonLines(redactor))
    token = _run_handlers.set((run_log, trace))
    try:
        yield
    finally:
        _run_handlers.reset(token)
        run_log.close()
        trace.close()


_CONSOLE_HIDDEN = {"event", "timestamp", "logger", "severity", "run_id"}


def _fields_line(event: dict[str, Any]) -> str:
    mark = "" if event.get("severity") in (None, "info") else f"{str(event['severity']).upper()} "
    fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in _CONSOLE_HIDDEN and v is not None)
    return f"{mark}{event.get('event', '')} {fields}".rstrip()


def console_line(event: dict[str, Any]) -> str:
    """`HH:MM:SS event key=value ...`: short lines for people watching a run."""
    return f"{str(event.get('timestamp', ''))[11:19]} {_fields_line(event)}"


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _resolved(getattr(record, _REDACTOR, None)).scrub(console_line(event_of(record)))


Verbosity = Literal["quiet", "normal", "verbose"]


class _ConsoleFilter(logging.Filter):
    """quiet: warnings and errors; normal: also the progress lines; verbose: every event."""

    def __init__(self, verbosity: Verbosity) -> None:
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or self.verbosity == "verbose":
            return True
        return self.verbosity == "normal" and record.name == "drpo.progress"


class _Stderr:
    """Whatever `sys.stderr` is when a line is written (so a replaced stderr is honoured)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_console(verbosity: Verbosity = "normal", stream: IO[str] | None = None, *,
                      root: bool = False) -> logging.Handler:
    """Show the project's lines on `stream` (default: stderr). The command line calls this; so may
    a library user. Replaces the console an earlier call added and sets the `drpo` logger's level
    so progress lines pass; touches no other handler. `root=True` (for the command line, which
    owns its process) puts the console on the root logger instead, so other libraries' warnings
    are shown the same way and pass the redactor too."""
    if verbosity not in ("quiet", "normal", "verbose"):
        raise ValueError(f"verbosity {verbosity!r}: use quiet, normal or verbose")
    remove_console()
    handler = logging.StreamHandler(stream if stream is not None else _Stderr())  # type: ignore[arg-type]
    handler.setFormatter(_ConsoleFormatter())
    handler.addFilter(_ConsoleFilter(verbosity))
    project = logging.getLogger(PROJECT)
    setattr(handler, _CONSOLE_TAG, project.level)
    (logging.getLogger() if root else project).addHandler(handler)
    project.setLevel(logging.DEBUG if verbosity == "verbose" else logging.INFO)
    return handler


def remove_console() -> None:
    """Undo `configure_console`: remove its handler and give the `drpo` logger its level back."""
    project = logging.getLogger(PROJECT)
    for logger in (project, logging.getLogger()):
        for handler in [h for h in logger.handlers if hasattr(h, _CONSOLE_TAG)]:
            logger.removeHandler(handler)
            project.setLevel(getattr(handler, _CONSOLE_TAG))
            handler.close()
