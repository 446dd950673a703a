"""What every command that calls engines shares: options, the output folder, engines, caches, logs.

`run_session` checks the output folder and builds every engine before anything is written, so bad
input leaves nothing behind; then it creates the folder, starts the run log and trace, and closes
engines, caches and logs however the run ends.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agents.criteria import CriteriaCache
from backends.cache import ResponseCache
from backends.errors import EngineConfigError
from backends.ledger import Ledger
from backends.registry import BackendPool, EngineFactory, build_engine
from drpo.errors import UserInputError
from drpo.logs import close_run_logs, configure_logging
from schemas.config import RunConfig


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


JOURNAL = "journal.sqlite"
"""Every answer the run received, so that a resumed run replays them instead of asking again."""


@asynccontextmanager
async def run_session(options: RunOptions, engine_factory: EngineFactory = build_engine) -> AsyncIterator[Session]:
    if not options.resume:
        check_out_dir(options.out, options.force)
    ledger = Ledger(options.config.budgets)
    responses = ResponseCache(options.cache_dir / "responses.sqlite") if options.response_cache else None
    backends = BackendPool(options.config, ledger, engine_factory, caches=[responses] if responses else [])
    try:
        models = backends.models()  # builds every engine now: a bad model or endpoint fails before any output
        await backends.probe()
    except (EngineConfigError, ValueError) as exc:
        await backends.aclose()
        raise UserInputError(str(exc)) from None
    options.out.mkdir(parents=True, exist_ok=True)
    journal = ResponseCache(options.out / JOURNAL)
    backends.add_journal(journal)
    configure_logging(options.out)
    criteria = CriteriaCache(options.cache_dir / "criteria.sqlite" if options.criteria_cache else None)
    try:
        with structlog.contextvars.bound_contextvars(run_id=options.run_id):
            yield Session(ledger=ledger, backends=backends, models=models, criteria_cache=criteria)
    finally:
        await backends.aclose()
        criteria.close()
        journal.close()
        if responses is not None:
            responses.close()
        close_run_logs()
