"""A scripted DRPO world for logic tests: every role answered by rules the test sets.

- the policy answers "ANSWER[<system prompt>]" so the judge can tell which prompt produced it;
- the judge scores every aspect with `score(prompt, query)`;
- the rewriter proposes "<prompt>/<level-unique suffix>" candidates;
- `fail(role, request)` may return an EngineFault to inject for a request.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from backends.base import Engine
from backends.errors import EngineFault
from backends.scripted import ScriptedEngine, schema_instance
from schemas.config import BackendConfig
from schemas.llm import LLMRequest

ScoreFn = Callable[[str, str], int]


def _user(request: LLMRequest) -> str:
    return request.messages[-1].content if request.messages else request.prompt or ""


class DRPOScript:
    def __init__(
        self,
        score: ScoreFn = lambda prompt, query: 3,
        aspects: tuple[str, ...] = ("Helpfulness", "Clarity"),
        fail: Callable[[str, LLMRequest], EngineFault | None] = lambda role, request: None,
    ) -> None:
        self.score = score
        self.aspects = aspects
        self.fail = fail
        self.calls: Counter[str] = Counter()
        self.requests: list[LLMRequest] = []
        self._proposals = 0

    def engine(self, config: BackendConfig, model: str | None) -> Engine:
        return ScriptedEngine(self.handle, model=model or "scripted")

    def handle(self, request: LLMRequest):  # type: ignore[no-untyped-def]
        self.calls[request.role] += 1
        self.requests.append(request)
        if (fault := self.fail(request.role, request)) is not None:
            return fault
        return getattr(self, f"_{request.role}")(request)

    def _criteria(self, request: LLMRequest) -> dict:
        answer = schema_instance(request.json_schema)
        answer["aspects_selection"] = {"reasoning": "scripted", "selected_aspects": list(self.aspects)}
        return answer

    def _policy(self, request: LLMRequest) -> str:
        system = request.messages[0].content
        prompt = system.split("\n\n")[1]  # header, then the system prompt (agents/formatting.py)
        return f"ANSWER[{prompt}]"

    def _judge(self, request: LLMRequest) -> dict:
        text = _user(request)
        prompt = re.search(r"ANSWER\[(.*?)\]", text, re.S).group(1)
        query = text.split("## Query\n", 1)[1].split("\n\n## Response", 1)[0]
        value = self.score(prompt, query)
        names = list(request.json_schema["properties"])
        return {name: {"rationale": f"scripted {value}", "score": value} for name in names}

    def _rewriter(self, request: LLMRequest) -> list[dict]:
        current = _user(request).split("---Current Version---\n", 1)[1].split("\n\n## Query", 1)[0]
        self._proposals += 1
        return [
            {"analysis": "a", "thought": "t", "new_system_prompt": f"{current}/{self._proposals}.{i}"}
            for i in range(request.sampling.n)
        ]
