"""Validation: the finalists answer held-out queries, and the best validation mean is delivered.

The search picks its deliverable on the same noisy, one-query rewards it climbed on, so it tends
to deliver the candidate the judge overrated most (the winner's curse). With held-out queries in
the run's context (`RunContext.validation_queries`, cut from the training stream by the runner:
drpo/held_out.py) the `validate` node, after `finish`, scores every prompt of the final beam — and
with `validate_levels` the best of every level — on each of them, every call in flight together,
and delivers the prompt with the best validation mean; ties keep the search's own order (its
deliverable first). Each validated candidate's record gains its validation verdicts
(`CandidateRecord.validation_verdicts`; the artifact adds their bootstrap interval).

A held-out query whose calls keep failing is left out of that prompt's mean, never scored; when
no prompt could be scored, the search's own pick stands.
"""

from __future__ import annotations

from typing import Literal

import structlog
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore, GetOp

from backends.errors import CallFailed
from graph.context import RunContext
from graph.fanout import gather
from graph.records import CANDIDATES, LEVELS, put_candidates
from graph.roles import answer, criteria_for, judge_response
from graph.state import BeamNode, BeamState
from schemas.records import CandidateRecord, LevelRecord, Verdict
from telemetry.logs import get_logger

log = get_logger("drpo.validation")
progress = get_logger("drpo.progress")


def route_validation(state: BeamState, runtime: Runtime[RunContext]) -> Literal["validate", "__end__"]:
    """Validate only when the run holds queries out: without them the graph is the paper's, step for step."""
    return "validate" if runtime.context.validation_queries and state.get("best") is not None else END


async def validate(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    """Score the finalists on the held-out queries and deliver the best validation mean."""
    ctx = runtime.context
    assert runtime.store is not None, "the beam graph writes its records to a store"
    finalists = await _finalists(state, runtime.store, ctx.config.search.validate_levels)
    prompts = list(dict.fromkeys(node.prompt for node in finalists))
    with structlog.contextvars.bound_contextvars(stage="validation"):
        scored = await gather(*(_validated(ctx, prompt) for prompt in prompts))
    by_prompt = dict(zip(prompts, scored, strict=True))
    records = await _records(runtime.store, finalists)
    for node in finalists:
        records[node.node_id].validation_verdicts = by_prompt[node.prompt]
    await put_candidates(runtime.store, records.values())
    return _delivered(finalists, records)


async def _finalists(state: BeamState, store: BaseStore, levels: bool) -> list[BeamNode]:
    """The search's deliverable, the rest of the final beam, then (with `levels`) each level's
    best from the last level back: the order ties are broken in."""
    best = state.get("best")
    nodes = ([best] if best is not None else []) + list(state.get("beam") or [])
    if levels:
        items = await store.abatch([GetOp(LEVELS, key) for key in reversed(state.get("levels") or [])])
        firsts = [LevelRecord.model_validate(item.value).kept[:1] for item in items if item is not None]
        ids = [node_id for first in firsts for node_id in first]
        found = await store.abatch([GetOp(CANDIDATES, node_id) for node_id in ids])
        nodes += [_node(CandidateRecord.model_validate(item.value)) for item in found if item is not None]
    unique: dict[str, BeamNode] = {}
    for node in nodes:  # the live node before its record's copy; the first place it holds
        unique.setdefault(node.node_id, node)
    return list(unique.values())


def _node(record: CandidateRecord) -> BeamNode:
    """A level's best as a node the run can deliver (its evaluation is in its record, not here)."""
    return BeamNode(node_id=record.node_id, parent_id=record.parent_id, level=record.level, prompt=record.prompt,
                    history=[record.prompt], path_rewards=record.path_rewards, samples=record.samples)


async def _records(store: BaseStore, nodes: list[BeamNode]) -> dict[str, CandidateRecord]:
    items = await store.abatch([GetOp(CANDIDATES, node.node_id) for node in nodes])
    return {node.node_id: CandidateRecord.model_validate(item.value) if item is not None
            else CandidateRecord(node_id=node.node_id, parent_id=node.parent_id, level=node.level, prompt=node.prompt,
                                 path_rewards=node.path_rewards)
            for node, item in zip(nodes, items, strict=True)}


async def _validated(ctx: RunContext, prompt: str) -> list[Verdict]:
    """The prompt's verdict on each held-out query, all in flight, in query order."""
    results = await gather(*(_on_query(ctx, prompt, i, query) for i, query in enumerate(ctx.validation_queries)))
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
    """The best validation mean (the first on ties); the search's own pick if none was scored."""
    means = {node.node_id: mean for node in finalists if (mean := records[node.node_id].validation_mean) is not None}
    if not means:
        log.warning("validation.none", hint="every validation call failed; delivering the search's own pick")
        return {}
    best = max((node for node in finalists if node.node_id in means),
               key=lambda node: (means[node.node_id], -finalists.index(node)))
    progress.info("validation.done", delivered=best.node_id, means={k: round(v, 3) for k, v in means.items()})
    return {"best": best}
