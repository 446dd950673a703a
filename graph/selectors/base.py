"""What a selection rule is: the `Selector` protocol, and the ranking every rule shares.

A rule decides two things the beam search leaves open (drpo-method.md §4): which scored candidates
of a level form the next beam, and which node of the final beam is delivered. It sees only path
rewards and ids, so it works on the live `BeamNode`s as on stored `CandidateRecord`s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean
from typing import Protocol, TypeVar

from schemas.config import SearchConfig


class Scored(Protocol):
    """Anything a rule can rank: a node or a record with its rewards along the path."""

    @property
    def node_id(self) -> str: ...

    @property
    def path_rewards(self) -> list[float]: ...


T = TypeVar("T", bound=Scored)


class Selector(Protocol):
    """A selection rule. Modules of graph/selectors/ that define `SELECTOR` are found by name."""

    def score(self, candidate: Scored, search: SearchConfig) -> float:
        """The value the rule ranks by (also the score the artifact reports for the deliverable)."""
        ...

    def next_beam(self, scored: Sequence[T], beam: Sequence[T], search: SearchConfig) -> list[T]:
        """The next beam, best first, from the level's scored candidates (in expansion order)
        and the current beam. Never empty when `scored` is not."""
        ...

    def deliverable(self, beam: Sequence[T], search: SearchConfig) -> T:
        """The node whose prompt the run delivers, from the final (non-empty) beam."""
        ...


def path_mean(candidate: Scored) -> float:
    """Mean reward along the path; 0 for the root, which has none."""
    return fmean(candidate.path_rewards) if candidate.path_rewards else 0.0


def last_reward(candidate: Scored) -> float:
    """The reward of the candidate's own level; 0 for the root."""
    return candidate.path_rewards[-1] if candidate.path_rewards else 0.0


def ranked(candidates: Sequence[T], key: Callable[[T], float]) -> list[T]:
    """Best first by `key`; stable, so ties keep the order given (the expansion order)."""
    return sorted(candidates, key=lambda c: -key(c))
