"""A model-backed critic, written as a newcomer would write one in agents/: this file plus one
line of wiring (`model_critic("agents.polite_critic")` in graph/roles.py `CRITICS`; the tests
register it with that same call). Everything the run needs to know about the role is here."""

from __future__ import annotations

from pydantic import BaseModel, Field

from backends.protocol import Engine
from schemas.llm import LLMRequest, Message, Sampling
from schemas.messages import AspectScore, Judgement, JudgeRequest

ROLE = "polite"
"""The name under `critics`, `[roles.polite]`, `[budgets.polite]`, and the trace's `agent`."""
SAMPLING = Sampling(temperature=0.0, max_tokens=64)
"""Defaults; `[roles.polite]` overrides any field."""
ASPECT = "Politeness"

SYSTEM = "You rate how courteous an assistant's answer is, from 1 (rude) to 5 (warm and respectful). Reply with JSON."


class PoliteRequest(BaseModel):
    """What the critic is asked: the answer alone (the query does not change how polite it is)."""

    response: str


class PoliteOutput(BaseModel):
    rationale: str
    score: int = Field(ge=1, le=5)


def request_from(judged: JudgeRequest) -> PoliteRequest:
    return PoliteRequest(response=judged.response)


async def critique(request: PoliteRequest, *, engine: Engine, sampling: Sampling) -> Judgement:
    llm_request = LLMRequest(
        role=ROLE,
        messages=[Message(role="system", content=SYSTEM), Message(role="user", content=request.response)],
        sampling=sampling.model_copy(update={"n": 1}),
        json_schema=PoliteOutput.model_json_schema(),
        schema_name="politeness",
        message=request,
        output_type=PoliteOutput,
    )
    result = await engine.complete(llm_request)
    verdict: PoliteOutput = result.parsed[0]
    return Judgement(scores={ASPECT: AspectScore(rationale=verdict.rationale, score=verdict.score)}, usage=result.usage)
