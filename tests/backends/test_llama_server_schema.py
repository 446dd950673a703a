"""Room to close the JSON: the embedded engine bounds free-text strings so that a constrained
answer ends within max_tokens, and leaves every other part of the schema as it was."""

from __future__ import annotations

import copy

import pytest

from agents.judge import render
from backends.ledger import Ledger
from backends.llama_server import LlamaServerEngine
from backends.llama_server_process import binary_path
from backends.llama_server_schema import bounded
from schemas.catalogue import AspectCatalogue
from schemas.llm import LLMRequest, Sampling
from schemas.messages import JudgeRequest
from schemas.outputs import CriteriaOutput, RewriteOutput, judge_output_type, judge_schema
from tests.stacks import stack


def lengths(schema: object) -> list[int]:
    found: list[int] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "maxLength" in node:
                found.append(node["maxLength"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def test_every_rationale_of_a_judgement_gets_its_share_and_the_whole_fits_the_budget():
    schema = judge_schema(("Helpfulness", "Clarity"))  # one shared definition, referenced twice
    original = copy.deepcopy(schema)
    out = bounded(schema, 500)
    assert schema == original  # the shared schema is not touched
    [length] = lengths(out)
    assert 2 * length <= 500 * 2  # both rationales together stay within the token budget's text
    assert length >= 300  # and each keeps room for a real rationale
    assert out["$defs"]["ScoredAspect"]["properties"]["score"] == original["$defs"]["ScoredAspect"]["properties"]["score"]
    assert lengths(bounded(schema, 2000))[0] > length  # a larger budget, longer strings


def test_enums_and_tighter_bounds_are_kept_and_arrays_count_their_items():
    schema = CriteriaOutput.schema_for(["a", "b", "c"])
    out = bounded(schema, 400)
    items = out["$defs"]["AspectsSelection"]["properties"]["selected_aspects"]["items"]
    assert items == {"enum": ["a", "b", "c"], "type": "string"}  # aspect names stay an enum, unbounded
    tight = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 10}, "b": {"type": "string"}}}
    assert bounded(tight, 400)["properties"]["a"]["maxLength"] == 10
    many = {"type": "object", "properties": {"notes": {"type": "array", "items": {"type": "string"}, "maxItems": 8}}}
    few = {"type": "object", "properties": {"notes": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}}
    assert lengths(bounded(many, 400))[0] < lengths(bounded(few, 400))[0]


def test_a_schema_without_free_text_is_unchanged():
    schema = {"type": "object", "properties": {"score": {"type": "integer", "enum": [1, 2, 3]}}}
    assert bounded(schema, 100) == schema
    rewrite = lengths(bounded(RewriteOutput.model_json_schema(), 500))
    assert len(rewrite) == 3 and len(set(rewrite)) == 1  # analysis, thought, new prompt: equal shares


LOOPING = JudgeRequest(
    query="Write a short story opening, about 150 words, in which a lighthouse keeper discovers that the light has "
          "started signalling back to someone out at sea.",
    response="The sun dipped into the horizon, casting a warm glow over the deserted island of Elmira, where the "
             "lighthouse keeper, a grizzled old sailor named Barnaby, had spent his life. He had been a sailor's best "
             "friend, and his family had been on the island for generations. But now, the light had started to "
             "signal back to the ship, and the keeper's curiosity had led him to the island of the lost.\n\nAs he "
             "stood at the edge of the island, the keeper's eyes lit up with excitement. He had always been a "
             "sailor's best friend, and he had always been the one who had helped the keeper's family. But now, he "
             "had discovered that the light had been sent by someone out at sea.\n\nThe keeper's mind was racing",
    aspects=["Limitations", "Helpfulness"], reasoning="The Light of the Sea")
"""A judgement SmolLM2 decodes greedily into one sentence repeated inside a rationale (from a demo run)."""


@pytest.mark.anyio
@pytest.mark.engine
@pytest.mark.skipif(not binary_path().is_file(), reason="llama-server is not built (./setup.sh)")
async def test_a_judgement_that_loops_in_its_rationale_still_closes_within_the_cap():
    engine = LlamaServerEngine(slots=1, n_ctx=4096)
    aspects = tuple(LOOPING.aspects)
    request = LLMRequest(role="judge", messages=render(LOOPING, AspectCatalogue.load()), json_schema=judge_schema(aspects),
                         schema_name="judgement", output_type=judge_output_type(aspects),
                         sampling=Sampling(temperature=0.0, max_tokens=500))
    ledger = Ledger()
    try:
        result = await stack(engine, ledger=ledger, max_concurrency=1).complete(request)
    finally:
        await engine.aclose()
    assert result.parsed and result.choices[0].finish_reason == "stop"
    assert ledger.by_role()["judge"].faults == {}  # no `truncated` attempt before it
