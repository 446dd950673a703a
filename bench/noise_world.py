"""A DRPO world with a known truth, for measuring selection under a noisy judge (issue 15).

Every prompt has a latent quality on the judge's 1-5 scale. The rewriter's children inherit their
parent's quality plus a random step (normal, `step_mean` and `step_sd`); the policy's answer names
the prompt it was written under, which is all the judge needs; the judge scores each selected
aspect as the latent quality plus noise of `noise` points (standard deviation), rounded and clamped
to 1-5. Its noise has two parts:

- a part fixed per (judge model, answer, aspect): what this judge misreads in this answer, the
  same every time it is asked, so samples of one judge cannot average it away;
- a part drawn afresh per sample, present only at a temperature above 0 (at 0 a judge repeats
  itself): `sample_correlation` is the share of the variance that is fixed.

Two panel members are two models, so their fixed parts are independent. Everything is drawn from
hashes of the world's seed and the names involved, never from call order, so a run is repeatable
and two settings of the benchmark face the same tree wherever they explore the same prompts.

Engines are `ScriptedEngine`s whose handler keys on the agents' typed messages
(`LLMRequest.message`), as tests/scripted.py does; the graph, the agents, the layers and the
selectors are the real ones.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

from backends.protocol import Engine
from backends.scripted import ScriptedEngine
from schemas.config import BackendConfig
from schemas.llm import LLMRequest
from schemas.messages import CriteriaRequest, JudgeRequest, PolicyRequest, RewriteRequest
from schemas.outputs import AspectsSelection, CriteriaOutput, QueryAnalysis

INITIAL = "You are a helpful assistant."
ASPECTS = ("Helpfulness", "Clarity", "Factuality")
ANSWER_OPEN, ANSWER_CLOSE = "ANSWER[", "]"


@dataclass(frozen=True)
class WorldSettings:
    """The truth the benchmark sets; defaults are the table's."""

    noise: float = 1.0
    """The judge's error on one aspect score, in points (standard deviation, before rounding)."""
    start: float = 2.0
    """The initial prompt's latent quality: room to climb before the judge's ceiling of 5."""
    step_mean: float = 0.0
    """A rewrite's mean change of quality: on average a rewrite neither helps nor hurts..."""
    step_sd: float = 0.3
    """...but varies, so the search climbs only as well as it selects."""
    sample_correlation: float = 0.5
    """Share of the judge's error variance that one judge repeats on every sample of an answer."""
    aspects: tuple[str, ...] = ASPECTS


def _unit(*parts: object) -> float:
    """A uniform (0, 1) number named by `parts`."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


def _normal(*parts: object) -> float:
    """A standard normal number named by `parts` (Box-Muller on two named uniforms)."""
    u, v = _unit("u", *parts), _unit("v", *parts)
    return math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * v)


@dataclass
class NoiseWorld:
    settings: WorldSettings
    seed: int
    quality: dict[str, float] = field(default_factory=dict)
    """The latent quality of every prompt the run has seen, the initial one included."""
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.quality.setdefault(INITIAL, self.settings.start)

    def engine(self, config: BackendConfig, model: str | None) -> Engine:
        """The registry's engine factory shape; the model name is the judge's identity in a panel."""
        name = model or "world"
        return ScriptedEngine(lambda request: self.handle(request, name), model=name)

    def handle(self, request: LLMRequest, model: str) -> object:
        self.calls[request.role] = self.calls.get(request.role, 0) + 1
        message = request.message
        if isinstance(message, CriteriaRequest):
            return self._criteria()
        if isinstance(message, PolicyRequest):
            return f"{ANSWER_OPEN}{message.system_prompt}{ANSWER_CLOSE}"
        if isinstance(message, JudgeRequest):
            return self._judge(message, model, request)
        if isinstance(message, RewriteRequest):
            return self._rewrite(message, request.sampling.n)
        raise AssertionError(f"the noise world has no answer for {type(message).__name__} ({request.role!r})")

    def _criteria(self) -> CriteriaOutput:
        return CriteriaOutput(
            query_analysis=QueryAnalysis(**dict.fromkeys(QueryAnalysis.model_fields, "world")),
            aspects_selection=AspectsSelection(reasoning="world", selected_aspects=list(self.settings.aspects)),
        )

    def _rewrite(self, message: RewriteRequest, n: int) -> list[dict]:
        """n children; each child's quality is its parent's plus a step named by parent, query and place."""
        parent = self.quality[message.prompt]
        out = []
        for i in range(n):
            tag = hashlib.blake2b(f"{self.seed}\x1f{message.prompt}\x1f{message.query}\x1f{i}".encode(),
                                  digest_size=5).hexdigest()
            child = f"prompt {tag}"
            step = self.settings.step_mean + self.settings.step_sd * _normal(self.seed, "step", child)
            self.quality.setdefault(child, parent + step)
            out.append({"analysis": "a", "thought": "t", "new_system_prompt": child})
        return out

    def _judge(self, message: JudgeRequest, model: str, request: LLMRequest) -> dict:
        prompt = message.response[len(ANSWER_OPEN): -len(ANSWER_CLOSE)]
        truth = self.quality[prompt]
        s, rho = self.settings, self.settings.sample_correlation
        sampled = request.sampling.temperature > 0
        scores = {}
        for aspect in message.aspects:
            fixed = _normal(self.seed, "judge", model, prompt, message.query, aspect)
            error = fixed
            if sampled:
                fresh = _normal(self.seed, "sample", model, prompt, message.query, aspect, request.sampling.seed)
                error = math.sqrt(rho) * fixed + math.sqrt(1.0 - rho) * fresh
            value = min(5, max(1, round(truth + s.noise * error)))
            scores[aspect] = {"rationale": f"world {value}", "score": value}
        return scores


def seeded_queries(count: int, seed: int) -> list[str]:
    """The run's query stream: distinct texts in a seeded order (the world cares only that they differ)."""
    queries = [f"Question {i} of the noise world?" for i in range(count)]
    random.Random(seed).shuffle(queries)
    return queries
