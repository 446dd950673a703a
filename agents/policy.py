"""Policy generator: the base model being aligned answers a query under a candidate prompt."""

from __future__ import annotations

from collections.abc import Sequence

from agents.formatting import STOPS, build_policy_prompt, clean_response
from backends.protocol import Engine
from schemas.llm import LLMRequest, Sampling
from schemas.messages import Example, PolicyRequest, PolicyResponse


def policy_call(request: PolicyRequest, *, sampling: Sampling, chat: bool,
                history: Sequence[Example] = ()) -> LLMRequest:
    """The engine request for `request`, the one built for optimization, inference and `serve`
    alike: the formatter's prompt (with a conversation's earlier turns after the examples), its
    stops first and then any the caller's `sampling` adds, its cleaning, the typed request."""
    prompt = build_policy_prompt(request.system_prompt, request.examples, request.query, history)
    stops = [*STOPS, *(s for s in sampling.stop if s not in STOPS)]
    return LLMRequest(
        role="policy",
        messages=prompt.messages() if chat else None,
        prompt=None if chat else prompt.text(),
        sampling=sampling.model_copy(update={"stop": stops}),
        message=request,
        clean=clean_response,
    )


async def generate_response(request: PolicyRequest, *, engine: Engine, sampling: Sampling, chat: bool) -> PolicyResponse:
    llm_request = policy_call(request, sampling=sampling.model_copy(update={"n": 1}), chat=chat)
    result = await engine.complete(llm_request)
    choice = result.choices[0]
    return PolicyResponse(text=choice.text, finish_reason=choice.finish_reason, usage=result.usage)
