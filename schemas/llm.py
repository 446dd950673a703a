"""The request and result types every engine and every layer speaks (see backends/protocol.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.ids import unique_id
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


def new_call_id() -> str:
    return unique_id()


class LLMRequest(BaseModel):
    """One request to an engine: chat `messages`, or a raw `prompt` for completion models.

    The fields after `sample` travel with the request through the layers but are not part of
    what the engine is asked (they are excluded from dumps and so from cache keys)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

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

    message: BaseModel | None = Field(default=None, exclude=True)
    """The agent's typed message this request renders (what fakes and traces key on)."""
    output_type: type[BaseModel] | None = Field(default=None, exclude=True)
    """Structured output: every choice must parse and validate as this type (backends/layers)."""
    clean: Callable[[str], str] | None = Field(default=None, exclude=True)
    """Plain output: applied to each choice's text before the empty-output check."""
    call_id: str = Field(default_factory=new_call_id, exclude=True)
    """The agent call this request belongs to; its trace lines and fault lines carry it."""

    @model_validator(mode="after")
    def _schema_from_type(self) -> LLMRequest:
        """A structured request without an explicit schema constrains the engine to its type's."""
        if self.output_type is not None and self.json_schema is None:
            self.json_schema = schema_of(self.output_type)
        return self


@lru_cache(maxsize=256)
def schema_of(output_type: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a structured output type, built once (shared: callers must not modify it)."""
    return output_type.model_json_schema(by_alias=True)


def fold_system(messages: list[Message]) -> list[Message]:
    """Messages for a chat template that rejects a system role (Gemma, Mistral-Instruct v0.1):
    the system text goes at the top of the first user turn, separated by a blank line."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    if rest and rest[0].role == "user":
        return [Message(role="user", content=f"{system}\n\n{rest[0].content}"), *rest[1:]]
    return [Message(role="user", content=system), *rest]


class TemplateInfo(BaseModel):
    """What an engine can see of its model's chat template (drives `policy_mode = "auto"`)."""

    known: bool
    """False when the engine cannot see the template (an HTTP server applies its own)."""
    present: bool = False
    fingerprint: str | None = None
    """A short hash of the template text, recorded in the artifact."""
    accepts_system: bool = True
    """False when the template rejects a system message: the engine folds it into the first user turn."""


class Choice(BaseModel):
    text: str
    finish_reason: str | None = None

    @field_validator("text")
    @classmethod
    def _encodable(cls, text: str) -> str:
        """A lone surrogate from an engine would crash the journal's write: make it U+FFFD."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return text


class LLMResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    choices: list[Choice]
    usage: Usage
    model: str
    parsed: list[Any] = Field(default_factory=list, exclude=True)
    """For structured requests: one validated `output_type` instance per surviving choice."""
