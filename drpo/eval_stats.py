"""The evaluation's statistics: seeded bootstrap intervals per aspect, and pairwise win rates.

Kept apart from the harness so that they can be checked on known samples, and so that the report
and the console summary order aspects the same way.
"""

from __future__ import annotations

import numpy as np

from schemas.evaluation import (
    MEAN,
    MULTI_ASPECTS,
    SAFETY_ASPECTS,
    BootstrapSettings,
    EvalSummary,
    Interval,
    ItemResult,
    WinRate,
)

ASPECT_ORDER = (*MULTI_ASPECTS, *SAFETY_ASPECTS, MEAN)
"""The order aspects are shown in, everywhere: the five regular ones, safety, then the item mean."""

TIE_TOLERANCE = 1e-9
"""Item means closer than this are a tie (means of small integers are exact up to rounding)."""


def shown_aspects(summary: EvalSummary) -> list[str]:
    """The aspects that some configuration of `summary` has an interval for, in `ASPECT_ORDER`."""
    return [a for a in ASPECT_ORDER if any(a in c.aspects for c in summary.configs)]


def bootstrap_interval(
    values: list[float], *, samples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Interval:
    """The mean and its percentile bootstrap interval; the same values and seed give the same interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    mean = float(data.mean())
    if data.size == 1 or samples < 1:
        return Interval(mean=mean, low=mean, high=mean, n=int(data.size))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(mean=mean, low=float(low), high=float(high), n=int(data.size))


def aspect_intervals(results: list[ItemResult], settings: BootstrapSettings) -> dict[str, Interval]:
    """One interval per aspect over the scored items (a failed item enters no aspect, never as 0)."""
    scored = [r for r in results if r.failed is None]
    out: dict[str, Interval] = {}
    for aspect in ASPECT_ORDER:
        if aspect == MEAN:
            values = [r.mean for r in scored if r.mean is not None]
        else:
            values = [r.scores[aspect] for r in scored if aspect in r.scores]
        if values:
            out[aspect] = bootstrap_interval(values, samples=settings.samples, seed=settings.seed,
                                             confidence=settings.confidence)
    return out


def win_rates(results: dict[str, list[ItemResult]], names: list[str]) -> list[WinRate]:
    """Every pair (a, b), a listed before b, on the items both scored: by each item's mean score."""
    means = {name: {r.id: r.mean for r in results[name] if r.failed is None and r.mean is not None} for name in names}
    rates = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = [item for item in means[a] if item in means[b]]
            wins = sum(means[a][item] > means[b][item] + TIE_TOLERANCE for item in common)
            losses = sum(means[b][item] > means[a][item] + TIE_TOLERANCE for item in common)
            ties, n = len(common) - wins - losses, len(common)
            rates.append(WinRate(
                a=a, b=b, n=n, wins=wins, ties=ties, losses=losses,
                win_rate=wins / n if n else None, tie_rate=ties / n if n else None, loss_rate=losses / n if n else None,
            ))
    return rates
