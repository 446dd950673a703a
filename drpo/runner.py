"""One optimization run: validate inputs, wire the context, run the beam graph, write artifacts.

Inputs are all checked before the output folder is created, so bad input leaves nothing behind.
The artifacts are written atomically (temp file + rename) once the search has finished.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import anyio
import structlog
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agents.criteria import CriteriaCache
from agents.curator import ExamplePool
from backends.cache import ResponseCache
from backends.errors import EngineConfigError
from backends.ledger import Ledger
from backends.registry import BackendPool, EngineFactory, build_engine
from drpo.datasets import DEFAULT_TRAIN, TrainQuery, load_queries, stratified_order
from drpo.errors import UserInputError
from drpo.logs import close_run_logs, configure_logging
from graph.beam import build_beam_graph
from graph.context import RunContext
from graph.state import BeamNode, CandidateSummary, Child, Evaluation, ExpandTask, LevelRecord
from schemas.artifact import Accounting, FinalNode, LevelSummary, RunArtifact, TrainItem
from schemas.catalogue import DATA_DIR, AspectCatalogue
from schemas.config import RunConfig
from schemas.messages import AspectScore

log = structlog.get_logger("drpo.progress")

STATE_TYPES = (BeamNode, Child, Evaluation, ExpandTask, LevelRecord, CandidateSummary, AspectScore)
"""Every pydantic type stored in graph state, allowed through the checkpoint serializer."""


def checkpoint_serde() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=None).with_msgpack_allowlist(STATE_TYPES)


def default_cache_dir() -> Path:
    return Path(os.environ.get("DRPO_CACHE_DIR") or Path.home() / ".cache" / "drpo")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


@dataclass
class OptimizeOptions:
    config: RunConfig
    out: Path
    train: Path = DEFAULT_TRAIN
    examples: Path = DATA_DIR / "seed_examples.jsonl"
    run_id: str = field(default_factory=new_run_id)
    force: bool = False
    cache_dir: Path = field(default_factory=default_cache_dir)
    """Where the shared caches live (criteria selections, engine responses)."""
    criteria_cache: bool = True
    """False keeps criteria selections in memory for this run only."""
    response_cache: bool = True
    """False sends every request, even one answered before."""


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserInputError(f"--out {out}: folder is not empty; choose a new folder or pass --force")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


async def optimize(options: OptimizeOptions, engine_factory: EngineFactory = build_engine) -> RunArtifact:
    config = options.config
    ordered = stratified_order(load_queries(options.train), config.search.seed)
    if not options.examples.is_file():
        raise UserInputError(f"--examples {options.examples}: no such file")
    try:
        pool = ExamplePool.load(options.examples)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserInputError(f"--examples {exc}") from None
    if config.search.k > len(pool.examples):
        raise UserInputError(f"k={config.search.k} is larger than the example pool ({len(pool.examples)} examples)")
    _check_out_dir(options.out, options.force)
    ledger = Ledger(config.budgets)
    responses = ResponseCache(options.cache_dir / "responses.sqlite") if options.response_cache else None
    backends = BackendPool(config, ledger, engine_factory, cache=responses)
    try:
        models = backends.models()  # builds every engine now, so a bad model or endpoint fails before any output
    except (EngineConfigError, ValueError) as exc:
        await backends.aclose()
        raise UserInputError(str(exc)) from None

    options.out.mkdir(parents=True, exist_ok=True)
    configure_logging(options.out)
    cache = CriteriaCache(options.cache_dir / "criteria.sqlite" if options.criteria_cache else None)
    started = time.perf_counter()
    try:
        with structlog.contextvars.bound_contextvars(run_id=options.run_id):
            log.info("run.start", run_id=options.run_id, out=str(options.out), models=models,
                     depth=config.search.depth, beam=config.search.beam, actions=config.search.actions,
                     queries=len(ordered))
            structlog.get_logger("drpo.run").info(
                "query_order", seed=config.search.seed, order=[q.query for q in ordered[: config.search.depth + config.search.max_depth_increase]]
            )
            final = await _search(options, config, backends, pool, cache, ordered)
    finally:
        await backends.aclose()
        cache.close()
        if responses is not None:
            responses.close()
    artifact = _artifact(options, config, models, pool, ordered, final, ledger, time.perf_counter() - started)
    _write_atomic(options.out / "prompt.txt", artifact.prompt + "\n")
    _write_atomic(options.out / "artifact.json", artifact.model_dump_json(indent=2))
    log.info("run.done", out=str(options.out), wall_s=round(artifact.wall_s, 1), score=round(artifact.best.score, 3))
    close_run_logs()
    return artifact


async def _search(options, config, backends, pool, cache, ordered: list[TrainQuery]) -> dict:  # type: ignore[no-untyped-def]
    search = config.search
    recursion_limit = 4 * (search.depth + search.max_depth_increase) + 16
    async with (
        aiosqlite.connect(options.out / "checkpoints.sqlite") as conn,
        anyio.create_task_group() as background,
    ):
        await conn.execute("PRAGMA journal_mode=WAL")
        saver = AsyncSqliteSaver(conn, serde=checkpoint_serde())
        ctx = RunContext(
            config=config, backends=backends, catalogue=AspectCatalogue.load(), examples=pool,
            queries=[q.query for q in ordered], criteria_cache=cache, background=background,
        )
        graph = build_beam_graph(checkpointer=saver)
        final = await graph.ainvoke(
            {},
            config={"configurable": {"thread_id": options.run_id}, "recursion_limit": recursion_limit},
            context=ctx,
            durability="sync",
        )
        background.cancel_scope.cancel()  # selections prefetched for levels the search never reached
    return final


def _artifact(options, config, models, pool, ordered, final, ledger, wall_s) -> RunArtifact:  # type: ignore[no-untyped-def]
    best: BeamNode = final["best"]
    mode = "mean" if config.search.beam > 1 else "last"
    levels = [
        LevelSummary(
            level=r.level, query_index=r.query_index, max_depth=r.max_depth, bumped=r.bumped,
            best_reward=r.best_reward, mean_reward=r.mean_reward, candidates=len(r.candidates),
            failed=sum(c.failure is not None for c in r.candidates), skipped=sum(c.skipped for c in r.candidates),
            kept=r.kept,
        )
        for r in final["levels"]
    ]
    used = len(levels) + 1
    ev = best.evaluation
    return RunArtifact(
        run_id=options.run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_s=wall_s,
        prompt=best.prompt,
        examples=pool.examples,
        examples_source=str(options.examples),
        config=config,
        models=models,
        seed=config.search.seed,
        train_file=str(options.train),
        query_order=[TrainItem(query=q.query, source=q.source) for q in ordered[:used]],
        levels=levels,
        best=FinalNode(
            node_id=best.node_id, prompt=best.prompt, rewards=best.rewards, score=best.score(mode),
            last_query=ev.query if ev else None, last_response=ev.response if ev else None,
            last_scores=ev.scores if ev else {},
        ),
        stopped=final.get("stopped"),
        accounting=Accounting(total=ledger.total(), by_role=ledger.by_role(), by_backend=ledger.by_backend()),
    )
