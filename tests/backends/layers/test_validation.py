"""The validation layer: structured output is parsed and validated; empty output is a fault."""

import pytest
from pydantic import BaseModel

from backends.errors import CallFailed, EmptyOutput, InvalidOutput
from backends.layers.validation import parse_json_object
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine, schema_instance
from schemas.llm import Choice, LLMRequest, LLMResult, Sampling
from schemas.usage import Usage
from tests.stacks import stack

pytestmark = pytest.mark.anyio


class Verdict(BaseModel):
    label: str
    score: int


def structured(n: int = 1) -> LLMRequest:
    return LLMRequest(role="judge", prompt="hi", sampling=Sampling(n=n), output_type=Verdict)


async def test_structured_output_keeps_valid_choices_and_drops_invalid_ones():
    engine = ScriptedEngine(lambda r: ['{"label": "a", "score": 1}', "not json",
                                       '```json\n{"label": "b", "score": "2"}\n```'])
    ledger = Ledger()
    result = await stack(engine, ledger=ledger).complete(structured(n=3))
    assert [v.label for v in result.parsed] == ["a", "b"]
    assert engine.requests[0].json_schema == Verdict.model_json_schema()
    assert ledger.by_role()["judge"].faults == {"invalid_output": 1}


async def test_no_valid_choice_is_retried_and_the_rejected_reply_is_still_paid_for():
    replies = iter(["nonsense", '{"label": "x", "score": 3}'])
    ledger = Ledger()
    result = await stack(ScriptedEngine(lambda r: next(replies)), ledger=ledger).complete(structured())
    assert result.parsed[0].score == 3
    assert result.usage.calls == 2  # the call's own account includes the rejected attempt
    assert ledger.by_role()["judge"].faults == {"invalid_output": 1}


class CutOff(ScriptedEngine):
    async def complete(self, request):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return LLMResult(choices=[Choice(text='{"label": "x", "sc', finish_reason="length")], usage=Usage(),
                         model="m")


async def test_structured_output_cut_off_at_max_tokens_is_a_truncated_fault():
    ledger = Ledger()
    with pytest.raises(CallFailed) as failure:
        await stack(CutOff(), ledger=ledger, max_attempts=2).complete(structured())
    assert failure.value.faults == ["truncated", "truncated"]


async def test_empty_output_is_a_fault_not_an_answer():
    replies = iter(["   ", "text"])
    ledger = Ledger()
    result = await stack(ScriptedEngine(lambda r: next(replies)), ledger=ledger).complete(
        LLMRequest(role="policy", prompt="hi"))
    assert result.choices[0].text == "text"
    assert ledger.by_role()["policy"].faults == {EmptyOutput.kind: 1}


async def test_the_request_cleaner_runs_before_the_emptiness_check():
    replies = iter(["<END>", "kept<END>junk"])
    request = LLMRequest(role="policy", prompt="hi", clean=lambda t: t.split("<END>")[0].strip())
    result = await stack(ScriptedEngine(lambda r: next(replies))).complete(request)
    assert result.choices[0].text == "kept"


def test_json_is_found_inside_fences_and_prose():
    assert parse_json_object('Sure! {"a": 1} Hope that helps.') == {"a": 1}
    with pytest.raises(InvalidOutput):
        parse_json_object("no braces here")


def test_json_nested_absurdly_deep_is_invalid_output_not_a_recursion_error():
    with pytest.raises(InvalidOutput):
        parse_json_object("{" + '"a":{' * 100000 + "}" * 100001)


def test_schema_instance_is_valid_for_our_models():
    assert Verdict.model_validate(schema_instance(Verdict.model_json_schema()))
