"""What every command that calls engines shares: options, the output folder, engines, caches, logs.

`run_session` checks the output folder and builds every engine before anything is written, so bad
input leaves nothing behind; then it creates the folder, starts the run log and trace, and closes
engines, caches and logs however the run ends.

A run has its own redactor (telemetry/redact.py), current for the session's duration: every engine is
built behind it (a fault's text is scrubbed where it arises), the run's log files and the console
scrub every line with it, `write_atomic` scrubs every file, and an exception leaving the session
is scrubbed in place before whoever catches it prints or stores it. No logging configuration of
the process is touched: the run's files are handlers of this run only (telemetry/logs.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from agents.criteria import CriteriaCache
from backends.cache import ResponseCache
from backends.errors import EngineConfigError
from backends.ledger import Ledger, LedgerBook
from backends.registry import BackendPool, EngineFactory, build_engine
from drpo.errors import UserInputError
from telemetry.logs import run_logs
from telemetry.redact import Redactor, current, redacting
from schemas.config import RunConfig
from schemas.errors import first_leaf


def default_cache_dir() -> Path:
    return Path(os.environ.get("DRPO_CACHE_DIR") or Path.home() / ".cache" / "drpo")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


@dataclass
class RunOptions:
    config: RunConfig
    out: Path
    run_id: str = field(default_factory=new_run_id)
    force: bool = False
    """Write into a non-empty output folder."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    """Where the shared caches live (criteria selections, engine responses, embeddings)."""
    criteria_cache: bool = True
    """False keeps criteria selections in memory for this run only."""
    response_cache: bool = True
    """False sends every request, even one answered before."""
    resume: bool = False
    """Continue the run in `out` from its last checkpoint, replaying its finished calls."""


@dataclass
class Session:
    ledger: Ledger
    backends: BackendPool
    models: dict[str, str]
    criteria_cache: CriteriaCache


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserInputError(f"--out {out}: folder is not empty; choose a new folder or pass --force")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (temp file + rename), scrubbed by the current
    run's redactor, so no file a run writes can hold one of its secrets."""
    text = current().scrub(text)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


JOURNAL = "journal.sqlite"
"""Every answer the run received, so that a resumed run replays them instead of asking again."""
LEDGER = "ledger.sqlite"
"""Every call the run sent, fault and replay, across processes (backends/ledger.py)."""


@contextmanager
def _scrubbed_errors(redactor: Redactor) -> Iterator[None]:
    """An exception leaving the block has the run's secrets masked in place (text, causes, groups)."""
    try:
        yield
    except Exception as exc:
        redactor.scrub_in_place(exc)
        raise


@asynccontextmanager
async def _watching(backends: BackendPool) -> AsyncIterator[None]:
    """While the block runs, a stalled engine is reported on the console (`engine.stalled`)."""
    try:
        async with anyio.create_task_group() as watchers:
            watchers.start_soon(backends.watch)
            try:
                yield
            finally:
                watchers.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the task group wraps whatever the run raised
        raise first_leaf(group) from None


@asynccontextmanager
async def run_session(options: RunOptions, engine_factory: EngineFactory = build_engine) -> AsyncIterator[Session]:
    if not options.resume:
        check_out_dir(options.out, options.force)
    redactor = Redactor.for_config(options.config)
    with redacting(redactor), _scrubbed_errors(redactor):
        ledger = Ledger(options.config.budgets)
        responses = ResponseCache(options.cache_dir / "responses.sqlite") if options.response_cache else None
        backends = BackendPool(options.config, ledger, engine_factory, caches=[responses] if responses else [],
                               redactor=redactor)
        try:
            models = backends.models()  # builds every engine now: a bad model or endpoint fails before any output
            await backends.probe()
        except BaseException as exc:
            await backends.aclose()
            if responses is not None:
                responses.close()
            if isinstance(exc, EngineConfigError | ValueError):
                raise UserInputError(redactor.scrub(str(exc))) from None
            raise
        options.out.mkdir(parents=True, exist_ok=True)
        journal = ResponseCache(options.out / JOURNAL, journal=True)
        backends.add_journal(journal)
        book = LedgerBook(options.out / LEDGER)
        ledger.attach(book)  # a resumed run continues its account and its budgets
        criteria = CriteriaCache(options.cache_dir / "criteria.sqlite" if options.criteria_cache else None)
        with run_logs(options.out, redactor):
            try:
                with structlog.contextvars.bound_contextvars(run_id=options.run_id):
                    async with _watching(backends):
                        yield Session(ledger=ledger, backends=backends, models=models, criteria_cache=criteria)
            finally:
                await backends.aclose()
                criteria.close()
                journal.close()
                book.close()
                if responses is not None:
                    responses.close()
