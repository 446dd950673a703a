"""The simulator's HTTP face (bench/sim_engine.py): OpenAI-shaped replies, bursts, its control endpoints."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bench.sim_engine import SimProcess, SimServer
from bench.sim_latency import SimParams
from bench.sim_log import engine_stats
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


def test_a_malformed_body_is_a_400_and_is_not_logged(sim):
    reply = httpx.post(f"{sim.base_url}/chat/completions", content=b"{not json", timeout=30)
    assert reply.status_code == 400 and "malformed JSON" in reply.json()["error"]["message"]
    assert sim.log == []


def test_many_requests_in_flight_batch_together(sim):
    sim.engine.params.update({"decode_step_s": 0.002, "text_tokens": 50})

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
            replies = await asyncio.gather(*(client.post(f"{sim.base_url}/chat/completions", json=body)
                                             for _ in range(200)))
        return [r.status_code for r in replies]

    assert set(asyncio.run(burst())) == {200}
    log = sim.log
    assert len(log) == 200
    assert max(r["in_flight_start"] for r in log) > 60  # batched, not one after another
    stats = engine_stats(log, min(r["start"] for r in log), max(r["end"] for r in log))
    assert stats["requests"] == 200 and stats["busy_fraction"] == pytest.approx(1.0)


def test_the_child_process_serves_takes_new_parameters_and_restores_them():
    """`python -m bench.sim_engine` as the benchmark starts it; `using` changes the parameters for a block."""
    with SimProcess(SimParams(**FAST)) as sim:
        with sim.using(text_tokens=3):
            body = httpx.post(f"{sim.base_url}/chat/completions", timeout=30,
                              json={"model": "sim", "messages": [{"role": "user", "content": "hi"}]}).json()
            assert body["usage"]["completion_tokens"] == 3
        assert sim.params.text_tokens == 37
        assert httpx.get(f"http://127.0.0.1:{sim.port}/_sim/log", timeout=30).json()["params"]["text_tokens"] == 37
        assert len(sim.log) == 1
        sim.reset()
        assert sim.log == []
