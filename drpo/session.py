"""What every command that calls engines shares: options, the output folder, engines, caches, logs.

`run_session` checks everything before anything is written or spent, so bad input leaves nothing
behind: the paths of `--out` and `--cache-dir`, the run folder's state on `--resume` (its
databases read whole; drpo/run_folder.py), the shared cache databases, then every engine, built
and probed. Only then does it claim the folder (one process at a time: a lock the OS releases
when its owner dies; a new run's folder made exclusively, or emptied by `--force`), open the
run's journal and ledger (a resumed run continues its account and budgets), start the run log
and trace, and close all of it however the run ends.

A run has its own redactor (telemetry/redact.py), current for the session's duration: every engine is
built behind it (a fault's text is scrubbed where it arises), the run's log files and the console
scrub every line with it, `write_atomic` scrubs every file, and an exception leaving the session
is scrubbed in place before whoever catches it prints or stores it. No logging configuration of
the process is touched: the run's files are handlers of this run only (telemetry/logs.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import anyio
import structlog

from agents.criteria import CriteriaCache
from agents.embedders import check_embedder
from backends.cache import ResponseCache
from backends.errors import EngineConfigError
from backends.ledger import Ledger, LedgerBook
from backends.registry import BackendPool, EngineFactory, build_engine
from drpo.errors import UserInputError
from drpo.run_folder import (
    JOURNAL,
    LEDGER,
    check_cache,
    check_new_folder,
    check_path,
    check_run_state,
    claimed,
    discard,
    make_folder,
    seal_torn_line,
)
from schemas.config import RunConfig
from schemas.errors import ProjectError, first_leaf, first_of
from telemetry.logs import RUN_LOG, TRACE, run_logs
from telemetry.redact import Redactor, current, redacting

RESPONSES = "responses.sqlite"
CRITERIA = "criteria.sqlite"


def default_cache_dir() -> Path:
    return Path(os.environ.get("DRPO_CACHE_DIR") or Path.home() / ".cache" / "drpo")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


@dataclass
class RunOptions:
    replaces_runs: ClassVar[bool] = False
    """Whether `--force` lets this command replace an optimize run in its folder (only a new
    optimize run may; `eval --out RUN_DIR --force` would delete the run it evaluates)."""
    config: RunConfig
    out: Path
    run_id: str = field(default_factory=new_run_id)
    force: bool = False
    """Start from an empty output folder: the files an earlier command wrote there are removed."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    """Where the shared caches live (criteria selections, engine responses, embeddings)."""
    criteria_cache: bool = True
    """False keeps criteria selections in memory for this run only."""
    response_cache: bool = True
    """False sends every request, even one answered before."""
    resume: bool = False
    """Continue the run in `out` from its last checkpoint, replaying its finished calls."""
    discard_on_failure: bool = False
    """For a command that cannot be continued (`eval`, `curate`): when it fails with a project error
    or Ctrl-C, the files it wrote go, and the folder too if it made it, so the same command runs
    again without --force. Done by the folder's owner under its lock, so it never touches a folder
    another process runs in. A bug keeps its folder (the error line asks for its run.log)."""


@dataclass
class Session:
    ledger: Ledger
    backends: BackendPool
    models: dict[str, str]
    criteria_cache: CriteriaCache


def check_paths(options: RunOptions) -> None:
    """`--out` and `--cache-dir` are folders that can be made and written. Writes nothing; the
    runner calls it before it reads its inputs."""
    check_path(options.out, "--out")
    check_path(options.cache_dir, "--cache-dir")


def check_embedders(*names: str) -> None:
    """Every retrieval embedder named is one this machine has, refused as bad input before an
    engine is asked (building one writes under the cache folder, so it is built in the session)."""
    for name in dict.fromkeys(names):
        try:
            check_embedder(name)
        except ValueError as exc:
            raise UserInputError(str(exc)) from None


def check_caches(options: RunOptions) -> None:
    """The shared cache databases the run will use read whole: one that a crash or a full disk
    tore would fail mid-run, after the rest of the search was paid for."""
    if options.response_cache:
        check_cache(options.cache_dir / RESPONSES, "--no-cache")
    if options.criteria_cache:
        check_cache(options.cache_dir / CRITERIA, "--no-criteria-cache")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (temp file + rename), scrubbed by the current
    run's redactor, so no file a run writes can hold one of its secrets."""
    text = current().scrub(text)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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


def _discarding(out: Path, created: bool):  # type: ignore[no-untyped-def]
    """An exit callback: discard the folder's files when the block failed cleanly (see
    `RunOptions.discard_on_failure`); never suppresses the error."""

    def on_exit(kind, error, traceback) -> bool:  # type: ignore[no-untyped-def]
        if error is not None and first_of(error, (ProjectError, KeyboardInterrupt)) is not None:
            discard(out, created=created)
        return False

    return on_exit


async def _engines(options: RunOptions, backends: BackendPool, redactor: Redactor) -> dict[str, str]:
    """Build every engine the run calls (a model-backed critic's included) and probe each: a bad
    model or endpoint fails here, before anything is written."""
    from graph.roles import roles_in_use  # here, so `report` (which imports write_atomic) loads no graph

    try:
        models = backends.models(roles_in_use(options.config))
        await backends.probe()
    except (EngineConfigError, ValueError) as exc:
        raise UserInputError(redactor.scrub(str(exc))) from None
    return models


@asynccontextmanager
async def run_session(options: RunOptions, engine_factory: EngineFactory = build_engine) -> AsyncIterator[Session]:
    out = options.out
    check_paths(options)
    if not options.resume:
        check_new_folder(out, options.force, replaces_runs=options.replaces_runs)
    redactor = Redactor.for_config(options.config)
    with redacting(redactor), _scrubbed_errors(redactor):
        async with AsyncExitStack() as stack:
            if options.resume:  # the folder is ours before its state is read
                stack.enter_context(claimed(out, new=False))
                check_run_state(out)
            check_caches(options)
            ledger = Ledger(options.config.budgets)
            backends = BackendPool(options.config, ledger, engine_factory, redactor=redactor)
            stack.push_async_callback(backends.aclose)
            models = await _engines(options, backends, redactor)
            # The cache folder is made (a write proves it writable) only once the engines answered,
            # and goes again if --out cannot be claimed: a refused command leaves nothing behind.
            cache_made = (options.response_cache or options.criteria_cache) and make_folder(options.cache_dir,
                                                                                            "--cache-dir")
            if not options.resume:
                try:
                    created = stack.enter_context(claimed(out, new=True, force=options.force,
                                                          replaces_runs=options.replaces_runs))
                except UserInputError:
                    if cache_made and not any(options.cache_dir.iterdir()):
                        options.cache_dir.rmdir()
                    raise
                if options.discard_on_failure:
                    stack.push(_discarding(out, created))  # runs once every file of the run is closed
            if options.response_cache:  # only now: an engine that is down or a bad --out leaves no file
                responses = ResponseCache(options.cache_dir / RESPONSES)
                stack.callback(responses.close)
                backends.caches.append(responses)
            for log in (RUN_LOG, TRACE):
                seal_torn_line(out / log)
            journal = ResponseCache(out / JOURNAL, journal=True)
            stack.callback(journal.close)
            backends.add_journal(journal)
            book = LedgerBook(out / LEDGER)
            stack.callback(book.close)
            ledger.attach(book)  # a resumed run continues its account and its budgets
            criteria = CriteriaCache(options.cache_dir / CRITERIA if options.criteria_cache else None)
            stack.callback(criteria.close)
            stack.enter_context(run_logs(out, redactor))
            backends.keep_logs_in(out)  # the embedded server's log, in the folder the run now owns
            stack.enter_context(structlog.contextvars.bound_contextvars(run_id=options.run_id))
            await stack.enter_async_context(_watching(backends))
            yield Session(ledger=ledger, backends=backends, models=models, criteria_cache=criteria)
