"""Any OpenAI-compatible server over HTTP: OpenAI, `vllm serve`, llama.cpp's server, Ollama.

Chat requests go to `/v1/chat/completions`, raw-text requests (a base model in completion mode)
to `/v1/completions`. Structured output is sent as `response_format` `json_schema`; a server that
rejects it (llama-cpp-python: 500 "Input should be 'text' or 'json_object'") is switched for good
to `json_object` with a `schema`. Nothing retries here: the retry layer does it all.

The transport is one kept-alive aiohttp session per event loop, the body a dict posted as JSON
(orjson; `json` for the lone surrogates orjson refuses) and the reply read from its parsed JSON.
Why not the `openai` SDK, which this engine used before: building and validating its request and
response objects cost 2.5-4 times the CPU per call of this (bench/RESULTS.md, `run.py serve`, the
SDK columns), and `import openai` took half a second of every command's start. The bodies are the
ones the SDK sent, field for field (tests/backends/test_openai_transport.py compares them).

Errors are mapped once, at this edge, by `backends.openai_errors`: an error status from its
status, headers and body (`ErrorMap.reply_fault`); everything else that goes wrong, and every
reply that is not a completion, by `_mapped_errors`. Reply text is valid Unicode; `timeout_s`
bounds the whole reply.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import ipaddress
import json
import os
from typing import Any
from urllib.parse import urlparse

import orjson

from backends import openai_errors
from backends.errors import EngineConfigError, EngineFault, EngineRefused, InvalidOutput, TransportFault
from backends.openai_errors import ErrorMap, rejects_schema, rejects_system
from backends.openai_errors import valid_text as _text
from backends.router import RoutedEngine
from schemas.config import BackendConfig
from schemas.llm import Choice, LLMRequest, LLMResult, fold_system
from schemas.usage import Usage

MAX_FAULT_TEXT = openai_errors.MAX_FAULT_TEXT  # where tests/hostile/test_secrets.py reads it
OPENAI_STOP_LIMIT = 4  # api.openai.com accepts at most four stop strings; other servers take them all
PROBE_TIMEOUT_S = 10.0
MAX_REPLY_BYTES = 64 << 20
"""A reply (after decompression) past this size is unusable output, refused while it is read: an
answer is kilobytes, and a server that sent without end held it all in this process's memory."""


def build(config: BackendConfig, model: str | None) -> OpenAICompatEngine | RoutedEngine:
    """The engine for `[backends.NAME] kind = "openai"` (a router when `base_urls` lists several)."""
    if not model:
        raise EngineConfigError("the openai backend needs a model: pass --model NAME")
    options = {"api_key_env": config.api_key_env, "timeout_s": config.timeout_s}
    if config.base_urls:
        endpoints = [OpenAICompatEngine(model, base_url=url, **options) for url in config.base_urls]
        return RoutedEngine(endpoints, names=[e.shown_url for e in endpoints], cooldown_s=config.endpoint_cooldown_s,
                            per_endpoint=config.max_concurrency)
    return OpenAICompatEngine(model, base_url=config.base_url, **options)


class OpenAICompatEngine:
    native_n = True

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 300.0) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if (parts := urlparse(base_url)).scheme not in ("http", "https") or not parts.netloc:
            raise EngineConfigError(f"base URL {_shown(base_url)!r} is not http(s): set OPENAI_BASE_URL or base_url")
        if parts.username or parts.password:  # the client cannot send them with a key, and a log would show them
            raise EngineConfigError(f"base URL {_shown(base_url)} holds user:password@; remove them (the key goes in "
                                    f"the variable {api_key_env})")
        api_key = os.environ.get(api_key_env) or ("unused" if "api.openai.com" not in base_url else None)
        if api_key is None:
            raise EngineConfigError(f"no API key: set the environment variable {api_key_env}")
        self.model = model
        self.base_url = base_url
        self.shown_url = _shown(base_url)
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.identity = f"openai:{base_url.rstrip('/')}:{model}"
        """What the cache keys on: answers from another server are never served for this one."""
        self.schema_mode = "json_schema"
        self.folds_system = False
        """Set for good once the server's chat template rejected a system message."""
        self._key = api_key
        self._errors = ErrorMap(key=api_key, shown_url=self.shown_url, model=model, api_key_env=api_key_env)
        self._official = "api.openai.com" in base_url
        self._max_tokens_field = "max_completion_tokens" if self._official else "max_tokens"
        root = base_url.rstrip("/")
        self._urls = {name: f"{root}/{name}" for name in ("chat/completions", "completions", "models")}
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                         "Accept": "application/json"}
        self._session: Any = None  # an aiohttp.ClientSession of `_loop`, made there on first use
        self._loop: asyncio.AbstractEventLoop | None = None

    async def probe(self) -> None:
        """Fail fast, before a run starts, when the endpoint cannot be reached or refuses the key."""
        import aiohttp

        try:
            with self._errors.mapped(PROBE_TIMEOUT_S):
                session = await self._http()
                async with session.get(self._urls["models"], timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
                                       ) as response:
                    raw = await _read(response)
                    if not 200 <= response.status < 300:
                        raise self._errors.reply_fault(response.status, response.headers, raw)
        except EngineRefused as refused:
            if refused.status != 404:  # a 404 is reachable: some servers have no /models
                raise
        except TransportFault as fault:
            if fault.status is None:  # with a status, it answered: reachable
                raise EngineConfigError(f"cannot reach {self.shown_url} ({fault}); start it or fix base_url") from fault
        except EngineFault:
            return

    async def complete(self, request: LLMRequest) -> LLMResult:
        """Two things a server may reject once and for good: `json_schema` (then `json_object`
        with a schema) and a system message (then it is folded into the first user turn)."""
        sent_mode, sent_fold = self.schema_mode, self.folds_system  # calls in flight may switch first
        has_system = any(m.role == "system" for m in request.messages or [])  # else folding changes nothing
        for _ in range(3):
            try:
                return await self._send(request)
            except EngineFault as fault:
                if request.json_schema is not None and sent_mode == "json_schema" and rejects_schema(fault):
                    self.schema_mode = sent_mode = "json_object"
                elif has_system and not sent_fold and rejects_system(fault):
                    self.folds_system = sent_fold = True
                else:
                    raise
        return await self._send(request)

    async def _send(self, request: LLMRequest) -> LLMResult:
        chat = request.messages is not None
        body = self._body(request)
        with self._mapped_errors():
            session = await self._http()
            async with session.post(self._urls["chat/completions" if chat else "completions"], data=_dumps(body)
                                    ) as response:
                raw = await _read(response)
                if not 200 <= response.status < 300:
                    raise self._errors.reply_fault(response.status, response.headers, raw)
            reply = _loads(raw)
            choices = reply.get("choices")
            if not isinstance(choices, list) or not choices:
                raise InvalidOutput("the server's reply holds no choices")
            # at most the n asked for (more would be counted as samples); a missing field reads as
            # None, and a choice or message that is not an object fails on `.get` (InvalidOutput)
            texts = [(c.get("message").get("content") if chat else c.get("text"), c.get("finish_reason"))
                     for c in choices[: body["n"]]]
            usage = reply.get("usage") or {}
            tokens = Usage(tokens_in=_count(usage, "prompt_tokens"), tokens_out=_count(usage, "completion_tokens"))
            return LLMResult(choices=[Choice(text=_text(text), finish_reason=_text(reason) or None)
                                      for text, reason in texts],
                             usage=tokens, model=_text(str(reply.get("model") or self.model)[:200]))

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        """The JSON body: the sampling fields, then the messages or the prompt, and the schema."""
        body = self._params(request)
        if request.messages is not None:
            messages = fold_system(request.messages) if self.folds_system else request.messages
            body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
            if request.json_schema is not None:
                body["response_format"] = self._response_format(request)
        else:
            body["prompt"] = request.prompt or ""
            if request.json_schema is not None:  # vLLM's structured outputs for raw-text requests
                body["structured_outputs"] = {"json": request.json_schema}
        return body

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        s = request.sampling
        params: dict[str, Any] = {"model": self.model, "temperature": s.temperature, "top_p": s.top_p,
                                  self._max_tokens_field: s.max_tokens, "n": s.n}
        if s.seed is not None:
            params["seed"] = s.seed
        if s.stop:
            params["stop"] = s.stop[:OPENAI_STOP_LIMIT] if self._official else list(s.stop)
        return params

    def _response_format(self, request: LLMRequest) -> dict[str, Any]:
        if self.schema_mode == "json_object":
            return {"type": "json_object", "schema": request.json_schema}
        schema = {"name": request.schema_name, "schema": request.json_schema, "strict": False}
        return {"type": "json_schema", "json_schema": schema}

    def _mapped_errors(self) -> Any:
        """The error boundary for one call to this server (backends/openai_errors.py)."""
        return self._errors.mapped(self.timeout_s)

    async def _http(self) -> Any:
        """The session of the running loop: connections belong to the loop that opened them, and
        `AlignedModel.answer_sync` runs one loop per call. A session left by a loop that has ended
        is closed here (its connections ended with it; closing only marks it so, without warnings)."""
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is loop:
            return self._session
        import aiohttp

        old, old_loop = self._session, self._loop
        tls = _tls() if self.base_url.startswith("https:") else True  # the CA bundle, built once
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=tls), headers=self._headers,
            cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False, trust_env=not _loopback(self.base_url),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=min(10.0, self.timeout_s)))
        self._loop = loop
        if old is not None and old_loop is not None and old_loop.is_closed():
            await old.close()
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and (self._loop is asyncio.get_running_loop() or self._loop.is_closed()):
            await session.close()


async def _read(response: Any) -> bytes:
    """The reply's body, at most `MAX_REPLY_BYTES`. A declared length is checked and read at once
    (every well-behaved reply); a chunked or compressed one is counted as it arrives."""
    length = response.content_length
    if length is not None and "Content-Encoding" not in response.headers:
        if length > MAX_REPLY_BYTES:
            raise InvalidOutput(f"the server's reply is over {MAX_REPLY_BYTES} bytes ({length} declared); not read")
        return await response.read()
    chunks, size = [], 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise InvalidOutput(f"the server's reply is over {MAX_REPLY_BYTES} bytes; it was not read further")
        chunks.append(chunk)
    return b"".join(chunks)


def _dumps(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # a lone surrogate in the text (JSON allows \ud800): ASCII-escaped, it can be sent
        return json.dumps(body).encode()


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # orjson refuses a lone surrogate escape, which JSON allows
        return json.loads(raw)  # anything else invalid raises here too (a ValueError: InvalidOutput)


def loopback_host(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1); a URL's hostname comes lowercased."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback(url: str) -> bool:
    """A server on this machine: reached directly, never through the environment's proxy (as the
    SDK's client did, a remote one goes through HTTP(S)_PROXY unless NO_PROXY names it)."""
    return loopback_host(urlparse(url).hostname or "")


def _shown(url: str) -> str:
    parts = urlparse(url)  # user:password@ and ?key=... may hold secrets
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


def _count(usage: Any, field: str) -> int:
    value = usage.get(field, 0) if isinstance(usage, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@functools.lru_cache(maxsize=1)
def _tls() -> Any:
    """The TLS context, built once (loading the CA bundle took 0.2 s): certifi's bundle, through
    the HTTP library the `openai` package brings (httpx2 in openai 3, httpx before)."""
    return importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx").create_ssl_context()
