"""The one interface between agents and engines.

An `Engine` answers one `LLMRequest` with an `LLMResult`. Real engines (llama_server.py,
openai_compat.py, vllm_engine.py) only translate: our request in, their SDK's answer out, and
their SDK's exceptions mapped to `backends.errors` at their own edge. Everything else between an
agent and an engine — retries, validation, caches, budgets, limits, sampling — is a *layer*
(backends/layers/): an object with this same interface that wraps another, composed in exactly
one place (backends/stack.py). Agents depend on this Protocol only.

Contract of a composed stack's `complete`:
- the result always carries `usage` (calls, tokens, latency of every attempt it took);
- a request with `output_type` returns `parsed`: one validated instance per surviving choice,
  at least one; plain requests return at least one non-empty choice (after `request.clean`);
- a call that fails every attempt raises `CallFailed`, never a partial or default value that
  could be mistaken for a score; an engine that stays down raises `EngineUnavailable`, and one
  that refuses the run's credentials or model raises `EngineRefused`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from schemas.llm import LLMRequest, LLMResult, TemplateInfo


@runtime_checkable
class Engine(Protocol):
    """A model behind some API, or a layer around one."""

    model: str
    native_n: bool
    """True when one request can return `n` choices."""

    async def complete(self, request: LLMRequest) -> LLMResult:
        """Answer one request (see the module docstring for what a composed stack promises)."""
        ...

    async def aclose(self) -> None: ...


class Layer:
    """A layer over an inner engine: forwards everything it does not change.

    Subclasses override `complete`; `model`, `native_n`, `probe` and `aclose` pass through, so a
    stack is introspected like the engine at its bottom."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.model = inner.model
        self.native_n = inner.native_n

    async def complete(self, request: LLMRequest) -> LLMResult:
        return await self.inner.complete(request)

    async def probe(self) -> None:
        """Ask the bottom engine, if it can, whether it is reachable (before a run spends anything)."""
        probe = getattr(self.inner, "probe", None)
        if probe is not None:
            await probe()

    async def chat_template(self) -> TemplateInfo:
        """What the bottom engine can see of its model's chat template (unknown if it cannot)."""
        describe = getattr(self.inner, "chat_template", None)
        return await describe() if describe is not None else TemplateInfo(known=False)

    @property
    def bottom(self) -> Engine:
        """The real engine under every layer."""
        inner = self.inner
        return inner.bottom if isinstance(inner, Layer) else inner

    async def aclose(self) -> None:
        await self.inner.aclose()
