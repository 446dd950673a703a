"""The critical-path bound (bench/critical_path.py) of hand-made traces whose numbers are worked out by hand."""

from __future__ import annotations

import json

import pytest

from bench.critical_path import critical_path
from bench.trace_calls import TraceError, read_trace
from tests.bench.traces import candidate_lines, hand_made_trace, in_time_order, line_pair


def test_critical_path_of_a_hand_made_trace():
    path = critical_path(hand_made_trace())
    assert path.root_end_s == pytest.approx(1.3)
    assert [lb.level for lb in path.levels] == [0, 1]
    level0, level1 = path.levels
    assert (level0.start, level0.end, level0.candidates) == (pytest.approx(1.3), pytest.approx(2.7), 2)
    assert level0.critical_node == "L0.b0.c1"
    assert (level1.start, level1.end, level1.candidates) == (pytest.approx(2.7), pytest.approx(3.5), 3)
    assert level1.critical_node == "L1.b0.c0"
    assert level1.chain["criteria_wait"] == pytest.approx(0.1) and level1.chain["rewriter"] == pytest.approx(0.3)
    assert path.bound_s == pytest.approx(3.5)
    assert path.call_time_s == pytest.approx(1.0 + 0.2 + 3.3 + 0.5 + 0.3 + 0.4 + 1.5 + 0.3 + 0.8 + 0.3 + 0.35 + 0.0)
    assert (path.calls, path.unanswered) == (len(hand_made_trace()) // 2, 0)


def test_the_critical_path_reads_a_real_trace_file(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(json.dumps(line) for line in hand_made_trace()) + "\n")
    assert critical_path(read_trace(trace)).bound_s == pytest.approx(3.5)


# --- minibatch mode: m = 2 queries per candidate, each on its own chain ----------------------------


def minibatch_trace() -> list[dict]:
    """m = 2, laid out like a real trace (lines in time order, so replies come back out of request order).

    Criteria from t = 0: q0 0.5, q1 1.2, q2 0.1, q3 0.1, q4 0.2, q5 4.5 s.
    root (block q0, q1), ready 0:
        q0: max(curator 0.01 + policy 0.6 = 0.61, C 0.5) + judge 0.3          = 0.91
        q1: max(policy 0.4, C 1.2) + judge 0.2                                 = 1.4   -> E_root = 1.4 (q1)
    level 0 (block q2, q3), one parent, rewrite 0.5: ready 1.9
        L0.b0.c0  q2: 1.9 + policy 1.1 = 3.0, + judge 0.2 = 3.2;  q3: 1.9 + 0.7 + 0.3 = 2.9  -> 3.2
        L0.b0.c1  q2: 1.9 + 0.3 + 0.4 = 2.6;                      q3: 1.9 + 0.9 + 0.5 = 3.3  -> 3.3
        E_0 = 3.3 (L0.b0.c1, query 1). Summing a candidate's calls into one chain would give
        c0 = 1.9 + 1.8 + 0.5 = 4.2: the chains of one candidate overlap.
    level 1 (block q4, q5), S_1 = 3.3; parent b0 rewrite 0.3 (ready 3.6), b1 rewrite 0.6 (ready 3.9)
        L1.b0.c0  q4: 3.6 + 0.5 + 0.3 = 4.4;  q5: max(3.6 + 0.4 = 4.0, C 4.5) + 0.2 = 4.7            -> 4.7
        L1.b1.c0  q4: 3.9 + 0.6 + 0.3 = 4.8;  q5: max(3.9 + 0.2, 4.5) + 0.1 = 4.6                    -> 4.8
        L1.b1.c1  q4: policy fails after 0.05 = 3.95, no judge; q5: cancelled, no reply = 3.9      -> 3.95
        E_1 = 4.8 (L1.b1.c0, query 0) = the bound.
    """
    lines: list[dict] = []
    for query, latency in (("q0", 0.5), ("q1", 1.2), ("q2", 0.1), ("q3", 0.1), ("q4", 0.2), ("q5", 4.5)):
        lines += line_pair("criteria", 0.0, latency, ask={"query": query}, answer={"query": query})
    root = {"level": -1, "node_id": "root"}
    lines += candidate_lines(0.0, [("q0", 0.6, 0.3, 0.01), ("q1", 0.4, 0.2)], **root)
    lines += line_pair("rewriter", 1.41, 0.5, level=0, beam=0, parent_id="root")
    for cand, chains in ((0, [("q2", 1.1, 0.2), ("q3", 0.7, 0.3)]), (1, [("q2", 0.3, 0.4), ("q3", 0.9, 0.5)])):
        lines += candidate_lines(1.92, chains, level=0, beam=0, candidate=cand, node_id=f"L0.b0.c{cand}")
    lines += line_pair("rewriter", 3.31, 0.3, level=1, beam=0, parent_id="L0.b0.c1")
    lines += line_pair("rewriter", 3.31, 0.6, level=1, beam=1, parent_id="L0.b0.c0")
    for beam, cand, ready, chains in ((0, 0, 3.62, [("q4", 0.5, 0.3), ("q5", 0.4, 0.2)]),
                                      (1, 0, 3.92, [("q4", 0.6, 0.3), ("q5", 0.2, 0.1)]),
                                      (1, 1, 3.93, [("q4", 0.05, None), ("q5", None, None)])):
        lines += candidate_lines(ready, chains, level=1, beam=beam, candidate=cand, node_id=f"L1.b{beam}.c{cand}")
    return in_time_order(lines)


def test_critical_path_with_two_queries_per_level():
    lines = minibatch_trace()
    path = critical_path(lines)
    assert path.root_end_s == pytest.approx(1.4)
    assert (path.root_queries, path.root_critical_query) == (2, 1)
    assert path.root_chain["criteria_wait"] == pytest.approx(0.8)
    level0, level1 = path.levels
    assert (level0.start, level0.end, level0.candidates, level0.queries) == (
        pytest.approx(1.4), pytest.approx(3.3), 2, 2)
    assert (level0.critical_node, level0.critical_query) == ("L0.b0.c1", 1)
    assert level0.chain == pytest.approx({"rewriter": 0.5, "curator": 0.0, "policy": 0.9, "criteria_wait": 0.0,
                                          "judge": 0.5})
    assert (level1.start, level1.end, level1.candidates) == (pytest.approx(3.3), pytest.approx(4.8), 3)
    assert (level1.critical_node, level1.critical_query) == ("L1.b1.c0", 0)
    assert path.bound_s == pytest.approx(4.8)
    calls = 6.6 + (0.6 + 0.4) + (0.3 + 0.2) + (0.5 + 0.3 + 0.6) + (1.1 + 0.7 + 0.3 + 0.9) + (0.2 + 0.3 + 0.4 + 0.5) \
        + (0.5 + 0.4 + 0.6 + 0.2) + (0.3 + 0.2 + 0.3 + 0.1)
    assert path.call_time_s == pytest.approx(calls)
    assert path.unanswered == 1  # L1.b1.c1's q5 policy, cancelled when its sibling failed


def test_a_candidate_ends_with_its_slowest_chain_whatever_the_reply_order():
    """L0.b0.c0's first query answers last: its chain (1.1 + 0.2), not the first reply's, sets c0's end."""
    lines = [l for l in minibatch_trace() if l.get("level") in (None, -1, 0) and l.get("node_id") != "L0.b0.c1"]
    replies = [l["message"]["text"] for l in lines if l.get("node_id") == "L0.b0.c0" and l["agent"] == "policy"
               and l["direction"] == "reply"]
    assert replies == ["answer to q3 by L0.b0.c0", "answer to q2 by L0.b0.c0"]  # out of request order
    path = critical_path(lines)
    (level0,) = path.levels
    assert (level0.critical_node, level0.critical_query, level0.end) == ("L0.b0.c0", 0, pytest.approx(3.2))
    assert level0.chain["policy"] == pytest.approx(1.1) and level0.chain["judge"] == pytest.approx(0.2)


def test_replies_are_matched_by_call_id_even_when_their_times_say_otherwise():
    """Two policy requests of the root written at the same instant: only the id says which reply is
    q0's. q0's policy takes 0.9 s and sets the bound; q1's 0.1 s does not."""
    lines = []
    for query in ("q0", "q1"):
        lines += line_pair("criteria", 0.0, 0.0, ask={"query": query}, answer={"query": query})
    slow = line_pair("policy", 0.0, 0.9, ask={"query": "q0"}, answer={"text": "slow"}, level=-1, node_id="root")
    fast = line_pair("policy", 0.0, 0.1, ask={"query": "q1"}, answer={"text": "fast"}, level=-1, node_id="root")
    lines += in_time_order([slow[0], fast[0], fast[1], slow[1]])
    path = critical_path(lines)
    assert path.root_end_s == pytest.approx(0.9)
    assert (path.root_critical_query, path.root_chain["policy"]) == (0, pytest.approx(0.9))


def test_a_trace_without_agent_messages_has_no_bound():
    with pytest.raises(TraceError, match="no agent messages"):
        critical_path([{"event": "run.start", "timestamp": "2026-01-01T00:00:00Z"}])
