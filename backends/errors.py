"""Faults an engine call can end in. No foreign exception crosses an engine's edge: each engine
maps its SDK's errors to these in its own file, keeping the original as `__cause__`.

    EngineFault                 a call failed; the retry layer tries again
    ├── TransportFault          connection reset, timeout, 5xx
    │   └── RateLimited         429; carries the server's Retry-After
    ├── RequestRejected         the server refused this request (400, 413, 422): bad for this call only;
    │                           retried only where another endpoint may take it
    ├── InvalidOutput           a reply that is not a valid completion, or output that does not
    │   │                       parse or validate against the schema
    │   └── TruncatedOutput     structured output cut off at max_tokens (finish_reason "length")
    └── EmptyOutput             nothing came back
    CallFailed                  every attempt failed; the caller drops the candidate, never scores it
    ProjectError (schemas/errors.py) — the run stops with one line:
    ├── EngineUnavailable       the engine keeps failing at the transport level (resumable), exit 1
    ├── EngineRefused           the engine refuses the credentials or the model mid-run (401/403/404):
    │                           nothing retries it; fix the setting and resume, exit 2
    └── EngineConfigError       the engine cannot start (missing model, missing extra, bad endpoint), exit 2
"""

from __future__ import annotations

from schemas.errors import ProjectError


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


class RequestRejected(EngineFault):
    """The server refused this one request (too long, bad parameter); not a sign it is down. The
    same server would refuse it again, so the retry layer tries again only where `elsewhere`:
    another endpoint may take it (a router over replicas, one of them misconfigured)."""

    kind = "rejected"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.elsewhere = False


class InvalidOutput(EngineFault):
    kind = "invalid_output"


class TruncatedOutput(InvalidOutput):
    kind = "truncated"


class EmptyOutput(EngineFault):
    kind = "empty_output"


class CallFailed(ProjectError):
    """All attempts of a call failed. `faults` lists the kind of each failed attempt. The graph
    drops the candidate; a command that answers one query (`answer`) ends with this one line."""

    exit_code = 1

    def __init__(self, role: str, faults: list[str], last: Exception) -> None:
        super().__init__(f"{role} call failed after {len(faults)} attempt{'' if len(faults) == 1 else 's'}: {last}")
        self.role = role
        self.faults = faults
        self.last = last


TRANSPORT_KINDS = frozenset({TransportFault.kind, RateLimited.kind})


class EngineUnavailable(ProjectError):
    """Calls on a backend keep failing at the transport level with no success in between: the
    engine is down. Not a per-candidate failure, so nothing catches it: the run stops at its last
    checkpoint and `--resume` continues once the engine is back."""

    exit_code = 1


class EngineConfigError(ProjectError):
    """An engine cannot be set up; the message says how to fix it."""

    exit_code = 2


class EngineRefused(EngineConfigError):
    """The engine refused the run's key or model: retrying cannot help. Before a run, nothing is
    written; during one, the run stops at its last checkpoint; fix the setting and `--resume`."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
