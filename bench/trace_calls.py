"""An agent's calls, read from a run's `trace.jsonl`: each request line with the line that ends it.

graph/trace.py writes a `request` line per agent message, then a `reply` (or `failed`) line; both
carry the same `call_id`. The benchmark pairs them by that id and nothing else: with m queries per
level a node has several messages of one agent in flight at once and their replies come back in
any order, so position or time cannot say which reply answers which request. A trace without ids
(one written before they existed) is refused with a `TraceError` that says so, not paired by guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

Line = dict[str, Any]
DIRECTIONS = ("request", "reply", "failed")


class TraceError(ValueError):
    """A trace the benchmark cannot read as calls (a line without `call_id`, a reply without request)."""


def stamp(line: Line) -> float:
    """A trace line's time, seconds on the wall clock."""
    return datetime.fromisoformat(line["timestamp"]).timestamp()


def read_trace(path: Path) -> list[Line]:
    """Every JSON line of a trace file, in file order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Call:
    """One agent message: its request line and its reply or failure (`end`; None when it was cancelled)."""

    agent: str
    call_id: str
    request: Line
    end: Line | None

    @property
    def query(self) -> str | None:
        """The query the message is about: every request that has one carries it (criteria, curator,
        policy, judge); replies of policy, judge and curator do not."""
        for line in (self.request, self.end or {}):
            query = (line.get("message") or {}).get("query")
            if query is not None:
                return query
        return None

    def context(self, key: str) -> Any:
        """A contextvar of the call (`node_id`, `level`, `beam`): the request's, as the graph bound it."""
        return self.request.get(key, (self.end or {}).get(key))

    @property
    def latency_s(self) -> float:
        """The reply's `latency_s`: from the agent's request to its reply as the graph saw it (0 if cancelled)."""
        return float((self.end or {}).get("latency_s") or 0.0)

    @property
    def engine_calls(self) -> int:
        """Engine requests the reply reports (0 for a cache hit, a failure or a cancelled message)."""
        return int((self.end or {}).get("calls") or 0)

    @property
    def started(self) -> float:
        return stamp(self.request)

    @property
    def ended(self) -> float | None:
        return None if self.end is None else stamp(self.end)


def calls_of(lines: list[Line]) -> list[Call]:
    """The agent messages of a trace, in the order their requests were written.

    Raises `TraceError` for an agent line without `call_id`, an id requested twice, or a reply or
    failure whose id no request carries."""
    requests: dict[str, Line] = {}
    ends: dict[str, Line] = {}
    for number, line in enumerate(lines, start=1):
        agent, direction = line.get("agent"), line.get("direction")
        if agent is None or direction not in DIRECTIONS:
            continue
        call_id = line.get("call_id")
        if not call_id:
            raise TraceError(f"trace line {number} ({agent} {direction}) has no call_id: the benchmark pairs a "
                             "reply with its request by call_id; use a trace written by a DRPO that records it")
        seen = requests if direction == "request" else ends
        if call_id in seen:
            raise TraceError(f"trace line {number}: call_id {call_id!r} has two {direction} lines")
        seen[call_id] = line
    orphans = sorted(set(ends) - set(requests))
    if orphans:
        raise TraceError(f"{len(orphans)} replies have no request line with their call_id (first: {orphans[0]!r})")
    calls = [Call(agent=line["agent"], call_id=call_id, request=line, end=ends.get(call_id))
             for call_id, line in requests.items()]
    return sorted(calls, key=lambda call: call.started)
