"""One optimization run: validate inputs, wire the context, run the beam graph, write artifacts.

Inputs are all checked before the output folder is created, so bad input leaves nothing behind
(the folder itself, its lock, its sealed `run.json` and a resumed run's state: drpo/session.py,
drpo/run_folder.py, drpo/run_manifest.py). The artifacts are written atomically (temp file +
rename) once the search has finished; their accounting is the run's ledger, every process's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite
import anyio
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.sqlite.aio import AsyncSqliteStore

from agents.curator import ExamplePool
from agents.embedders import make_embedder
from backends.policy_mode import folded_at_runtime, resolve_policy
from backends.registry import EngineFactory, build_engine
from drpo.datasets import (
    DEFAULT_EXAMPLES,
    DEFAULT_TRAIN,
    TrainQuery,
    check_enough_queries,
    file_digest,
    load_examples,
    load_queries,
    stratified_order,
)
from drpo.errors import UserInputError
from drpo.held_out import hold_out, with_intervals
from drpo.run_folder import CHECKPOINTS, MANIFEST
from drpo.run_manifest import InputFile, RunManifest, manifest_text, read_manifest
from drpo.session import RunOptions, Session, check_embedders, check_paths, run_session, write_atomic
from graph.beam import build_beam_graph
from graph.context import RunContext
from graph.records import read_search
from graph.roles import CRITICS, known_roles, roles_in_use
from graph.selectors import find_selector, selector_names
from graph.state import BeamNode, checkpoint_serde
from schemas.artifact import Accounting, FinalNode, RunArtifact, TrainItem
from schemas.catalogue import AspectCatalogue
from schemas.config import RunConfig
from schemas.errors import ProjectError, first_of
from schemas.records import CandidateRecord, LevelRecord
from telemetry.logs import get_logger

__all__ = ["CHECKPOINTS", "MANIFEST", "OptimizeOptions", "RunManifest", "check_names", "optimize", "resume_options"]

log = get_logger("drpo.progress")


def check_names(config: RunConfig) -> None:
    """Every role, budget, critic and selector the config names exists (else one line that lists
    the known ones), and every role the run will call has a backend. Run before anything is written."""
    roles = known_roles()
    for section, names in (("roles", config.roles), ("budgets", config.budgets)):
        for name in names:
            if name not in roles:
                raise UserInputError(f"[{section}.{name}]: unknown role {name!r}; known roles: {', '.join(roles)}")
    for name in config.critics:
        if name not in CRITICS:
            raise UserInputError(f"critics: unknown critic {name!r}; known critics: {', '.join(sorted(CRITICS))}")
    for role in roles_in_use(config):
        backend = config.role(role).backend
        if backend not in config.backends:
            raise UserInputError(f"role {role!r} runs on backend {backend!r}, which is not defined under [backends]; "
                                 f"add [backends.{backend}] or bind it with [roles.{role}] backend = \"NAME\"")
    if config.search.selector not in selector_names():
        raise UserInputError(f"[search] selector: unknown selector {config.search.selector!r}; "
                             f"known selectors: {', '.join(selector_names())}")


@dataclass
class OptimizeOptions(RunOptions):
    replaces_runs: ClassVar[bool] = True
    train: Path | Sequence[Path] = DEFAULT_TRAIN
    """One training file or several (their queries mixed by the seeded stratified order)."""
    examples: Path = DEFAULT_EXAMPLES
    """A JSONL/JSON example file or a `curate` output folder."""
    embedder: str = "auto"
    """Retrieval embedder: auto (WordLlama if installed, else lexical), wordllama, minilm, lexical."""

    @property
    def train_files(self) -> list[Path]:
        return [Path(self.train)] if isinstance(self.train, str | os.PathLike) else [Path(p) for p in self.train]


def resume_options(out: Path, **overrides) -> OptimizeOptions:  # type: ignore[no-untyped-def]
    """The options of the interrupted run in `out`, from its sealed manifest, checked against
    the files it read (drpo/run_manifest.py)."""
    manifest = read_manifest(out)
    return OptimizeOptions(config=manifest.config, out=out, run_id=manifest.run_id,
                           train=[Path(f.path) for f in manifest.train], examples=Path(manifest.examples.path),
                           embedder=manifest.embedder, resume=True, **overrides)


async def optimize(options: OptimizeOptions, engine_factory: EngineFactory = build_engine) -> RunArtifact:
    """Every input is checked before anything is written or spent: names, the paths of the out
    and cache folders, the training stream (too short a stream is refused; one that ends the
    search early is warned about, once the run log is open), the example pool; then the session
    checks the folder, the caches and the engines."""
    config = options.config
    check_names(config)
    check_paths(options)
    stream = stratified_order(load_queries(options.train_files), config.search.seed)
    ordered, held_out = hold_out(stream, config.search)  # without validation: the stream, nothing held out
    short = check_enough_queries(len(ordered), config.search.depth, config.search.queries_per_level)
    examples, examples_file = load_examples(options.examples)
    if config.search.k > len(examples):
        raise UserInputError(f"k={config.search.k} is larger than the example pool ({len(examples)} examples)")
    check_embedders(options.embedder)
    started = time.perf_counter()
    async with run_session(options, engine_factory) as session:
        # built once the engines answered: the embedder and the pool's vectors write to the cache
        pool = ExamplePool(examples, make_embedder(options.embedder, options.cache_dir), options.cache_dir)
        if not options.resume:
            manifest = RunManifest(run_id=options.run_id, config=config,
                                   train=[InputFile.of(path) for path in options.train_files],
                                   examples=InputFile.of(examples_file), embedder=options.embedder,
                                   validation=RunManifest.validation_of(config))
            write_atomic(options.out / MANIFEST, manifest_text(manifest))
        if short is not None:
            log.warning("train.short", problem=short)
        log.info("run.resume" if options.resume else "run.start", run_id=options.run_id, out=str(options.out),
                 models=session.models, depth=config.search.depth, beam=config.search.beam,
                 actions=config.search.actions, queries=len(ordered))
        used = (config.search.depth + config.search.max_depth_increase) * config.search.queries_per_level
        get_logger("drpo.run").info(
            "query_order", seed=config.search.seed, order=[q.query for q in ordered[:used]]
        )
        policy_engine = session.backends.for_role("policy")
        policy = await resolve_policy(policy_engine, config.backends[config.role("policy").backend].policy_mode)
        log.info("policy.mode", mode=policy.mode, requested=policy.requested, template=policy.template,
                 system_folded=policy.system_folded)
        ctx = RunContext(config=config, backends=session.backends, catalogue=AspectCatalogue.load(), examples=pool,
                         queries=[q.query for q in ordered], criteria_cache=session.criteria_cache, policy=policy,
                         validation_queries=[q.query for q in held_out])
        result = await _unwrapped(_search(options, ctx))
        ctx.policy = folded_at_runtime(policy_engine, policy)
        artifact = _artifact(options, session, pool, ordered, result, time.perf_counter() - started)
        artifact.validation_queries = [TrainItem(query=q.query, source=q.source) for q in held_out]
        artifact.policy = ctx.policy
        artifact.examples_source = str(examples_file)
        artifact.examples_sha256 = file_digest(examples_file)
        write_atomic(options.out / "prompt.txt", artifact.prompt + "\n")
        write_atomic(options.out / "artifact.json", artifact.model_dump_json(indent=2))
        log.info("run.done", out=str(options.out), wall_s=round(artifact.wall_s, 1),
                 score=round(artifact.best.score, 3))
    return artifact


@dataclass
class SearchResult:
    final: dict[str, Any]
    """The graph's final state."""
    levels: list[LevelRecord]
    candidates: list[CandidateRecord]


async def _search(options: OptimizeOptions, ctx: RunContext) -> SearchResult:
    """The search, from its last checkpoint if there is one, and the records it made."""
    path = options.out / CHECKPOINTS
    async with aiosqlite.connect(path) as conn:
        async with conn.execute("PRAGMA journal_mode=WAL"):
            pass  # closed at once: an open statement would keep the store's connection out of the file
        saver = AsyncSqliteSaver(conn, serde=checkpoint_serde())
        # The store has its own connection: it runs explicit transactions that must not interleave
        # with the saver's on one connection. WAL lets the two share the file.
        async with AsyncSqliteStore.from_conn_string(str(path)) as store:
            await store.setup()
            final = await _run_graph(options.run_id, ctx, build_beam_graph(checkpointer=saver, store=store))
            levels, candidates = await read_search(store, final.get("levels", []))
    return SearchResult(final=final, levels=levels, candidates=candidates)


async def _run_graph(run_id: str, ctx: RunContext, graph: CompiledStateGraph) -> dict[str, Any]:
    search = ctx.config.search
    run_config: RunnableConfig = {"configurable": {"thread_id": run_id},
                                  "recursion_limit": 4 * (search.depth + search.max_depth_increase) + 16}
    saved = await graph.aget_state(run_config)
    if saved.values.get("best") is not None and not saved.next:  # finished; only the artifacts were missing
        return dict(saved.values)
    start = None if saved.created_at is not None else {}  # None continues from the last checkpoint
    async with anyio.create_task_group() as background:
        ctx.background = background
        final = await graph.ainvoke(start, config=run_config, context=ctx, durability="sync")
        background.cancel_scope.cancel()  # selections prefetched for levels the search never reached
    return final


async def _unwrapped(search: Awaitable[SearchResult]) -> SearchResult:
    """The search's result; a project error (an engine outage or refusal) surfaces as itself, not
    inside the ExceptionGroups of the task groups it crossed."""
    try:
        return await search
    except BaseExceptionGroup as group:
        known = first_of(group, (ProjectError, UserInputError))
        if known is not None:
            raise known from None
        raise


def _artifact(options: OptimizeOptions, session: Session, pool: ExamplePool, ordered: list[TrainQuery],
              result: SearchResult, wall_s: float) -> RunArtifact:
    config, ledger = options.config, session.ledger
    best: BeamNode = result.final["best"]
    used = (len(result.levels) + 1) * config.search.queries_per_level
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
        train_file=", ".join(str(path) for path in options.train_files),
        train_files=[str(path) for path in options.train_files],
        query_order=[TrainItem(query=q.query, source=q.source) for q in ordered[:used]],
        levels=result.levels,
        candidates=with_intervals(result.candidates, config.search.seed),
        best=FinalNode(
            node_id=best.node_id, prompt=best.prompt, rewards=best.path_rewards,
            score=find_selector(config.search.selector).score(best, config.search),
            last_query=ev.query if ev else None, last_response=ev.response if ev else None,
            last_scores=ev.scores if ev else {},
        ),
        stopped=result.final.get("stopped"),
        accounting=Accounting(total=ledger.total(), by_role=ledger.by_role(), by_backend=ledger.by_backend()),
    )
