"""Reading a trace as calls (bench/trace_calls.py): a request and its end share a `call_id`, nothing else pairs them."""

from __future__ import annotations

import pytest

from bench.trace_calls import TraceError, calls_of
from tests.bench.traces import line_pair


def test_each_request_gets_the_reply_with_its_id_in_request_order():
    first = line_pair("policy", 0.0, 0.5, ask={"query": "a"}, answer={"text": "A"}, node_id="root")
    second = line_pair("policy", 0.1, 0.1, ask={"query": "b"}, answer={"text": "B"}, node_id="root")
    calls = calls_of([second[1], first[0], second[0], first[1]])  # file order: not request order
    assert [(c.query, c.end["message"]["text"], c.latency_s) for c in calls] == [("a", "A", 0.5), ("b", "B", 0.1)]
    assert calls[0].context("node_id") == "root" and calls[0].engine_calls == 1


def test_a_cancelled_request_is_a_call_without_an_end_and_a_failure_made_no_engine_call():
    cancelled = line_pair("judge", 0.0, None, ask={"query": "a"})
    failed = line_pair("policy", 0.0, 0.2, ask={"query": "a"}, failed=True)
    calls = calls_of(cancelled + failed)
    assert [(c.agent, c.end is None, c.latency_s, c.engine_calls) for c in calls] == [
        ("judge", True, 0.0, 0), ("policy", False, 0.2, 0)]


def test_lines_that_are_not_agent_messages_are_left_out():
    request, reply = line_pair("criteria", 0.0, 0.1)
    fault = {"event": "engine.fault", "agent": "criteria", "call_id": request["call_id"], "kind": "timeout",
             "timestamp": request["timestamp"]}  # an attempt inside the call: same id, no direction
    lines = [{"event": "level.done", "timestamp": "2026-01-01T00:00:00Z"}, request, fault, reply]
    assert [(c.agent, c.end) for c in calls_of(lines)] == [("criteria", reply)]


def test_a_trace_without_call_ids_is_refused_with_one_line_naming_the_line():
    lines = line_pair("policy", 0.0, 0.5)
    del lines[1]["call_id"]
    with pytest.raises(TraceError, match=r"trace line 2 \(policy reply\) has no call_id"):
        calls_of(lines)


def test_a_reply_whose_id_no_request_carries_is_refused():
    request, reply = line_pair("judge", 0.0, 0.5)
    with pytest.raises(TraceError, match="1 replies have no request line"):
        calls_of([reply])
    with pytest.raises(TraceError, match="two request lines"):
        calls_of([request, dict(request), reply])
