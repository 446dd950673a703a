"""One optimization run: validate inputs, wire the context, run the beam graph, write artifacts.

Inputs are all checked before the output folder is created, so bad input leaves nothing behind.
The artifacts are written atomically (temp file + rename) once the search has finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import anyio
import structlog
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from pydantic import BaseModel

from agents.curator import ExamplePool
from agents.embedders import make_embedder
from backends.errors import EngineUnavailable
from backends.registry import EngineFactory, build_engine
from drpo.datasets import (
    DEFAULT_EXAMPLES,
    DEFAULT_TRAIN,
    TrainQuery,
    file_digest,
    load_examples,
    load_queries,
    stratified_order,
)
from drpo.errors import UserInputError
from drpo.session import RunOptions, Session, run_session, write_atomic
from graph.beam import build_beam_graph
from graph.context import RunContext
from graph.level_log import LevelLog
from graph.state import BeamNode, Child, Evaluation, ExpandTask
from schemas.artifact import Accounting, FinalNode, LevelSummary, RunArtifact, TrainItem
from schemas.catalogue import AspectCatalogue
from schemas.config import RunConfig
from schemas.messages import AspectScore

log = structlog.get_logger("drpo.progress")

STATE_TYPES = (BeamNode, Child, Evaluation, ExpandTask, AspectScore)
"""Every pydantic type stored in graph state, allowed through the checkpoint serializer."""


def checkpoint_serde() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=None).with_msgpack_allowlist(STATE_TYPES)


@dataclass
class OptimizeOptions(RunOptions):
    train: Path = DEFAULT_TRAIN
    examples: Path = DEFAULT_EXAMPLES
    """A JSONL/JSON example file or a `curate` output folder."""
    embedder: str = "auto"
    """Retrieval embedder: auto (WordLlama if installed, else lexical), wordllama, minilm, lexical."""


class RunManifest(BaseModel):
    """What `--resume` needs to rebuild a run exactly: written to run.json when the run starts."""

    run_id: str
    config: RunConfig
    train: str
    train_sha256: str
    examples: str
    examples_sha256: str
    embedder: str


MANIFEST = "run.json"
LEVELS = "levels.jsonl"


def resume_options(out: Path, **overrides) -> OptimizeOptions:  # type: ignore[no-untyped-def]
    """The options of the interrupted run in `out`, checked against the files it read."""
    path = out / MANIFEST
    if not path.is_file():
        raise UserInputError(f"--resume: {out} holds no run to resume ({MANIFEST} is missing); start a new run")
    manifest = RunManifest.model_validate_json(path.read_text(encoding="utf-8"))
    for name in ("train", "examples"):
        file = Path(getattr(manifest, name))
        if not file.is_file() or file_digest(file) != getattr(manifest, f"{name}_sha256"):
            raise UserInputError(f"--resume: {file} changed since the run started; restore it or start a new run")
    return OptimizeOptions(config=manifest.config, out=out, run_id=manifest.run_id, train=Path(manifest.train),
                           examples=Path(manifest.examples), embedder=manifest.embedder, resume=True, **overrides)


async def optimize(options: OptimizeOptions, engine_factory: EngineFactory = build_engine) -> RunArtifact:
    config = options.config
    ordered = stratified_order(load_queries(options.train), config.search.seed)
    examples, examples_file = load_examples(options.examples)
    pool = ExamplePool(examples, make_embedder(options.embedder, options.cache_dir), options.cache_dir)
    if config.search.k > len(pool.examples):
        raise UserInputError(f"k={config.search.k} is larger than the example pool ({len(pool.examples)} examples)")
    started = time.perf_counter()
    async with run_session(options, engine_factory) as session:
        if not options.resume:
            manifest = RunManifest(
                run_id=options.run_id, config=config, train=str(options.train.resolve()),
                train_sha256=file_digest(options.train), examples=str(examples_file.resolve()),
                examples_sha256=file_digest(examples_file), embedder=options.embedder,
            )
            write_atomic(options.out / MANIFEST, manifest.model_dump_json(indent=2))
        log.info("run.resume" if options.resume else "run.start", run_id=options.run_id, out=str(options.out), models=session.models,
                 depth=config.search.depth, beam=config.search.beam, actions=config.search.actions,
                 queries=len(ordered))
        used = (config.search.depth + config.search.max_depth_increase) * config.search.queries_per_level
        structlog.get_logger("drpo.run").info(
            "query_order", seed=config.search.seed, order=[q.query for q in ordered[:used]]
        )
        final = await _unwrapped(_search(options, config, session, pool, ordered))
        artifact = _artifact(options, config, session, pool, ordered, final, time.perf_counter() - started)
        artifact.examples_source = str(examples_file)
        artifact.examples_sha256 = file_digest(examples_file)
        write_atomic(options.out / "prompt.txt", artifact.prompt + "\n")
        write_atomic(options.out / "artifact.json", artifact.model_dump_json(indent=2))
        log.info("run.done", out=str(options.out), wall_s=round(artifact.wall_s, 1), score=round(artifact.best.score, 3))
    return artifact


async def _search(options, config, session: Session, pool, ordered: list[TrainQuery]) -> dict:  # type: ignore[no-untyped-def]
    search = config.search
    recursion_limit = 4 * (search.depth + search.max_depth_increase) + 16
    async with (
        aiosqlite.connect(options.out / "checkpoints.sqlite") as conn,
        anyio.create_task_group() as background,
    ):
        await conn.execute("PRAGMA journal_mode=WAL")
        saver = AsyncSqliteSaver(conn, serde=checkpoint_serde())
        ctx = RunContext(
            config=config, backends=session.backends, catalogue=AspectCatalogue.load(), examples=pool,
            queries=[q.query for q in ordered], criteria_cache=session.criteria_cache, background=background,
            levels=LevelLog(options.out / LEVELS),
        )
        graph = build_beam_graph(checkpointer=saver)
        run_config = {"configurable": {"thread_id": options.run_id}, "recursion_limit": recursion_limit}
        saved = await graph.aget_state(run_config)
        if saved.values.get("best") is not None and not saved.next:  # finished; only the artifacts were missing
            final = saved.values
        else:
            start = None if saved.created_at is not None else {}  # None continues from the last checkpoint
            final = await graph.ainvoke(start, config=run_config, context=ctx, durability="sync")
        background.cancel_scope.cancel()  # selections prefetched for levels the search never reached
    return final


async def _unwrapped(search):  # type: ignore[no-untyped-def]
    """The search's result; an engine outage surfaces as itself, not inside an ExceptionGroup."""
    try:
        return await search
    except BaseExceptionGroup as group:
        outage = group.subgroup(EngineUnavailable)
        if outage is not None:
            raise _leaf(outage) from None
        raise


def _leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _artifact(options, config, session, pool, ordered, final, wall_s) -> RunArtifact:  # type: ignore[no-untyped-def]
    ledger = session.ledger
    best: BeamNode = final["best"]
    mode = "mean" if config.search.beam > 1 else "last"
    levels = [
        LevelSummary(
            level=r.level, query_index=r.query_index, max_depth=r.max_depth, bumped=r.bumped,
            best_reward=r.best_reward, mean_reward=r.mean_reward, candidates=len(r.candidates),
            failed=sum(c.failure is not None for c in r.candidates), skipped=sum(c.skipped for c in r.candidates),
            kept=r.kept, query=r.query, nodes=r.candidates,
        )
        for r in LevelLog(options.out / LEVELS).read()
    ]
    used = (len(levels) + 1) * config.search.queries_per_level
    ev = best.evaluation
    return RunArtifact(
        run_id=options.run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_s=wall_s,
        prompt=best.prompt,
        examples=pool.examples,
        examples_source=str(options.examples),
        embedder=pool.embedder.name,
        config=config,
        models=session.models,
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
