"""Exponential smoothing along the path: keep the top B, and deliver the best, by a filtered
estimate of the candidate's own quality (`selector = "smoothed"`, gain from `[search] smoothing`).
The whole rule is this file.

Why. A rewrite changes a prompt's quality by a step, so the quality along a path is a random
walk, and each reward on it is that walk seen through the judge's noise. The two existing rules
are the two ends of that model: `paper` (path mean) is the best estimate when rewrites do not
change quality at all (every reward measures the same thing), `best_last` when they change it so
much that the ancestors say nothing (only the last reward counts). For a random walk plus noise
the best linear estimate of the last prompt's quality is the steady-state Kalman filter, which is
exponential smoothing along the path:

    s_1 = y_1,    s_l = (1 - K) s_(l-1) + K y_l

with gain K = (-r + sqrt(r^2 + 4r)) / 2 for r = step variance / noise variance of one reward
(K -> 1 as the noise vanishes: `best_last`; K -> 0 as the steps do: a mean over the path that
weights recent rewards most). Ancestors help exactly as much as they still resemble the candidate.

The default gain, 0.4: a rewrite's step of sd 0.3 points (the noise benchmark's world) against a
judge whose per-aspect scores are off by 1 point, averaged over 3 aspects and rounded to whole
points: noise variance 1/3 + 1/36 = 0.36, r = 0.09 / 0.36 = 0.25, K = 0.39. A better judge or
bigger steps want a larger K (noise 0.5: 0.58), a worse judge a smaller one (noise 1.5: 0.29).

`smoothing` is the gain for a reward that rests on one judge verdict. A candidate whose reward
averages k independent verdicts (m queries x panel members) has 1/k of that noise variance, so
its path is filtered with the gain of k * r, derived from the configured one (r = K^2 / (1 - K)).
Samples of one judge (`judge_samples`) do not raise k: they repeat what that judge misreads in
the answer, so their mean is not k independent looks, and counting them would trust the last
reward too much. The noise is not estimated from a candidate's own spread: two or three values
give a variance too rough to set a gain with, and they miss the error a judge repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import sqrt

from graph.selectors.base import Scored, T, ranked
from schemas.config import SearchConfig


def gain(ratio: float) -> float:
    """The steady-state Kalman gain of a random walk seen in noise, for r = step var / noise var."""
    return (-ratio + sqrt(ratio * ratio + 4.0 * ratio)) / 2.0


def ratio_of(k: float) -> float:
    """The r whose steady-state gain is `k` (the inverse of `gain`; 0 < k < 1)."""
    return k * k / (1.0 - k)


def verdicts_behind(candidate: Scored, search: SearchConfig) -> int:
    """Independent verdicts behind the candidate's reward: its judge calls over `judge_samples`
    (queries x panel members); 1 when it carries no calls (the root, a record of an older run)."""
    calls = len(getattr(candidate, "samples", None) or [])
    return max(1, calls // search.judge_samples)


def effective_gain(search: SearchConfig, verdicts: int) -> float:
    """The configured gain (one verdict per reward) for a reward averaging `verdicts` of them."""
    k = search.smoothing
    if k >= 1.0 or verdicts == 1:
        return k
    return gain(verdicts * ratio_of(k))


def smoothed(rewards: Sequence[float], k: float) -> float:
    """s_1 = y_1, s_l = (1 - k) s_(l-1) + k y_l; 0 for the root, which has no rewards."""
    if not rewards:
        return 0.0
    estimate = rewards[0]
    for reward in rewards[1:]:
        estimate = (1.0 - k) * estimate + k * reward
    return estimate


class SmoothedSelector:
    def score(self, candidate: Scored, search: SearchConfig) -> float:
        k = effective_gain(search, verdicts_behind(candidate, search))
        return smoothed(candidate.path_rewards, k)

    def next_beam(self, scored: Sequence[T], beam: Sequence[T], search: SearchConfig) -> list[T]:
        return ranked(scored, lambda c: self.score(c, search))[: search.beam]

    def deliverable(self, beam: Sequence[T], search: SearchConfig) -> T:
        return ranked(beam, lambda c: self.score(c, search))[0]


SELECTOR = SmoothedSelector()
