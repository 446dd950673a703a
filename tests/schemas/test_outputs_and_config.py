"""Schemas: what engines must produce and how a run is configured."""

import pytest
from pydantic import ValidationError

from schemas.config import ROLE_SAMPLING, RoleConfig, RunConfig
from schemas.messages import AspectScore, Judgement
from schemas.outputs import ScoredAspect, judge_output_type


@pytest.mark.parametrize(("raw", "score"), [("4", 4), (4.0, 4), ("4.5", 5), (0, 1), (9, 5), (" 3 ", 3)])
def test_scores_are_coerced_and_clamped(raw, score):
    assert ScoredAspect(rationale="r", score=raw).score == score


@pytest.mark.parametrize("raw", ["N/A", "", "four"])
def test_text_scores_are_invalid(raw):
    with pytest.raises(ValidationError):
        ScoredAspect(rationale="r", score=raw)


def test_judge_output_has_one_required_key_per_aspect_even_with_hyphens():
    model = judge_output_type(("Critical-Thinking", "Depth"))
    schema = model.model_json_schema(by_alias=True)
    assert list(schema["properties"]) == ["Critical-Thinking", "Depth"]
    assert schema["required"] == ["Critical-Thinking", "Depth"]
    parsed = model.model_validate({"Critical-Thinking": {"rationale": "r", "score": 2}, "Depth": {"rationale": "r", "score": 4}})
    assert parsed.aspect_0.score == 2


def test_judgement_reward_is_the_mean_and_critics_merge():
    a = Judgement(scores={"X": AspectScore(rationale="", score=2), "Y": AspectScore(rationale="", score=5)})
    b = Judgement(scores={"Length": AspectScore(rationale="", score=2)})
    assert a.reward == 3.5
    assert a.merged(b).reward == 3.0


def test_role_sampling_starts_from_the_papers_defaults():
    config = RunConfig(roles={"rewriter": RoleConfig(max_tokens=100)})
    assert config.sampling("rewriter").temperature == 0.2 and config.sampling("rewriter").top_p == 0.95
    assert config.sampling("rewriter").max_tokens == 100
    assert config.sampling("judge") == ROLE_SAMPLING["judge"]


def test_roles_are_open_but_must_use_defined_backends():
    """A new role (a model-backed critic) binds like the paper's; the runner checks its name exists."""
    assert RunConfig.model_validate({"roles": {"painter": {}}}).role("painter").backend == "default"
    with pytest.raises(ValidationError, match="not defined"):
        RunConfig.model_validate({"roles": {"judge": {"backend": "api"}}})
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"search": {"deepth": 3}})


def test_each_role_may_use_its_own_backend_and_model():
    config = RunConfig.model_validate({
        "backends": {"default": {"kind": "embedded"}, "api": {"kind": "openai", "model": "gpt-x"}},
        "roles": {"judge": {"backend": "api", "model": "gpt-y"}},
    })
    assert config.role("judge").backend == "api" and config.role("policy").backend == "default"
