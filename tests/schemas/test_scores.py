"""Judge scores: what a model writes becomes 1-5, or a ValidationError (an invalid output, retried
and counted by the backends), never another exception that would end the run."""

import math

import pytest
from pydantic import BaseModel, ValidationError

from schemas.evaluation import MultiAspectOutput, RatedAspect, SafetyOutput
from schemas.outputs import ScoredAspect, judge_output_type

NOT_A_SCORE = [
    pytest.param(None, id="null"),
    pytest.param([], id="empty-list"),
    pytest.param([4], id="list"),
    pytest.param({}, id="empty-object"),
    pytest.param({"score": 4}, id="object"),
    pytest.param(True, id="boolean"),
    pytest.param("four", id="word"),
    pytest.param("4/5", id="fraction"),
    pytest.param("", id="empty-string"),
    pytest.param("nan", id="nan-text"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="infinity"),
    pytest.param("1e999", id="overflowing-text"),
]


@pytest.mark.parametrize("raw", NOT_A_SCORE)
@pytest.mark.parametrize("model", [ScoredAspect, RatedAspect])
def test_a_value_that_is_no_score_is_a_validation_error(model, raw):
    with pytest.raises(ValidationError) as info:
        model.model_validate({"rationale": "r", "reason": "r", "score": raw})
    assert info.value.errors()[0]["loc"] == ("score",)


@pytest.mark.parametrize(
    ("raw", "score"),
    [
        ("4", 4), (4.0, 4), ("4.5", 5), (2.5, 3), ("3.49", 3), (" 3 ", 3),  # half up, never to even
        (0, 1), (-7, 1), ("-2.5", 1), (9, 5), ("6.2", 5), (10**400, 5),  # clamped
    ],
)
@pytest.mark.parametrize("model", [ScoredAspect, RatedAspect])
def test_numbers_are_rounded_half_up_and_clamped(model, raw, score):
    assert model.model_validate({"rationale": "r", "reason": "r", "score": raw}).score == score


@pytest.mark.parametrize("raw", ["N/A", "n/a", " NA "])
def test_not_applicable_is_invalid_for_the_optimization_judge_and_5_for_the_evaluation_judge(raw):
    with pytest.raises(ValidationError):
        ScoredAspect(rationale="r", score=raw)
    assert RatedAspect(reason="r", score=raw).score == 5  # just-eval's convention


def judge_reply(aspects: tuple[str, ...], score: object) -> dict:
    return {name: {"rationale": "r", "reason": "r", "score": score} for name in aspects}


@pytest.mark.parametrize("raw", NOT_A_SCORE)
@pytest.mark.parametrize(
    "output_type",
    [judge_output_type(("Depth", "Critical-Thinking")), MultiAspectOutput, SafetyOutput],
    ids=["optimization-judge", "eval-multi", "eval-safety"],
)
def test_a_whole_judge_reply_with_such_a_score_fails_validation(output_type: type[BaseModel], raw):
    """The validation layer parses engine replies with these types: only ValidationError may escape."""
    names = tuple(field.alias or name for name, field in output_type.model_fields.items())
    with pytest.raises(ValidationError):
        output_type.model_validate(judge_reply(names, raw))
    assert output_type.model_validate(judge_reply(names, "4")) is not None
