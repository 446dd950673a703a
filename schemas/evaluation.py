"""The evaluation harness's messages and outputs (`run.py eval`, drpo/evaluate.py).

just-eval-instruct's protocol (drpo-method.md §9): regular items are rated on five aspects, safety
items on one, 1-5 each with a reason; the judge sees the instruction and the answer only.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field, field_validator

from schemas.outputs import likert_score
from schemas.usage import Usage

Rubric = Literal["multi", "safety"]

MULTI_ASPECTS = ("helpfulness", "clarity", "factuality", "depth", "engagement")
SAFETY_ASPECTS = ("safety",)
RUBRIC_ASPECTS: dict[str, tuple[str, ...]] = {"multi": MULTI_ASPECTS, "safety": SAFETY_ASPECTS}
MEAN = "mean"
"""The per-item mean over the item's own aspects; what win rates compare."""


class EvalItem(BaseModel):
    """One evaluation query, in just-eval-instruct's fields (our plain query files fill what they can)."""

    id: str
    instruction: str
    category: str = "regular"
    dataset: str | None = None
    source_id: str | None = None
    rubric: Rubric = "multi"


# --- the judge ----------------------------------------------------------------------------------


class EvalJudgeRequest(BaseModel):
    """What the evaluation judge sees: the query and the answer, never the system prompt."""

    query: str
    answer: str
    rubric: Rubric = "multi"


class RatedAspect(BaseModel):
    reason: str = Field(description="A short justification that points at the answer.")
    score: int = Field(description="1 (poor) to 5 (excellent).", json_schema_extra={"enum": [1, 2, 3, 4, 5]})

    @field_validator("score", mode="before")
    @classmethod
    def _clamp(cls, value: Any) -> int:
        """"4", 4.0 or "4.5" (rounded half up), clamped to 1-5; "N/A" counts as 5 as in just-eval."""
        if isinstance(value, str) and value.strip().upper() in ("N/A", "NA"):
            return 5
        return likert_score(value)


class MultiAspectOutput(BaseModel):
    helpfulness: RatedAspect
    clarity: RatedAspect
    factuality: RatedAspect
    depth: RatedAspect
    engagement: RatedAspect


class SafetyOutput(BaseModel):
    safety: RatedAspect


RUBRIC_OUTPUTS: dict[str, type[BaseModel]] = {"multi": MultiAspectOutput, "safety": SafetyOutput}


class EvalVerdict(BaseModel):
    """Scores on exactly the rubric's aspects."""

    rubric: Rubric
    scores: dict[str, RatedAspect]
    usage: Usage = Field(default_factory=Usage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean(self) -> float:
        return fmean(s.score for s in self.scores.values())


# --- results ------------------------------------------------------------------------------------


class ItemResult(BaseModel):
    """One line of scores.jsonl: one configuration's answer to one item, scored or failed."""

    config: str
    id: str
    instruction: str
    category: str
    dataset: str | None = None
    rubric: Rubric
    answer: str | None = None
    scores: dict[str, int | float] = Field(default_factory=dict)
    """Per aspect: the judge's score, or with a judge panel the members' mean (drpo/eval_panel.py)."""
    reasons: dict[str, str] = Field(default_factory=dict)
    mean: float | None = None
    judges: list[str] = Field(default_factory=list)
    """With a judge panel: the `backend:model` of each member (empty with one judge)."""
    judge_scores: list[dict[str, int]] = Field(default_factory=list)
    """With a judge panel: each member's own scores, in `judges` order (empty with one judge)."""
    failed: str | None = None
    """Why the item has no score for this configuration ("generation: ..." or "judge: ..."); never a 0."""
    latency_s: float = 0.0


class Interval(BaseModel):
    mean: float
    low: float
    high: float
    n: int


class ConfigSummary(BaseModel):
    name: str
    kind: Literal["artifact", "plain", "urial"]
    source: str
    """The artifact folder or the baseline's description."""
    prompt: str
    examples: int
    """Examples in context per query (retrieved for artifacts, fixed for `urial`)."""
    items: int
    scored: int
    failed: int
    aspects: dict[str, Interval]
    """Per-aspect mean with its bootstrap interval, plus `mean` (per-item mean over its aspects)."""


class WinRate(BaseModel):
    """`a` against `b` on the items both scored, by each item's mean score."""

    a: str
    b: str
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float | None
    tie_rate: float | None
    loss_rate: float | None


class BootstrapSettings(BaseModel):
    samples: int
    seed: int
    confidence: float


class EvalSummary(BaseModel):
    run_id: str
    created_at: str
    wall_s: float
    data: str
    items: int
    safety_items: int
    models: dict[str, str]
    """Backend and model of the policy and the judge."""
    sampling: dict[str, Any]
    """The policy's sampling for every configuration."""
    bootstrap: BootstrapSettings
    configs: list[ConfigSummary]
    win_rates: list[WinRate]
    accounting: dict[str, Any] = Field(default_factory=dict)
