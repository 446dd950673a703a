"""Faults an engine call can end in. No foreign exception crosses an engine's edge.

    EngineFault                 a call failed; the Backend retries these
    ├── TransportFault          connection reset, timeout, 5xx
    │   └── RateLimited         429; carries the server's Retry-After
    ├── InvalidOutput           output that does not parse or validate against the schema
    └── EmptyOutput             nothing came back
    CallFailed                  every attempt failed; the caller drops the candidate, never scores it
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


class EmptyOutput(EngineFault):
    kind = "empty_output"


class CallFailed(Exception):
    """All attempts of a call failed. `faults` lists the kind of each failed attempt."""

    def __init__(self, role: str, faults: list[str], last: Exception) -> None:
        super().__init__(f"{role} call failed after {len(faults)} attempts: {last}")
        self.role = role
        self.faults = faults
        self.last = last


class EngineConfigError(Exception):
    """An engine cannot be set up; the message says how to fix it."""
