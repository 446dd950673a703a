"""A scripted DRPO world for logic tests: every role answered by rules the test sets.

Every answer is decided from the agent's typed message (`LLMRequest.message`: PolicyRequest,
JudgeRequest, RewriteRequest, CriteriaRequest, AnswerRewriteRequest), never from the rendered
prompt text, so a change to a prompt template cannot change what this world answers.

- the policy answers "ANSWER[<system prompt>]" so the judge can tell which prompt produced it;
- the judge scores every aspect of `JudgeRequest.aspects` with `score(prompt, query)`, where
  `prompt` is decoded from the response (an answer this world did not write gives "");
- the rewriter proposes `propose(message, call, i)` for each of its n samples; by default
  "<prompt>/<call>.<i>", `call` counting rewriter calls from 1 (`content_proposals` names them
  from the message alone, for runs whose answers must not depend on arrival order);
- the criteria selector picks `aspects`; the curator appends " (revised)" to the answer;
- `fail(role, request)` may return an EngineFault to inject for a request.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from backends.errors import EngineFault
from backends.protocol import Engine
from backends.scripted import ScriptedEngine
from schemas.config import BackendConfig
from schemas.llm import LLMRequest
from schemas.messages import AnswerRewriteRequest, CriteriaRequest, JudgeRequest, PolicyRequest, RewriteRequest
from schemas.outputs import AspectsSelection, CriteriaOutput, QueryAnalysis

ScoreFn = Callable[[str, str], int]
ProposeFn = Callable[[RewriteRequest, int, int], str]

ANSWER_OPEN, ANSWER_CLOSE = "ANSWER[", "]"


def policy_answer(system_prompt: str) -> str:
    """What the scripted policy answers under `system_prompt`."""
    return f"{ANSWER_OPEN}{system_prompt}{ANSWER_CLOSE}"


def prompt_of(response: str) -> str:
    """The system prompt a scripted policy answer was written under; "" for any other text."""
    if response.startswith(ANSWER_OPEN) and response.endswith(ANSWER_CLOSE):
        return response[len(ANSWER_OPEN): -len(ANSWER_CLOSE)]
    return ""


def counted_proposals(message: RewriteRequest, call: int, i: int) -> str:
    return f"{message.prompt}/{call}.{i}"


def content_proposals(message: RewriteRequest, call: int, i: int) -> str:
    """A proposal named by its parent prompt and query only: the same whatever order calls arrive in."""
    tag = hashlib.sha256(f"{message.prompt}\x1f{message.query}".encode()).hexdigest()[:6]
    return f"{message.prompt}/{tag}.{i}"


class DRPOScript:
    def __init__(
        self,
        score: ScoreFn = lambda prompt, query: 3,
        aspects: tuple[str, ...] = ("Helpfulness", "Clarity"),
        fail: Callable[[str, LLMRequest], EngineFault | None] = lambda role, request: None,
        propose: ProposeFn = counted_proposals,
    ) -> None:
        self.score = score
        self.aspects = aspects
        self.fail = fail
        self.propose = propose
        self.calls: Counter[str] = Counter()
        self.requests: list[LLMRequest] = []
        self._proposals = 0

    def engine(self, config: BackendConfig, model: str | None) -> Engine:
        return ScriptedEngine(self.handle, model=model or "scripted")

    def handle(self, request: LLMRequest) -> Any:
        self.calls[request.role] += 1
        self.requests.append(request)
        if (fault := self.fail(request.role, request)) is not None:
            return fault
        message = request.message
        for kind, answer in self._answers():
            if isinstance(message, kind):
                return answer(request)
        if message is None:
            raise AssertionError(
                f"a {request.role!r} request carries no typed message: the agent must pass "
                "LLMRequest(message=...) so fakes need not parse prompt text"
            )
        raise AssertionError(f"DRPOScript has no answer for a {type(message).__name__} ({request.role!r})")

    def _answers(self) -> list[tuple[type, Callable[[LLMRequest], Any]]]:
        """Message type -> answer. Looked up per call, so a test may replace one `_role` method."""
        return [
            (CriteriaRequest, self._criteria),
            (PolicyRequest, self._policy),
            (JudgeRequest, self._judge),
            (RewriteRequest, self._rewriter),
            (AnswerRewriteRequest, self._curator),
        ]

    def _criteria(self, request: LLMRequest) -> CriteriaOutput:
        return CriteriaOutput(
            query_analysis=QueryAnalysis(**dict.fromkeys(QueryAnalysis.model_fields, "scripted")),
            aspects_selection=AspectsSelection(reasoning="scripted", selected_aspects=list(self.aspects)),
        )

    def _policy(self, request: LLMRequest) -> str:
        message: PolicyRequest = request.message  # type: ignore[assignment]
        return policy_answer(message.system_prompt)

    def _judge(self, request: LLMRequest) -> dict:
        message: JudgeRequest = request.message  # type: ignore[assignment]
        value = self.score(prompt_of(message.response), message.query)
        return {name: {"rationale": f"scripted {value}", "score": value} for name in message.aspects}

    def _rewriter(self, request: LLMRequest) -> list[dict]:
        message: RewriteRequest = request.message  # type: ignore[assignment]
        self._proposals += 1
        return [
            {"analysis": "a", "thought": "t", "new_system_prompt": self.propose(message, self._proposals, i)}
            for i in range(request.sampling.n)
        ]

    def _curator(self, request: LLMRequest) -> dict:
        message: AnswerRewriteRequest = request.message  # type: ignore[assignment]
        return {"analysis": "a", "thought": "t", "new_response": f"<START>\n{message.answer} (revised)\n<END>"}
