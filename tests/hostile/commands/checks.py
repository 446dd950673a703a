"""What every command-level case asserts: the exit code, the one line, no traceback, what is left on
disk, and that no byte written anywhere (files, console, logs) holds the key."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ")
"""A console log line (`HH:MM:SS event key=value`): progress and warnings, not the outcome."""


@dataclass
class Outcome:
    """What one command printed and returned."""

    code: int
    out: str
    err: str

    @property
    def said(self) -> list[str]:
        """stderr without the log lines: what the command itself said."""
        return [line for line in self.err.splitlines() if line.strip() and not LOG_LINE.match(line)]

    @property
    def line(self) -> str:
        """The one line the command ended with; fails the test when there is not exactly one."""
        assert len(self.said) == 1, f"expected one line on stderr, got:\n{self.err}"
        return self.said[0]

    def console(self) -> str:
        return self.out + self.err


def assert_no_traceback(outcome: Outcome) -> None:
    for stream in (outcome.out, outcome.err):
        assert "Traceback" not in stream and 'File "' not in stream, stream


def assert_error(outcome: Outcome, code: int, *mentions: str) -> str:
    """Exit `code`, one `error:` line (no internal error) naming every mention, no traceback."""
    assert_no_traceback(outcome)
    assert outcome.code == code, f"exit {outcome.code}, expected {code}:\n{outcome.err}"
    line = outcome.line
    assert line.startswith("error: ") and line[7:].strip(), line
    for mention in mentions:
        assert mention in line, f"{mention!r} not in {line!r}"
    return line


def forms(secret: str) -> set[bytes]:
    """The bytes `secret` would leave once written: raw, JSON-escaped (once, twice, non-ASCII kept),
    in a repr, HTML-escaped and URL-quoted."""
    in_json = json.dumps(secret)[1:-1]
    texts = {secret, in_json, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(in_json)[1:-1],
             repr(secret)[1:-1], html.escape(secret), html.escape(secret, quote=False), quote(secret, safe=""),
             quote_plus(secret)}
    return {t.encode() for t in texts}


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def leaks(folder: Path, secret: str, console: str = "") -> list[str]:
    """Every file under `folder` (and the console) holding a written form of `secret`."""
    found = [str(p.relative_to(folder)) for p in files_under(folder)
             if any(form in p.read_bytes() for form in forms(secret))]
    if any(form.decode() in console for form in forms(secret)):
        found.append("<console>")
    return found


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes, and every folder (as b"<dir>")."""
    state = {str(p.relative_to(folder)): p.read_bytes() for p in files_under(folder)}
    state.update({str(p.relative_to(folder)): b"<dir>" for p in folder.rglob("*") if p.is_dir()})
    return state
