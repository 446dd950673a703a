"""A judge panel asked on demand: the second opinion only where it can change the beam (issue 15).

A panel of two halves the judge's noise on every answer and so doubles every judge call, yet most
of those calls cannot matter: a level keeps B of its B x A candidates, and a candidate far below
the cut stays out of the beam whatever a second judge says. With `[search] panel_on_demand = K`
every candidate is judged by the first call of the panel alone (the judge role's engine, its
first sample), and at the end of the level, before the selector keeps the next beam:

1. the rest of the panel (other members, other samples) judges the level's K best candidates by
   the selector's own score on those first verdicts: the ones near the cut, whose order decides it;
2. the selector picks the next beam; any candidate in it that only the first judge saw is judged
   by the rest too, and the selector picks again, until the beam holds full-panel verdicts only.

So the beam, and the deliverable drawn from the final beam, are always chosen on panel means, as
with the full panel; a candidate the rest never judged keeps its first verdict (its record says
so: one sample, one judge). A candidate lucky with the first judge is the one re-judged, so the
first judge's upward errors are what the second opinion corrects. K = B asks the least; a larger
K also re-judges the candidates just below the cut, which a lucky one above it may otherwise hide.

The rest's verdicts are traced like the panel's (`judge_backend`, `judge_sample`) with
`judge_stage = "on_demand"`, and each re-judged candidate's record is written again with the full
verdict. The candidate's one answer is re-judged, so this needs `queries_per_level = 1` (state
keeps one answer per node). A rest call that fails every attempt drops the candidate, as a failed
panel call does. The root and validation are not affected: the root's reward enters no path, and
validation judges the finalists with the whole panel.
"""

from __future__ import annotations

import structlog
from langgraph.store.base import BaseStore, GetOp

from backends.errors import CallFailed
from graph.context import RunContext
from graph.fanout import gather
from graph.judge_panel import PanelJudgement
from graph.records import CANDIDATES, put_candidates
from graph.roles import judge_rest
from graph.selectors.base import Selector, ranked
from graph.state import BeamNode, Child
from schemas.records import CandidateRecord
from telemetry.logs import get_logger

log = get_logger("drpo.panel")


def on_demand(ctx: RunContext) -> bool:
    """Whether the search judges with the first call alone and asks the rest on demand: only with
    `panel_on_demand` set and more than one call in a full verdict (else there is no rest)."""
    search = ctx.config.search
    calls = search.judge_samples * max(1, len(ctx.config.role("judge").backends))
    return search.panel_on_demand > 0 and calls > 1


async def settle(ctx: RunContext, store: BaseStore, selector: Selector, children: list[Child],
                 beam: list[BeamNode]) -> list[Child]:
    """The level's children, the contested ones with the full panel's verdict (see the module)."""
    search = ctx.config.search
    by_id = {c.node_id: c for c in children}
    scored = [c.node for c in children if c.node is not None]
    todo = [n.node_id for n in ranked(scored, lambda n: selector.score(n, search))[: search.panel_on_demand]]
    done: set[str] = set()
    while todo:
        results = await gather(*(_rest(ctx, by_id[node_id]) for node_id in todo))
        done.update(todo)
        by_id.update((child.node_id, child) for child in results)
        await _rewrite_records(store, results)
        scored = [node for c in children if (node := by_id[c.node_id].node) is not None]
        kept = selector.next_beam(scored, beam, search) if scored else []
        todo = [n.node_id for n in kept if n.node_id not in done]
    return [by_id[c.node_id] for c in children]


async def _rest(ctx: RunContext, child: Child) -> Child:
    """The child with the rest of the panel's verdict joined to its first, or failed."""
    node = child.node
    assert node is not None and node.evaluation is not None, "only scored candidates are re-judged"
    ev = node.evaluation
    first = PanelJudgement(scores=ev.scores, samples=ev.samples, judges=ev.judges)
    with structlog.contextvars.bound_contextvars(level=node.level, parent_id=node.parent_id, node_id=node.node_id,
                                                 judge_stage="on_demand"):
        try:
            verdict = await judge_rest(ctx, ev.query, ev.response, first)
        except CallFailed as failure:
            log.warning("candidate.failed", error=str(failure))
            return child.model_copy(update={"node": None, "failure": str(failure)})
    evaluation = ev.model_copy(update={"scores": verdict.scores, "reward": verdict.reward,
                                       "samples": verdict.samples, "judges": verdict.judges})
    full = node.model_copy(update={"evaluation": evaluation, "samples": verdict.samples,
                                   "path_rewards": [*node.path_rewards[:-1], verdict.reward]})
    return child.model_copy(update={"node": full})


async def _rewrite_records(store: BaseStore, children: list[Child]) -> None:
    """Each re-judged candidate's record again, with its full verdict (or its failure)."""
    found = await store.abatch([GetOp(CANDIDATES, child.node_id) for child in children])
    records = []
    for child, item in zip(children, found, strict=True):
        assert item is not None, f"candidate {child.node_id} was recorded by its expand branch"
        record = CandidateRecord.model_validate(item.value)
        if child.node is None:
            record.failure, record.verdicts, record.path_rewards = child.failure, [], []
        else:
            ev = child.node.evaluation
            assert ev is not None
            (verdict,) = record.verdicts
            record.verdicts = [verdict.model_copy(update={"reward": ev.reward, "scores": ev.scores,
                                                          "samples": ev.samples, "judges": ev.judges})]
            record.path_rewards = child.node.path_rewards
        records.append(record)
    await put_candidates(store, records)
