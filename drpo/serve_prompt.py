"""The policy engine's request for one `serve` request: the one formatter, composed, nothing new.

With no client system message and no history, the request is exactly the one `answer` sends
(agents/policy.py `generate_response`): `build_policy_prompt` over the aligned prompt, the k
retrieved examples and the query; the formatter's `STOPS`; `clean_response`; the typed
`PolicyRequest` as its message. A test holds the two to the same bytes.

What a conversation adds, both through agents/formatting.py:

- earlier turns: each (user, assistant) pair is rendered by `format_turn` after the examples, as
  prior `# Query:` / `# Answer:` turns; they are passed to `build_policy_prompt` behind the
  examples, which it renders the same way. (These two functions belong in agents/formatting.py
  and agents/policy.py; they live here until the owner of those files moves them.)
- the client's system message, by `ClientSystem` policy: `append` (the default) puts it after the
  aligned prompt, separated by a blank line, as an extra instruction; `ignore` drops it.

Examples are retrieved by the last user message alone (the caller's `AlignedModel.request`).
"""

from __future__ import annotations

from typing import Literal

from agents.formatting import STOPS, PolicyPrompt, build_policy_prompt, clean_response
from schemas.llm import LLMRequest, Sampling
from schemas.messages import Example, PolicyRequest

ClientSystem = Literal["append", "ignore"]
CLIENT_SYSTEM_POLICIES: tuple[ClientSystem, ...] = ("append", "ignore")


def with_client_system(request: PolicyRequest, client_system: str | None, policy: ClientSystem) -> PolicyRequest:
    """The aligned prompt first, then the client's system text as an extra instruction (`append`)."""
    if not client_system or policy == "ignore":
        return request
    return request.model_copy(update={"system_prompt": f"{request.system_prompt.strip()}\n\n{client_system.strip()}"})


def conversation_prompt(system_prompt: str, examples: list[Example], history: tuple[Example, ...],
                        query: str) -> PolicyPrompt:
    """The formatter's prompt with the conversation's earlier turns after the examples."""
    return build_policy_prompt(system_prompt, [*examples, *history], query)


def policy_call(request: PolicyRequest, history: tuple[Example, ...], *, sampling: Sampling,
                chat: bool) -> LLMRequest:
    """The engine request `generate_response` would build, with the conversation's turns and the
    client's stop strings added after the formatter's."""
    prompt = conversation_prompt(request.system_prompt, request.examples, history, request.query)
    stops = [*STOPS, *(s for s in sampling.stop if s not in STOPS)]
    return LLMRequest(
        role="policy",
        messages=prompt.messages() if chat else None,
        prompt=None if chat else prompt.text(),
        sampling=sampling.model_copy(update={"stop": stops}),
        message=request,
        clean=clean_response,
    )
