"""The one place that wires agents to the run: each role's engine, sampling, data and trace line.

Nodes in beam.py and curation.py call these functions; agents stay free of the graph. Each call
gets its role's composed engine stack from `ctx.backends.for_role(role)` and its sampling from
the config (the paper's defaults, then `[roles.NAME]`).

Critics are open: a critic's verdict joins the judge's, so it enters the reward and the rewriter's
critique. A model-backed critic is declared in its own agent module, which names everything the
run needs to know about it:

    ROLE = "tone"                            # `critics = ["tone"]`, `[roles.tone]`, `[budgets.tone]`,
                                             # and the trace's `agent`
    SAMPLING = Sampling(max_tokens=512)      # its defaults; `[roles.tone]` overrides any field
    def request_from(judged: JudgeRequest) -> ToneRequest: ...      # what it is asked (traced)
    async def critique(request: ToneRequest, *, engine: Engine, sampling: Sampling) -> Judgement: ...

and wired with ONE line in `CRITICS` below: `model_critic("agents.tone_critic")`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents.criteria import CriteriaCache, select_criteria
from agents.curator import retrieve_examples, rewrite_answer
from agents.length_critic import critique_length
from agents.policy import generate_response
from agents.rewriter import rewrite_prompt
from backends.errors import CallFailed
from graph.context import RunContext
from graph.judge_panel import PanelJudgement, panel_verdict, rest_verdict, single_verdict
from graph.trace import traced
from schemas.config import ROLES, RunConfig
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
from telemetry.logs import get_logger

log = get_logger("drpo.graph")


@dataclass(frozen=True)
class Critic:
    """A critic the run can turn on by name (`RunConfig.critics`)."""

    name: str
    run: Callable[[JudgeRequest, RunContext], Awaitable[Judgement]]
    """Its verdict on the judge's request, traced."""
    model_backed: bool = False
    """True when it calls an engine: its name is then a role `[roles]` and `[budgets]` may bind."""


def model_critic(module: str) -> Critic:
    """The critic an agent module declares (see the module docstring), by its import path."""
    agent = importlib.import_module(module)
    role, default = agent.ROLE, agent.SAMPLING

    async def run(judged: JudgeRequest, ctx: RunContext) -> Judgement:
        request = agent.request_from(judged)
        reply = agent.critique(request, engine=ctx.backends.for_role(role), sampling=ctx.config.sampling(role, default))
        return await traced(role, request, reply)

    return Critic(role, run, model_backed=True)


async def _length(judged: JudgeRequest, ctx: RunContext) -> Judgement:
    request = LengthRequest(response=judged.response)
    return await traced("length_critic", request, critique_length(request))


CRITICS: dict[str, Critic] = {
    critic.name: critic
    for critic in (
        Critic("length", _length),  # computed, calls no model (agents/length_critic.py)
    )
}
"""Extra critics by name; `RunConfig.critics` picks which run beside the judge."""


def known_roles() -> list[str]:
    """Every role an engine can serve: the paper's, then each model-backed critic's."""
    return [*ROLES, *(name for name, critic in CRITICS.items() if critic.model_backed and name not in ROLES)]


def roles_in_use(config: RunConfig) -> tuple[str, ...]:
    """The roles a run with `config` calls engines for: the paper's, and each model-backed critic
    it turns on (so their engines can be built and probed before the run starts)."""
    critics = [name for name in config.critics if name in CRITICS and CRITICS[name].model_backed]
    return (*ROLES, *dict.fromkeys(name for name in critics if name not in ROLES))


# --- the paper's roles -------------------------------------------------------------------------


async def criteria_for(ctx: RunContext, query: str, stage: Stage = "prompt") -> CriteriaSelection:
    engine = ctx.backends.for_role("criteria")
    request = CriteriaRequest(query=query, stage=stage)
    key = CriteriaCache.key(engine.model, ctx.catalogue, query, stage)

    def select() -> Awaitable[CriteriaSelection]:
        sampling = ctx.config.sampling("criteria")
        return select_criteria(request, engine=engine, catalogue=ctx.catalogue, sampling=sampling)

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
    reply = generate_response(request, engine=ctx.backends.for_role("policy"), sampling=ctx.config.sampling("policy"),
                              chat=ctx.policy.mode == "chat")
    return await traced("policy", request, reply)


async def judge_response(
    ctx: RunContext, query: str, response: str, criteria: CriteriaSelection, stage: Stage = "prompt",
    first_only: bool = False,
) -> PanelJudgement:
    """The judge's verdict, joined by every configured critic's (all in flight together).

    Critics join the prompt stage only; curation is judged by the critic persona alone. The prompt
    stage asks `judge_samples` calls of each panel member and averages them (graph/judge_panel.py;
    one call by default, the paper's), or only the first of them with `first_only`
    (`panel_on_demand`); curation asks one judge once."""
    request = JudgeRequest(
        query=query, response=response, aspects=criteria.aspects, reasoning=criteria.reasoning, stage=stage
    )
    if stage == "prompt":
        return await panel_verdict(ctx, request, _critics(ctx, request), first_only)
    return await single_verdict(ctx, request)


async def judge_rest(ctx: RunContext, query: str, response: str, first: PanelJudgement) -> PanelJudgement:
    """The rest of the panel on an answer `first_only` judged: the full verdict (graph/panel_on_demand.py)."""
    criteria = await criteria_for(ctx, query)  # the selection the first call was asked with, from the cache
    request = JudgeRequest(query=query, response=response, aspects=criteria.aspects, reasoning=criteria.reasoning)
    return await rest_verdict(ctx, request, _critics(ctx, request), first)


def _critics(ctx: RunContext, request: JudgeRequest) -> list[Awaitable[Judgement]]:
    return [CRITICS[name].run(request, ctx) for name in ctx.config.critics]


async def improve_answer(ctx: RunContext, request: AnswerRewriteRequest, round_: int) -> AnswerRewrite:
    """The curation's seed and the round number seed the sample: `curate --seed` makes the loop
    repeatable (two seeds never share a round's sample), and rewriting the same answer twice
    (`from_best`) asks anew. Seed 0 keeps the seeds (and cache keys) of earlier versions."""
    seed = 1009 * ctx.config.curation.seed + round_
    sampling = ctx.config.sampling("curator").model_copy(update={"seed": seed})
    reply = rewrite_answer(request, engine=ctx.backends.for_role("curator"), sampling=sampling)
    return await traced("curator", request, reply)


async def rewrite(ctx: RunContext, request: RewriteRequest) -> PromptCandidates:
    reply = rewrite_prompt(request, engine=ctx.backends.for_role("rewriter"), sampling=ctx.config.sampling("rewriter"))
    return await traced("rewriter", request, reply)
