"""What counts as an answer. Engines constrain decoding where they can; this layer checks.

- Structured requests (`output_type` set): every choice is parsed (code fences and prose around
  the outermost braces tolerated) and validated with pydantic; invalid choices are dropped and
  counted, and `parsed` holds the survivors. None valid is an `InvalidOutput` fault — or a
  `TruncatedOutput` when a choice was cut off at `max_tokens` — which the retry layer retries.
- Plain requests: each choice's text passes through `request.clean`; empty choices are dropped
  and counted (never an answer that could be scored), and no text at all is an `EmptyOutput` fault.

A fault raised here carries the usage of the reply it rejects, so a call's account includes
the attempts that were paid for and thrown away. Like every layer, it annotates the result in
place: a result is a fresh object that belongs to the one request it answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from backends.errors import EmptyOutput, EngineFault, InvalidOutput, TruncatedOutput
from backends.ledger import Ledger
from backends.protocol import Engine, Layer
from schemas.llm import Choice, LLMRequest, LLMResult

_FENCE = re.compile(r"^```(?:json|JSON)?\s*|\s*```$")
MAX_JSON_DEPTH = 64
"""Deeper nesting than any of our schemas: refused before json.loads can recurse too far."""


def parse_json_object(text: str) -> Any:
    """The JSON object in `text`: tolerates code fences and prose around the outermost braces."""
    stripped = _FENCE.sub("", text.strip())
    start, end = stripped.find("{"), stripped.rfind("}")
    if start < 0 or end < start:
        raise InvalidOutput(f"no JSON object in output: {text[:80]!r}")
    body = stripped[start : end + 1]
    if _depth(body) > MAX_JSON_DEPTH:
        raise InvalidOutput(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(body, strict=False)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidOutput(f"malformed JSON ({getattr(exc, 'msg', exc)}) in output: {text[:80]!r}") from exc


def _depth(text: str) -> int:
    deepest = level = 0
    for char in text:
        if char in "{[":
            level += 1
            deepest = max(deepest, level)
        elif char in "}]":
            level -= 1
    return deepest


def validated(text: str, output_type: type[BaseModel]) -> BaseModel:
    try:
        return output_type.model_validate(parse_json_object(text))
    except ValidationError as exc:
        raise InvalidOutput(str(exc).splitlines()[0] + ": " + _first_error(exc)) from exc


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    return str(errors[0].get("msg", "")) if errors else ""


class ValidationLayer(Layer):
    def __init__(self, inner: Engine, *, ledger: Ledger) -> None:
        super().__init__(inner)
        self.ledger = ledger

    async def complete(self, request: LLMRequest) -> LLMResult:
        result = await self.inner.complete(request)
        try:
            if request.output_type is not None:
                return self._structured(request, result)
            return self._plain(request, result)
        except EngineFault as fault:
            fault.usage = result.usage  # type: ignore[attr-defined]
            raise

    def _structured(self, request: LLMRequest, result: LLMResult) -> LLMResult:
        assert request.output_type is not None
        parsed, errors = [], []
        for choice in result.choices:
            try:
                parsed.append(validated(choice.text, request.output_type))
            except InvalidOutput as exc:
                errors.append(str(exc))
        if not parsed:
            if any(c.finish_reason == "length" for c in result.choices):
                raise TruncatedOutput(f"output cut off at max_tokens={request.sampling.max_tokens}")
            raise InvalidOutput("; ".join(errors) or "the reply held no choices")
        if errors:
            self.ledger.fault(request.role, InvalidOutput.kind)
        result.parsed = parsed
        return result

    def _plain(self, request: LLMRequest, result: LLMResult) -> LLMResult:
        clean = request.clean or str.strip
        choices = [Choice(text=clean(c.text), finish_reason=c.finish_reason) for c in result.choices]
        kept = [c for c in choices if c.text]
        if not kept:
            raise EmptyOutput("the engine returned no text")
        if len(kept) < len(choices):
            self.ledger.fault(request.role, EmptyOutput.kind)  # dropped and counted, as invalid structured ones
        result.choices = kept
        return result
