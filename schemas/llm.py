"""The request and result types every engine speaks (see backends/base.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.usage import Usage


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Sampling(BaseModel):
    """Sampling parameters; `max_tokens` is always set so no engine falls back to a tiny default."""

    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=2048, ge=1)
    seed: int | None = 0
    stop: list[str] = Field(default_factory=list)
    n: int = Field(default=1, ge=1)


class LLMRequest(BaseModel):
    """One request to an engine: chat `messages`, or a raw `prompt` for completion models."""

    role: str
    """The agent role that sends it (accounting and traces)."""
    messages: list[Message] | None = None
    prompt: str | None = None
    sampling: Sampling = Field(default_factory=Sampling)
    json_schema: dict[str, Any] | None = None
    """When set, the engine must constrain its output to this JSON schema."""
    schema_name: str = "output"
    sample: int = 0
    """Which of several one-sample requests this is; keeps their cache keys apart when unseeded."""


class Choice(BaseModel):
    text: str
    finish_reason: str | None = None


class LLMResult(BaseModel):
    choices: list[Choice]
    usage: Usage
    model: str
