"""Token and latency accounting carried by every engine result and agent reply."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Usage(BaseModel):
    """What one or more engine calls cost."""

    calls: int = 0
    """Engine replies received, retries included (a reply then found invalid counts; a request that
    failed in transport or was refused does not: see `RoleAccount.faults` and `RoleAccount.sent`)."""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    """Wall time spent waiting on the engine (summed over sequential calls)."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            latency_s=self.latency_s + other.latency_s,
        )


class RoleAccount(BaseModel):
    """What one role spent over a run."""

    usage: Usage = Field(default_factory=Usage)
    sent: int = 0
    """Requests sent (or about to be sent) to an engine over the whole run, in every process: each
    attempt, answered or not — a fault, a refusal, one in flight when a process was killed. Budgets
    are charged by this count."""
    faults: dict[str, int] = Field(default_factory=dict)
    """Failed attempts by fault kind (each was retried or ended the call)."""
    failed_calls: int = 0
    """Calls whose every attempt failed."""
    cache_hits: int = 0
    """Answers served from the shared response cache (no request sent)."""
    replayed: int = 0
    """Answers a resumed run took from its own journal instead of asking again."""
