"""The client side of the hostile tests: a real `OpenAICompatEngine` under the real layer stack
(tests/stacks.py), the two kinds of request, and what a test reads back from a failure."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from backends.ledger import Ledger
from backends.openai_compat import OpenAICompatEngine
from backends.protocol import Engine
from schemas.llm import LLMRequest, LLMResult, Message, Sampling
from tests.hostile import servers
from tests.stacks import stack

KEY_ENV = "HOSTILE_KEY"
KEY = "sk-hostile-4f9Qz2Lm8Rt6Vw1Xy3"
"""The API key every hostile test runs with (its conftest sets it); no byte we show may hold it."""
CALL_LIMIT_S = 15.0
"""No call in these tests may take longer, whatever the server does."""


def engine_at(url: str, *, timeout_s: float = 2.0, model: str = "m") -> OpenAICompatEngine:
    return OpenAICompatEngine(model, base_url=url, api_key_env=KEY_ENV, timeout_s=timeout_s)


@asynccontextmanager
async def stacked(url: str, *, timeout_s: float = 2.0, ledger: Ledger | None = None,
                  **options: Any) -> AsyncIterator[tuple[Engine, Ledger]]:
    """The engine at `url` under every layer (options: tests.stacks.stack's and BackendConfig's)."""
    ledger = ledger or Ledger()
    engine = stack(engine_at(url, timeout_s=timeout_s), name="hostile:m", ledger=ledger, **options)
    try:
        yield engine, ledger
    finally:
        await engine.aclose()


async def call(engine: Engine, request: LLMRequest) -> LLMResult:
    with anyio.fail_after(CALL_LIMIT_S):
        return await engine.complete(request)


def chat_request(role: str = "policy", *, system: str | None = None, n: int = 1) -> LLMRequest:
    messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content="Hi?")]
    return LLMRequest(role=role, messages=messages, sampling=Sampling(max_tokens=16, n=n))


def text_request(role: str = "policy", *, n: int = 1) -> LLMRequest:
    return LLMRequest(role=role, prompt="Once upon a time", sampling=Sampling(max_tokens=16, n=n))


ENDPOINTS: dict[str, tuple[Callable[..., LLMRequest], Callable[..., dict[str, Any]], str]] = {
    "chat": (chat_request, servers.chat, "/v1/chat/completions"),
    "completions": (text_request, servers.text_completion, "/v1/completions"),
}
"""endpoint -> (a request that goes there, a valid reply from there, the path it must reach)."""


def shown(error: BaseException) -> str:
    """Everything a user could see of `error`: its text and its full traceback, causes included."""
    return str(error) + "\n" + "".join(traceback.format_exception(error))
