"""An engine a newcomer might add: one file with a `build(config, model)` function.

It answers every request locally: the smallest valid JSON for a structured request, and the
prompt's first line of text for a plain one. Registered in a test with one line:
`ENGINES["echo"] = "tests.backends.echo_engine:build"`.
"""

from __future__ import annotations

import json

from backends.scripted import schema_instance
from schemas.config import BackendConfig
from schemas.llm import Choice, LLMRequest, LLMResult
from schemas.usage import Usage


def build(config: BackendConfig, model: str | None) -> EchoEngine:
    return EchoEngine(model or "echo")


class EchoEngine:
    native_n = False

    def __init__(self, model: str) -> None:
        self.model = model
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMResult:
        self.requests.append(request)
        if request.json_schema is not None:
            text = json.dumps(schema_instance(request.json_schema))
        else:
            lines = [line for m in request.messages or [] for line in m.content.splitlines()]
            lines += (request.prompt or "").splitlines()
            text = next(line for line in lines if line.strip() and not line.startswith(("#", "<")))
        return LLMResult(choices=[Choice(text=text, finish_reason="stop")], usage=Usage(tokens_in=1, tokens_out=1),
                         model=self.model)

    async def aclose(self) -> None:
        return None
