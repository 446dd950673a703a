"""Engines wrapped in the real layer stack (backends/stack.py), for tests of one engine or agent."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from backends.cache import ResponseCache
from backends.ledger import Ledger
from backends.protocol import Engine
from backends.stack import build_stack
from schemas.config import BackendConfig
from schemas.llm import LLMRequest

L = TypeVar("L")


def stack(engine: Engine, *, name: str = "test", ledger: Ledger | None = None, max_concurrency: int = 64,
          backoff_s: float = 0.001, caches: list[ResponseCache] | None = None, down_after: int = 3,
          **config: Any) -> Engine:
    """`engine` under every layer, as a run composes it; `config` sets BackendConfig fields."""
    return build_stack(engine, name=name, config=BackendConfig(**config), ledger=ledger or Ledger(),
                       caches=list(caches or []), max_concurrency=max_concurrency, backoff_s=backoff_s,
                       down_after=down_after)


def with_output(request: LLMRequest, output_type: type[BaseModel]) -> LLMRequest:
    """`request` as a structured request for `output_type` (its schema sent unless one is set)."""
    schema = request.json_schema or output_type.model_json_schema(by_alias=True)
    return request.model_copy(update={"output_type": output_type, "json_schema": schema})


def layer(engine: Engine, kind: type[L]) -> L:
    """The first layer of type `kind` in a stack (to look at its limiter, its caches, ...)."""
    current: Any = engine
    while not isinstance(current, kind):
        current = current.inner
    return current
