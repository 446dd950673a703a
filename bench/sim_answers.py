"""What the simulated engine answers: text of a set length, or a valid instance of the requested schema.

A request that asks for structured output gets a valid instance of the schema as its content:
`response_format` `{"type": "json_schema", "json_schema": {"schema": ...}}`, `{"type":
"json_object", "schema": ...}`, or a top-level `structured_outputs.json` / `guided_json` (what the
`openai` SDK's `extra_body` sends). The instance has every property; an enum gives its first value
(an array of enum items gives distinct values in order); an integer gives 3 when 3 is allowed,
else its minimum (or the enum's first value); a string gives text of `string_tokens` tokens
(within minLength/maxLength) that carries the request and sample number, so the `n` samples of
one request differ; an array gives `minItems` items (1 when unset). Other requests get text of
`text_tokens` tokens (capped by `max_tokens`, then `finish_reason` is "length").

Kept apart from the latency model (bench/sim_latency.py) because the in-process zero-latency
engine of the overhead measurements (bench/zero_latency.py) gives the same answers without HTTP.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
    "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
    "xray", "yankee", "zulu"
)


def filler_text(chars: int, salt: str = "") -> str:
    """Words of text, exactly `chars` characters long (at least 1), starting with `salt`."""
    chars = max(1, chars)
    text, words = salt, itertools.cycle(_WORDS)
    while len(text) < chars:
        text = f"{text} {next(words)}" if text else next(words)
    text = text[:chars]
    return text[:-1] + "x" if text.endswith(" ") else text


def schema_instance(schema: dict[str, Any], *, string_chars: int = 160, salt: str = "",
                    root: dict[str, Any] | None = None, path: str = "") -> Any:
    """A valid instance of a JSON schema with every property present (see the module docstring)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        ref = schema["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            if part:
                target = target[part]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema_instance(merged, string_chars=string_chars, salt=salt, root=root, path=path)
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return schema_instance(options[0], string_chars=string_chars, salt=salt, root=root, path=path)
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged.update(part)
        return schema_instance(merged, string_chars=string_chars, salt=salt, root=root, path=path)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema:
        values = schema["enum"]
        if kind == "integer" and 3 in values:
            return 3
        return values[0]
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {
            key: schema_instance(sub, string_chars=string_chars, salt=salt, root=root, path=f"{path}.{key}")
            for key, sub in props.items()
        }
    if kind == "array":
        count = schema.get("minItems", 1)
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        items = schema.get("items", {"type": "string"})
        if "$ref" not in items and "enum" in items and len(items["enum"]) >= count:
            return list(items["enum"][:count])
        return [schema_instance(items, string_chars=string_chars, salt=salt, root=root, path=f"{path}[{i}]")
                for i in range(count)]
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is None:
            value = 3 if high is None or high >= 3 else int(high)
        else:
            value = int(low)
        return value
    if kind == "number":
        return float(schema.get("minimum", 3.0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    length = max(schema.get("minLength", 1), string_chars)
    if "maxLength" in schema:
        length = min(length, schema["maxLength"])
    return filler_text(length, salt)


def requested_schema(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON schema a request asks its output to follow, and its name; (None, None) for text."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("schema") or {"type": "object"}, spec.get("name")
    if fmt.get("type") == "json_object":
        return fmt.get("schema") or {"type": "object", "properties": {"answer": {"type": "string"}}}, "json_object"
    structured = body.get("structured_outputs") or {}
    if isinstance(structured, dict) and structured.get("json") is not None:
        schema = structured["json"]
        return (json.loads(schema) if isinstance(schema, str) else schema), "structured_outputs"
    if body.get("guided_json") is not None:
        schema = body["guided_json"]
        return (json.loads(schema) if isinstance(schema, str) else schema), "guided_json"
    return None, None


def prompt_chars(body: dict[str, Any], chat: bool) -> int:
    """Characters of a request's prompt (chat messages or completion text), for its token estimate."""
    if chat:
        total = 0
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                total += sum(len(part.get("text", "")) for part in content if isinstance(part, dict))
        return total
    prompt = body.get("prompt") or ""
    return sum(len(p) for p in prompt) if isinstance(prompt, list) else len(prompt)
