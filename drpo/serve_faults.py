"""What `serve` answers when a request cannot be answered: an OpenAI-style error body and status.

A client of an OpenAI-compatible API reads `{"error": {"message", "type", "param", "code"}}` and
the status (the `openai` SDK raises `BadRequestError` for 400, `AuthenticationError` for 401,
`RateLimitError` for 429 and retries it after `Retry-After`, `InternalServerError` for 5xx). So
every failure, ours or the policy engine's, is one `ApiError`; nothing else reaches the wire.

Engine faults (backends/errors.py) are mapped by what the client can do about them:

    CallFailed, last fault RequestRejected   400  the engine refused this request (too long, ...)
    CallFailed, last fault RateLimited       503  upstream_rate_limited, with Retry-After
    CallFailed, any other last fault         502  upstream_error (HTTP 5xx, reset, bad output)
    EngineUnavailable                        503  engine_unavailable, with Retry-After
    EngineRefused                            502  upstream_refused (the server's key or model)
    anything else                            500  internal_error

A message never holds a traceback, an engine's URL or a secret: the engine's own text reaches the
client only for a rejected request (the client needs it, e.g. "context length exceeded"), bounded
and scrubbed by the run's redactor; the full fault goes to the server's log, scrubbed too. What
the client sent is quoted back cut short (`quoted`), and no message is longer than
`MAX_MESSAGE_CHARS`: a 404 for a `model` of 1 MB quoted it whole, a 1 MB error body.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from backends.errors import CallFailed, EngineRefused, EngineUnavailable, RateLimited, RequestRejected
from schemas.errors import first_leaf, first_of
from telemetry.redact import Redactor

MAX_ENGINE_TEXT = 300
"""The most of an engine's own error text passed on to a client."""
MAX_QUOTED = 80
"""The most of a client's own text an error message quotes."""
MAX_MESSAGE_CHARS = 1000
"""The longest error message: whatever it quotes, an error body stays one short line."""


@dataclass(eq=False)  # an exception compares and hashes by identity
class ApiError(Exception):
    """A request that ends in an error response: `status`, and the OpenAI error object's fields."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE_CHARS:
            self.message = f"{self.message[:MAX_MESSAGE_CHARS - 1]}…"
        super().__init__(self.message)

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def quoted(text: str) -> str:
    """`text`, a value the client sent, as an error message quotes it: its repr, cut short."""
    shown = repr(text)
    return shown if len(shown) <= MAX_QUOTED else f"{shown[:MAX_QUOTED - 1]}…"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _retry_after(seconds: float | None, default_s: int) -> dict[str, str]:
    wait = default_s if seconds is None or not math.isfinite(seconds) else max(1, math.ceil(seconds))
    return {"Retry-After": str(wait)}


def engine_error(error: BaseException, *, redactor: Redactor, request_id: str, retry_after_s: int) -> ApiError:
    """The response for an exception raised while the policy engine answered (see the module docstring)."""
    if isinstance(error, ApiError):
        return error
    where = f"(request {request_id})"
    if first_of(error, EngineUnavailable) is not None:
        return ApiError(503, f"the policy engine is unavailable; try again later {where}", type="server_error",
                        code="engine_unavailable", headers=_retry_after(None, retry_after_s))
    if first_of(error, EngineRefused) is not None:
        return ApiError(502, f"the policy engine refused this server's credentials or model; the server's operator "
                             f"must fix its engine settings {where}", type="server_error", code="upstream_refused")
    failed = first_of(error, CallFailed)
    if isinstance(failed, CallFailed):
        last = failed.last
        if isinstance(last, RequestRejected):
            text = redactor.scrub_exception(last)[:MAX_ENGINE_TEXT]
            return ApiError(400, f"the policy engine rejected the request: {text} {where}", code="upstream_rejected")
        if isinstance(last, RateLimited):
            return ApiError(503, f"the policy engine is rate limited; try again later {where}", type="server_error",
                            code="upstream_rate_limited", headers=_retry_after(last.retry_after_s, retry_after_s))
        kinds = ", ".join(dict.fromkeys(failed.faults)) or "unknown"
        tries = f"{len(failed.faults)} attempt{'' if len(failed.faults) == 1 else 's'}"
        return ApiError(502, f"the policy engine failed after {tries} ({kinds}) {where}",
                        type="server_error", code="upstream_error")
    leaf = first_leaf(error)
    return ApiError(500, f"internal error ({type(leaf).__name__}) {where}", type="server_error",
                    code="internal_error")
