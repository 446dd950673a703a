"""The beam search's state: ids, prompts, scores and the last evaluation of each live node.

Long histories are not kept: a node carries at most the last `history` prompts of its path and
the evaluation the rewriter needs next, and level records go to graph/level_log.py, so state
(and each checkpoint) does not grow with the text of past levels.
"""

from __future__ import annotations

from statistics import fmean
from typing import Annotated, Literal, TypedDict

from pydantic import BaseModel, Field

from schemas.artifact import CandidateRecord
from schemas.messages import AspectScore


class Evaluation(BaseModel):
    """A prompt's answer to one query and the judge's verdict on it."""

    query_index: int
    query: str
    response: str
    scores: dict[str, AspectScore]
    reward: float


class BeamNode(BaseModel):
    node_id: str
    parent_id: str | None = None
    level: int
    """-1 for the root; level l nodes answered query l + 1."""
    prompt: str
    history: list[str]
    """The last prompts on the path, oldest first, ending with `prompt`."""
    rewards: list[float] = Field(default_factory=list)
    """Rewards along the path; the root's own evaluation never enters it (drpo-method.md §4)."""
    evaluation: Evaluation | None = None
    """None only for a root whose evaluation failed."""

    def score(self, aggregate: Literal["mean", "last"]) -> float:
        if not self.rewards:
            return 0.0
        return fmean(self.rewards) if aggregate == "mean" else self.rewards[-1]


class Child(BaseModel):
    """One candidate of a level: evaluated (`node` set) or failed (`failure` set)."""

    order: tuple[int, int]
    """(parent's place in the beam, action index): the reference's expansion order, for stable ranking."""
    node_id: str
    parent_id: str
    skipped: bool = False
    node: BeamNode | None = None
    failure: str | None = None


class LevelRecord(BaseModel):
    """One level of the search, as written to levels.jsonl (graph/level_log.py)."""

    level: int
    query_index: int
    query: str
    max_depth: int
    """The depth limit after this level (raised by one when a node skipped)."""
    bumped: bool
    candidates: list[CandidateRecord]
    kept: list[str]
    best_reward: float | None
    mean_reward: float | None


def extend_or_reset(current: list[Child], update: list[Child] | None) -> list[Child]:
    """Children accumulate from parallel expansions; `None` clears them for the next level."""
    return [] if update is None else current + update


class BeamState(TypedDict, total=False):
    level: int
    max_depth: int
    beam: list[BeamNode]
    children: Annotated[list[Child], extend_or_reset]
    stopped: str | None
    """Why the search ended before its depth (e.g. every candidate of a level failed)."""
    best: BeamNode | None


class ExpandTask(BaseModel):
    """The payload sent to one `expand` branch: a beam node and where it sits."""

    node: BeamNode
    beam_index: int
    level: int
