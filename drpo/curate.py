"""The `curate` command: run the example-curation loop over a seed pool and write curated.json.

A curation in which no example's seed answer could even be judged ends with one line
(`CurateFailed`) instead of a pool identical to its seeds, and, like any failed curation, leaves
no half-written folder behind (`discard_on_failure`): it cannot be resumed, so a re-run of the
same command must not be blocked; the answers it received stay in the shared response cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backends.registry import EngineFactory, build_engine
from drpo.datasets import CURATED_FILE, DEFAULT_EXAMPLES, load_examples
from drpo.runner import check_names
from drpo.session import RunOptions, run_session, write_atomic
from graph.context import RunContext
from graph.curation import curate_pool
from schemas.artifact import Accounting, CuratedExample, CuratedPool
from schemas.catalogue import AspectCatalogue
from schemas.errors import ProjectError
from telemetry.logs import get_logger

log = get_logger("drpo.progress")


@dataclass
class CurateOptions(RunOptions):
    examples: Path = DEFAULT_EXAMPLES
    """Seed pool: JSONL (query, answer) or the official DRPO JSON (query -> <START>...<END>)."""
    discard_on_failure: bool = True
    """Nothing to resume: a failed curation's files go, so the same command runs again (drpo/session.py)."""


class CurateFailed(ProjectError):
    """No seed answer could be judged: every example failed before curation began."""

    exit_code = 1


def check_curated(examples: list[CuratedExample]) -> None:
    if examples and all(e.failure is not None and not e.history for e in examples):
        raise CurateFailed(f"curate: no example could be judged, all {len(examples)} failed (the first: "
                           f"{(examples[0].failure or '')[:200]}); check the engines and run the same command again")


async def curate(options: CurateOptions, engine_factory: EngineFactory = build_engine) -> CuratedPool:
    check_names(options.config)
    seeds, source = load_examples(options.examples)
    started = time.perf_counter()
    async with run_session(options, engine_factory) as session:
        log.info("curate.start", seeds=len(seeds), source=str(source), iterations=options.config.curation.iterations)
        ctx = RunContext(config=options.config, backends=session.backends, catalogue=AspectCatalogue.load(),
                         criteria_cache=session.criteria_cache)
        curated = await curate_pool(ctx, seeds)
        check_curated(curated)
        ledger = session.ledger
        pool = CuratedPool(
            run_id=options.run_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_s=time.perf_counter() - started,
            models=session.models,
            iterations=options.config.curation.iterations,
            from_best=options.config.curation.from_best,
            examples=curated,
            accounting=Accounting(total=ledger.total(), by_role=ledger.by_role(), by_backend=ledger.by_backend()),
        )
        write_atomic(options.out / CURATED_FILE, pool.model_dump_json(indent=2))
        log.info("curate.done", out=str(options.out), wall_s=round(pool.wall_s, 1))
    return pool
