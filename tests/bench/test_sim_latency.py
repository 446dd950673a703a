"""The simulator's latency model (bench/sim_latency.py), driven without HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.sim_latency import SimEngine, SimParams
from schemas.outputs import RewriteOutput


def handle(engine: SimEngine, **body) -> tuple[dict, float]:
    started = time.perf_counter()
    reply = asyncio.run(engine.handle({"messages": [{"role": "user", "content": "hi"}], **body}, chat=True))
    return reply, time.perf_counter() - started


def test_n_samples_decode_side_by_side_and_differ():
    engine = SimEngine(SimParams.zero(decode_step_s=0.002, text_tokens=50, string_tokens=12))
    one, single = handle(engine)
    schema = RewriteOutput.model_json_schema()
    fmt = {"type": "json_schema", "json_schema": {"name": "rw", "schema": schema}}
    three, triple = handle(engine, n=3, response_format=fmt)
    prompts = [RewriteOutput.model_validate_json(c["message"]["content"]).new_system_prompt for c in three["choices"]]
    assert len(prompts) == 3 and len(set(prompts)) == 3  # distinct samples, as a rewriter needs
    each = -(-len(three["choices"][0]["message"]["content"]) // 4)
    assert three["usage"]["completion_tokens"] == 3 * each
    assert one["usage"]["completion_tokens"] == 50
    assert triple < 2 * single  # side by side: set by the longest sample, not the sum
    assert (engine.log[-1]["n"], engine.log[-1]["schema"]) == (3, "rw")


def test_latency_grows_with_output_tokens_and_with_time_to_first_token():
    engine = SimEngine(SimParams.zero(decode_step_s=0.002, text_tokens=1000))
    times = {tokens: handle(engine, max_tokens=tokens)[1] for tokens in (10, 150)}
    assert times[150] > times[10] + 0.2  # 140 more steps of 2 ms
    assert times[150] < 1.0
    engine.params.update({"ttft_s": 0.3, "decode_step_s": 0.0})
    assert handle(engine, max_tokens=10)[1] >= 0.3


def test_the_log_records_each_request_and_a_zero_latency_engine_answers_at_once():
    engine = SimEngine(SimParams.zero(text_tokens=5))
    _, took = handle(engine)
    (record,) = engine.log
    assert took < 0.1
    assert (record["status"], record["completion_tokens"], record["in_flight_start"]) == (200, 5, 1)
    assert record["end"] >= record["start"]


def test_unknown_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown simulator parameter 'ttft'"):
        SimParams().update({"ttft": 1})
