"""The paper's rule (drpo-method.md §4), the default: keep the top B by path mean; with B = 1,
by the last reward. The deliverable is the best node of the final beam by the same value."""

from __future__ import annotations

from collections.abc import Sequence

from graph.selectors.base import Scored, T, last_reward, path_mean, ranked
from schemas.config import SearchConfig


class PaperSelector:
    def score(self, candidate: Scored, search: SearchConfig) -> float:
        return path_mean(candidate) if search.beam > 1 else last_reward(candidate)

    def next_beam(self, scored: Sequence[T], beam: Sequence[T], search: SearchConfig) -> list[T]:
        return ranked(scored, lambda c: self.score(c, search))[: search.beam]

    def deliverable(self, beam: Sequence[T], search: SearchConfig) -> T:
        return ranked(beam, lambda c: self.score(c, search))[0]


SELECTOR = PaperSelector()
