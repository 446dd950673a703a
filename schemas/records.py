"""The records a search produces: one per candidate and one per level.

The graph writes them as it goes (into the run's record store, keyed by id, so checkpoints stay
small); the runner, `artifact.json`, the report and the benchmark read these same types. Nothing
rebuilds them from logs or ids.
"""

from __future__ import annotations

from statistics import fmean

from pydantic import BaseModel, Field, computed_field

from schemas.messages import AspectScore


class Verdict(BaseModel):
    """How a candidate did on one query: the judge's (and critics') scores and their mean."""

    query_index: int
    """The query's place in the seeded training stream."""
    reward: float
    scores: dict[str, AspectScore] = Field(default_factory=dict)


class CandidateRecord(BaseModel):
    """One candidate prompt: where it sits in the tree and how it scored, or why it failed."""

    node_id: str
    parent_id: str | None = None
    """None for the root."""
    level: int
    """-1 for the root; a level-l candidate answered block l + 1 of the stream."""
    prompt: str
    verdicts: list[Verdict] = Field(default_factory=list)
    """One per query of the candidate's block, in query order (empty when it failed)."""
    path_rewards: list[float] = Field(default_factory=list)
    """Rewards along the path from the first level to this candidate (the root's never enters)."""
    skipped: bool = False
    """The parent skipped its rewrite (drpo-method.md §3): this candidate is the parent's prompt."""
    failure: str | None = None
    """Why the candidate has no reward (a call kept failing); never scored."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reward(self) -> float | None:
        """The mean reward over the candidate's block; None when it failed."""
        return fmean(v.reward for v in self.verdicts) if self.verdicts and self.failure is None else None


class LevelRecord(BaseModel):
    """One level of the search: which candidates it evaluated and which it kept."""

    level: int
    query_indices: list[int]
    """The block of queries every candidate of the level answered."""
    max_depth: int
    """The depth limit after this level (raised by one when a node skipped)."""
    bumped: bool = False
    candidates: list[str] = Field(default_factory=list)
    """Node ids, in expansion order."""
    kept: list[str] = Field(default_factory=list)
    """The next beam, best first."""
    best_reward: float | None = None
    mean_reward: float | None = None
