"""What an OpenAI client sends `serve`, read into what the aligned model needs, within the server's limits.

A chat body becomes a `Conversation` (the client's system text, the earlier turns, the last user
message) and a `Sampling`; a completion body's `prompt` is the query, with no history. Sampling
fields the client leaves out take the server's defaults (the `answer` command's: temperature 0.7,
top_p 0.95, max_tokens 512), except `seed`, which is then left unset so that every request draws a
fresh sample, as from any OpenAI endpoint. `max_tokens` above the cap is lowered to it; `n` above
`max_n`, too many stop strings, or anything the aligned model cannot honour (tools, a JSON
`response_format`, logprobs, echo, best_of) is a 400 that says which field, never silently ignored.
The arrays a body holds (messages, content parts, stop strings, prompts) are counted against their
bounds before any of it is validated (`_bounded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drpo.serve_faults import bad_request, quoted
from schemas.llm import Sampling
from schemas.messages import Example


@dataclass(frozen=True)
class ServeLimits:
    """The server's bounds; each is a `serve` flag (drpo/serve_cli.py)."""

    max_tokens_cap: int = 2048
    """The most tokens one answer may ask for; a larger `max_tokens` is lowered to it."""
    max_n: int = 4
    """The most choices one request may ask for."""
    max_stop: int = 4
    """The most stop strings a client may add (the formatter's own stops are always sent)."""
    max_messages: int = 2048
    """The most messages one chat request may hold, and the most content parts in all of them."""
    max_body_bytes: int = 1 << 20
    """A larger request body is refused with 413."""
    max_concurrent: int = 64
    """Requests being answered at once; one more is refused with 429 and Retry-After. A request
    counts once its body has arrived: a client that is still sending is not being answered."""
    body_timeout_s: float = 60.0
    """How long a request body may take to arrive; a slower one is refused with 408."""
    retry_after_s: int = 1
    """The Retry-After of a 429 (and of a 503 when the engine gives none)."""
    shutdown_timeout_s: float = 60.0
    """On SIGTERM, how long requests in flight may take to finish."""


class _Wire(BaseModel):
    """A part of a request body. Fields this server does not use (user, metadata, penalties) are
    ignored, not even kept (60,000 unknown keys took 8 ms to keep); the ones it reads must have
    their JSON type: "yes" is no boolean, true no count and "0.5" no temperature (OpenAI's API
    refuses them too; read leniently, `stream: "yes"` streamed and `max_tokens: true` asked for one
    token). An integer passes where a number is asked for."""

    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Wire):
    type: str
    text: str | None = None


class WireMessage(_Wire):
    role: str
    content: str | list[TextPart] | None = None


class StreamOptions(_Wire):
    include_usage: bool = False


class _Body(_Wire):
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: Any = None


class ChatBody(_Body):
    messages: list[WireMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: Any = None
    functions: Any = None
    response_format: dict[str, Any] | None = None


class CompletionBody(_Body):
    prompt: str | list[str]
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = None


@dataclass(frozen=True)
class Conversation:
    """A request as the aligned model reads it: examples are retrieved by `query` alone."""

    query: str
    """The last user message."""
    history: tuple[Example, ...] = ()
    """Earlier (user, assistant) turns, oldest first."""
    system: str | None = None
    """The client's system (and developer) messages, joined by blank lines."""


@dataclass(frozen=True)
class Call:
    conversation: Conversation
    sampling: Sampling
    model: str | None
    stream: bool
    include_usage: bool


ONE_PROMPT = "prompt: exactly one prompt per request (send one request per prompt)"


def _bounded(body: dict[str, Any], limits: ServeLimits) -> None:
    """The body's arrays counted before any of it is validated. Validation costs CPU per item, in
    one call that holds the event loop however long it takes (a 1 MiB body holds 34,000 one-letter
    messages: 0.14 s, 40,000 content parts, 150,000 stop strings), so an array over its bound is
    refused before its items are read. An array of the wrong type is left to validation."""
    stop = body.get("stop")
    if _length(stop) > limits.max_stop and sum(1 for s in stop if s) > limits.max_stop:  # empty ones are dropped
        raise bad_request(f"stop: at most {limits.max_stop} stop strings", param="stop")
    if _length(body.get("prompt")) > 1:
        raise bad_request(ONE_PROMPT, param="prompt")
    messages = body.get("messages")
    if _length(messages) > limits.max_messages:
        raise bad_request(f"messages: at most {limits.max_messages} messages per request on this server, got "
                          f"{len(messages)}", param="messages", code="array_above_max_length")
    parts = sum(_length(m.get("content")) for m in messages if isinstance(m, dict)) if isinstance(messages, list) else 0
    if parts > limits.max_messages:
        raise bad_request(f"messages: at most {limits.max_messages} content parts in all messages on this server, got "
                          f"{parts}", param="messages", code="array_above_max_length")


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _validated(model: type[_Body], body: dict[str, Any], limits: ServeLimits) -> Any:
    _bounded(body, limits)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error["loc"]) or None
        raise bad_request(f"{param}: {error['msg']}" if param else error["msg"], param=param) from None


def _refuse(param: str, what: str) -> None:
    raise bad_request(f"{param}: {what} is not supported by the aligned model", param=param,
                      code="unsupported_parameter")


def _text(message: WireMessage, where: str) -> str:
    content = message.content
    if content is None:
        raise bad_request(f"{where}: a {message.role} message needs text content (tool calls are not supported)",
                          param=where)
    if isinstance(content, str):
        return content
    if any(part.type != "text" or part.text is None for part in content):
        raise bad_request(f"{where}: only text content parts are supported", param=where)
    return "".join(part.text or "" for part in content)


def conversation(messages: list[WireMessage]) -> Conversation:
    """System messages anywhere are the client's instruction; consecutive messages of one role are
    one turn (joined by a blank line); the conversation must end with the user's message. A turn's
    pieces are joined once it is complete: appended one by one, 34,000 one-letter user messages
    (a 1 MiB body) copied the growing turn each time, 160 ms of CPU."""
    system: list[str] = []
    turns: list[tuple[str, list[str]]] = []  # (role, its messages' texts), roles alternating
    for i, message in enumerate(messages):
        text = _text(message, f"messages.{i}.content")
        if message.role in ("system", "developer"):
            system.append(text)
        elif message.role not in ("user", "assistant"):
            raise bad_request(f"messages.{i}.role: {quoted(message.role)} is not supported (system, developer, user or "
                              "assistant)", param=f"messages.{i}.role")
        elif turns and turns[-1][0] == message.role:
            turns[-1][1].append(text)
        else:
            turns.append((message.role, [text]))
    if not turns or turns[-1][0] != "user":
        raise bad_request("messages: the conversation must end with a user message", param="messages")
    if turns[0][0] != "user":
        raise bad_request("messages: an assistant message must follow a user message", param="messages")
    texts = ["\n\n".join(pieces) for _, pieces in turns]
    query = texts[-1]
    if not query.strip():
        raise bad_request("messages: the last user message is empty", param="messages")
    history = tuple(Example(query=texts[i], answer=texts[i + 1]) for i in range(0, len(texts) - 1, 2))
    joined = "\n\n".join(s.strip() for s in system if s.strip())
    return Conversation(query=query, history=history, system=joined or None)


def sampling(body: _Body, defaults: Sampling, limits: ServeLimits, max_tokens: int | None) -> Sampling:
    """The request's sampling: its fields over the server's defaults, bounded by `limits`."""
    n = body.n or 1
    if n > limits.max_n:
        raise bad_request(f"n: at most {limits.max_n} choices per request on this server", param="n")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    stops = [s for s in stops if s]  # at most `max_stop` (`_bounded`)
    tokens = min(max_tokens or defaults.max_tokens, limits.max_tokens_cap)
    return defaults.model_copy(update={
        "temperature": defaults.temperature if body.temperature is None else body.temperature,
        "top_p": defaults.top_p if body.top_p is None else body.top_p,
        "max_tokens": tokens, "n": n, "seed": body.seed, "stop": stops,
    })


def _stream(body: _Body) -> tuple[bool, bool]:
    stream = bool(body.stream)
    return stream, stream and body.stream_options is not None and body.stream_options.include_usage


def chat_call(body: dict[str, Any], defaults: Sampling, limits: ServeLimits) -> Call:
    chat: ChatBody = _validated(ChatBody, body, limits)
    for name in ("tools", "functions"):
        if getattr(chat, name):
            _refuse(name, "tool calling")
    if chat.response_format is not None and chat.response_format.get("type", "text") != "text":
        _refuse("response_format", "a structured response format")
    if chat.logprobs:
        _refuse("logprobs", "logprobs")
    stream, usage = _stream(chat)
    return Call(conversation(chat.messages), sampling(chat, defaults, limits, chat.max_completion_tokens or
                                                      chat.max_tokens), chat.model, stream, usage)


def completion_call(body: dict[str, Any], defaults: Sampling, limits: ServeLimits) -> Call:
    completion: CompletionBody = _validated(CompletionBody, body, limits)
    prompts = [completion.prompt] if isinstance(completion.prompt, str) else completion.prompt
    if len(prompts) != 1:
        raise bad_request(ONE_PROMPT, param="prompt")
    if not prompts[0].strip():
        raise bad_request("prompt: the prompt is empty", param="prompt")
    if completion.echo:
        _refuse("echo", "echo")
    if completion.suffix:
        _refuse("suffix", "suffix")
    if (completion.best_of or 1) > 1:
        _refuse("best_of", "best_of")
    if completion.logprobs is not None:
        _refuse("logprobs", "logprobs")
    stream, usage = _stream(completion)
    return Call(Conversation(query=prompts[0]), sampling(completion, defaults, limits, completion.max_tokens),
                completion.model, stream, usage)
