"""The aligned model's answer in the OpenAI response format, whole or as server-sent events.

The engine protocol returns whole results, so a streamed answer is the finished answer sent as
chunks: per choice, one chunk with the role and the whole text, then one with the finish reason
(with `stream_options.include_usage`, a last chunk with no choices and the usage), then
`data: [DONE]`. That is the sequence the `openai` SDK's streams read, for chat
(`chat.completion.chunk`) and completions (`text_completion`) alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from schemas.ids import unique_id
from schemas.llm import LLMResult

DONE = b"data: [DONE]\n\n"
FINISH_REASONS = frozenset({"stop", "length", "content_filter"})


@dataclass(frozen=True)
class Reply:
    """What is common to every body of one answer."""

    id: str
    created: int
    model: str
    chat: bool

    @classmethod
    def new(cls, model: str, *, chat: bool) -> Reply:
        prefix = "chatcmpl" if chat else "cmpl"
        return cls(f"{prefix}-{unique_id()}", int(time.time()), model, chat)

    def head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


def usage_of(result: LLMResult) -> dict[str, int]:
    tokens_in, tokens_out = result.usage.tokens_in, result.usage.tokens_out
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}


def _finish(reason: str | None) -> str:
    return reason if reason in FINISH_REASONS else "stop"


def body(reply: Reply, result: LLMResult) -> dict[str, Any]:
    """The whole answer: a `chat.completion` or a `text_completion`."""
    if reply.chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                    "finish_reason": _finish(c.finish_reason)} for i, c in enumerate(result.choices)]
        head = reply.head("chat.completion")
    else:
        choices = [{"index": i, "text": c.text, "logprobs": None, "finish_reason": _finish(c.finish_reason)}
                   for i, c in enumerate(result.choices)]
        head = reply.head("text_completion")
    return {**head, "choices": choices, "usage": usage_of(result)}


def chunks(reply: Reply, result: LLMResult, *, include_usage: bool) -> Iterator[dict[str, Any]]:
    """The answer as stream chunks (see the module docstring)."""
    kind = "chat.completion.chunk" if reply.chat else "text_completion"
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    for i, choice in enumerate(result.choices):
        for text, finish in ((choice.text, None), (None, _finish(choice.finish_reason))):
            if reply.chat:
                delta = {"role": "assistant", "content": text} if text is not None else {}
                entry: dict[str, Any] = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                entry = {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
            yield {**reply.head(kind), "choices": [entry], **extra}
    if include_usage:
        yield {**reply.head(kind), "choices": [], "usage": usage_of(result)}


def event(payload: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def json_reply(payload: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response, serialized once by orjson (UTF-8, as `json.dumps(ensure_ascii=False)`)."""
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")
