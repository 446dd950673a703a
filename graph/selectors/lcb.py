"""Confidence-aware ranking: keep the top B, and deliver the best, by a lower confidence bound on
each candidate's reward (`selector = "lcb"`, z from `[search] lcb_z`). The whole rule is this file.

A candidate's evidence is every judge call of its own block: m queries (`queries_per_level`) x
`judge_samples` x panel members. Its bound is their mean minus z standard errors (sd / sqrt(k)
over those k values), so a candidate whose score rests on judge calls that disagree, or on queries
it answered unevenly, ranks below one with the same mean and steady evidence: a lucky high call is
discounted by its own spread. Ancestors' rewards do not enter (they scored other prompts).

With a single value (the paper's m = 1 and one judge call) no spread is known and the bound is the
reward itself, so the rule is then `best_last`; it needs m > 1, judge samples or a panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import sqrt
from statistics import fmean, stdev

from graph.selectors.base import Scored, T, ranked
from schemas.config import SearchConfig


def observations(candidate: Scored) -> list[float]:
    """The candidate's own judge calls (a node's or a record's `samples`); one that carries none
    (a record of an older run) has its last reward alone."""
    samples = list(getattr(candidate, "samples", None) or [])
    return samples or candidate.path_rewards[-1:]


def lower_bound(values: list[float], z: float) -> float:
    """mean - z * sd / sqrt(k); the value itself below two values; 0 for none (the root)."""
    if not values:
        return 0.0
    if len(values) < 2:
        return values[0]
    return fmean(values) - z * stdev(values) / sqrt(len(values))


class LowerBoundSelector:
    def score(self, candidate: Scored, search: SearchConfig) -> float:
        return lower_bound(observations(candidate), search.lcb_z)

    def next_beam(self, scored: Sequence[T], beam: Sequence[T], search: SearchConfig) -> list[T]:
        return ranked(scored, lambda c: self.score(c, search))[: search.beam]

    def deliverable(self, beam: Sequence[T], search: SearchConfig) -> T:
        return ranked(beam, lambda c: self.score(c, search))[0]


SELECTOR = LowerBoundSelector()
