"""The client's system message, by the server's `--client-system` policy.

The engine request itself is agents/policy.py `policy_call`, the one `answer` and optimization
send (a test holds `serve` and `answer` to the same bytes); a conversation's earlier turns are
rendered by agents/formatting.py after the examples. What is `serve`'s own is what to do with a
system message the client sends: `append` (the default) puts it after the aligned prompt,
separated by a blank line, as an extra instruction; `ignore` drops it.
"""

from __future__ import annotations

from typing import Literal

from schemas.messages import PolicyRequest

ClientSystem = Literal["append", "ignore"]
CLIENT_SYSTEM_POLICIES: tuple[ClientSystem, ...] = ("append", "ignore")


def with_client_system(request: PolicyRequest, client_system: str | None, policy: ClientSystem) -> PolicyRequest:
    """The aligned prompt first, then the client's system text as an extra instruction (`append`)."""
    if not client_system or policy == "ignore":
        return request
    return request.model_copy(update={"system_prompt": f"{request.system_prompt.strip()}\n\n{client_system.strip()}"})
