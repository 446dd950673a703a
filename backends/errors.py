"""Faults an engine call can end in. No foreign exception crosses an engine's edge.

    EngineFault                 a call failed; the Backend retries these
    ├── TransportFault          connection reset, timeout, 5xx
    │   └── RateLimited         429; carries the server's Retry-After
    ├── InvalidOutput           output that does not parse or validate against the schema
    │   └── TruncatedOutput     structured output cut off at max_tokens (finish_reason "length")
    └── EmptyOutput             nothing came back
    CallFailed                  every attempt failed; the caller drops the candidate, never scores it
    EngineUnavailable           the engine keeps failing at the transport level: the run stops, resumable
    EngineConfigError           the engine cannot start (missing model, missing extra, bad endpoint)
"""

from __future__ import annotations


class EngineFault(Exception):
    """A retryable failure of one engine call."""

    kind = "engine_error"


class TransportFault(EngineFault):
    kind = "transport"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(TransportFault):
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after_s = retry_after_s


class InvalidOutput(EngineFault):
    kind = "invalid_output"


class TruncatedOutput(InvalidOutput):
    kind = "truncated"


class EmptyOutput(EngineFault):
    kind = "empty_output"


class CallFailed(Exception):
    """All attempts of a call failed. `faults` lists the kind of each failed attempt."""

    def __init__(self, role: str, faults: list[str], last: Exception) -> None:
        super().__init__(f"{role} call failed after {len(faults)} attempts: {last}")
        self.role = role
        self.faults = faults
        self.last = last


TRANSPORT_KINDS = frozenset({TransportFault.kind, RateLimited.kind})


class EngineUnavailable(Exception):
    """Calls on a backend keep failing at the transport level with no success in between: the
    engine is down. Not a per-candidate failure, so nothing catches it: the run stops at its last
    checkpoint and `--resume` continues once the engine is back."""


class EngineConfigError(Exception):
    """An engine cannot be set up; the message says how to fix it."""
