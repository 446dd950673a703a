"""A scripted engine for unit tests of logic: a handler decides every answer.

Never a user-facing default. The handler receives our `LLMRequest` and returns, per choice, text,
a dict or pydantic model (sent as JSON), or an `EngineFault` to raise. Sync or async handlers both
work. `schema_instance` builds the smallest valid instance of a JSON schema, as a default answer.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from backends.errors import EngineFault
from schemas.llm import Choice, LLMRequest, LLMResult
from schemas.usage import Usage

Answer = str | dict[str, Any] | BaseModel | EngineFault
Handler = Callable[[LLMRequest], "Answer | list[Answer] | Awaitable[Answer | list[Answer]]"]


class ScriptedEngine:
    native_n = True

    def __init__(self, handler: Handler | None = None, *, model: str = "scripted") -> None:
        self.handler = handler or default_handler
        self.model = model
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMResult:
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        answers = answer if isinstance(answer, list) else [answer] * request.sampling.n
        for item in answers:
            if isinstance(item, EngineFault):
                raise item
        texts = [_as_text(a) for a in answers]
        prompt_chars = sum(len(m.content) for m in request.messages or []) + len(request.prompt or "")
        usage = Usage(tokens_in=prompt_chars // 4, tokens_out=sum(len(t) for t in texts) // 4)
        return LLMResult(choices=[Choice(text=t, finish_reason="stop") for t in texts], usage=usage, model=self.model)

    async def aclose(self) -> None:
        return None


def _as_text(answer: Answer) -> str:
    if isinstance(answer, BaseModel):
        return answer.model_dump_json(by_alias=True)
    if isinstance(answer, dict):
        return json.dumps(answer)
    return str(answer)


def default_handler(request: LLMRequest) -> Answer:
    if request.json_schema is not None:
        return schema_instance(request.json_schema)
    return "A scripted answer."


def schema_instance(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """The smallest instance valid for `schema` (objects, arrays, enums, strings, numbers, $ref)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return schema_instance(root["$defs"][name], root)
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return schema_instance(schema["anyOf"][0], root)
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {key: schema_instance(sub, root) for key, sub in props.items()}
    if kind == "array":
        count = schema.get("minItems", 1)
        return [schema_instance(schema.get("items", {"type": "string"}), root) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    return "x" * max(1, schema.get("minLength", 1))
