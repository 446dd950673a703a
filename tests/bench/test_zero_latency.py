"""The zero-latency engine (bench/zero_latency.py): valid answers, every call of a burst in flight at once."""

from __future__ import annotations

import anyio
import pytest

from bench.zero_latency import ZeroLatency
from schemas.llm import LLMRequest, Message, Sampling
from schemas.outputs import judge_output_type

pytestmark = pytest.mark.anyio


async def test_a_burst_is_in_flight_together_and_each_answer_differs():
    handler = ZeroLatency(text_tokens=10)
    engine = handler.engine()
    request = LLMRequest(role="policy", messages=[Message(role="user", content="hi")], sampling=Sampling(n=2))
    results = []

    async def one() -> None:
        results.append(await engine.complete(request))

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(one)
    assert handler.peak == 30 and handler.in_flight == 0
    texts = [choice.text for result in results for choice in result.choices]
    assert len(texts) == 60 and len(set(texts)) == 60 and {len(t) for t in texts} == {40}


async def test_a_structured_request_gets_an_instance_of_its_output_type():
    output_type = judge_output_type(("Clarity", "Safety"))
    request = LLMRequest(role="judge", messages=[Message(role="user", content="judge")],
                         json_schema=output_type.model_json_schema(by_alias=True), output_type=output_type)
    result = await ZeroLatency(string_tokens=5).factory()(None, "m").complete(request)
    verdict = output_type.model_validate_json(result.choices[0].text)
    assert verdict.aspect_0.score == 3 and len(verdict.aspect_1.rationale) == 20
    assert result.model == "m"
