"""DRPO's example-curation loop as a LangGraph state machine (drpo-method.md §5.1).

For one seed example:

    select_criteria   a demanding critic picks 3-6 aspects for the query (kept for every round)
    judge_seed        the seed answer is judged; it is the best so far
    ┌─> route         stop at a perfect score or after N rounds
    │   rewrite       improve the latest answer (or the best, with `from_best`) from its critique
    └── judge_new     accept the new answer when its summed score is at least the best so far

`build_curation_graph` runs one seed; `curate_pool` runs every seed at once (one Send each).
A judgement that keeps failing ends that example's loop with what it has; it is never scored.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

import structlog
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from backends.errors import CallFailed
from graph.context import RunContext
from graph.roles import criteria_for, improve_answer, judge_response
from schemas.artifact import CuratedExample, CurationStep
from schemas.messages import AnswerRewriteRequest, CriteriaSelection, Example
from telemetry.logs import get_logger

log = get_logger("drpo.curation")
progress = get_logger("drpo.progress")


class SeedState(TypedDict, total=False):
    index: int
    seed: Example
    example: CuratedExample
    criteria: CriteriaSelection
    """The selection fetched once for the seed; every judgement of its loop reuses it."""
    latest: CurationStep
    """The answer the next rewrite starts from, with its critique."""
    done: bool


def _total(step: CurationStep) -> int:
    return sum(s.score for s in step.scores.values())


async def _judged(ctx: RunContext, state: SeedState, iteration: int, answer: str) -> CurationStep:
    verdict = await judge_response(ctx, state["example"].query, answer, state["criteria"], "examples")
    step = CurationStep(iteration=iteration, answer=answer, scores=verdict.scores)
    step.total = _total(step)
    return step


async def select_criteria(state: SeedState, runtime: Runtime[RunContext]) -> dict:
    seed = state["seed"]
    example = CuratedExample(query=seed.query, answer=seed.answer, seed_answer=seed.answer)
    with structlog.contextvars.bound_contextvars(example=state["index"]):
        try:
            criteria = await criteria_for(runtime.context, seed.query, "examples")
        except CallFailed as failure:
            return {"example": example.model_copy(update={"failure": f"criteria: {failure}"}), "done": True}
    example.aspects, example.max_total = criteria.aspects, 5 * len(criteria.aspects)
    return {"example": example, "criteria": criteria}


async def judge_seed(state: SeedState, runtime: Runtime[RunContext]) -> dict:
    example = state["example"]
    with structlog.contextvars.bound_contextvars(example=state["index"], iteration=0):
        try:
            step = await _judged(runtime.context, state, 0, example.seed_answer)
        except CallFailed as failure:
            return {"example": example.model_copy(update={"failure": f"judging the seed: {failure}"}), "done": True}
    step.accepted = True
    example = example.model_copy(update={"best_total": step.total, "history": [step]})
    return {"example": example, "latest": step}


def route(state: SeedState, runtime: Runtime[RunContext]) -> Literal["rewrite", "__end__"]:
    example = state["example"]
    rounds = len(example.history) - 1
    done = state.get("done") or example.best_total == example.max_total
    if done or rounds >= runtime.context.config.curation.iterations:
        return END
    return "rewrite"


async def rewrite(state: SeedState, runtime: Runtime[RunContext]) -> dict:
    ctx, example = runtime.context, state["example"]
    base = state["latest"]
    if ctx.config.curation.from_best:
        base = max((s for s in example.history if s.accepted), key=lambda s: s.iteration)
    iteration = len(example.history)
    with structlog.contextvars.bound_contextvars(example=state["index"], iteration=iteration):
        request = AnswerRewriteRequest(query=example.query, answer=base.answer, critique=base.scores)
        try:
            new = await improve_answer(ctx, request, iteration)
            step = await _judged(ctx, state, iteration, new.answer)
        except CallFailed as failure:
            log.warning("curation.round_failed", error=str(failure))
            return {"example": example.model_copy(update={"failure": f"round {iteration}: {failure}"}), "done": True}
    step.accepted = step.total >= (example.best_total or 0)  # ties replace, as in the reference
    update = {"history": [*example.history, step]}
    if step.accepted:
        update |= {"answer": step.answer, "best_total": step.total}
    return {"example": example.model_copy(update=update), "latest": step}


def build_curation_graph():  # type: ignore[no-untyped-def]
    builder = StateGraph(SeedState, context_schema=RunContext)
    builder.add_node("select_criteria", select_criteria)  # 3-6 aspects, critic persona
    builder.add_node("judge_seed", judge_seed)  # the seed is the best so far
    builder.add_node("rewrite", rewrite)  # rewrite from the critique, judge, accept if >= best
    builder.add_edge(START, "select_criteria")
    builder.add_conditional_edges("select_criteria", lambda s: END if s.get("done") else "judge_seed",
                                  ["judge_seed", END])
    builder.add_conditional_edges("judge_seed", route, ["rewrite", END])
    builder.add_conditional_edges("rewrite", route, ["rewrite", END])
    return builder.compile()


class PoolState(TypedDict, total=False):
    seeds: list[Example]
    curated: Annotated[list[tuple[int, CuratedExample]], operator.add]


def build_pool_graph():  # type: ignore[no-untyped-def]
    """Every seed's loop at once: one Send per seed into a node that runs the seed graph."""
    seed_graph = build_curation_graph()

    async def curate_seed(task: SeedState, runtime: Runtime[RunContext]) -> dict:
        final = await seed_graph.ainvoke(task, context=runtime.context)
        example: CuratedExample = final["example"]
        progress.info("example.done", example=task["index"], best=example.best_total, max=example.max_total,
                      rounds=len(example.history) - 1, failure=example.failure)
        return {"curated": [(task["index"], example)]}

    def fan_out(state: PoolState) -> list[Send]:
        return [Send("curate_seed", SeedState(index=i, seed=seed)) for i, seed in enumerate(state["seeds"])]

    builder = StateGraph(PoolState, context_schema=RunContext)
    builder.add_node("curate_seed", curate_seed)
    builder.add_conditional_edges(START, fan_out, ["curate_seed"])
    builder.add_edge("curate_seed", END)
    return builder.compile()


async def curate_pool(ctx: RunContext, seeds: list[Example]) -> list[CuratedExample]:
    final = await build_pool_graph().ainvoke({"seeds": seeds, "curated": []}, context=ctx)
    return [example for _, example in sorted(final["curated"], key=lambda pair: pair[0])]
