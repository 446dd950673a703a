"""The `curate` command: run the example-curation loop over a seed pool and write curated.json."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


from backends.registry import EngineFactory, build_engine
from drpo.datasets import CURATED_FILE, DEFAULT_EXAMPLES, load_examples
from telemetry.logs import get_logger
from drpo.runner import check_names
from drpo.session import RunOptions, run_session, write_atomic
from graph.context import RunContext
from graph.curation import curate_pool
from schemas.artifact import Accounting, CuratedPool
from schemas.catalogue import AspectCatalogue

log = get_logger("drpo.progress")


@dataclass
class CurateOptions(RunOptions):
    examples: Path = DEFAULT_EXAMPLES
    """Seed pool: JSONL (query, answer) or the official DRPO JSON (query -> <START>...<END>)."""


async def curate(options: CurateOptions, engine_factory: EngineFactory = build_engine) -> CuratedPool:
    check_names(options.config)
    seeds, source = load_examples(options.examples)
    started = time.perf_counter()
    async with run_session(options, engine_factory) as session:
        log.info("curate.start", seeds=len(seeds), source=str(source), iterations=options.config.curation.iterations)
        ctx = RunContext(config=options.config, backends=session.backends, catalogue=AspectCatalogue.load(),
                         criteria_cache=session.criteria_cache)
        curated = await curate_pool(ctx, seeds)
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
