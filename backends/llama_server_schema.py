"""Room to close the JSON: free-text strings bounded so a constrained answer ends within max_tokens.

A grammar-constrained decoder guarantees the *syntax* of its JSON, not that it ends: a small
model decoding greedily can repeat one sentence inside a string until `max_tokens` cuts it off,
which is a `truncated` fault and a retry (measured on the demo's judge: SmolLM2-135M at
temperature 0 looped in a rationale to the 500-token cap; bench/RESULTS.md, "The embedded
engine"). llama-server turns a string's `maxLength` into a bounded repetition in its grammar, so
the embedded engine gives every free-text string of a schema its share of the token budget:
a string that would have run on is cut where the object can still close, and the answer parses.
A schema's own tighter bounds, enums, patterns and formats are kept; nothing else changes.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

CHARS_PER_TOKEN = 2
"""Characters of text per token, on the low side: English runs about 4 with SmolLM2's vocabulary,
but at 3 a rewriter's three strings still ran past a 500-token cap once in seven demo-sized runs."""
TOKENS_PER_FIELD = 8
"""Kept for each property's key, quotes, colon and spacing."""
UNBOUNDED_ITEMS = 4
"""The strings an array without `maxItems` is counted for."""
MIN_LENGTH = 32
_CONSTRAINED = ("enum", "const", "pattern", "format")


def bounded(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """A copy of `schema` whose free-text strings fit `max_tokens` together (the same schema when
    it has none)."""
    return copy.deepcopy(_bounded(json.dumps(schema, sort_keys=True), max_tokens))  # callers may change theirs


@lru_cache(maxsize=256)
def _bounded(key: str, max_tokens: int) -> dict[str, Any]:
    schema = json.loads(key)
    strings, fields = _count(schema, schema.get("$defs", {}), ())
    if strings:
        room = max(0, max_tokens - TOKENS_PER_FIELD * fields - 16) * CHARS_PER_TOKEN
        _limit(schema, max(MIN_LENGTH, room // strings))
    return schema


def _free(node: dict[str, Any]) -> bool:
    return node.get("type") == "string" and not any(key in node for key in _CONSTRAINED)


def _count(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> tuple[int, int]:
    """(free-text strings, properties) that one instance of `node` holds, `$ref`s followed."""
    if isinstance(node, list):
        return _sum(_count(item, defs, seen) for item in node)
    if not isinstance(node, dict):
        return 0, 0
    if isinstance(ref := node.get("$ref"), str):
        name = ref.rsplit("/", 1)[-1]
        return (0, 0) if name in seen or name not in defs else _count(defs[name], defs, (*seen, name))
    if _free(node):
        return 1, 0
    properties = node.get("properties") or {}
    strings, fields = _sum(_count(value, defs, seen) for value in properties.values())
    fields += len(properties)
    if "items" in node:
        items = node.get("maxItems") or UNBOUNDED_ITEMS
        inner = _count(node["items"], defs, seen)
        strings, fields = strings + items * inner[0], fields + items * inner[1]
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list) and node[key]:
            widest = max((_count(branch, defs, seen) for branch in node[key]), default=(0, 0))
            strings, fields = strings + widest[0], fields + widest[1]
    if isinstance(node.get("allOf"), list):
        more = _count(node["allOf"], defs, seen)
        strings, fields = strings + more[0], fields + more[1]
    return strings, fields


def _sum(pairs: Any) -> tuple[int, int]:
    strings = fields = 0
    for s, f in pairs:
        strings, fields = strings + s, fields + f
    return strings, fields


def _limit(node: Any, length: int) -> None:
    """`maxLength` at most `length` on every free-text string, in place (definitions included)."""
    if isinstance(node, list):
        for item in node:
            _limit(item, length)
    elif isinstance(node, dict):
        if _free(node):
            node["maxLength"] = min(length, node.get("maxLength", length))
        for value in node.values():
            _limit(value, length)
