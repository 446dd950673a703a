"""Any OpenAI-compatible server over HTTP: OpenAI, `vllm serve`, llama.cpp's server, Ollama.

Chat requests go to `/v1/chat/completions`, raw-text requests (a base model in completion mode)
to `/v1/completions`. Structured output is sent as `response_format` `json_schema`; a server that
rejects it (llama-cpp-python: 500 "Input should be 'text' or 'json_object'") is switched for good
to `json_object` with a `schema`. The SDK's own retries are off: the retry layer does them all.

Errors are mapped once, at this edge, by `backends.openai_errors` (`_mapped_errors`): every error
and every reply that is not a completion is a `backends.errors` type; reply text is valid Unicode;
`timeout_s` bounds the whole reply.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from typing import Any
from urllib.parse import urlparse

import anyio

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
        import openai

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
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, http_client=_http_client(),
                                          timeout=openai.Timeout(timeout_s, connect=min(10.0, timeout_s)))

    async def probe(self) -> None:
        """Fail fast, before a run starts, when the endpoint cannot be reached or refuses the key."""
        try:
            with self._mapped_errors(), anyio.fail_after(10.0):
                await self._client.with_options(timeout=10.0).models.list()
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
        params = self._params(request)
        with self._mapped_errors(), anyio.fail_after(self.timeout_s):
            if request.messages is not None:
                if request.json_schema is not None:
                    params["response_format"] = self._response_format(request)
                messages = fold_system(request.messages) if self.folds_system else request.messages
                response = await self._client.chat.completions.create(messages=[m.model_dump() for m in messages],
                                                                      **params)
                replies = [(c.message.content, c.finish_reason) for c in _choices(response, params["n"])]
            else:
                if request.json_schema is not None:
                    params["extra_body"] = {"structured_outputs": {"json": request.json_schema}}
                response = await self._client.completions.create(prompt=request.prompt or "", **params)
                replies = [(c.text, c.finish_reason) for c in _choices(response, params["n"])]
            choices = [Choice(text=_text(text), finish_reason=_text(reason) or None) for text, reason in replies]
            usage = getattr(response, "usage", None)
            tokens = Usage(tokens_in=_count(usage, "prompt_tokens"), tokens_out=_count(usage, "completion_tokens"))
            return LLMResult(choices=choices, usage=tokens,
                             model=_text(str(getattr(response, "model", None) or self.model)[:200]))

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

    async def aclose(self) -> None:
        await self._client.close()


def _choices(response: Any, n: int) -> list[Any]:  # at most the n asked for: more would be counted as samples
    if not isinstance(choices := getattr(response, "choices", None), list) or not choices:
        raise InvalidOutput("the server's reply holds no choices")
    return choices[:n]


def _shown(url: str) -> str:
    parts = urlparse(url)  # user:password@ and ?key=... may hold secrets
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


def _count(usage: Any, field: str) -> int:
    value = getattr(usage, field, 0)  # getattr(None, ...) is 0 too
    return value if isinstance(value, int) and value >= 0 else 0


def _http_client() -> Any:
    """aiohttp under the SDK when installed (extra `openai[aiohttp]`): at hundreds of requests in
    flight it costs half the CPU per request of the default transport (bench/RESULTS.md). The
    TLS context is built once: loading the CA bundle took 0.2 s for every client."""
    if importlib.util.find_spec("aiohttp") is None:
        return None
    import openai

    return openai.DefaultAioHttpClient(verify=_tls())


@functools.lru_cache(maxsize=1)
def _tls() -> Any:  # the SDK's HTTP library: httpx2 in openai 3, httpx before
    return importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx").create_ssl_context()
