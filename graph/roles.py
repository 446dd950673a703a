"""The one place that wires agents to the run: each role's engine, sampling, data and trace line.

Nodes in beam.py call these functions; agents stay free of the graph. To add a critic role, write
it in agents/, put its messages in schemas/, and add one entry to `CRITICS` (README, "Adding a role").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from agents.criteria import CriteriaCache, select_criteria
from agents.curator import retrieve_examples, rewrite_answer
from agents.judge import judge
from agents.length_critic import critique_length
from agents.policy import generate_response
from agents.rewriter import rewrite_prompt
from backends.errors import CallFailed
from graph.context import RunContext
from graph.fanout import gather
from graph.trace import traced
from schemas.critics import LengthRequest
from schemas.messages import (
    AnswerRewrite,
    AnswerRewriteRequest,
    CriteriaRequest,
    CriteriaSelection,
    Judgement,
    JudgeRequest,
    PolicyRequest,
    PolicyResponse,
    PromptCandidates,
    RetrievalRequest,
    RewriteRequest,
    Stage,
)

log = structlog.get_logger("drpo.graph")

Critic = Callable[[JudgeRequest, RunContext], Awaitable[Judgement]]


async def _length(request: JudgeRequest, ctx: RunContext) -> Judgement:
    return await traced("length_critic", (msg := LengthRequest(response=request.response)), critique_length(msg))


CRITICS: dict[str, Critic] = {
    "length": _length,
}
"""Extra critics by name; `RunConfig.critics` picks which run beside the judge."""


async def criteria_for(ctx: RunContext, query: str, stage: Stage = "prompt") -> CriteriaSelection:
    backend = ctx.backends.for_role("criteria")
    request = CriteriaRequest(query=query, stage=stage)
    key = CriteriaCache.key(backend.model, ctx.catalogue, query, stage)

    def select() -> Awaitable[CriteriaSelection]:
        return select_criteria(request, backend=backend, catalogue=ctx.catalogue, sampling=ctx.config.sampling("criteria"))

    selection = await traced("criteria", request, ctx.criteria_cache.get_or_select(key, select))
    if selection.cached:
        ctx.backends.ledger.cache_hit("criteria")
    return selection


def prefetch_criteria(ctx: RunContext, queries: list[str]) -> None:
    """Start every selection now, in the background; a failure here is retried when needed."""
    assert ctx.background is not None, "prefetch needs RunContext.background"

    async def one(query: str) -> None:
        try:
            await criteria_for(ctx, query)
        except CallFailed:
            log.warning("criteria.prefetch_failed", query=query[:60])

    for query in queries:
        ctx.background.start_soon(one, query)


async def answer(ctx: RunContext, prompt: str, query: str) -> PolicyResponse:
    assert ctx.examples is not None, "answering needs the example pool"
    retrieval = RetrievalRequest(query=query, k=ctx.config.search.k)
    examples = await traced("curator", retrieval, retrieve_examples(retrieval, pool=ctx.examples))
    request = PolicyRequest(system_prompt=prompt, query=query, examples=examples.examples)
    backend = ctx.backends.for_role("policy")
    chat = ctx.config.backends[ctx.config.role("policy").backend].chat
    reply = generate_response(request, backend=backend, sampling=ctx.config.sampling("policy"), chat=chat)
    return await traced("policy", request, reply)


async def judge_response(
    ctx: RunContext, query: str, response: str, criteria: CriteriaSelection, stage: Stage = "prompt"
) -> Judgement:
    """The judge's verdict, joined by every configured critic's (all in flight together).

    Critics join the prompt stage only; curation is judged by the critic persona alone."""
    request = JudgeRequest(
        query=query, response=response, aspects=criteria.aspects, reasoning=criteria.reasoning, stage=stage
    )
    backend = ctx.backends.for_role("judge")
    main = judge(request, backend=backend, catalogue=ctx.catalogue, sampling=ctx.config.sampling("judge"))
    critics = ctx.config.critics if stage == "prompt" else []
    verdict, *extras = await gather(traced("judge", request, main), *(CRITICS[name](request, ctx) for name in critics))
    for extra in extras:
        verdict = verdict.merged(extra)
    return verdict


async def improve_answer(ctx: RunContext, request: AnswerRewriteRequest, round_: int) -> AnswerRewrite:
    """The round number seeds the sample: rewriting the same answer twice (`from_best`) asks anew."""
    backend = ctx.backends.for_role("curator")
    sampling = ctx.config.sampling("curator").model_copy(update={"seed": round_})
    reply = rewrite_answer(request, backend=backend, sampling=sampling)
    return await traced("curator", request, reply)


async def rewrite(ctx: RunContext, request: RewriteRequest) -> PromptCandidates:
    backend = ctx.backends.for_role("rewriter")
    reply = rewrite_prompt(request, backend=backend, sampling=ctx.config.sampling("rewriter"))
    return await traced("rewriter", request, reply)
