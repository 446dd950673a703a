"""Logging, configured once: structlog events to the console, the run log and the trace.

- console: progress lines and warnings, readable;
- `<run>/run.log`: every event as a JSON line;
- `<run>/trace.jsonl`: the agent messages only (`agent.message` events of `drpo.trace`).

Context (run id, level, beam, candidate, node) comes from structlog contextvars, so library
logs carry it too. Secret values from the environment are redacted from every event.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import structlog

_SECRET_NAMES = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_HANDLER_TAG = "_drpo_handler"


def secret_values() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_NAMES.search(k) and len(v) >= 8]


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


_secrets: list[str] = []
"""Secret values to redact, read from the environment by `configure_logging` (not per event)."""


def redact_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return _scrub(event, _secrets) if _secrets else event


def add_severity(_: Any, method_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """The log level as `severity`: `level` belongs to the search (the beam level of a line)."""
    event["severity"] = "warning" if method_name == "warn" else method_name
    return event


_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    add_severity,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact_secrets,
]


class _OnlyTrace(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name in ("drpo.trace", "drpo.backend")


class _Console(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "drpo.progress" or record.levelno >= logging.WARNING


_CONSOLE_HIDDEN = {"event", "timestamp", "logger", "severity", "run_id"}


def console_line(_: Any, __: str, event: dict[str, Any]) -> str:
    """`HH:MM:SS event key=value ...`: short lines for people watching a run."""
    clock = str(event.get("timestamp", ""))[11:19]
    mark = "" if event.get("severity") in (None, "info") else f"{event['severity'].upper()} "
    fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in _CONSOLE_HIDDEN and v is not None)
    return f"{clock} {mark}{event.get('event', '')} {fields}".rstrip()


def _formatter(renderer: Any) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_PRE_CHAIN,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def _json() -> Any:
    return _formatter(structlog.processors.JSONRenderer(sort_keys=False))


def configure_logging(run_dir: Path | None = None, *, console: bool = True) -> None:
    """(Re)configure structlog and the root logger; safe to call again for a new run folder."""
    _secrets[:] = secret_values()
    structlog.configure(
        processors=[*_PRE_CHAIN, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = []
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(_formatter(console_line))
        stream.addFilter(_Console())
        handlers.append(stream)
    if run_dir is not None:
        run_log = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
        run_log.setFormatter(_json())
        trace = logging.FileHandler(run_dir / "trace.jsonl", encoding="utf-8")
        trace.setFormatter(_json())
        trace.addFilter(_OnlyTrace())
        handlers += [run_log, trace]
    for handler in handlers:
        setattr(handler, _HANDLER_TAG, True)
        root.addHandler(handler)
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def close_run_logs() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler) and getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)
        handler.close()
