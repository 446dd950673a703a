"""Hand-made trace lines, shaped like graph/trace.py writes them: a request and its reply (or
failure) carry the same `call_id`; requests carry their query, policy/judge/curator replies do not."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count()


def stamp(t: float) -> str:
    return (T0 + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")


def line_pair(agent: str, at: float, latency: float | None, *, ask: dict | None = None, answer: dict | None = None,
              calls: int = 1, failed: bool = False, **context) -> list[dict]:
    """A request at `at` carrying `ask` as its message, and its reply `latency` later carrying `answer`.
    `latency` None: the request was cancelled and has no reply line."""
    call_id = f"c{next(_ids)}"
    lines = [{"agent": agent, "direction": "request", "call_id": call_id, "timestamp": stamp(at),
              "message": ask or {}, **context}]
    if latency is not None:
        reply = {"agent": agent, "direction": "failed" if failed else "reply", "call_id": call_id,
                 "latency_s": latency, "timestamp": stamp(at + latency), **context}
        if not failed:
            reply |= {"calls": calls, "message": answer or {}}
        lines.append(reply)
    return lines


def message(agent: str, latency: float, at: float, *, calls: int = 1, query: str | None = None,
            failed: bool = False, **context) -> list[dict]:
    """A request line at `at` and its reply (or failure) `latency` later; `query` on both when given."""
    ask = {"query": query} if query is not None else None
    return line_pair(agent, at, latency, ask=ask, answer=ask, calls=calls, failed=failed, **context)


def candidate_lines(ready: float, queries: list[tuple], **context) -> list[dict]:
    """One candidate (or the root) answering its block, as `evaluate_block` does: query i starts at
    ready + 1 ms x i (criteria lookup, curator, then policy); its judge starts when its answer lands.
    Each entry: (query, policy latency or None if cancelled, judge latency or None if none[, curator]);
    a policy with no judge and a latency under 0.1 s failed."""
    lines: list[dict] = []
    for i, (query, policy, judge, *curator) in enumerate(queries):
        at, retrieval = ready + 0.001 * i, (curator or [0.0])[0]
        lines += line_pair("criteria", at, 0.0, ask={"query": query}, answer={"query": query}, calls=0, **context)
        lines += line_pair("curator", at, retrieval, ask={"query": query}, answer={"examples": []}, calls=0,
                           **context)
        text = f"answer to {query} by {context.get('node_id')}"
        failed = policy is not None and judge is None and policy < 0.1
        lines += line_pair("policy", at + retrieval, policy, ask={"query": query}, answer={"text": text},
                           failed=failed, **context)
        if judge is not None:
            lines += line_pair("judge", at + retrieval + policy + 0.0005, judge, ask={"query": query, "response": text},
                               answer={"reward": 0.5}, **context)
    return lines


def in_time_order(lines: list[dict]) -> list[dict]:
    """The lines as a trace file holds them: by timestamp (replies out of request order)."""
    return sorted(lines, key=lambda line: datetime.fromisoformat(line["timestamp"]))


def hand_made_trace() -> list[dict]:
    """Root on q0, level 0 (one parent, two children) on q1, level 1 (two parents) on q2.

    Selections, all from t = 0: q0 1.0 s, q1 0.2 s, q2 3.3 s (slow: level 1 waits for it).
    root:    max(C[q0] = 1.0, curator 0.01 + policy 0.5) + judge 0.3                 = 1.3
    level 0: L0.b0.c0 = 1.3 + rewrite 0.4 + policy 0.6 = 2.3, + judge 0.2           = 2.5
             L0.b0.c1 = 1.3 + 0.4 + policy 0.9 = 2.6, + judge 0.1                   = 2.7  -> E_0 = 2.7
    level 1: L1.b0.c0 = 2.7 + rewrite 0.3 + policy 0.2 = 3.2; max(3.2, 3.3) + 0.2    = 3.5
             L1.b1.c0 = 2.7 + rewrite 0.5 + policy 0.1 = 3.3; max(3.3, 3.3) + 0.15   = 3.45
             L1.b1.c1 = 2.7 + 0.5 + policy failed after 0.05, no judgement          = 3.25 -> E_1 = 3.5
    """
    lines: list[dict] = []
    for query, latency in (("q0", 1.0), ("q1", 0.2), ("q2", 3.3)):
        lines += message("criteria", latency, 0.0, query=query)
    root = {"level": -1, "node_id": "root"}
    lines += message("criteria", 1.0, 0.01, calls=0, query="q0", **root)
    lines += message("curator", 0.01, 0.01, calls=0, query="q0", **root)
    lines += message("policy", 0.5, 0.02, query="q0", **root)
    lines += message("judge", 0.3, 1.05, query="q0", **root)
    lines += message("rewriter", 0.4, 1.4, level=0, beam=0, parent_id="root")
    for cand, policy, judge in ((0, 0.6, 0.2), (1, 0.9, 0.1)):
        ctx = {"level": 0, "beam": 0, "candidate": cand, "node_id": f"L0.b0.c{cand}"}
        lines += message("criteria", 0.0, 1.8, calls=0, query="q1", **ctx)
        lines += message("curator", 0.0, 1.8, calls=0, query="q1", **ctx)
        lines += message("policy", policy, 1.8, query="q1", **ctx)
        lines += message("judge", judge, 1.8 + policy, query="q1", **ctx)
    lines += message("rewriter", 0.3, 2.9, level=1, beam=0, parent_id="L0.b0.c1")
    lines += message("rewriter", 0.5, 2.9, level=1, beam=1, parent_id="L0.b0.c0")
    for beam, cand, policy, judge in ((0, 0, 0.2, 0.2), (1, 0, 0.1, 0.15), (1, 1, 0.05, None)):
        ctx = {"level": 1, "beam": beam, "candidate": cand, "node_id": f"L1.b{beam}.c{cand}"}
        lines += message("criteria", 0.1, 3.5, calls=0, query="q2", **ctx)
        lines += message("curator", 0.0, 3.5, calls=0, query="q2", **ctx)
        lines += message("policy", policy, 3.5, failed=judge is None, query="q2", **ctx)
        if judge is not None:
            lines += message("judge", judge, 3.7, query="q2", **ctx)
    return lines
