"""The simulated batching engine (bench/sim_engine.py) and the benchmark's critical-path bound."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bench.run_bench import critical_path, engine_stats
from bench.sim_engine import SimParams, SimServer, schema_instance
from schemas.catalogue import AspectCatalogue
from schemas.outputs import CriteriaOutput, RewriteOutput, judge_output_type

FAST = {"ttft_s": 0.0, "prefill_s_per_token": 0.0, "decode_step_s": 0.0005, "text_tokens": 37, "string_tokens": 12}


@pytest.fixture(scope="module")
def sim():
    with SimServer(SimParams(**FAST)) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_params(sim):
    sim.engine.params.update(FAST)
    sim.reset()


def chat(sim, content: str = "hello there", **body):
    reply = httpx.post(f"{sim.base_url}/chat/completions", timeout=30,
                       json={"model": "sim", "messages": [{"role": "user", "content": content}], **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def json_schema_format(schema: dict, name: str = "out") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}


def test_a_text_request_gets_text_of_the_set_length_and_honest_usage(sim):
    body = chat(sim, content="x" * 41)
    text = body["choices"][0]["message"]["content"]
    assert len(text) == 37 * 4
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 37, "total_tokens": 48}  # ceil(41 / 4)
    assert body["choices"][0]["finish_reason"] == "stop"
    capped = chat(sim, max_tokens=5)
    assert capped["usage"]["completion_tokens"] == 5 and capped["choices"][0]["finish_reason"] == "length"
    assert len(sim.log) == 2 and sim.log[0]["completion_tokens"] == 37


def test_structured_requests_get_valid_instances_of_the_schema(sim):
    rewrite = chat(sim, response_format=json_schema_format(RewriteOutput.model_json_schema()))
    parsed = RewriteOutput.model_validate_json(rewrite["choices"][0]["message"]["content"])
    assert len(parsed.new_system_prompt) == 12 * 4

    judge_type = judge_output_type(("Clarity", "Helpfulness", "Safety"))
    judged = chat(sim, response_format=json_schema_format(judge_type.model_json_schema(by_alias=True)))
    verdict = judge_type.model_validate_json(judged["choices"][0]["message"]["content"])
    assert [verdict.aspect_0.score, verdict.aspect_1.score, verdict.aspect_2.score] == [3, 3, 3]
    assert judged["usage"]["completion_tokens"] == -(-len(judged["choices"][0]["message"]["content"]) // 4)

    names = AspectCatalogue.load().names
    criteria = chat(sim, response_format={"type": "json_object", "schema": CriteriaOutput.schema_for(names)})
    selection = CriteriaOutput.model_validate_json(criteria["choices"][0]["message"]["content"])
    assert selection.aspects_selection.selected_aspects == names[:2]


def test_completions_with_structured_outputs_extra_body(sim):
    reply = httpx.post(f"{sim.base_url}/completions", timeout=30, json={
        "model": "sim", "prompt": "p" * 8, "structured_outputs": {"json": RewriteOutput.model_json_schema()}})
    body = reply.json()
    RewriteOutput.model_validate_json(body["choices"][0]["text"])
    assert body["object"] == "text_completion" and body["usage"]["prompt_tokens"] == 2


def test_n_samples_decode_side_by_side_and_differ(sim):
    sim.engine.params.update({"decode_step_s": 0.002, "text_tokens": 50})
    started = time.perf_counter()
    one = chat(sim)
    single = time.perf_counter() - started
    started = time.perf_counter()
    three = chat(sim, n=3, response_format=json_schema_format(RewriteOutput.model_json_schema()))
    triple = time.perf_counter() - started
    prompts = [RewriteOutput.model_validate_json(c["message"]["content"]).new_system_prompt for c in three["choices"]]
    assert len(prompts) == 3 and len(set(prompts)) == 3  # distinct samples, as a rewriter needs
    each = -(-len(three["choices"][0]["message"]["content"]) // 4)
    assert three["usage"]["completion_tokens"] == 3 * each
    assert one["usage"]["completion_tokens"] == 50
    assert triple < 2 * single  # side by side: set by the longest sample, not the sum
    assert sim.log[-1]["n"] == 3


def test_latency_grows_with_output_tokens(sim):
    sim.engine.params.update({"decode_step_s": 0.002, "text_tokens": 1000})
    times = {}
    for tokens in (10, 150):
        started = time.perf_counter()
        chat(sim, max_tokens=tokens)
        times[tokens] = time.perf_counter() - started
    assert times[150] > times[10] + 0.2  # 140 more steps of 2 ms
    assert times[150] < 1.0


def test_many_requests_in_flight_batch_together(sim):
    sim.engine.params.update({"decode_step_s": 0.002, "text_tokens": 50})

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
            replies = await asyncio.gather(*(client.post(f"{sim.base_url}/chat/completions", json=body)
                                             for _ in range(300)))
        return [r.status_code for r in replies]

    assert set(asyncio.run(burst())) == {200}
    log = sim.log
    assert len(log) == 300
    assert max(r["in_flight_start"] for r in log) > 100  # batched, not one after another
    stats = engine_stats(log, min(r["start"] for r in log), max(r["end"] for r in log))
    assert stats["requests"] == 300 and stats["busy_fraction"] == pytest.approx(1.0)


def test_schema_instance_covers_refs_enums_arrays_and_bounds():
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"k": {"type": "integer", "minimum": 7}}}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 2},
            "mode": {"enum": ["a", "b"]},
            "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 3}]},
            "flag": {"type": "boolean"},
        },
    }
    value = schema_instance(schema, string_chars=40, salt="s")
    assert value == {"items": [{"k": 7}, {"k": 7}], "mode": "a", "score": 3, "maybe": "s a", "flag": True}


def test_engine_stats_from_a_hand_made_log():
    log = [{"start": 0.0, "end": 2.0}, {"start": 1.0, "end": 3.0}, {"start": 5.0, "end": 6.0}]
    stats = engine_stats(log, 0.0, 10.0)
    assert stats["peak_in_flight"] == 2
    assert stats["busy_s"] == pytest.approx(4.0) and stats["busy_fraction"] == pytest.approx(0.4)
    assert stats["mean_in_flight"] == pytest.approx(5.0 / 10.0)
    assert stats["mean_in_flight_when_busy"] == pytest.approx(5.0 / 4.0)


# --- the critical path on a hand-made trace --------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def message(agent: str, latency: float, at: float, *, calls: int = 1, query: str | None = None,
            failed: bool = False, **context) -> list[dict]:
    """A request line at `at` and its reply (or failure) `latency` later, like graph/trace.py writes."""
    def stamp(t: float) -> str:
        return (T0 + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")

    request = {"agent": agent, "direction": "request", "timestamp": stamp(at), **context}
    reply = {"agent": agent, "direction": "failed" if failed else "reply", "latency_s": latency,
             "timestamp": stamp(at + latency), **context}
    if not failed:
        reply["calls"] = calls
    if query is not None:
        request["message"] = {"query": query}
        if not failed:
            reply["message"] = {"query": query}
    return [request, reply]


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
    lines += message("curator", 0.01, 0.01, calls=0, **root)
    lines += message("policy", 0.5, 0.02, **root)
    lines += message("judge", 0.3, 1.05, **root)
    lines += message("rewriter", 0.4, 1.4, level=0, beam=0, parent_id="root")
    for cand, policy, judge in ((0, 0.6, 0.2), (1, 0.9, 0.1)):
        ctx = {"level": 0, "beam": 0, "candidate": cand, "node_id": f"L0.b0.c{cand}"}
        lines += message("criteria", 0.0, 1.8, calls=0, query="q1", **ctx)
        lines += message("curator", 0.0, 1.8, calls=0, **ctx)
        lines += message("policy", policy, 1.8, **ctx)
        lines += message("judge", judge, 1.8 + policy, **ctx)
    lines += message("rewriter", 0.3, 2.9, level=1, beam=0, parent_id="L0.b0.c1")
    lines += message("rewriter", 0.5, 2.9, level=1, beam=1, parent_id="L0.b0.c0")
    for beam, cand, policy, judge in ((0, 0, 0.2, 0.2), (1, 0, 0.1, 0.15), (1, 1, 0.05, None)):
        ctx = {"level": 1, "beam": beam, "candidate": cand, "node_id": f"L1.b{beam}.c{cand}"}
        lines += message("criteria", 0.1, 3.5, calls=0, query="q2", **ctx)
        lines += message("curator", 0.0, 3.5, calls=0, **ctx)
        lines += message("policy", policy, 3.5, failed=judge is None, **ctx)
        if judge is not None:
            lines += message("judge", judge, 3.7, **ctx)
    return lines


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


def test_the_critical_path_reads_a_real_trace_file(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(json.dumps(line) for line in hand_made_trace()) + "\n")
    from bench.run_bench import read_trace

    assert critical_path(read_trace(trace)).bound_s == pytest.approx(3.5)


# --- minibatch mode: m = 2 queries per candidate, each on its own chain ----------------------------


def line_pair(agent: str, at: float, latency: float | None, *, ask: dict | None = None, answer: dict | None = None,
              calls: int = 1, failed: bool = False, **context) -> list[dict]:
    """A request at `at` carrying `ask` as its message, and its reply `latency` later carrying `answer`
    (what graph/trace.py writes: requests carry the query, policy/judge/curator replies do not).
    `latency` None: the request was cancelled and has no reply line."""
    def stamp(t: float) -> str:
        return (T0 + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")

    lines = [{"agent": agent, "direction": "request", "timestamp": stamp(at), "message": ask or {}, **context}]
    if latency is not None:
        reply = {"agent": agent, "direction": "failed" if failed else "reply", "latency_s": latency,
                 "timestamp": stamp(at + latency), **context}
        if not failed:
            reply |= {"calls": calls, "message": answer or {}}
        lines.append(reply)
    return lines


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
    return sorted(lines, key=lambda line: datetime.fromisoformat(line["timestamp"]))


def test_critical_path_with_two_queries_per_level():
    lines = minibatch_trace()
    curator = [l for l in lines if l["agent"] == "curator" and l.get("node_id") == "root" and l["direction"] == "reply"]
    assert sorted(l["latency_s"] for l in curator) == [0.0, 0.01]
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
    assert (path.pairing_checked, path.pairing_agreed) == (10, 10)  # 2 root + 4 + 4 judged answers
    assert path.pairing_slack_s == pytest.approx(0.0, abs=1e-5)


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
