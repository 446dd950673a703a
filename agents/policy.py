"""Policy generator: the base model being aligned answers a query under a candidate prompt."""

from __future__ import annotations

from agents.formatting import STOPS, build_policy_prompt, clean_response
from backends.protocol import Engine
from schemas.llm import LLMRequest, Sampling
from schemas.messages import PolicyRequest, PolicyResponse


async def generate_response(request: PolicyRequest, *, engine: Engine, sampling: Sampling, chat: bool) -> PolicyResponse:
    prompt = build_policy_prompt(request.system_prompt, request.examples, request.query)
    llm_request = LLMRequest(
        role="policy",
        messages=prompt.messages() if chat else None,
        prompt=None if chat else prompt.text(),
        sampling=sampling.model_copy(update={"stop": STOPS, "n": 1}),
        message=request,
        clean=clean_response,
    )
    result = await engine.complete(llm_request)
    choice = result.choices[0]
    return PolicyResponse(text=choice.text, finish_reason=choice.finish_reason, usage=result.usage)
