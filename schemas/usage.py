"""Token and latency accounting carried by every engine result and agent reply."""

from __future__ import annotations

from pydantic import BaseModel


class Usage(BaseModel):
    """What one or more engine calls cost."""

    calls: int = 0
    """Engine requests sent, retries included."""
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
