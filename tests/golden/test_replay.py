"""The golden test's parts: the request key, replaying and recording, and the scripted world it records.

The world (tests/scripted.py `DRPOScript`) answers from the agent's typed message alone: the same
message under any rendered prompt text gets the same answer, and every answer validates as the
role's output type.
"""

from __future__ import annotations

import pytest

from backends.scripted import ScriptedEngine
from schemas.config import BackendConfig
from schemas.llm import LLMRequest, LLMResult, Message, Sampling
from schemas.messages import (
    AnswerRewriteRequest,
    AspectScore,
    CriteriaRequest,
    Example,
    JudgeRequest,
    PolicyRequest,
    RewriteRequest,
)
from schemas.outputs import AnswerRewriteOutput, CriteriaOutput, RewriteOutput, judge_output_type
from tests.golden.golden_run import golden_script
from tests.golden.replay import Recording, RecordingEngine, ReplayEngine, golden_key
from tests.scripted import DRPOScript, content_proposals, policy_answer

pytestmark = pytest.mark.anyio


def request(**changes) -> LLMRequest:  # type: ignore[no-untyped-def]
    base = {"role": "judge", "messages": [Message(role="user", content="grade this")],
            "json_schema": {"type": "object"}}
    return LLMRequest(**{**base, **changes})


@pytest.mark.parametrize("change", [
    {"role": "rewriter"},
    {"messages": [Message(role="user", content="grade that")]},
    {"messages": None, "prompt": "grade this"},
    {"sampling": Sampling(seed=1)},
    {"sampling": Sampling(n=2)},
    {"json_schema": None},
    {"sample": 1},
])
def test_the_key_changes_with_everything_that_decides_an_answer(change):
    assert golden_key(request(**change)) != golden_key(request())


def test_the_key_ignores_what_travels_beside_the_request():
    message = JudgeRequest(query="q", response="r", aspects=["Depth"])
    assert golden_key(request(message=message, call_id="abc")) == golden_key(request())


async def test_a_recorded_reply_replays_exactly_and_an_unrecorded_request_fails_the_test(tmp_path):
    recorder = RecordingEngine(ScriptedEngine(lambda r: f"answer to {r.messages[-1].content}", model="golden"))
    recorded = await recorder.complete(request())
    recorder.recording.save(tmp_path / "replies.json")

    replay = ReplayEngine(Recording.load(tmp_path / "replies.json"))
    assert await replay.complete(request(call_id="another call")) == recorded
    unknown = request(sample=3)
    with pytest.raises(pytest.fail.Exception, match=f"'judge' request {golden_key(unknown)}.*re-record"):
        await replay.complete(unknown)
    assert replay.misses == [f"judge {golden_key(unknown)}"]


async def test_a_world_that_answers_one_request_two_ways_cannot_be_recorded():
    answers = iter(["first", "second"])
    recorder = RecordingEngine(ScriptedEngine(lambda r: next(answers)))
    await recorder.complete(request())
    with pytest.raises(AssertionError, match="two ways"):
        await recorder.complete(request())


# --- the scripted world answers from typed messages -----------------------------------------


def scores(value: int) -> dict[str, AspectScore]:
    return {"Depth": AspectScore(rationale="r", score=value)}


Typed = PolicyRequest | JudgeRequest | RewriteRequest | CriteriaRequest | AnswerRewriteRequest


async def answer(script: DRPOScript, message: Typed, text: str = "any rendering", n: int = 1) -> LLMResult:
    role = {PolicyRequest: "policy", JudgeRequest: "judge", RewriteRequest: "rewriter",
            CriteriaRequest: "criteria", AnswerRewriteRequest: "curator"}[type(message)]
    llm_request = LLMRequest(role=role, messages=[Message(role="user", content=text)], sampling=Sampling(n=n),
                             message=message)
    return await script.engine(BackendConfig(kind="openai", model="s"), "s").complete(llm_request)


async def test_every_role_is_answered_from_its_message_whatever_the_prompt_text():
    script = DRPOScript(score=lambda prompt, query: 4 if prompt == "Be kind." else 2, aspects=("Depth", "Clarity"))
    policy = PolicyRequest(system_prompt="Be kind.", query="q", examples=[Example(query="a", answer="b")])
    assert (await answer(script, policy, "one template")).choices[0].text == policy_answer("Be kind.")
    assert (await answer(script, policy, "another template")).choices[0].text == policy_answer("Be kind.")

    judged = judge_output_type(("Depth", "Clarity"))
    for response, expected in ((policy_answer("Be kind."), 4), (policy_answer("Be terse."), 2), ("not ours", 2)):
        reply = await answer(script, JudgeRequest(query="q", response=response, aspects=["Depth", "Clarity"]))
        verdict = judged.model_validate_json(reply.choices[0].text)
        assert (verdict.aspect_0.score, verdict.aspect_1.score) == (expected, expected)

    rewrite = RewriteRequest(prompt="Be kind.", query="q", response="r", judgement=scores(2), actions=2)
    first, second = (await answer(script, rewrite, n=2)), (await answer(script, rewrite, n=2))
    assert [RewriteOutput.model_validate_json(c.text).new_system_prompt for c in first.choices] == [
        "Be kind./1.0", "Be kind./1.1"]
    assert [RewriteOutput.model_validate_json(c.text).new_system_prompt for c in second.choices] == [
        "Be kind./2.0", "Be kind./2.1"]

    selection = CriteriaOutput.model_validate_json((await answer(script, CriteriaRequest(query="q"))).choices[0].text)
    assert selection.aspects_selection.selected_aspects == ["Depth", "Clarity"]
    revised = await answer(script, AnswerRewriteRequest(query="q", answer="An answer.", critique=scores(3)))
    assert AnswerRewriteOutput.model_validate_json(revised.choices[0].text).new_response == (
        "<START>\nAn answer. (revised)\n<END>")
    assert script.calls == {"policy": 2, "judge": 3, "rewriter": 2, "criteria": 1, "curator": 1}


async def test_content_named_proposals_do_not_depend_on_call_order():
    rewrite = RewriteRequest(prompt="P", query="q", response="r", judgement=scores(2), actions=1)
    other = rewrite.model_copy(update={"query": "another"})
    script = DRPOScript(propose=content_proposals)
    texts = [(await answer(script, m)).choices[0].text for m in (other, rewrite)]
    again = DRPOScript(propose=content_proposals)
    assert [(await answer(again, m)).choices[0].text for m in (rewrite, other)] == texts[::-1]
    assert golden_script().propose is content_proposals


async def test_a_request_without_a_typed_message_is_refused_with_the_fix():
    with pytest.raises(AssertionError, match="message="):
        await DRPOScript().engine(BackendConfig(kind="openai", model="s"), "s").complete(
            LLMRequest(role="judge", prompt="grade"))
