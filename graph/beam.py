"""DRPO's beam search over system prompts, as a LangGraph state machine (drpo-method.md §4).

    prefetch_criteria   start the criteria selection of the first D queries, in the background
    evaluate_root       answer query 0 under the initial prompt and judge it (never scored on a path);
                        a call failing every attempt stops the run, never checkpointed as a result
    ┌─> route_level     stop when the next query is past the depth; else one `expand` per beam node
    │   expand          rewrite the node's prompt (or skip), then answer and judge every candidate
    │                   on this level's query: all candidates in flight, each judged when its answer lands
    └── keep_top        +1 depth if any node skipped (at most +M in all); the selector keeps the next beam
        finish          the deliverable: the selector's pick of the final beam
        validate        with held-out queries (`[search] validation`): the finalists answer them and
                        the best validation mean is delivered instead (graph/validation.py)

One query per level: every candidate of level l answers query l + 1, so their rewards compare.
With `queries_per_level` m > 1 (minibatch mode) a level is a block of m queries and a candidate's
reward is its mean over the block; all m x candidates calls of a level are in flight together.
A candidate whose generation or judgement keeps failing is dropped for the level, never scored.

Which candidates survive is the selector's (graph/selectors/, `search.selector`); every record
of the search goes to the run's record store (graph/records.py) as it is made.
"""

from __future__ import annotations

from typing import Literal

import structlog
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.types import Send

from backends.errors import TRANSPORT_KINDS, CallFailed, EmptyOutput, InvalidOutput, TruncatedOutput
from graph.context import RunContext
from graph.fanout import gather
from graph.panel_on_demand import on_demand, settle
from graph.records import ROOT, put_candidates, put_level
from graph.roles import answer, criteria_for, judge_response, prefetch_criteria, rewrite
from graph.selectors import find_selector
from graph.selectors.base import Selector
from graph.state import BeamNode, BeamState, Child, Evaluation, ExpandTask
from graph.validation import route_validation, validate
from schemas.errors import ProjectError
from schemas.messages import RewriteRequest
from schemas.records import CandidateRecord, LevelRecord, Verdict
from telemetry.logs import get_logger

log = get_logger("drpo.beam")
OUTPUT_KINDS = frozenset({InvalidOutput.kind, TruncatedOutput.kind, EmptyOutput.kind})
"""Faults of answers the engine gave: they are journaled, so a resume replays them."""
progress = get_logger("drpo.progress")


# --- evaluating a prompt ------------------------------------------------------------------------


async def evaluate(ctx: RunContext, prompt: str, query_index: int) -> Evaluation:
    """Answer one query under `prompt` and judge it. Criteria (usually prefetched) and the answer
    are awaited together; the judge starts as soon as both are there (its first call alone with
    `panel_on_demand`: keep_top asks the rest where it matters, graph/panel_on_demand.py)."""
    query = ctx.queries[query_index]
    criteria, response = await gather(criteria_for(ctx, query), answer(ctx, prompt, query))
    judgement = await judge_response(ctx, query, response.text, criteria, first_only=on_demand(ctx))
    return Evaluation(
        query_index=query_index, query=query, response=response.text, scores=judgement.scores, reward=judgement.reward,
        samples=judgement.samples, judges=judgement.judges,
    )


def block(ctx: RunContext, index: int) -> range:
    """The query indices of block `index`: the root answers block 0, level l block l + 1."""
    m = ctx.config.search.queries_per_level
    return range(index * m, (index + 1) * m)


async def evaluate_block(ctx: RunContext, prompt: str, index: int) -> list[Evaluation]:
    """The prompt's evaluation on every query of its block (all in flight together), in query order."""
    return list(await gather(*(evaluate(ctx, prompt, q) for q in block(ctx, index))))


def feedback(evaluations: list[Evaluation]) -> Evaluation:
    """What the rewriter learns from: the block's lowest-scoring answer (the first on ties)."""
    return min(evaluations, key=lambda e: e.reward)


def verdicts(evaluations: list[Evaluation]) -> list[Verdict]:
    return [Verdict(query_index=e.query_index, reward=e.reward, scores=e.scores, samples=e.samples, judges=e.judges)
            for e in evaluations]


def _store(runtime: Runtime[RunContext]) -> BaseStore:
    assert runtime.store is not None, "the beam graph writes its records to a store (build_beam_graph(store=...))"
    return runtime.store


# --- nodes --------------------------------------------------------------------------------------


async def prefetch(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    """The first D queries are certainly used; each depth bump prefetches the one it adds."""
    ctx = runtime.context
    prefetch_criteria(ctx, ctx.queries[: block(ctx, ctx.config.search.depth).start])
    return {}


class RootNotEvaluated(ProjectError):
    """Every attempt of a call of the root's evaluation failed. The search stops here rather than
    go on from an unjudged root: nothing of the root is recorded or checkpointed, so a resumed
    run evaluates it again and delivers what an uninterrupted run would have."""

    exit_code = 1

    def __init__(self, message: str, *, resumable: bool) -> None:
        super().__init__(message)
        self.resumable = resumable
        """False when a resume would fail the same way (a budget, answers the journal replays)."""


def _root_failed(failure: CallFailed) -> RootNotEvaluated:
    kinds = set(failure.faults)
    if "budget" in kinds:
        fix = (f"the budget leaves no call to evaluate even the initial prompt: start over with a larger "
               f"[budgets.{failure.role}]")
    elif kinds & OUTPUT_KINDS:
        fix = ("the engine's answers were unusable, and the run's journal (and the shared cache) would replay them: "
               "fix the cause (a truncated answer: raise max_tokens) and start over with --force --no-cache")
    else:  # lost at the transport level: the same diagnosis as the outage layer's, whichever comes first
        down = "is the engine up? " if kinds <= TRANSPORT_KINDS else ""
        fix = f"{down}nothing of it was checkpointed: resume once the engine answers, and the root is evaluated again"
    resumable = not ("budget" in kinds or kinds & OUTPUT_KINDS)
    return RootNotEvaluated(f"the initial prompt could not be evaluated ({failure}); {fix}", resumable=resumable)


async def evaluate_root(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    """Answer and judge block 0 under the initial prompt; a call that fails every attempt stops
    the run (`RootNotEvaluated`), since a search from an unjudged root would deliver another prompt."""
    ctx = runtime.context
    prompt = ctx.config.search.initial_prompt
    record = CandidateRecord(node_id=ROOT, level=-1, prompt=prompt)
    with structlog.contextvars.bound_contextvars(level=-1, node_id=ROOT):
        try:
            evaluations = await evaluate_block(ctx, prompt, 0)
        except CallFailed as failure:
            log.warning("root.failed", error=str(failure))
            raise _root_failed(failure) from failure
    evaluation, record.verdicts = feedback(evaluations), verdicts(evaluations)
    await put_candidates(_store(runtime), [record])
    root = BeamNode(node_id=ROOT, level=-1, prompt=prompt, history=[prompt], evaluation=evaluation)
    progress.info("root.done", reward=record.reward)
    return {"level": 0, "max_depth": ctx.config.search.depth, "beam": [root], "children": None}


def route_level(state: BeamState, runtime: Runtime[RunContext]) -> list[Send] | Literal["finish"]:
    """Nodes at level l hold l + 1 evaluated blocks; they are terminal once that reaches the depth
    (or the stream has no full block left)."""
    ctx = runtime.context
    next_block = state["level"] + 1
    if state.get("stopped") or next_block >= state["max_depth"] or block(ctx, next_block).stop > len(ctx.queries):
        return "finish"
    level = state["level"]
    return [Send("expand", ExpandTask(node=node, beam_index=i, level=level)) for i, node in enumerate(state["beam"])]


async def expand(task: ExpandTask, runtime: Runtime[RunContext]) -> dict:
    ctx = runtime.context
    node, level = task.node, task.level
    with structlog.contextvars.bound_contextvars(level=level, beam=task.beam_index, parent_id=node.node_id):
        candidates, skipped = await _propose(ctx, node)
        results = await gather(
            *(_evaluate_child(ctx, task, action, prompt, skipped) for action, prompt in enumerate(candidates))
        )
    await put_candidates(_store(runtime), [record for _, record in results])
    return {"children": [child for child, _ in results]}


async def _propose(ctx: RunContext, node: BeamNode) -> tuple[list[str], bool]:
    """The candidate prompts for a node's children, and whether the node skipped its rewrite."""
    if node.evaluation is None:  # a root checkpointed unjudged by an older version: nothing to learn from
        return [node.prompt], True
    ev = node.evaluation
    request = RewriteRequest(
        prompt=node.prompt, query=ev.query, response=ev.response, judgement=ev.scores,
        history=node.history, actions=ctx.config.search.actions,
    )
    try:
        proposal = await rewrite(ctx, request)
    except CallFailed as failure:
        log.warning("rewrite.failed", error=str(failure))
        return [node.prompt], False  # keep the prompt alive; it is scored on a real answer below
    return (proposal.prompts or [node.prompt]), proposal.skipped


async def _evaluate_child(
    ctx: RunContext, task: ExpandTask, action: int, prompt: str, skipped: bool
) -> tuple[Child, CandidateRecord]:
    parent = task.node
    node_id = f"L{task.level}.b{task.beam_index}.c{action}"
    record = CandidateRecord(node_id=node_id, parent_id=parent.node_id, level=task.level, prompt=prompt,
                             skipped=skipped)
    child = Child(order=(task.beam_index, action), node_id=node_id, parent_id=parent.node_id, skipped=skipped)
    with structlog.contextvars.bound_contextvars(candidate=action, node_id=node_id):
        try:
            evaluations = await evaluate_block(ctx, prompt, task.level + 1)
        except CallFailed as failure:
            log.warning("candidate.failed", error=str(failure))
            child.failure = record.failure = str(failure)
            return child, record
    record.verdicts = verdicts(evaluations)
    record.path_rewards = [*parent.path_rewards, record.reward]
    child.node = BeamNode(
        node_id=node_id, parent_id=parent.node_id, level=task.level, prompt=prompt,
        history=(parent.history + [prompt])[-ctx.config.search.history :],
        path_rewards=record.path_rewards, evaluation=feedback(evaluations), samples=record.samples,
    )
    return child, record


async def keep_top(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    """Orchestrates the end of a level: bump the depth, ask the selector, record, stop on budget."""
    ctx = runtime.context
    selector = find_selector(ctx.config.search.selector)
    children = sorted(state["children"], key=lambda c: c.order)
    if on_demand(ctx):  # the rest of the judge panel for the candidates that can change the beam
        children = await settle(ctx, _store(runtime), selector, children, state["beam"])
    max_depth, bumped = _bump_depth(ctx, state["max_depth"], children)
    scored = [c.node for c in children if c.node is not None]
    beam = selector.next_beam(scored, state["beam"], ctx.config.search) if scored else []
    record = _level_record(ctx, state["level"], max_depth, bumped, children, beam)
    key = await put_level(_store(runtime), record)
    _report(ctx, selector, record, children, beam)
    return {"children": None, "max_depth": max_depth, "levels": [key]} | _advance(ctx, state["level"], beam)


def _bump_depth(ctx: RunContext, max_depth: int, children: list[Child]) -> tuple[int, bool]:
    """+1 depth when any node of the level skipped, up to +M in all; prefetch the block it adds."""
    search = ctx.config.search
    if not any(c.skipped for c in children) or max_depth >= search.depth + search.max_depth_increase:
        return max_depth, False
    prefetch_criteria(ctx, [ctx.queries[i] for i in block(ctx, max_depth) if i < len(ctx.queries)])
    return max_depth + 1, True


def _level_record(
    ctx: RunContext, level: int, max_depth: int, bumped: bool, children: list[Child], beam: list[BeamNode]
) -> LevelRecord:
    rewards = [c.node.path_rewards[-1] for c in children if c.node is not None]
    return LevelRecord(
        level=level, query_indices=list(block(ctx, level + 1)), max_depth=max_depth, bumped=bumped,
        candidates=[c.node_id for c in children], kept=[n.node_id for n in beam],
        best_reward=max(rewards) if rewards else None, mean_reward=sum(rewards) / len(rewards) if rewards else None,
    )


def _report(
    ctx: RunContext, selector: Selector, record: LevelRecord, children: list[Child], beam: list[BeamNode]
) -> None:
    progress.info(
        "level.done", level=record.level, max_depth=record.max_depth, candidates=len(children),
        failed=sum(c.node is None for c in children), skipped=sum(c.skipped for c in children),
        best=record.best_reward, kept=[f"{n.node_id}={selector.score(n, ctx.config.search):.2f}" for n in beam],
    )


def _advance(ctx: RunContext, level: int, beam: list[BeamNode]) -> dict:
    """The next level with the new beam; or stop: every candidate failed (the previous beam is
    the result), or a budget ran out (finish with what this level found)."""
    exhausted = ctx.backends.ledger.exhausted
    if not beam:
        return {"stopped": exhausted or f"every candidate of level {level} failed"}
    return {"beam": beam, "level": level + 1} | ({"stopped": exhausted} if exhausted else {})


async def finish(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    search = runtime.context.config.search
    return {"best": find_selector(search.selector).deliverable(state["beam"], search)}


def build_beam_graph(checkpointer=None, store: BaseStore | None = None):  # type: ignore[no-untyped-def]
    """The compiled search. `store` receives the records (an in-memory one when not given)."""
    builder = StateGraph(BeamState, context_schema=RunContext)
    builder.add_node("prefetch_criteria", prefetch)  # selections for the first D queries, in the background
    builder.add_node("evaluate_root", evaluate_root)  # the initial prompt on query 0
    builder.add_node("expand", expand)  # one branch per beam node: rewrite, answer, judge
    builder.add_node("keep_top", keep_top)  # depth bump, the selector's next beam, the level record
    builder.add_node("finish", finish)  # the selector's deliverable
    builder.add_node("validate", validate)  # held-out queries re-rank the finalists
    builder.add_edge(START, "prefetch_criteria")
    builder.add_edge("prefetch_criteria", "evaluate_root")
    builder.add_conditional_edges("evaluate_root", route_level, ["expand", "finish"])
    builder.add_edge("expand", "keep_top")
    builder.add_conditional_edges("keep_top", route_level, ["expand", "finish"])
    builder.add_conditional_edges("finish", route_validation, ["validate", END])
    builder.add_edge("validate", END)
    return builder.compile(checkpointer=checkpointer, store=store if store is not None else InMemoryStore())
