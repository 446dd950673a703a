"""An in-process engine that takes no time: the simulator's answers, without HTTP or latency.

It measures what DRPO itself costs per call (the overhead measurements) and pays the one-off
first-run costs before timing (`bench.optimize_run.warm_up`). Each call yields to the event loop
once, so a burst of calls really is in flight at once; the handler counts the peak.
"""

from __future__ import annotations

from typing import Any

import anyio

from backends.scripted import ScriptedEngine
from bench.sim_answers import filler_text, schema_instance
from schemas.llm import LLMRequest


class ZeroLatency:
    """A `ScriptedEngine` handler: text of `text_tokens` tokens, or a schema instance whose strings
    have `string_tokens` tokens (4 characters a token, as the simulator counts)."""

    def __init__(self, text_tokens: int = 200, string_tokens: int = 40) -> None:
        self.text_chars = text_tokens * 4
        self.string_chars = string_tokens * 4
        self.in_flight = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, request: LLMRequest) -> list[Any]:
        self.calls += 1
        n, salt = request.sampling.n, f"r{self.calls}s"  # before the yield: every call its own text
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        schema = request.json_schema
        if schema is None and request.output_type is not None:
            schema = request.output_type.model_json_schema(by_alias=True)
        if schema is not None:
            return [schema_instance(schema, string_chars=self.string_chars, salt=f"{salt}{i}") for i in range(n)]
        return [filler_text(self.text_chars, f"{salt}{i}") for i in range(n)]

    def engine(self, model: str | None = None) -> ScriptedEngine:
        """A scripted engine answering with this handler."""
        return ScriptedEngine(self, model=model or "zero")

    def factory(self):  # type: ignore[no-untyped-def]
        """An engine factory in the registry's shape, `(backend config, model) -> engine`, for `optimize`."""

        def build(config, model):  # type: ignore[no-untyped-def]
            return self.engine(model)

        return build
