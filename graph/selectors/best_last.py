"""Greedy selection: keep the top B by the reward of the candidate's own level, whatever its path
scored before, and deliver the best of them. The whole rule is this file (`selector = "best_last"`)."""

from __future__ import annotations

from collections.abc import Sequence

from graph.selectors.base import Scored, T, last_reward, ranked
from schemas.config import SearchConfig


class BestLastSelector:
    def score(self, candidate: Scored, search: SearchConfig) -> float:
        return last_reward(candidate)

    def next_beam(self, scored: Sequence[T], beam: Sequence[T], search: SearchConfig) -> list[T]:
        return ranked(scored, last_reward)[: search.beam]

    def deliverable(self, beam: Sequence[T], search: SearchConfig) -> T:
        return ranked(beam, last_reward)[0]


SELECTOR = BestLastSelector()
