"""Recorded engine replies for the golden end-to-end test: a replaying and a recording engine.

A reply is stored under a canonical key of its request: the role, the messages or prompt, the
sampling (seed and n included), the JSON schema and the sample index (like backends/cache.py
`request_key`, with the role in place of the model, so two roles asking the same thing stay
apart). The file is JSON, sorted, one entry per key, so a re-recording diffs line by line.

`ReplayEngine` answers only from the file and fails the test on any request it has not recorded:
a changed prompt template, search rule or sampling shows up as a named miss, not as a quiet drift.
`RecordingEngine` answers through another engine (the scripted world) and keeps what it answered.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from backends.protocol import Engine
from schemas.llm import LLMRequest, LLMResult

KEY_FIELDS = {"messages", "prompt", "sampling", "json_schema", "sample"}


def golden_key(request: LLMRequest) -> str:
    content = request.model_dump(mode="json", include=KEY_FIELDS)
    canonical = json.dumps({"role": request.role, **content}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _preview(request: LLMRequest) -> str:
    text = request.messages[-1].content if request.messages else request.prompt or ""
    return text[:160].replace("\n", " ")


class Recording:
    """Key -> (role, result), read from and written to one JSON file."""

    def __init__(self, replies: dict[str, dict[str, Any]] | None = None) -> None:
        self.replies = replies or {}

    @classmethod
    def load(cls, path: Path) -> Recording:
        return cls(json.loads(path.read_text(encoding="utf-8"))["replies"])

    def save(self, path: Path) -> None:
        body = {"replies": dict(sorted(self.replies.items()))}
        path.write_text(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")

    def get(self, key: str) -> LLMResult | None:
        entry = self.replies.get(key)
        return None if entry is None else LLMResult.model_validate(entry["result"])

    def put(self, key: str, role: str, result: LLMResult) -> None:
        entry = {"role": role, "result": result.model_dump(mode="json")}
        if self.replies.setdefault(key, entry) != entry:
            raise AssertionError(f"the recorded world answered the {role} request {key} two ways; it must be a "
                                 "function of the request")


class ReplayEngine:
    """Answers from a recording; a request it has not recorded fails the test."""

    native_n = True

    def __init__(self, recording: Recording, *, model: str = "golden") -> None:
        self.recording = recording
        self.model = model
        self.misses: list[str] = []
        """'role key' of every unrecorded request, in case the code under test swallowed the failure."""

    async def complete(self, request: LLMRequest) -> LLMResult:
        key = golden_key(request)
        result = self.recording.get(key)
        if result is None:
            self.misses.append(f"{request.role} {key}")
            pytest.fail(
                f"golden replay: no recorded reply for the {request.role!r} request {key} "
                f"({_preview(request)!r}); if the change is meant, re-record (tests/golden/README.md)",
                pytrace=False,
            )
        return result

    async def aclose(self) -> None:
        return None


class RecordingEngine:
    """Answers through `inner` and records every reply under its request's key."""

    def __init__(self, inner: Engine, recording: Recording | None = None) -> None:
        self.inner = inner
        self.recording = recording or Recording()
        self.model = inner.model
        self.native_n = inner.native_n

    async def complete(self, request: LLMRequest) -> LLMResult:
        result = await self.inner.complete(request)
        self.recording.put(golden_key(request), request.role, result)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()
