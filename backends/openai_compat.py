"""Any OpenAI-compatible server over HTTP: OpenAI, `vllm serve`, llama.cpp's server, Ollama.

Structured output goes to the server as `response_format` of type `json_schema`. Servers that
reject it (llama-cpp-python's server answers 500 "Input should be 'text' or 'json_object'") are
switched, once and for good, to `json_object` with a `schema` field. The client's own retries are
off: `Backend` retries, counts and backs off for every engine in one place.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any
from urllib.parse import urlparse

from backends.errors import EngineConfigError, EngineFault, InvalidOutput, RateLimited, TransportFault
from schemas.llm import Choice, LLMRequest, LLMResult
from schemas.usage import Usage

_SCHEMA_REJECTED = ("json_schema", "response_format", "json_object")


class OpenAICompatEngine:
    native_n = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        chat: bool = True,
        timeout_s: float = 600.0,
    ) -> None:
        from openai import AsyncOpenAI

        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if urlparse(base_url).scheme not in ("http", "https"):
            raise EngineConfigError(f"base URL {base_url!r} is not http(s): set OPENAI_BASE_URL or base_url")
        api_key = os.environ.get(api_key_env) or ("unused" if "api.openai.com" not in base_url else None)
        if api_key is None:
            raise EngineConfigError(f"no API key: set the environment variable {api_key_env}")
        self.model = model
        self.base_url = base_url
        self.chat = chat
        self.native_n = True
        self.schema_mode = "json_schema"
        self._max_tokens_field = "max_completion_tokens" if "api.openai.com" in base_url else "max_tokens"
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0,
                                   http_client=_http_client())

    async def probe(self) -> None:
        """Fail fast, before a run starts, when the endpoint cannot be reached or refuses the key."""
        import openai

        try:
            await self._client.with_options(timeout=10.0).models.list()
        except openai.AuthenticationError as exc:
            raise EngineConfigError(f"{self.base_url} refused the API key (HTTP 401): check the key's variable") from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise EngineConfigError(
                f"cannot reach {self.base_url} ({type(exc).__name__}); start the server or fix base_url / OPENAI_BASE_URL"
            ) from exc
        except openai.APIStatusError:
            return  # reachable; some servers have no /models

    async def complete(self, request: LLMRequest) -> LLMResult:
        sent_mode = self.schema_mode  # another call in flight may switch the mode before this one fails
        try:
            return await self._send(request)
        except EngineFault as fault:
            if request.json_schema is None or sent_mode != "json_schema" or not _rejects_schema(fault):
                raise
            self.schema_mode = "json_object"
            return await self._send(request)

    async def _send(self, request: LLMRequest) -> LLMResult:
        import openai

        s = request.sampling
        params: dict[str, Any] = {
            "model": self.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            self._max_tokens_field: s.max_tokens,
            "n": s.n,
        }
        if s.seed is not None:
            params["seed"] = s.seed
        if s.stop:
            params["stop"] = s.stop[:4]  # OpenAI accepts at most four stop strings
        try:
            if request.messages is not None and self.chat:
                if request.json_schema is not None:
                    params["response_format"] = self._response_format(request)
                response = await self._client.chat.completions.create(
                    messages=[m.model_dump() for m in request.messages], **params
                )
                choices = [Choice(text=c.message.content or "", finish_reason=c.finish_reason) for c in response.choices]
            else:
                if request.json_schema is not None:
                    params["extra_body"] = {"structured_outputs": {"json": request.json_schema}}
                prompt = request.prompt if request.prompt is not None else _flatten(request)
                response = await self._client.completions.create(prompt=prompt, **params)
                choices = [Choice(text=c.text, finish_reason=c.finish_reason) for c in response.choices]
        except openai.RateLimitError as exc:
            raise RateLimited(str(exc), retry_after_s=_retry_after(exc.response)) from exc
        except openai.AuthenticationError as exc:
            raise EngineConfigError(f"{self.base_url} refused the API key (HTTP 401): check the key's variable") from exc
        except openai.NotFoundError as exc:
            raise EngineConfigError(f"{self.base_url} has no model {self.model!r} (HTTP 404)") from exc
        except openai.APIStatusError as exc:
            raise TransportFault(f"HTTP {exc.status_code}: {exc.message}", status=exc.status_code) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise TransportFault(f"{type(exc).__name__}: {exc}") from exc
        except openai.OpenAIError as exc:
            raise InvalidOutput(str(exc)) from exc
        usage = response.usage
        return LLMResult(
            choices=choices,
            usage=Usage(
                tokens_in=getattr(usage, "prompt_tokens", 0) or 0, tokens_out=getattr(usage, "completion_tokens", 0) or 0
            ),
            model=response.model or self.model,
        )

    def _response_format(self, request: LLMRequest) -> dict[str, Any]:
        if self.schema_mode == "json_object":
            return {"type": "json_object", "schema": request.json_schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": False},
        }

    async def aclose(self) -> None:
        await self._client.close()


def _http_client() -> Any:
    """aiohttp under the SDK when installed (extra `openai[aiohttp]`): at hundreds of requests in
    flight it costs half the CPU per request of the default transport (bench/WHATIF.md)."""
    if importlib.util.find_spec("aiohttp") is None:
        return None
    import openai

    return openai.DefaultAioHttpClient()


def _rejects_schema(fault: EngineFault) -> bool:
    status = getattr(fault, "status", None)
    return status in (400, 422, 500) and any(word in str(fault) for word in _SCHEMA_REJECTED)


def _flatten(request: LLMRequest) -> str:
    return "\n\n".join(m.content for m in request.messages or [])


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if (seconds := headers.get("retry-after")) is not None:
        try:
            return float(seconds)
        except ValueError:
            return None
    return None
