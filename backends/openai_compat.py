"""Any OpenAI-compatible server over HTTP: OpenAI, `vllm serve`, llama.cpp's server, Ollama.

Chat requests go to `/v1/chat/completions`, raw-text requests (a base model in completion mode)
to `/v1/completions`. Structured output is sent as `response_format` `json_schema`; a server that
rejects it (llama-cpp-python: 500 "Input should be 'text' or 'json_object'") is switched for good
to `json_object` with a `schema`. The SDK's own retries are off: the retry layer does them all.

The error boundary (`_mapped_errors`): every error and every reply that is not a completion is a
`backends.errors` type (the original as `__cause__`, scrubbed too); server text in a fault is one
bounded line without the key; reply text is valid Unicode; `timeout_s` bounds the whole reply.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlparse

import anyio

from backends.errors import (
    EngineConfigError,
    EngineFault,
    EngineRefused,
    InvalidOutput,
    RateLimited,
    RequestRejected,
    TransportFault,
)
from backends.router import RoutedEngine
from schemas.config import BackendConfig
from schemas.errors import ProjectError
from schemas.llm import Choice, LLMRequest, LLMResult, fold_system
from schemas.usage import Usage

_SCHEMA_REJECTED = ("json_schema", "response_format", "json_object")
_NO_CREDIT = ("insufficient_quota", "exceeded your current quota")  # a 429 that no wait can cure
_SURROGATE = re.compile("[\ud800-\udfff]")
_TAGS = re.compile(r"<[/!]?[A-Za-z][^<>]*>")  # an HTML error page is read as its text; "x <= 2" is kept
_AGAIN = "then run again (--resume continues a stopped run)"
MAX_FAULT_TEXT = 300  # server text kept in a fault: what went wrong, never a whole HTML page
OPENAI_STOP_LIMIT = 4  # api.openai.com accepts at most four stop strings; other servers take them all


def build(config: BackendConfig, model: str | None) -> OpenAICompatEngine | RoutedEngine:
    """The engine for `[backends.NAME] kind = "openai"` (a router when `base_urls` lists several)."""
    if not model:
        raise EngineConfigError("the openai backend needs a model: pass --model NAME")
    options = dict(api_key_env=config.api_key_env, timeout_s=config.timeout_s)
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
                if request.json_schema is not None and sent_mode == "json_schema" and _rejects_schema(fault):
                    self.schema_mode = sent_mode = "json_object"
                elif has_system and not sent_fold and _rejects_system(fault):
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

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Every failure of a call to this server, as one of ours (see the module docstring); a 200
        whose body is not a completion (HTML, {}, no choices, nested too deep) is InvalidOutput."""
        import openai

        try:
            yield
        except (EngineFault, ProjectError):
            raise  # raised in here from the reply's shape; holds no server text
        except openai.APIStatusError as exc:
            raise self._status_fault(exc) from self._scrubbed(exc)
        except TimeoutError as exc:
            raise TransportFault(f"no complete reply within timeout_s={self.timeout_s:g}s") from exc
        except (openai.APIConnectionError, OSError, *_client_errors()) as exc:  # APITimeoutError is one
            raise TransportFault(self._say(f"{type(exc).__name__}: {exc}")) from self._scrubbed(exc)
        except (openai.OpenAIError, AttributeError, TypeError, ValueError, KeyError, RecursionError) as exc:
            raise InvalidOutput(self._say(f"the server's reply is not a completion ({type(exc).__name__}: "
                                          f"{exc})")) from self._scrubbed(exc)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing foreign crosses it
            raise EngineFault(self._say(f"unexpected {type(exc).__name__} from the server or its client: {exc}")
                              ) from self._scrubbed(exc)

    def _status_fault(self, exc: Any) -> Exception:
        """An HTTP error status as a fault: refusals retrying cannot help stop the run."""
        status, body = exc.status_code, exc.body if isinstance(exc.body, dict) else {}
        said = exc.message if isinstance(body.get("message"), str) else f"{exc.message} - {exc.body or ''}"
        message = self._say(f"HTTP {status}: {_TAGS.sub(' ', said)}")  # the SDK keeps only `message` fields
        code = f"{body.get('code')} {body.get('type')} {exc.message}"
        if status in (401, 403):
            return EngineRefused(f"{self.shown_url} refused the API key (HTTP {status}): check the key in the "
                                 f"environment variable {self.api_key_env}, {_AGAIN}", status=status)
        if status == 404:
            return EngineRefused(f"{self.shown_url} has no model {self.model!r} (HTTP 404): check --model (the name "
                                 f"the server serves) or base_url (most end in /v1), {_AGAIN}", status=404)
        if status == 402 or (status == 429 and any(word in code.lower() for word in _NO_CREDIT)):
            return EngineRefused(f"{self.shown_url} refused the call for lack of quota or credit (HTTP {status}): "
                                 f"add credit or use another key in {self.api_key_env}, {_AGAIN}", status=status)
        if status == 429:
            return RateLimited(message, retry_after_s=_retry_after(exc.response))
        if status in (408, 409) or status >= 500:
            return TransportFault(message, status=status)
        return RequestRejected(message, status=status)

    def _say(self, text: str) -> str:
        """Server text fit for a fault: the key scrubbed first, then one line, then bounded."""
        text = " ".join(self._scrub(_text(text)).split())
        return text if len(text) <= MAX_FAULT_TEXT else text[: MAX_FAULT_TEXT - 1] + "…"

    def _scrub(self, text: str) -> str:
        """The key out of `text`, also as a URL or a JSON string would quote it (any length from 4)."""
        if len(self._key) >= 4 and self._key != "unused":
            for variant in (self._key, quote(self._key, safe=""), json.dumps(self._key)[1:-1]):
                text = text.replace(variant, "***")
        return text

    def _scrubbed(self, exc: BaseException) -> BaseException:
        """`exc` and its causes with the key taken out of their text, so a traceback cannot show it;
        the raw reply body (`body`) is dropped, as the key may be anywhere in it."""
        current, depth = exc, 0
        while current is not None and depth < 8:
            current.args = tuple(self._scrub(a) if isinstance(a, str) else a for a in current.args)
            if isinstance(getattr(current, "message", None), str):  # the SDK's errors: message and body
                with suppress(AttributeError):
                    current.message, current.body = self._scrub(current.message), None  # type: ignore[attr-defined]
            current, depth = current.__cause__ or current.__context__, depth + 1
        return exc

    async def aclose(self) -> None:
        await self._client.close()


def _choices(response: Any, n: int) -> list[Any]:  # at most the n asked for: more would be counted as samples
    if not isinstance(choices := getattr(response, "choices", None), list) or not choices:
        raise InvalidOutput("the server's reply holds no choices")
    return choices[:n]


def _text(value: Any) -> str:
    """Reply text as valid Unicode: a lone surrogate (JSON allows one) would break every file."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidOutput(f"the server's reply holds {type(value).__name__} where text belongs")
    return _SURROGATE.sub("\ufffd", value)


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
def _client_errors() -> tuple[type[Exception], ...]:
    """The HTTP libraries' own errors, which the SDK lets through (aiohttp's "bad status line")."""
    found = [importlib.import_module(m) for m in ("aiohttp", "httpx2", "httpx") if importlib.util.find_spec(m)]
    return tuple(getattr(module, "ClientError", None) or module.HTTPError for module in found)


@functools.lru_cache(maxsize=1)
def _tls() -> Any:  # the SDK's HTTP library: httpx2 in openai 3, httpx before
    return importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx").create_ssl_context()


def _rejects_schema(fault: EngineFault) -> bool:
    return getattr(fault, "status", None) in (400, 422, 500) and any(word in str(fault) for word in _SCHEMA_REJECTED)


def _rejects_system(fault: EngineFault) -> bool:
    """A chat template's refusal of a system role: "System role not supported" (Gemma), "Conversation
    roles must alternate user/assistant/..." (Mistral); vLLM answers 400, llama.cpp servers 500."""
    text = str(fault).lower()
    about_roles = ("system" in text and "role" in text) or "roles must alternate" in text
    return getattr(fault, "status", None) in (400, 422, 500) and about_roles


def _retry_after(response: Any) -> float | None:
    """The server's wait in seconds (`retry-after-ms`; `Retry-After`: seconds or an HTTP date)."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        if (value := headers.get(name)) is not None:
            with suppress(ValueError):
                return max(0.0, float(value) / scale)  # nan is 0, inf is capped by the retry layer
            with suppress(TypeError, ValueError, IndexError):  # an HTTP date, or garbage
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time()) if scale == 1 else None
            return None
    return None
