"""The records a search produces: one per candidate and one per level.

The graph writes them as it goes (into the run's record store, keyed by id, so checkpoints stay
small); the runner, `artifact.json`, the report and the benchmark read these same types. Nothing
rebuilds them from logs or ids.
"""

from __future__ import annotations

from statistics import fmean, stdev

from pydantic import BaseModel, Field, computed_field

from schemas.evaluation import Interval
from schemas.messages import AspectScore


class Verdict(BaseModel):
    """How a candidate did on one query: the judge's (and critics') scores and their mean."""

    query_index: int
    """The query's place in the seeded training stream."""
    reward: float
    scores: dict[str, AspectScore] = Field(default_factory=dict)
    """One judge call's scores (with the critics'); with several calls, the one nearest the mean."""
    samples: list[float] = Field(default_factory=list)
    """The reward of each judge call on this answer (`judge_samples` per panel member, the critics
    joined to each), member by member; `reward` is their mean. Empty in records of older runs."""
    judges: list[str] = Field(default_factory=list)
    """The `backend:model` of the judge behind each of `samples`."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spread(self) -> float | None:
        """The standard deviation of `samples`: how far the judge calls disagreed (None below two)."""
        return stdev(self.samples) if len(self.samples) > 1 else None


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
    validation_verdicts: list[Verdict] = Field(default_factory=list)
    """With `[search] validation`: one per held-out query it was scored on (`query_index` is the
    place in the run's held-out list); empty when it was not validated."""
    validation: Interval | None = None
    """The mean of `validation_verdicts` with a seeded 95% bootstrap interval (the artifact's;
    None when it was not validated or every validation call failed)."""

    @property
    def samples(self) -> list[float]:
        """Every judge call's reward on its own block, query by query (what `lcb` weighs)."""
        return [s for v in self.verdicts for s in (v.samples or [v.reward])]

    @property
    def validation_mean(self) -> float | None:
        """The mean reward on the held-out queries; None when none was scored."""
        return fmean(v.reward for v in self.validation_verdicts) if self.validation_verdicts else None

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
