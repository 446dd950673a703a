"""The serve benchmark's baseline engine: plain-text calls through the `openai` SDK's client.

backends/openai_compat.py once sent every call through the SDK (its request and response
objects, over its aiohttp transport); it now posts the JSON itself. `python -m bench.serve_bench
--sdk-baseline` runs a second `serve` over this engine in the same rounds, so the saving stays a
measured figure. Only what the benchmark sends is kept: plain-text chat and completion calls
(anything else goes the engine's own way); a status error is mapped by the engine's own
`ErrorMap.status_fault`, anything else the SDK raises is a transport fault.
"""

from __future__ import annotations

from typing import Any

from backends.errors import EngineConfigError, InvalidOutput, TransportFault
from backends.openai_compat import OpenAICompatEngine, _tls
from backends.openai_errors import valid_text
from schemas.config import BackendConfig
from schemas.llm import Choice, LLMRequest, LLMResult
from schemas.usage import Usage

TARGET = "bench.serve_sdk:build"
"""What the benchmark's SDK child puts in `backends.registry.ENGINES["openai"]`."""


def build(config: BackendConfig, model: str | None) -> SdkOpenAIEngine:
    if not model or config.base_urls:
        raise EngineConfigError("the SDK baseline serves one base_url and needs a model")
    return SdkOpenAIEngine(model, base_url=config.base_url, api_key_env=config.api_key_env,
                           timeout_s=config.timeout_s)


class SdkOpenAIEngine(OpenAICompatEngine):
    """`OpenAICompatEngine` whose plain-text calls go through `openai.AsyncOpenAI`."""

    def __init__(self, model: str, **options: Any) -> None:
        import openai

        super().__init__(model, **options)
        self._client = openai.AsyncOpenAI(api_key=self._key, base_url=self.base_url, max_retries=0,
                                          http_client=openai.DefaultAioHttpClient(verify=_tls()),
                                          timeout=openai.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)))

    async def _send(self, request: LLMRequest) -> LLMResult:
        import openai

        if request.json_schema is not None:
            return await super()._send(request)
        body = self._body(request)
        try:
            if request.messages is not None:
                response = await self._client.chat.completions.create(**body)
                replies = [(c.message.content, c.finish_reason) for c in response.choices[: body["n"]]]
            else:
                response = await self._client.completions.create(**body)
                replies = [(c.text, c.finish_reason) for c in response.choices[: body["n"]]]
        except openai.APIStatusError as exc:
            raise self._errors.status_fault(exc.status_code, exc.message, exc.body, exc.response.headers) from None
        except openai.APIConnectionError as exc:
            raise TransportFault(self._errors.say(f"{type(exc).__name__}: {exc}")) from None
        if not replies:
            raise InvalidOutput("the server's reply holds no choices")
        usage = response.usage
        tokens = Usage(tokens_in=getattr(usage, "prompt_tokens", 0) or 0,
                       tokens_out=getattr(usage, "completion_tokens", 0) or 0)
        return LLMResult(choices=[Choice(text=valid_text(text), finish_reason=valid_text(reason) or None)
                                  for text, reason in replies], usage=tokens, model=valid_text(response.model))

    async def aclose(self) -> None:
        await self._client.close()
        await super().aclose()
