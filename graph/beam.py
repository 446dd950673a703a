"""DRPO's beam search over system prompts, as a LangGraph state machine (drpo-method.md §4).

    prefetch_criteria   start the criteria selection of the first D queries, in the background
    evaluate_root       answer query 0 under the initial prompt and judge it (never scored on a path)
    ┌─> route_level     stop when the next query is past the depth; else one `expand` per beam node
    │   expand          rewrite the node's prompt (or skip), then answer and judge every candidate
    │                   on this level's query: all candidates in flight, each judged when its answer lands
    └── keep_top        +1 depth if any node skipped (at most +M in all); keep the top B by path mean
        finish          the deliverable: the last prompt on the best path

One query per level: every candidate of level l answers query l + 1, so their rewards compare.
With `queries_per_level` m > 1 (minibatch mode) a level is a block of m queries and a candidate's
reward is its mean over the block; all m x candidates calls of a level are in flight together.
A candidate whose generation or judgement keeps failing is dropped for the level, never scored.
"""

from __future__ import annotations

from statistics import fmean
from typing import Literal

import structlog
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from backends.errors import CallFailed
from graph.context import RunContext
from graph.fanout import gather
from graph.roles import answer, criteria_for, judge_response, prefetch_criteria, rewrite
from graph.state import BeamNode, BeamState, Child, Evaluation, ExpandTask, LevelRecord
from schemas.artifact import CandidateRecord
from schemas.messages import RewriteRequest

log = structlog.get_logger("drpo.beam")
progress = structlog.get_logger("drpo.progress")


def aggregate_mode(ctx: RunContext) -> Literal["mean", "last"]:
    return "mean" if ctx.config.search.beam > 1 else "last"


async def evaluate(ctx: RunContext, prompt: str, query_index: int) -> Evaluation:
    """Answer one query under `prompt` and judge it. Criteria (usually prefetched) and the answer
    are awaited together; the judge starts as soon as both are there."""
    query = ctx.queries[query_index]
    criteria, response = await gather(criteria_for(ctx, query), answer(ctx, prompt, query))
    judgement = await judge_response(ctx, query, response.text, criteria)
    return Evaluation(
        query_index=query_index, query=query, response=response.text, scores=judgement.scores, reward=judgement.reward
    )


def block(ctx: RunContext, index: int) -> range:
    """The query indices of block `index`: the root answers block 0, level l block l + 1."""
    m = ctx.config.search.queries_per_level
    return range(index * m, (index + 1) * m)


async def evaluate_block(ctx: RunContext, prompt: str, index: int) -> tuple[float, Evaluation]:
    """The prompt's mean reward over its block (all queries in flight together), and the
    evaluation the rewriter learns from: the block's lowest-scoring one (the first, when m = 1)."""
    evaluations = await gather(*(evaluate(ctx, prompt, q) for q in block(ctx, index)))
    feedback = min(evaluations, key=lambda e: e.reward)
    return fmean(e.reward for e in evaluations), feedback


# --- nodes --------------------------------------------------------------------------------------


async def prefetch(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    """The first D queries are certainly used; each depth bump prefetches the one it adds."""
    ctx = runtime.context
    prefetch_criteria(ctx, ctx.queries[: block(ctx, ctx.config.search.depth).start])
    return {}


async def evaluate_root(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    ctx = runtime.context
    prompt = ctx.config.search.initial_prompt
    with structlog.contextvars.bound_contextvars(level=-1, node_id="root"):
        try:
            _, evaluation = await evaluate_block(ctx, prompt, 0)
        except CallFailed as failure:
            log.warning("root.failed", error=str(failure))
            evaluation = None
    root = BeamNode(node_id="root", level=-1, prompt=prompt, history=[prompt], evaluation=evaluation)
    progress.info("root.done", reward=evaluation.reward if evaluation else None)
    return {"level": 0, "max_depth": ctx.config.search.depth, "beam": [root], "children": None}


def route_level(state: BeamState, runtime: Runtime[RunContext]) -> list[Send] | Literal["finish"]:
    """Nodes at level l hold l + 1 evaluated blocks; they are terminal once that reaches the depth
    (or the stream has no full block left)."""
    ctx = runtime.context
    next_block = state["level"] + 1
    if state.get("stopped") or next_block >= state["max_depth"] or block(ctx, next_block).stop > len(ctx.queries):
        return "finish"
    return [
        Send("expand", ExpandTask(node=node, beam_index=i, level=state["level"])) for i, node in enumerate(state["beam"])
    ]


async def expand(task: ExpandTask, runtime: Runtime[RunContext]) -> dict:
    ctx = runtime.context
    node, level = task.node, task.level
    with structlog.contextvars.bound_contextvars(level=level, beam=task.beam_index, parent_id=node.node_id):
        candidates, skipped = await _propose(ctx, node)
        children = await gather(
            *(_evaluate_child(ctx, task, action, prompt, skipped) for action, prompt in enumerate(candidates))
        )
    return {"children": list(children)}


async def _propose(ctx: RunContext, node: BeamNode) -> tuple[list[str], bool]:
    """The candidate prompts for a node's children, and whether the node skipped its rewrite."""
    if node.evaluation is None:  # the root's evaluation failed: nothing to learn from, as a skip
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
) -> Child:
    parent = task.node
    node_id = f"L{task.level}.b{task.beam_index}.c{action}"
    with structlog.contextvars.bound_contextvars(candidate=action, node_id=node_id):
        base = dict(order=(task.beam_index, action), node_id=node_id, parent_id=parent.node_id, skipped=skipped)
        try:
            reward, evaluation = await evaluate_block(ctx, prompt, task.level + 1)
        except CallFailed as failure:
            log.warning("candidate.failed", error=str(failure))
            return Child(**base, failure=str(failure))
    history = (parent.history + [prompt])[-ctx.config.search.history :]
    node = BeamNode(
        node_id=node_id, parent_id=parent.node_id, level=task.level, prompt=prompt, history=history,
        rewards=parent.rewards + [reward], evaluation=evaluation,
    )
    return Child(**base, node=node)


async def keep_top(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    ctx = runtime.context
    search = ctx.config.search
    level, max_depth = state["level"], state["max_depth"]
    children = sorted(state["children"], key=lambda c: c.order)
    bumped = any(c.skipped for c in children) and max_depth < search.depth + search.max_depth_increase
    if bumped:
        max_depth += 1
        prefetch_criteria(ctx, [ctx.queries[i] for i in block(ctx, max_depth - 1) if i < len(ctx.queries)])
    scored = [c.node for c in children if c.node is not None]
    mode = aggregate_mode(ctx)
    beam = sorted(scored, key=lambda n: -n.score(mode))[: search.beam]  # stable: ties keep expansion order
    rewards = [n.rewards[-1] for n in scored]
    record = LevelRecord(
        level=level, query_index=block(ctx, level + 1).start, query=ctx.queries[block(ctx, level + 1).start],
        max_depth=max_depth, bumped=bumped,
        candidates=[_summary(c, mode) for c in children], kept=[n.node_id for n in beam],
        best_reward=max(rewards) if rewards else None, mean_reward=sum(rewards) / len(rewards) if rewards else None,
    )
    progress.info(
        "level.done", level=level, max_depth=max_depth, candidates=len(children), failed=len(children) - len(scored),
        skipped=sum(c.skipped for c in children), best=record.best_reward,
        kept=[f"{n.node_id}={n.score(mode):.2f}" for n in beam],
    )
    ctx.levels.append(record)
    update: dict = {"children": None, "max_depth": max_depth}
    if not beam:  # every candidate failed: end with the previous beam as the result
        return update | {"stopped": ctx.backends.ledger.exhausted or f"every candidate of level {level} failed"}
    update |= {"beam": beam, "level": level + 1}
    if ctx.backends.ledger.exhausted:  # a budget ran out: finish with what this level found
        update["stopped"] = ctx.backends.ledger.exhausted
    return update


def _summary(child: Child, mode: Literal["mean", "last"]) -> CandidateRecord:
    node = child.node
    return CandidateRecord(
        node_id=child.node_id, parent_id=child.parent_id, skipped=child.skipped, failure=child.failure,
        prompt=node.prompt if node else None, reward=node.rewards[-1] if node else None,
        path_score=node.score(mode) if node else None,
    )


async def finish(state: BeamState, runtime: Runtime[RunContext]) -> dict:
    mode = aggregate_mode(runtime.context)
    best = sorted(state["beam"], key=lambda n: -n.score(mode))[0]
    return {"best": best}


def build_beam_graph(checkpointer=None):  # type: ignore[no-untyped-def]
    builder = StateGraph(BeamState, context_schema=RunContext)
    builder.add_node("prefetch_criteria", prefetch)  # selections for the first D queries, in the background
    builder.add_node("evaluate_root", evaluate_root)  # the initial prompt on query 0
    builder.add_node("expand", expand)  # one branch per beam node: rewrite, answer, judge
    builder.add_node("keep_top", keep_top)  # depth bump, top-B by path mean
    builder.add_node("finish", finish)  # the last prompt on the best path
    builder.add_edge(START, "prefetch_criteria")
    builder.add_edge("prefetch_criteria", "evaluate_root")
    builder.add_conditional_edges("evaluate_root", route_level, ["expand", "finish"])
    builder.add_edge("expand", "keep_top")
    builder.add_conditional_edges("keep_top", route_level, ["expand", "finish"])
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=checkpointer)
