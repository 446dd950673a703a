"""Messages exchanged between the agents of the beam search.

Each agent is an async function from one of these types to another (see agents/). Replies carry the
`Usage` of the engine calls that produced them, so every trace line can say what a step cost.
"""

from __future__ import annotations

from statistics import fmean
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from schemas.usage import Usage


class Example(BaseModel):
    """An in-context example: a query and the ideal answer to it."""

    query: str
    answer: str


# --- reward-criteria selector -------------------------------------------------------------------


Stage = Literal["prompt", "examples"]
"""Which DRPO stage asks: system-prompt optimization, or example curation (a harsher critic)."""


class CriteriaRequest(BaseModel):
    query: str
    stage: Stage = "prompt"


class CriteriaSelection(BaseModel):
    """The 2-5 catalogue aspects a query should be judged on, and why."""

    query: str
    aspects: list[str] = Field(min_length=1)
    reasoning: str
    dropped: list[str] = Field(default_factory=list)
    """Names the model proposed that are not in the catalogue (dropped, never fatal)."""
    padded: list[str] = Field(default_factory=list)
    """Aspects added because fewer than two valid ones were selected."""
    cached: bool = False
    usage: Usage = Field(default_factory=Usage)


# --- example curator (retrieval) ----------------------------------------------------------------


class RetrievalRequest(BaseModel):
    query: str
    k: int = Field(ge=0)


class RetrievedExamples(BaseModel):
    examples: list[Example]


# --- policy generator ---------------------------------------------------------------------------


class PolicyRequest(BaseModel):
    """Answer `query` under a candidate system prompt, with retrieved examples in context."""

    system_prompt: str
    query: str
    examples: list[Example] = Field(default_factory=list)


class PolicyResponse(BaseModel):
    text: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)


# --- judge --------------------------------------------------------------------------------------


class AspectScore(BaseModel):
    rationale: str
    score: int = Field(ge=1, le=5)


class JudgeRequest(BaseModel):
    query: str
    response: str
    aspects: list[str] = Field(min_length=1)
    reasoning: str = ""
    """Why these aspects were selected; shown to the judge."""
    stage: Stage = "prompt"
    """`examples` judges as a demanding critic that says what to fix (drpo-method.md §2.3)."""


class Judgement(BaseModel):
    """Per-aspect scores on exactly the requested aspects; the reward is their mean."""

    scores: dict[str, AspectScore]
    usage: Usage = Field(default_factory=Usage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reward(self) -> float:
        return fmean(s.score for s in self.scores.values())

    def merged(self, other: Judgement) -> Judgement:
        """Add another critic's verdict; its aspects join (or replace) ours."""
        return Judgement(scores={**self.scores, **other.scores}, usage=self.usage + other.usage)


# --- prompt rewriter ----------------------------------------------------------------------------


class RewriteRequest(BaseModel):
    """Everything the rewriter sees: the prompt, how it did on one query, and its recent history."""

    prompt: str
    query: str
    response: str
    judgement: dict[str, AspectScore]
    history: list[str] = Field(default_factory=list)
    """The last prompts on the path, oldest first, ending with `prompt` (at most 5)."""
    actions: int = Field(ge=1)


class PromptCandidates(BaseModel):
    """New prompts to try. A skip returns the current prompt alone and costs no call."""

    prompts: list[str]
    skipped: bool = False
    skip_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)


# --- example curator (curation) ---------------------------------------------------------------


class AnswerRewriteRequest(BaseModel):
    """Improve an example answer from a critic's per-aspect verdict (the curation loop)."""

    query: str
    answer: str
    critique: dict[str, AspectScore]


class AnswerRewrite(BaseModel):
    answer: str
    usage: Usage = Field(default_factory=Usage)
