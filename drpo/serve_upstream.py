"""`serve`'s policy engine for an OpenAI-compatible server: the openai engine with a lean transport.

Why: behind `serve`, every request is one engine call, and through the `openai` SDK (building
and validating its request and response objects per call) `serve` spent 2.5-4 times the CPU per
request it spends with this transport (bench/RESULTS.md, `run.py serve`, the `--sdk-baseline`
columns): most of its cost. `LeanOpenAIEngine` is `OpenAICompatEngine` with
only the plain-text send replaced: the body is the dict `OpenAICompatEngine._params` builds,
posted as JSON (orjson) over one kept-alive aiohttp session, and the reply read from the parsed
JSON. Everything else is the base class's, so the behaviour is the same: the system-role fold and
the `json_schema` switch (`complete`), `probe`, and the error boundary `_mapped_errors` (a non-2xx
reply is turned into the SDK's own status error by the SDK's own function, then mapped as for
every call; aiohttp's errors, OSError, a timeout and a reply that is not a completion are mapped
there too). Structured requests (a `json_schema`) still go through the SDK.

The engine is built by `build_serve_engine`, an `EngineFactory`: `serve` hands it to
`AlignedModel`, whose `BackendPool` wraps it in the one layer stack (backends/stack.py) like any
engine. Other kinds are built by the registry unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from typing import Any

import anyio
import orjson

from backends.errors import InvalidOutput
from backends.openai_compat import OpenAICompatEngine, _tls
from backends.openai_errors import valid_text
from backends.protocol import Engine
from backends.registry import build_engine
from backends.router import RoutedEngine
from schemas.config import BackendConfig
from schemas.llm import Choice, LLMRequest, LLMResult, fold_system
from schemas.usage import Usage


def build_serve_engine(config: BackendConfig, model: str | None) -> Engine:
    """The engine for `config`: lean endpoints for `kind = "openai"`, the registry's otherwise."""
    if config.kind != "openai" or not model:
        return build_engine(config, model)  # no model: the registry's one-line refusal
    options: dict[str, Any] = {"api_key_env": config.api_key_env, "timeout_s": config.timeout_s}
    if config.base_urls:
        endpoints = [LeanOpenAIEngine(model, base_url=url, **options) for url in config.base_urls]
        return RoutedEngine(endpoints, names=[e.shown_url for e in endpoints], cooldown_s=config.endpoint_cooldown_s,
                            per_endpoint=config.max_concurrency)
    return LeanOpenAIEngine(model, base_url=config.base_url, **options)


class LeanOpenAIEngine(OpenAICompatEngine):
    """`OpenAICompatEngine` whose plain-text requests skip the SDK's object model (module docstring)."""

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model, **options)
        root = self.base_url.rstrip("/")
        self._urls = {True: f"{root}/chat/completions", False: f"{root}/completions"}
        self._headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json",
                         "Accept": "application/json"}
        self._session: Any = None  # an aiohttp.ClientSession, made in the event loop on first use

    def _aiohttp(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            tls = _tls() if self.base_url.startswith("https:") else True  # the SDK's CA bundle, built once
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=tls),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, self.timeout_s)),
                json_serialize=json.dumps, raise_for_status=False)
        return self._session

    async def _send(self, request: LLMRequest) -> LLMResult:
        if request.json_schema is not None:
            return await super()._send(request)
        chat = request.messages is not None
        params = self._params(request)
        if request.messages is not None:
            messages = fold_system(request.messages) if self.folds_system else request.messages
            params["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        else:
            params["prompt"] = request.prompt or ""
        with self._mapped_errors(), anyio.fail_after(self.timeout_s):
            url = self._urls[chat]
            async with self._aiohttp().post(url, data=_dumps(params), headers=self._headers) as response:
                raw = await response.read()
                if not 200 <= response.status < 300:
                    raise self._status_error(url, response.status, response.headers, raw)
            reply = _loads(raw)
            choices = reply.get("choices")
            if not isinstance(choices, list) or not choices:
                raise InvalidOutput("the server's reply holds no choices")
            # a missing field reads as None, as in the SDK's objects; a choice or message that is
            # not an object fails on `.get` (AttributeError), mapped to InvalidOutput
            texts = [(c.get("message").get("content") if chat else c.get("text"), c.get("finish_reason"))
                     for c in choices[: params["n"]]]
            usage = reply.get("usage") or {}
            tokens = Usage(tokens_in=_tokens(usage, "prompt_tokens"), tokens_out=_tokens(usage, "completion_tokens"))
            return LLMResult(choices=[Choice(text=valid_text(text), finish_reason=valid_text(reason) or None)
                                      for text, reason in texts],
                             usage=tokens, model=valid_text(str(reply.get("model") or self.model)[:200]))

    def _status_error(self, url: str, status: int, headers: Any, raw: bytes) -> Exception:
        """The SDK's status error for this reply, made by the SDK (its message and body rules)."""
        httpx = _sdk_http()
        response = httpx.Response(status, headers=list(headers.items()), content=raw,
                                  request=httpx.Request("POST", url))
        return self._client._make_status_error_from_response(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()


def _dumps(params: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(params)
    except TypeError:  # a lone surrogate in the text (JSON allows \ud800): ASCII-escaped, it can be sent
        return json.dumps(params).encode()


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # orjson refuses a lone surrogate escape, which JSON (and the SDK) allow
        return json.loads(raw)  # anything else invalid raises here too, and is mapped as the SDK's would be


def _sdk_http() -> Any:  # the SDK's HTTP library: httpx2 in openai 3, httpx before
    return importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")


def _tokens(usage: Any, field: str) -> int:
    value = usage.get(field, 0) if isinstance(usage, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
