"""The critical-path lower bound of a run, from its own trace: how fast this search could have been.

The trace has a `request` and a `reply` (or `failed`) line per agent message, paired by `call_id`
(bench/trace_calls.py); the reply carries `latency_s`, the time from the agent's request to its
reply as the graph saw it (the HTTP round trip, validation and any retries included). The
*duration* of a message is that `latency_s`. Messages are tied to the search by their
contextvars: `node_id` "root" (level -1) for the root's evaluation; `level`, `beam` for a node's
rewrite; `node_id` `L<l>.b<b>.c<c>` for a candidate's criteria lookups, curator, policy and judge
messages. With m queries per level a candidate (and the root) sends m of each, under the same
`node_id`; each request carries its query.

The bound is the finish time of an ideal schedule of exactly the calls this run made, with exactly
these durations, on an engine with unlimited capacity and an orchestrator with zero overhead, that
respects every data dependency of the algorithm (drpo-method.md §4):

- **criteria**: a selection depends on the query text only, so every selection may start at t = 0
  (the run prefetches the first D blocks at its start; a bound may assume the same for the rest).
  Its duration is the latency of the criteria message that made the call (`calls` >= 1; the
  lookups that found it cached or pending have `calls` = 0 and are not durations). `C[q]` = that
  duration (0 when no call was made for q).
- **a query's chain**: a candidate n (or the root) answers each query q of its block on its own
  chain, which starts when n's prompt is known (`ready`):

      end(n, q) = max(ready + curator(n, q) + policy(n, q),  C[q]) + judge(n, q)

  A chain whose policy call failed has no judge term (`ready + curator + policy`); missing
  messages count 0 (siblings cancelled by a failure have no reply).
- **a candidate** ends when the slowest of its m chains ends: `end(n) = max_q end(n, q)`.
- **root**: `ready = 0`, over the queries of block 0: `E_root = max_q end(root, q)`.
- **level l** (one per expansion level, in order) starts at `S_l = E_(l-1)` (`E_-1 = E_root`): a
  level needs the previous level's top-B, which needs every judgement of that level. A candidate
  n = `L<l>.b<b>.c<c>` is ready at `S_l + rewrite(l, b)`, where `rewrite(l, b)` is the duration of
  the rewriter message of parent b (0 for a skip, which makes no call); its queries are block l+1.
  `E_l = max_n end(n)` (`S_l + rewrite` for a level without candidates).
- **bound** = `E_last`, measured from the start of the search (t = 0), so bound <= wall always.

With m = 1 this is one chain per candidate, as in the paper's setting.

The bound charges no time to what the algorithm does between calls (keep_top, checkpoints, trace
lines), nor to waiting for a concurrency slot; both are overhead the efficiency is meant to expose.
Because durations come from this run, the batch-size effect of the engine (a decode step grows with
the sequences in flight) is in them, as it would be in any schedule that overlaps the same calls.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from bench.trace_calls import Call, Line, TraceError, calls_of, stamp

Chain = dict[str, float]


@dataclass
class LevelBound:
    level: int
    start: float
    """S_l: when the level may start in the ideal schedule (s from the search's start)."""
    end: float
    """E_l."""
    candidates: int
    critical_node: str | None
    """The candidate whose chain sets E_l."""
    critical_query: int | None = None
    """Which of that candidate's queries (0 .. m-1, in request order) has the slowest chain."""
    queries: int = 1
    """Query chains per candidate (m)."""
    chain: Chain = field(default_factory=dict)
    """Durations along the critical candidate's chain, by agent."""
    actual_s: float | None = None
    """The same level in the real run: its first rewriter request to its last reply."""


@dataclass
class CriticalPath:
    bound_s: float
    root_end_s: float
    levels: list[LevelBound]
    search_span_s: float
    """The real run: first trace line to last trace line."""
    first_stamp: float
    last_stamp: float
    call_time_s: float
    """Sum of the durations of every engine call (what one-at-a-time would at least take)."""
    root_queries: int = 1
    root_critical_query: int | None = None
    root_chain: Chain = field(default_factory=dict)
    calls: int = 0
    """Agent messages read from the trace (request lines)."""
    unanswered: int = 0
    """Of those, how many have no reply or failure line (cancelled when a sibling failed)."""


class _Durations:
    """The trace's calls indexed for the schedule: criteria per query, rewrites per (level, beam),
    curator/policy/judge per (agent, node, query), and each node's queries in request order."""

    def __init__(self, calls: list[Call]) -> None:
        self.criteria: dict[str, float] = {}
        self.rewrites: dict[tuple[int, int], float] = {}
        self.by_node: dict[tuple[str, str, str], float] = {}
        self.queries: dict[str, list[str]] = defaultdict(list)
        self.children: dict[int, set[str]] = defaultdict(set)
        for call in calls:
            self._add(call)

    def _add(self, call: Call) -> None:
        node, query = call.context("node_id"), call.query
        if call.agent == "rewriter":
            if call.end is not None:
                self.rewrites[(int(call.context("level")), int(call.context("beam") or 0))] = call.latency_s
            return
        if call.agent == "criteria" and call.engine_calls:
            key = query or ""
            self.criteria[key] = max(self.criteria.get(key, 0.0), call.latency_s)
        if node is None:
            return
        if query is not None and query not in self.queries[node]:
            self.queries[node].append(query)
        if call.agent == "criteria":
            return
        if call.agent == "policy" and node != "root":
            self.children[int(call.context("level"))].add(node)
        key3 = (call.agent, node, query or "")
        if call.end is not None:
            self.by_node[key3] = self.by_node.get(key3, 0.0) + call.latency_s

    def query_end(self, node: str, query: str, ready: float) -> tuple[float, Chain]:
        """One query's chain of a candidate (or the root): curator + policy, then the judge once the
        answer and the query's criteria are both there."""
        parts = {"curator": self.by_node.get(("curator", node, query), 0.0),
                 "policy": self.by_node.get(("policy", node, query), 0.0)}
        answered = ready + parts["curator"] + parts["policy"]
        if ("judge", node, query) not in self.by_node:
            return answered, parts
        criteria = self.criteria.get(query, 0.0)
        parts["criteria_wait"] = max(0.0, criteria - answered)
        parts["judge"] = self.by_node[("judge", node, query)]
        return max(answered, criteria) + parts["judge"], parts

    def node_end(self, node: str, ready: float) -> tuple[float, int | None, Chain]:
        """A candidate ends when the slowest of its m query chains ends: (end, which query, its chain)."""
        known = self.queries.get(node) or [""]
        extra = sorted({q for (_, n, q) in self.by_node if n == node} - set(known))  # requests without a query
        best: tuple[float, int | None, Chain] = (ready, None, {})
        for index, query in enumerate(known + extra):
            end, parts = self.query_end(node, query, ready)
            if best[1] is None or end > best[0]:
                best = (end, index, parts)
        return best


def _actual(calls: list[Call], level: int) -> float | None:
    """The real level: its first rewriter request to the last reply at that level."""
    starts = [c.started for c in calls if c.agent == "rewriter" and c.context("level") == level]
    ends = [c.ended for c in calls if c.context("level") == level and c.ended is not None]
    return max(ends) - min(starts) if starts and ends else None


def _level(durations: _Durations, calls: list[Call], level: int, start: float) -> LevelBound:
    """Level l of the ideal schedule, starting at S_l = `start`."""
    best_end, best_node, best_query, best_chain = None, None, None, {}
    nodes = durations.children.get(level, set())
    for node in sorted(nodes):
        beam = int(node.split(".b", 1)[1].split(".", 1)[0])
        rewrite = durations.rewrites.get((level, beam), 0.0)
        end, query, parts = durations.node_end(node, start + rewrite)
        if best_end is None or end > best_end:
            best_end, best_node, best_query, best_chain = end, node, query, {"rewriter": rewrite, **parts}
    if best_end is None:
        best_end = start + max((v for (lvl, _), v in durations.rewrites.items() if lvl == level), default=0.0)
    return LevelBound(level=level, start=start, end=best_end, candidates=len(nodes), critical_node=best_node,
                      critical_query=best_query, chain=best_chain, actual_s=_actual(calls, level),
                      queries=max((len(durations.queries.get(n) or [""]) for n in nodes), default=0))


def critical_path(lines: list[Line]) -> CriticalPath:
    """The critical-path lower bound of a run from its trace lines (see the module docstring)."""
    calls = calls_of(lines)
    if not calls:
        raise TraceError("the trace has no agent messages (request lines with a call_id): nothing to bound")
    durations = _Durations(calls)
    root_end, root_query, root_chain = durations.node_end("root", 0.0)
    start, levels = root_end, []
    for level in sorted(set(durations.children) | {lvl for lvl, _ in durations.rewrites}):
        levels.append(_level(durations, calls, level, start))
        start = levels[-1].end
    stamps = [stamp(line) for line in lines if "timestamp" in line]
    return CriticalPath(
        bound_s=start, root_end_s=root_end, levels=levels,
        search_span_s=max(stamps) - min(stamps) if stamps else 0.0,
        first_stamp=min(stamps, default=0.0), last_stamp=max(stamps, default=0.0),
        call_time_s=sum(c.latency_s for c in calls if c.engine_calls),
        root_queries=len(durations.queries.get("root") or [""]), root_critical_query=root_query,
        root_chain=root_chain, calls=len(calls), unanswered=sum(c.end is None for c in calls))
