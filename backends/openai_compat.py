"""Any OpenAI-compatible server over HTTP: OpenAI, `vllm serve`, llama.cpp's server, Ollama.

Chat requests go to `/v1/chat/completions`; raw-text requests (a base model in completion mode)
go to `/v1/completions`. Structured output goes to the server as `response_format` of type
`json_schema`; servers that reject it (llama-cpp-python's server answers 500 "Input should be
'text' or 'json_object'") are switched, once and for good, to `json_object` with a `schema`
field. The client's own retries are off: the retry layer retries, counts and backs off for every
engine in one place.

This file is the engine's error boundary (`_mapped_errors`): every openai/HTTP error and every
reply that is not a completion becomes a `backends.errors` type, with the original as
`__cause__` and the API key scrubbed from the text.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from backends.errors import (
    EngineConfigError,
    EngineFault,
    EngineRefused,
    InvalidOutput,
    RateLimited,
    RequestRejected,
    TransportFault,
)
from schemas.config import BackendConfig
from schemas.llm import Choice, LLMRequest, LLMResult, fold_system
from schemas.usage import Usage

_SCHEMA_REJECTED = ("json_schema", "response_format", "json_object")
OPENAI_STOP_LIMIT = 4
"""api.openai.com accepts at most four stop strings; other servers take them all."""


def build(config: BackendConfig, model: str | None) -> OpenAICompatEngine | Any:
    """The engine for `[backends.NAME] kind = "openai"` (a router when `base_urls` lists several)."""
    if not model:
        raise EngineConfigError("the openai backend needs a model: pass --model NAME")
    options = dict(api_key_env=config.api_key_env, timeout_s=config.timeout_s)
    if config.base_urls:
        from backends.router import RoutedEngine

        endpoints = [OpenAICompatEngine(model, base_url=url, **options) for url in config.base_urls]
        return RoutedEngine(endpoints, names=config.base_urls, cooldown_s=config.endpoint_cooldown_s,
                            per_endpoint=config.max_concurrency)
    return OpenAICompatEngine(model, base_url=config.base_url, **options)


class OpenAICompatEngine:
    native_n = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 300.0,
    ) -> None:
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if urlparse(base_url).scheme not in ("http", "https") or not urlparse(base_url).netloc:
            raise EngineConfigError(f"base URL {base_url!r} is not an http(s) URL: set OPENAI_BASE_URL or base_url")
        api_key = os.environ.get(api_key_env) or ("unused" if "api.openai.com" not in base_url else None)
        if api_key is None:
            raise EngineConfigError(f"no API key: set the environment variable {api_key_env}")
        self.model = model
        self.base_url = base_url
        self.identity = f"openai:{base_url.rstrip('/')}:{model}"
        """What the cache keys on: answers from another server are never served for this one."""
        self.schema_mode = "json_schema"
        self.folds_system = False
        """Set for good once the server's chat template rejected a system message."""
        self._key = api_key
        self._official = "api.openai.com" in base_url
        self._max_tokens_field = "max_completion_tokens" if self._official else "max_tokens"
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, http_client=_http_client(),
            timeout=openai.Timeout(timeout_s, connect=min(10.0, timeout_s)),
        )

    async def probe(self) -> None:
        """Fail fast, before a run starts, when the endpoint cannot be reached or refuses the key."""
        try:
            with self._mapped_errors():
                await self._client.with_options(timeout=10.0).models.list()
        except EngineRefused as refused:
            if refused.status == 404:
                return  # reachable; some servers have no /models
            raise
        except TransportFault as fault:
            if fault.status is not None:
                return  # it answered: reachable
            raise EngineConfigError(
                f"cannot reach {self.base_url} ({fault}); start the server or fix base_url / OPENAI_BASE_URL"
            ) from fault
        except EngineFault:
            return

    async def complete(self, request: LLMRequest) -> LLMResult:
        """Two things a server may reject once and for good: `json_schema` (then `json_object`
        with a schema) and a system message (then it is folded into the first user turn)."""
        sent_mode, sent_fold = self.schema_mode, self.folds_system  # calls in flight may switch first
        for _ in range(3):
            try:
                return await self._send(request)
            except EngineFault as fault:
                if request.json_schema is not None and sent_mode == "json_schema" and _rejects_schema(fault):
                    self.schema_mode = sent_mode = "json_object"
                elif request.messages is not None and not sent_fold and _rejects_system(fault):
                    self.folds_system = sent_fold = True
                else:
                    raise
        return await self._send(request)

    async def _send(self, request: LLMRequest) -> LLMResult:
        params = self._params(request)
        with self._mapped_errors():
            if request.messages is not None:
                if request.json_schema is not None:
                    params["response_format"] = self._response_format(request)
                messages = fold_system(request.messages) if self.folds_system else request.messages
                response = await self._client.chat.completions.create(
                    messages=[m.model_dump() for m in messages], **params
                )
                choices = [Choice(text=_text(c.message.content), finish_reason=c.finish_reason)
                           for c in _choices(response)]
            else:
                if request.json_schema is not None:
                    params["extra_body"] = {"structured_outputs": {"json": request.json_schema}}
                response = await self._client.completions.create(prompt=request.prompt or "", **params)
                choices = [Choice(text=_text(c.text), finish_reason=c.finish_reason) for c in _choices(response)]
            usage = getattr(response, "usage", None)
            return LLMResult(
                choices=choices,
                usage=Usage(tokens_in=_count(usage, "prompt_tokens"), tokens_out=_count(usage, "completion_tokens")),
                model=str(getattr(response, "model", None) or self.model),
            )

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
        return {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": False},
        }

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Every failure of a call to this server, as one of ours (see the module docstring)."""
        import openai

        try:
            yield
        except EngineFault:
            raise  # raised in here from the reply's shape; holds no server text
        except openai.RateLimitError as exc:
            raise RateLimited(self._scrub(str(exc)), retry_after_s=_retry_after(exc.response)) from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise EngineRefused(f"{self.base_url} refused the API key (HTTP {exc.status_code}): check the key in the "
                                "variable named by api_key_env", status=exc.status_code) from exc
        except openai.NotFoundError as exc:
            raise EngineRefused(f"{self.base_url} has no model {self.model!r} (HTTP 404): check --model or the "
                                "server's served model name", status=404) from exc
        except openai.APIStatusError as exc:
            message = self._scrub(f"HTTP {exc.status_code}: {exc.message}")
            if exc.status_code in (408, 409) or exc.status_code >= 500:
                raise TransportFault(message, status=exc.status_code) from exc
            raise RequestRejected(message, status=exc.status_code) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise TransportFault(self._scrub(f"{type(exc).__name__}: {exc}")) from exc
        except (openai.OpenAIError, AttributeError, TypeError, ValueError, KeyError) as exc:
            # A 200 whose body is not a completion (HTML, {}, no choices) lands here.
            raise InvalidOutput(self._scrub(f"the server's reply is not a completion ({type(exc).__name__}: "
                                            f"{str(exc)[:120]})")) from exc

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if len(self._key) >= 4 and self._key != "unused" else text

    async def aclose(self) -> None:
        await self._client.close()


def _choices(response: Any) -> list[Any]:
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise InvalidOutput("the server's reply holds no choices")
    return choices


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidOutput(f"the server's reply holds {type(value).__name__} where text belongs")
    return value


def _count(usage: Any, field: str) -> int:
    value = getattr(usage, field, 0) if usage is not None else 0
    return value if isinstance(value, int) and value >= 0 else 0


def _http_client() -> Any:
    """aiohttp under the SDK when installed (extra `openai[aiohttp]`): at hundreds of requests in
    flight it costs half the CPU per request of the default transport (bench/RESULTS.md)."""
    if importlib.util.find_spec("aiohttp") is None:
        return None
    import openai

    return openai.DefaultAioHttpClient()


def _rejects_schema(fault: EngineFault) -> bool:
    status = getattr(fault, "status", None)
    return status in (400, 422, 500) and any(word in str(fault) for word in _SCHEMA_REJECTED)


def _rejects_system(fault: EngineFault) -> bool:
    """A 4xx that complains about the system role (or about roles not alternating)."""
    text = str(fault).lower()
    return getattr(fault, "status", None) in (400, 422) and "system" in text and ("role" in text or "alternate" in text)


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        if (value := headers.get(name)) is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                return None
    return None
