"""A content-addressed response cache in SQLite, shared by runs and safe for concurrent use.

The key is a hash of everything that determines an answer: the endpoint's identity (engine kind,
URL and model, so a command aimed at another server is never served this one's answers), the messages or prompt,
the sampling parameters (seed and n included), the JSON schema and the sample index. Every
answer is stored, valid or not, so a re-run takes the same path through retries and sends
nothing. Hits cost no call and are counted apart.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from schemas.llm import LLMRequest, LLMResult


def request_key(identity: str, request: LLMRequest) -> str:
    content = request.model_dump(mode="json", include={"messages", "prompt", "sampling", "json_schema", "sample"})
    canonical = json.dumps({"engine": identity, **content}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: Path, *, journal: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.journal = journal
        """The run's own record of its answers: a hit here is a replay, not a cache hit."""
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a crash or kill -9 of the process (not a power cut) without an
        # fsync per answer; FULL cost a quarter of a millisecond per call on the event loop.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, result TEXT NOT NULL)")

    def get(self, key: str) -> LLMResult | None:
        row = self._db.execute("SELECT result FROM responses WHERE key = ?", (key,)).fetchone()
        return LLMResult.model_validate_json(row[0]) if row else None

    def put(self, key: str, result: LLMResult) -> None:
        self._db.execute("INSERT OR REPLACE INTO responses (key, result) VALUES (?, ?)", (key, result.model_dump_json()))

    def close(self) -> None:
        self._db.close()
