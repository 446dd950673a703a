"""The error boundary of one OpenAI-compatible endpoint (used by backends/openai_compat.py).

Every error of a call, and every reply that is not a completion, leaves as a `backends.errors`
type with the original as `__cause__`, scrubbed too: an HTTP status becomes a refusal (401/403,
404, no credit: retrying cannot help, the run stops), a 429 (with the server's wait), a transport
fault (408, 409, 5xx, no connection, no complete reply within `timeout_s`) or a rejected request
(other 4xx). Server text in a fault is one bounded line without the key, in valid Unicode: it is
logged and may end up in a file, and an HTML error page would otherwise fill a log line.

A status is read from the reply itself (`ErrorMap.reply_fault`: status, headers, body), with the
rules the `openai` SDK used when the engine went through it ("Error code: N - <the body's
error.message>", the body's `error` object kept), so fault texts, logs and the tests that read
them did not change when the engine stopped using the SDK.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from backends.errors import (
    EngineFault,
    EngineRefused,
    InvalidOutput,
    RateLimited,
    RequestRejected,
    TransportFault,
)
from schemas.errors import ProjectError

MAX_FAULT_TEXT = 300  # server text kept in a fault: what went wrong, never a whole HTML page
_SCHEMA_REJECTED = ("json_schema", "response_format", "json_object")
_NO_CREDIT = ("insufficient_quota", "exceeded your current quota")  # a 429 that no wait can cure
_SURROGATE = re.compile("[\ud800-\udfff]")
_TAGS = re.compile(r"<[/!]?[A-Za-z][^<>]*>")  # an HTML error page is read as its text; "x <= 2" is kept
_AGAIN = "then run again (--resume continues a stopped run)"


@dataclass(frozen=True)
class ErrorMap:
    """What a fault may say about its endpoint: where it is, what it serves, whose key it sends."""

    key: str
    shown_url: str
    model: str
    api_key_env: str

    @contextmanager
    def mapped(self, timeout_s: float) -> Iterator[None]:
        """Every failure inside, as one of ours (see the module docstring); a 200 whose body is
        not a completion (HTML, {}, no choices, nested too deep) is InvalidOutput. `timeout_s`
        is the deadline the caller set, named when it passes."""
        try:
            yield
        except (EngineFault, ProjectError):
            raise  # raised in here: a status (`reply_fault`) or the reply's shape; the text is scrubbed
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise TransportFault(f"no complete reply within timeout_s={timeout_s:g}s") from exc
        except (OSError, *_client_errors()) as exc:  # no connection, a reset, a reply cut short
            raise TransportFault(self.say(f"{type(exc).__name__}: {exc}")) from self.scrubbed(exc)
        except (AttributeError, TypeError, ValueError, KeyError, RecursionError) as exc:  # JSON errors are ValueErrors
            raise InvalidOutput(self.say(f"the server's reply is not a completion ({type(exc).__name__}: "
                                         f"{exc})")) from self.scrubbed(exc)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing foreign crosses it
            raise EngineFault(self.say(f"unexpected {type(exc).__name__} from the server or its client: {exc}")
                              ) from self.scrubbed(exc)

    def reply_fault(self, status: int, headers: Mapping[str, str], raw: bytes) -> Exception:
        """A reply with an error status, as a fault (the SDK's reading: module docstring)."""
        said, error = f"Error code: {status}", None
        text = raw.decode("utf-8", "replace").strip()
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = text  # an HTML page, plain text, or nothing
        else:
            error = body.get("error", body) if isinstance(body, dict) else body
            if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
                said += f" - {error['message']}"
            body = error
        return self.status_fault(status, said, body, headers)

    def status_fault(self, status: int, said: str, body: Any, headers: Mapping[str, str]) -> Exception:
        """An HTTP error status as a fault: refusals retrying cannot help stop the run. `said` is
        the status line with the server's message, `body` the reply's `error` object (or its text)."""
        fields = body if isinstance(body, dict) else {}
        shown = said if isinstance(fields.get("message"), str) else f"{said} - {body or ''}"
        message = self.say(f"HTTP {status}: {_TAGS.sub(' ', shown)}")
        code = f"{fields.get('code')} {fields.get('type')} {said}"
        if status in (401, 403):
            return EngineRefused(f"{self.shown_url} refused the API key (HTTP {status}): check the key in the "
                                 f"environment variable {self.api_key_env}, {_AGAIN}", status=status)
        if status == 404:
            return EngineRefused(f"{self.shown_url} has no model {self.model!r} (HTTP 404): check --model (the name "
                                 f"the server serves) or base_url (most end in /v1), {_AGAIN}", status=404)
        if status == 402 or (status == 429 and any(word in code.lower() for word in _NO_CREDIT)):
            return EngineRefused(f"{self.shown_url} refused the call for lack of quota or credit (HTTP {status}): "
                                 f"add credit or use another key in {self.api_key_env}, {_AGAIN}", status=status)
        if status == 429:
            return RateLimited(message, retry_after_s=retry_after(headers))
        if status in (408, 409) or status >= 500:
            return TransportFault(message, status=status)
        return RequestRejected(message, status=status)

    def say(self, text: str) -> str:
        """Server text fit for a fault: the key scrubbed first, then one line, then bounded."""
        text = " ".join(self.scrub(valid_text(text)).split())
        return text if len(text) <= MAX_FAULT_TEXT else text[: MAX_FAULT_TEXT - 1] + "…"

    def scrub(self, text: str) -> str:
        """The key out of `text`, also as a URL or a JSON string would quote it (any length from 4)."""
        if len(self.key) >= 4 and self.key != "unused":
            for variant in (self.key, quote(self.key, safe=""), json.dumps(self.key)[1:-1]):
                text = text.replace(variant, "***")
        return text

    def scrubbed(self, exc: BaseException) -> BaseException:
        """`exc` and its causes with the key taken out of their text, so a traceback cannot show it;
        the raw reply body (`body`) is dropped, as the key may be anywhere in it."""
        current, depth = exc, 0
        while current is not None and depth < 8:
            current.args = tuple(self.scrub(a) if isinstance(a, str) else a for a in current.args)
            if isinstance(getattr(current, "message", None), str):  # errors with a message and a body
                with suppress(AttributeError):
                    current.message, current.body = self.scrub(current.message), None  # type: ignore[attr-defined]
            current, depth = current.__cause__ or current.__context__, depth + 1
        return exc


def valid_text(value: Any) -> str:
    """Reply text as valid Unicode: a lone surrogate (JSON allows one) would break every file."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidOutput(f"the server's reply holds {type(value).__name__} where text belongs")
    return _SURROGATE.sub("\ufffd", value)


def rejects_schema(fault: EngineFault) -> bool:
    """The server refused `response_format` `json_schema` (llama-cpp-python: a 500 whose text
    names response_format and json_object)."""
    return getattr(fault, "status", None) in (400, 422, 500) and any(word in str(fault) for word in _SCHEMA_REJECTED)


def rejects_system(fault: EngineFault) -> bool:
    """A chat template's refusal of a system role: "System role not supported" (Gemma), "Conversation
    roles must alternate user/assistant/..." (Mistral); vLLM answers 400, llama.cpp servers 500."""
    text = str(fault).lower()
    about_roles = ("system" in text and "role" in text) or "roles must alternate" in text
    return getattr(fault, "status", None) in (400, 422, 500) and about_roles


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's wait in seconds (`retry-after-ms`; `Retry-After`: seconds or an HTTP date);
    `headers` are the reply's, read without regard to case (aiohttp's)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        if (value := headers.get(name)) is not None:
            with suppress(ValueError):
                return max(0.0, float(value) / scale)  # nan is 0, inf is capped by the retry layer
            with suppress(TypeError, ValueError, IndexError):  # an HTTP date, or garbage
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time()) if scale == 1 else None
            return None
    return None


@functools.lru_cache(maxsize=1)
def _client_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's own errors (a bad status line, a body cut short, a server gone)."""
    import aiohttp

    return (aiohttp.ClientError,)
