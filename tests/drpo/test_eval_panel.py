"""`eval` with a judge panel (drpo/eval_panel.py): every member rates every answer, the item's
scores are their mean, each member's call is its own trace line, and a member that fails fails
the item (it is never scored on part of the panel)."""

from __future__ import annotations

import json

import pytest

from backends.errors import InvalidOutput
from drpo.errors import UserInputError
from drpo.evaluate import evaluate, with_judge
from schemas.config import BackendConfig, RoleConfig, RunConfig
from schemas.evaluation import MULTI_ASPECTS, EvalJudgeRequest
from schemas.messages import PolicyRequest
from tests.drpo.test_evaluate import EvalWorld, options_for, read_scores, run_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.anyio

PANEL = RunConfig(
    backends={"default": BackendConfig(kind="openai", model="s", max_attempts=2),
              "a": BackendConfig(kind="openai", model="judge-a", max_attempts=2),
              "b": BackendConfig(kind="openai", model="judge-b", max_attempts=2)},
    roles={"judge": RoleConfig(backends=["a", "b"])},
)


def worlds(fail_b=lambda message: False):  # type: ignore[no-untyped-def]
    """The policy's world, and one judge world per member: judge-a scores 2 everywhere, judge-b 5."""
    policy = EvalWorld()
    a = EvalWorld(score=lambda prompt, query: 2)
    b = EvalWorld(score=lambda prompt, query: 5,
                  fail=lambda role, message, prompt: InvalidOutput("not JSON") if fail_b(message) else None)
    a.prompts = b.prompts = policy.prompts  # the judges decode the policy's tags
    by_model = {"judge-a": a, "judge-b": b}

    def factory(config, model):  # type: ignore[no-untyped-def]
        return by_model.get(model, policy).engine(config, model)

    return policy, a, b, factory


async def test_every_member_rates_every_answer_and_the_scores_are_their_mean(tmp_path, run_dir):  # noqa: F811
    policy, a, b, factory = worlds()
    options = options_for(tmp_path, run_dir, config=PANEL, baselines=["plain"])
    summary = await evaluate(options, engine_factory=factory)
    assert len(a.sent(EvalJudgeRequest)) == len(b.sent(EvalJudgeRequest)) == 8  # 2 configurations x 4 items
    assert policy.sent(EvalJudgeRequest) == [] and a.sent(PolicyRequest) == []
    for line in read_scores(options.out):
        aspects = ["safety"] if line["id"] == "800" else list(MULTI_ASPECTS)
        assert line["scores"] == dict.fromkeys(aspects, 3.5) and line["mean"] == 3.5
        assert line["judges"] == ["a:judge-a", "b:judge-b"]
        assert line["judge_scores"] == [dict.fromkeys(aspects, 2), dict.fromkeys(aspects, 5)]
        assert line["reasons"][aspects[0]] == "a:judge-a: scripted 2 | b:judge-b: scripted 5"
    assert summary.models["judge"] == "a:judge-a + b:judge-b"
    by_name = {c.name: c for c in summary.configs}
    assert by_name["drpo"].aspects["helpfulness"].mean == 3.5
    assert summary.accounting["by_role"]["judge"]["usage"]["calls"] == 16


async def test_each_member_s_verdict_is_its_own_trace_line(tmp_path, run_dir):  # noqa: F811
    *_, factory = worlds()
    options = options_for(tmp_path, run_dir, config=PANEL, baselines=[])
    await evaluate(options, engine_factory=factory)
    trace = [json.loads(line) for line in (options.out / "trace.jsonl").read_text().splitlines()]
    replies = [line for line in trace if line.get("agent") == "judge" and line["direction"] == "reply"]
    assert sorted(line["judge_backend"] for line in replies) == ["a:judge-a"] * 4 + ["b:judge-b"] * 4
    for line in replies:  # each reply is that member's own verdict
        score = {"a:judge-a": 2, "b:judge-b": 5}[line["judge_backend"]]
        assert {s["score"] for s in line["message"]["scores"].values()} == {score}


async def test_a_member_that_keeps_failing_fails_the_item_never_scored_on_the_rest(tmp_path, run_dir):  # noqa: F811
    *_, factory = worlds(fail_b=lambda message: "hash map" in message.query)
    options = options_for(tmp_path, run_dir, config=PANEL, baselines=[])
    summary = await evaluate(options, engine_factory=factory)
    lines = {line["id"]: line for line in read_scores(options.out)}
    assert lines["2"]["failed"].startswith("judge:") and lines["2"]["scores"] == {} and lines["2"]["mean"] is None
    assert all(lines[i]["mean"] == 3.5 for i in ("0", "1", "800"))
    assert {c.name: c for c in summary.configs}["drpo"].failed == 1


async def test_one_judge_is_asked_as_before_with_no_per_member_fields(tmp_path, run_dir):  # noqa: F811
    options = options_for(tmp_path, run_dir, baselines=[])
    await evaluate(options, engine_factory=EvalWorld(score=lambda p, q: 4).engine)
    for line in read_scores(options.out):
        assert line["judges"] == [] and line["judge_scores"] == []
        assert all(isinstance(v, int) for v in line["scores"].values()) and line["reasons"]
    trace = [json.loads(line) for line in (options.out / "trace.jsonl").read_text().splitlines()]
    assert not any("judge_backend" in line for line in trace)


def test_the_judge_flags_are_refused_beside_a_panel():
    with pytest.raises(UserInputError, match=r"names a panel \(a, b\)"):
        with_judge(PANEL, "openai", "another-judge")
    assert with_judge(PANEL, None, None) is PANEL
