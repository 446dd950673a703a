"""Fixtures of the hostile-engine tests: the API key in the environment, and the log lines.

Each test starts its own misbehaving server (tests/hostile/servers.py) on 127.0.0.1; the
servers bound themselves in requests and time, so a test that goes wrong fails, never hangs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from telemetry.logs import event_of
from tests.hostile.calls import KEY, KEY_ENV


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


class _Events(logging.Handler):
    def __init__(self, into: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(event_of(record))


class LogLines:
    """A live view over both sources: a test may read it while the code under test still logs."""

    def __init__(self, *sources: list[dict[str, Any]]) -> None:
        self.sources = sources

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([line for source in self.sources for line in source])


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """Every event the code under test logs, as it was logged (before any redactor: what the
    engine itself let through), from project loggers (telemetry.logs) and plain structlog ones alike.
    An event's level is in `severity` (project loggers) or `log_level` (structlog's capture)."""
    lines: list[dict[str, Any]] = []
    project = logging.getLogger("drpo")
    handler, level = _Events(lines), project.level
    project.addHandler(handler)
    project.setLevel(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as captured:
            yield LogLines(lines, captured)
    finally:
        project.removeHandler(handler)
        project.setLevel(level)
