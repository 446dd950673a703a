"""The redactor at the engine's edge: a fault never leaves an engine with a key in its text.

Some servers echo the API key in an error body; the engine maps that error to a fault whose
message then travels everywhere a failure goes: the candidate's `failure`, the checkpoints,
the record store, the trace, the artifact, the report. Masking it where it arises, before any of
those copies (and before any truncation could cut a key in two), closes all of them at once.
backends/stack.py puts this layer directly on the engine, so every layer above sees scrubbed
faults only.
"""

from __future__ import annotations

from backends.protocol import Engine, Layer
from schemas.llm import LLMRequest, LLMResult, TemplateInfo
from telemetry.redact import Redactor


class RedactingLayer(Layer):
    """Passes every call through; scrubs the exceptions that come back (and their causes)."""

    def __init__(self, inner: Engine, redactor: Redactor) -> None:
        super().__init__(inner)
        self.redactor = redactor

    async def complete(self, request: LLMRequest) -> LLMResult:
        try:
            return await self.inner.complete(request)
        except Exception as exc:
            self.redactor.scrub_in_place(exc)
            raise

    async def probe(self) -> None:
        try:
            await super().probe()
        except Exception as exc:
            self.redactor.scrub_in_place(exc)
            raise

    async def chat_template(self) -> TemplateInfo:
        try:
            return await super().chat_template()
        except Exception as exc:
            self.redactor.scrub_in_place(exc)
            raise
