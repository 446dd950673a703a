"""What a run leaves behind in `artifact.json`: the result and how it was reached."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from schemas.config import RunConfig
from schemas.messages import AspectScore, Example
from schemas.records import CandidateRecord, LevelRecord
from schemas.usage import RoleAccount, Usage


class TrainItem(BaseModel):
    query: str
    source: str


class FinalNode(BaseModel):
    node_id: str
    prompt: str
    rewards: list[float]
    """Rewards along the best path, one per level."""
    score: float
    last_query: str | None = None
    last_response: str | None = None
    last_scores: dict[str, AspectScore] = Field(default_factory=dict)


class PolicySetup(BaseModel):
    """How the policy was prompted during optimization; `answer`, `eval` and `AlignedModel`
    prompt it the same way, so the prompt answered under is the one that was optimized."""

    mode: Literal["chat", "completion"] = "chat"
    requested: str = "auto"
    """The configured `policy_mode` (auto, chat or completion) that resolved to `mode`."""
    template: str | None = None
    """The fingerprint of the model's chat template, when the engine could see one."""
    system_folded: bool = False
    """The template rejects a system role: the prompt was folded into the first user turn."""


class Accounting(BaseModel):
    total: Usage
    by_role: dict[str, RoleAccount]
    by_backend: dict[str, Usage]


class RunArtifact(BaseModel):
    run_id: str
    created_at: str
    wall_s: float
    prompt: str
    """The optimized system prompt (also in prompt.txt)."""
    examples: list[Example]
    """The in-context example pool retrieved from (k per query)."""
    examples_source: str
    """The file the pool was read from (a curated pool's curated.json, or a seed file)."""
    examples_sha256: str = ""
    embedder: str = "lexical"
    """The embedder that retrieved examples during optimization."""
    policy: PolicySetup = Field(default_factory=PolicySetup)
    config: RunConfig
    models: dict[str, str]
    """Backend and model serving each role."""
    seed: int
    train_file: str
    """The training file, or the files joined with ", " (every one of them is in `train_files`)."""
    train_files: list[str] = Field(default_factory=list)
    """Every training file of the run, in the order given (empty in artifacts that predate it)."""
    query_order: list[TrainItem]
    """The training stream in the order it was consumed (root query first)."""
    validation_queries: list[TrainItem] = Field(default_factory=list)
    """The held-out queries the finalists were validated on (`[search] validation`), in order; a
    validation verdict's `query_index` is a place in this list. Never in the training stream."""
    levels: list[LevelRecord]
    candidates: list[CandidateRecord]
    """Every candidate of the search, the root first, in level order (schemas/records.py)."""
    best: FinalNode
    stopped: str | None = None
    accounting: Accounting


class CurationStep(BaseModel):
    iteration: int
    """0 is the seed answer."""
    answer: str
    scores: dict[str, AspectScore] = Field(default_factory=dict)
    total: int | None = None
    """Sum of the scores; None when the judgement failed."""
    accepted: bool = False


class CuratedExample(BaseModel):
    query: str
    answer: str
    """The best answer found (the seed's if nothing beat it)."""
    seed_answer: str
    aspects: list[str] = Field(default_factory=list)
    best_total: int | None = None
    max_total: int | None = None
    history: list[CurationStep] = Field(default_factory=list)
    failure: str | None = None
    """Why curation stopped early for this example, if a call kept failing."""


class CuratedPool(BaseModel):
    """`curate` output (curated.json); `--examples` accepts it for optimize and answer."""

    run_id: str
    created_at: str
    wall_s: float
    models: dict[str, str]
    iterations: int
    from_best: bool
    examples: list[CuratedExample]
    accounting: Accounting
