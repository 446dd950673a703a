"""Every agent message becomes one structured log line (the trace).

`traced` wraps one agent call: it logs the request and the reply (or the failure) as
`agent.message` events carrying the agent, the message type, latency and tokens, and a fresh
`call_id` that the request line and its reply (or failed) line share. The id is bound in structlog
contextvars for the duration of the call, so every line logged inside it — the engine layers'
`engine.fault` lines of each failed attempt — carries it too, and a reader joins them by id, not
by timestamp. The run, level, beam and candidate ids come from contextvars bound by the graph. The
logging setup (telemetry/logs.py) routes these events to `trace.jsonl` and the run log.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

import structlog
from pydantic import BaseModel

from backends.errors import CallFailed
from schemas.llm import new_call_id
from schemas.usage import Usage
from telemetry.logs import get_logger

R = TypeVar("R", bound=BaseModel)
trace_log = get_logger("drpo.trace")


def _payload(message: BaseModel) -> dict:
    return message.model_dump(mode="json", exclude={"usage"})


async def traced(agent: str, request: BaseModel, reply: Awaitable[R]) -> R:
    """Await `reply` (the agent call, not yet started) between its request and reply lines."""
    call_id = new_call_id()
    # Plain bind and reset: a third of the cost of `bound_contextvars`, on every agent call.
    bound = structlog.contextvars.bind_contextvars(call_id=call_id)
    try:
        return await _logged(agent, call_id, request, reply)
    finally:
        structlog.contextvars.reset_contextvars(**bound)


async def _logged(agent: str, call_id: str, request: BaseModel, reply: Awaitable[R]) -> R:
    trace_log.info("agent.message", agent=agent, direction="request", message_type=type(request).__name__,
                   message=_payload(request), call_id=call_id)
    started = time.perf_counter()
    try:
        result = await reply
    except CallFailed as failure:
        trace_log.warning("agent.message", agent=agent, direction="failed", message_type="CallFailed",
                          latency_s=round(time.perf_counter() - started, 4), faults=failure.faults,
                          error=str(failure.last)[:300], call_id=call_id)
        raise
    usage: Usage = getattr(result, "usage", None) or Usage()
    trace_log.info("agent.message", agent=agent, direction="reply", message_type=type(result).__name__,
                   message=_payload(result), latency_s=round(time.perf_counter() - started, 4),
                   calls=usage.calls, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, call_id=call_id)
    return result
