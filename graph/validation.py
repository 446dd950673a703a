"""Validation: the finalists answer held-out queries, and the best validation mean is delivered.

The search picks its deliverable on the same noisy, single-query rewards it climbed on, so it
tends to deliver the candidate the judge overrated most (the winner's curse). With
`[search] validation = N` the `validate` node, after `finish`, scores every prompt of the final
beam — and with `validate_levels` the best of every level — on N held-out queries that the search
never saw, all calls in flight together, and delivers the prompt with the best validation mean;
ties keep the search's own order (its deliverable first). Each validated candidate's record gains
its validation verdicts and mean with a seeded 95% bootstrap interval (`CandidateRecord.validation`).

The held-out queries come from the run (`RunContext.validation_queries`): the last N of the seeded
training order, cut from the training stream before the search starts (`split_stream`), or a
separate file (`check_held_out` refuses one that shares a query with the training stream).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore, GetOp

from backends.errors import CallFailed
from drpo.eval_stats import bootstrap_interval
from graph.context import RunContext
from graph.fanout import gather
from graph.records import CANDIDATES, LEVELS, put_candidates
from graph.roles import answer, criteria_for, judge_response
from graph.state import BeamNode, BeamState
from schemas.config import SearchConfig
from schemas.errors import ProjectError
from schemas.records import CandidateRecord, LevelRecord, Verdict
from telemetry.logs import get_logger

log = get_logger("drpo.validation")
progress = get_logger("drpo.progress")

Q = TypeVar("Q")

BOOTSTRAP_SAMPLES = 2000


class HeldOutError(ProjectError):
    """The held-out queries asked for cannot be had (too few queries, or shared with training)."""

    exit_code = 2


def split_stream(stream: Sequence[Q], n: int, text: Callable[[Q], str] = str) -> tuple[list[Q], list[Q]]:
    """(training stream, held-out queries): the last `n` of the seeded `stream` are held out, and
    every copy of their text leaves the training stream, so the search can never answer one."""
    if n == 0:
        return list(stream), []
    if n >= len(stream):
        raise HeldOutError(f"--validate {n}: the training stream has only {len(stream)} queries and the search "
                           "needs some; hold out fewer, or give held-out queries with --val FILE")
    held = list(stream[-n:])
    texts = {text(q) for q in held}
    return [q for q in stream[:-n] if text(q) not in texts], held


def check_held_out(training: Sequence[str], held_out: Sequence[str], where: str = "--val") -> None:
    """Held-out queries from a file must be new to the search: one the training stream also holds
    would be validated on a query the search climbed on."""
    shared = set(training) & set(held_out)
    if shared:
        example = min(shared)
        raise HeldOutError(f"{where}: {len(shared)} held-out queries are also in the training stream "
                           f"(e.g. {example[:60]!r}); remove them from one of the files")


def projected_calls(search: SearchConfig, levels: int, panel: int = 1) -> dict[str, int]:
    """The most calls validation adds (for `--dry-run`): the final beam, and with `validate_levels`
    the best of each of `levels` levels, each answer N held-out queries, judged `judge_samples`
    times by each of `panel` judges; one criteria selection per query. Finalists that share a
    prompt are asked once, so a run may spend less."""
    if not search.validation:
        return {"criteria": 0, "policy": 0, "judge": 0}
    finalists = search.beam + (levels if search.validate_levels else 0)
    n = search.validation
    return {"criteria": n, "policy": finalists * n, "judge": finalists * n * search.judge_samples * panel}


# --- the node ---------------------------------------------------------------------------------


async def validate(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    """Score the finalists on the held-out queries and deliver the best validation mean."""
    ctx = runtime.context
    search = ctx.config.search
    if not search.validation:
        return {}
    queries = ctx.validation_queries[: search.validation]
    assert queries, "search.validation needs RunContext.validation_queries (the runner's held-out queries)"
    assert runtime.store is not None, "the beam graph writes its records to a store"
    finalists = await _finalists(state, runtime.store, search.validate_levels)
    if not finalists:
        return {}
    prompts = list(dict.fromkeys(node.prompt for node in finalists))
    with structlog.contextvars.bound_contextvars(stage="validation"):
        scored = await gather(*(_validated(ctx, prompt, queries) for prompt in prompts))
    by_prompt = dict(zip(prompts, scored, strict=True))
    records = await _records(runtime.store, finalists)
    for node in finalists:
        verdicts = by_prompt[node.prompt]
        record = records[node.node_id]
        record.validation_verdicts = verdicts
        if verdicts:
            record.validation = bootstrap_interval([v.reward for v in verdicts], samples=BOOTSTRAP_SAMPLES,
                                                   seed=search.seed)
    await put_candidates(runtime.store, records.values())
    return _delivered(finalists, records)


async def _finalists(state: BeamState, store: BaseStore, levels: bool) -> list[BeamNode]:
    """The search's deliverable, the rest of the final beam, then (with `levels`) each level's best
    from the last level back: the order ties are broken in."""
    best, beam = state.get("best"), list(state.get("beam") or [])
    nodes = ([best] if best is not None else []) + beam
    if levels:
        items = await store.abatch([GetOp(LEVELS, key) for key in reversed(state.get("levels") or [])])
        kept = [LevelRecord.model_validate(item.value).kept[:1] for item in items if item is not None]
        ids = [node_id for first in kept for node_id in first]
        records = await store.abatch([GetOp(CANDIDATES, node_id) for node_id in ids])
        nodes += [_node(CandidateRecord.model_validate(item.value)) for item in records if item is not None]
    unique: dict[str, BeamNode] = {}
    for node in nodes:  # the live node before its record's copy, the first place it holds
        unique.setdefault(node.node_id, node)
    return list(unique.values())


def _node(record: CandidateRecord) -> BeamNode:
    """A level's best as a node the run can deliver (its evaluation is in its record, not here)."""
    return BeamNode(node_id=record.node_id, parent_id=record.parent_id, level=record.level, prompt=record.prompt,
                    history=[record.prompt], path_rewards=record.path_rewards)


async def _records(store: BaseStore, nodes: list[BeamNode]) -> dict[str, CandidateRecord]:
    items = await store.abatch([GetOp(CANDIDATES, node.node_id) for node in nodes])
    return {node.node_id: CandidateRecord.model_validate(item.value) if item is not None
            else CandidateRecord(node_id=node.node_id, parent_id=node.parent_id, level=node.level, prompt=node.prompt,
                                 path_rewards=node.path_rewards)
            for node, item in zip(nodes, items, strict=True)}


async def _validated(ctx: RunContext, prompt: str, queries: list[str]) -> list[Verdict]:
    """The prompt's verdict on each held-out query, all in flight; a query whose calls keep failing
    is left out (logged), never scored."""
    results = await gather(*(_on_query(ctx, prompt, i, query) for i, query in enumerate(queries)))
    return [verdict for verdict in results if verdict is not None]


async def _on_query(ctx: RunContext, prompt: str, index: int, query: str) -> Verdict | None:
    with structlog.contextvars.bound_contextvars(validation_query=index):
        try:
            criteria, response = await gather(criteria_for(ctx, query), answer(ctx, prompt, query))
            judgement = await judge_response(ctx, query, response.text, criteria)
        except CallFailed as failure:
            log.warning("validation.failed", query_index=index, error=str(failure))
            return None
    return Verdict(query_index=index, reward=judgement.reward, scores=judgement.scores, samples=judgement.samples,
                   judges=judgement.judges)


def _delivered(finalists: list[BeamNode], records: dict[str, CandidateRecord]) -> dict:
    """The best validation mean (the first on ties); the search's own pick if none was validated."""
    valid = [node for node in finalists if records[node.node_id].validation is not None]
    if not valid:
        log.warning("validation.none", hint="every validation call failed; delivering the search's own pick")
        return {}
    best = max(valid, key=lambda node: (records[node.node_id].validation.mean, -finalists.index(node)))  # type: ignore[union-attr]
    progress.info("validation.done", delivered=best.node_id,
                  means={node.node_id: round(records[node.node_id].validation.mean, 3) for node in valid})  # type: ignore[union-attr]
    return {"best": best}
