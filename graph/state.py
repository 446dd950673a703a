"""The beam search's state: ids, prompts, path rewards and the last evaluation of each live node.

State holds what the next step needs and nothing more: a node carries at most the last `history`
prompts of its path and the evaluation the rewriter learns from; the records of the search (every
candidate with its verdicts, every level) go to the run's record store (graph/records.py) and
state keeps only their keys. So a checkpoint does not grow with the text of past levels.

`STATE_TYPES` is the checkpoint allowlist: every pydantic type that can sit in this state, the
only ones the checkpoint serializer will rebuild. It lives here so a new state type and its
permission are one edit in one file.
"""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel, Field

from schemas.messages import AspectScore


class Evaluation(BaseModel):
    """A prompt's answer to one query and the judge's verdict on it."""

    query_index: int
    query: str
    response: str
    scores: dict[str, AspectScore]
    reward: float
    samples: list[float] = Field(default_factory=list)
    """Each judge call's reward on this answer (graph/judge_panel.py); `reward` is their mean."""
    judges: list[str] = Field(default_factory=list)
    """The `backend:model` behind each of `samples`."""


class BeamNode(BaseModel):
    node_id: str
    parent_id: str | None = None
    level: int
    """-1 for the root; level l nodes answered block l + 1."""
    prompt: str
    history: list[str]
    """The last prompts on the path, oldest first, ending with `prompt`."""
    path_rewards: list[float] = Field(default_factory=list)
    """Rewards along the path; the root's own evaluation never enters it (drpo-method.md §4)."""
    evaluation: Evaluation | None = None
    """What the rewriter learns from (the block's lowest-scoring answer); None only for a root
    whose evaluation failed."""
    samples: list[float] = Field(default_factory=list)
    """Every judge call's reward on the node's own block, query by query (what `lcb` weighs)."""


class Child(BaseModel):
    """One candidate of a level: evaluated (`node` set) or failed (`failure` set). Its full
    record (verdicts per query) is in the record store under `node_id`."""

    order: tuple[int, int]
    """(parent's place in the beam, action index): the reference's expansion order, for stable ranking."""
    node_id: str
    parent_id: str
    skipped: bool = False
    node: BeamNode | None = None
    failure: str | None = None


def extend_or_reset(current: list[Child], update: list[Child] | None) -> list[Child]:
    """Children accumulate from parallel expansions; `None` clears them for the next level."""
    return [] if update is None else current + update


class BeamState(TypedDict, total=False):
    level: int
    max_depth: int
    beam: list[BeamNode]
    children: Annotated[list[Child], extend_or_reset]
    levels: Annotated[list[str], operator.add]
    """Store keys of the level records this run made, in level order (graph/records.py)."""
    stopped: str | None
    """Why the search ended before its depth (e.g. every candidate of a level failed)."""
    best: BeamNode | None


class ExpandTask(BaseModel):
    """The payload sent to one `expand` branch: a beam node and where it sits."""

    node: BeamNode
    beam_index: int
    level: int


STATE_TYPES: tuple[type[BaseModel], ...] = (BeamNode, Child, Evaluation, ExpandTask, AspectScore)
"""Every pydantic type stored in graph state, allowed through the checkpoint serializer."""


def checkpoint_serde() -> JsonPlusSerializer:
    """The serializer for the run's checkpoints: only `STATE_TYPES` come back as themselves."""
    return JsonPlusSerializer(allowed_msgpack_modules=None).with_msgpack_allowlist(STATE_TYPES)
