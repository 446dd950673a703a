"""Several verdicts per answer: judge samples and judge panels, averaged (issue 15).

The paper asks one judge once, at temperature 0; a judge whose scores wobble by a point makes the
beam's choice close to a lottery. Two remedies, which combine:

- samples: `[search] judge_samples = n` asks each judge n times and averages the rewards;
- a panel: `[roles.judge] backends = ["a", "b"]` asks every listed backend's model and averages
  them (the errors of two models are less alike than two samples of one model's).

Every call is its own traced message, all of them and the critics in flight together; with more
than one call the trace lines carry `judge_backend` and `judge_sample`. The reward is the mean of
the per-call rewards, each call's scores joined by the critics'. The scores kept for the rewriter's
critique (and its skip rule) are those of the call nearest that mean, since integer aspect scores
cannot hold a mean. With one judge asked once this is exactly the paper's single call.

With `[search] panel_on_demand` the search asks the first call alone of every candidate and the
rest (`rest_verdict`) only of those that can change the beam (graph/panel_on_demand.py).

Curation (stage "examples") keeps the single judgement it sums scores from: one call, at the
judge's own sampling, to the judge role's engine (the first panel member).
"""

from __future__ import annotations

from collections.abc import Awaitable
from statistics import fmean

import structlog
from pydantic import computed_field

from agents.judge import judge
from backends.protocol import Engine
from graph.context import RunContext
from graph.fanout import gather
from graph.trace import traced
from schemas.llm import Sampling
from schemas.messages import Judgement, JudgeRequest
from schemas.usage import Usage

SAMPLE_TEMPERATURE = 1.0
"""The judge's temperature when it is sampled more than once (and `[roles.judge] temperature` is
unset). At the paper's 0 every sample is the same reply, so n samples would cost n calls and
average nothing. At 1 each sample is drawn from the judge model's own distribution over scores,
so their mean estimates the model's expected score (the probability-weighted score G-Eval reads
from the logits), which is what averaging is for; lower temperatures sharpen that distribution
toward its mode and bring back the rounding averaging removes; higher ones add noise that is not
the judge's opinion and break the JSON more often (an invalid reply is retried, never scored)."""


class PanelJudgement(Judgement):
    """The verdict on one answer from every sample of every judge, and the critics."""

    samples: list[float]
    """Each call's reward (its aspects and the critics'), member by member, sample by sample."""
    judges: list[str]
    """The `backend:model` behind each of `samples`."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reward(self) -> float:
        return fmean(self.samples)


def sample_settings(ctx: RunContext) -> list[Sampling]:
    """One sampling per sample: the judge's own for one; for n, `SAMPLE_TEMPERATURE` (unless the
    config sets the judge's) and seeds base, base + 1, ... so that each sample is its own request
    (and cache entry) and a rerun asks the same n questions."""
    base = ctx.config.sampling("judge")
    n = ctx.config.search.judge_samples
    if n == 1:
        return [base]
    if ctx.config.role("judge").temperature is None:
        base = base.model_copy(update={"temperature": SAMPLE_TEMPERATURE})
    first = base.seed or 0
    return [base.model_copy(update={"seed": first + i}) for i in range(n)]


async def _one(ctx: RunContext, engine: Engine, sampling: Sampling, request: JudgeRequest) -> Judgement:
    return await traced("judge", request, judge(request, engine=engine, catalogue=ctx.catalogue, sampling=sampling))


async def _labelled(ctx: RunContext, juror: str, sample: int, engine: Engine, sampling: Sampling,
                    request: JudgeRequest) -> Judgement:
    # Bound inside this call's own task, so each of the calls in flight logs its own judge.
    bound = structlog.contextvars.bind_contextvars(judge_backend=juror, judge_sample=sample)
    try:
        return await _one(ctx, engine, sampling, request)
    finally:
        structlog.contextvars.reset_contextvars(**bound)


async def single_verdict(ctx: RunContext, request: JudgeRequest) -> PanelJudgement:
    """One call to the judge role's engine at its own sampling (curation's verdict), in the same shape."""
    verdict = await _one(ctx, ctx.backends.for_role("judge"), ctx.config.sampling("judge"), request)
    return PanelJudgement(scores=verdict.scores, usage=verdict.usage, samples=[verdict.reward],
                          judges=[ctx.backends.name_of("judge")])


Call = tuple[str, int, Engine, Sampling]
"""One judge call of a verdict: the member's `backend:model`, the sample's index, its stack, its sampling."""


def judge_calls(ctx: RunContext) -> list[Call]:
    """Every call of a full verdict, member by member, sample by sample; the first is the judge
    role's own engine at its first sample (what `panel_on_demand` asks of every candidate)."""
    samplings = sample_settings(ctx)
    return [(name, i, engine, sampling) for name, engine in ctx.backends.panel("judge")
            for i, sampling in enumerate(samplings)]


async def panel_verdict(ctx: RunContext, request: JudgeRequest, critics: list[Awaitable[Judgement]],
                        first_only: bool = False) -> PanelJudgement:
    """Every judge's samples and the critics, all in flight; their mean. A call that fails every
    attempt fails the verdict (`CallFailed`), so the answer is dropped, never scored on the rest.
    `first_only`: the first call alone (`panel_on_demand`; `rest_verdict` may add the others)."""
    calls = judge_calls(ctx)
    return await _asked(ctx, request, critics, calls[:1] if first_only else calls, labelled=len(calls) > 1)


async def rest_verdict(ctx: RunContext, request: JudgeRequest, critics: list[Awaitable[Judgement]],
                       first: PanelJudgement) -> PanelJudgement:
    """The calls `first_only` left out, joined to the `first` verdict: the full panel's verdict, as
    if asked at once. Only the new calls' usage is counted. The critics are asked again with them:
    the state keeps the first verdict's scores joined, not the critics' apart (a computed critic is
    free, and a model-backed one at temperature 0 answers the same, from the cache when one is on)."""
    return await _asked(ctx, request, critics, judge_calls(ctx)[1:], labelled=True, before=first)


async def _asked(ctx: RunContext, request: JudgeRequest, critics: list[Awaitable[Judgement]], calls: list[Call],
                 *, labelled: bool, before: PanelJudgement | None = None) -> PanelJudgement:
    """Ask `calls` and the critics together; the mean over `before`'s calls (a first-only verdict:
    its scores are its one call's) and these; the usage is these calls' alone."""
    if labelled:
        asked = [_labelled(ctx, name, i, engine, sampling, request) for name, i, engine, sampling in calls]
    else:  # the paper's single call: no judge labels on its trace lines
        asked = [_one(ctx, calls[0][2], calls[0][3], request)]
    results = await gather(*asked, *critics)
    joined = [] if before is None else [Judgement(scores=before.scores)]
    for verdict in results[: len(calls)]:
        for extra in results[len(calls):]:
            verdict = verdict.merged(extra)
        joined.append(verdict)
    samples = ([] if before is None else before.samples) + [v.reward for v in joined[len(joined) - len(calls):]]
    mean = fmean(samples)
    nearest = min(joined, key=lambda v: abs(v.reward - mean))
    usage = sum((v.usage for v in results), start=Usage())
    judges = ([] if before is None else before.judges) + [c[0] for c in calls]
    return PanelJudgement(scores=nearest.scores, usage=usage, samples=samples, judges=judges)
