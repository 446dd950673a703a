"""Judge samples and panels (graph/judge_panel.py): several verdicts per answer, averaged, each
call traced with its judge, every record keeping the samples and their spread."""

from __future__ import annotations

from statistics import fmean, stdev

import anyio
import pytest
from pydantic import ValidationError

from agents.curator import ExamplePool
from backends.errors import TransportFault
from backends.ledger import Ledger
from backends.registry import BackendPool
from backends.scripted import ScriptedEngine
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from graph.context import RunContext
from graph.judge_panel import SAMPLE_TEMPERATURE
from graph.roles import judge_response
from schemas.catalogue import AspectCatalogue
from schemas.config import BackendConfig, RoleConfig, RunConfig, SearchConfig
from schemas.messages import CriteriaSelection, JudgeRequest, RewriteRequest
from tests.graph.test_validation import lineage, search
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio

ASPECTS = ("Helpfulness", "Clarity")


def by_seed(script: DRPOScript, values: dict[int, int]) -> list:
    """The script's judge scores every aspect `values[seed]`; returns the judge requests it sees."""
    seen: list = []

    def judge(request):  # type: ignore[no-untyped-def]
        seen.append(request)
        seed = request.sampling.seed % 1000  # a retry asks with its own seed (backends/layers/retry.py)
        return {name: {"rationale": f"seed {seed}", "score": values[seed]} for name in request.message.aspects}

    script._judge = judge  # type: ignore[method-assign]
    return seen


async def test_n_judge_samples_are_n_calls_at_the_sampling_temperature_and_their_mean_is_the_reward(tmp_path):
    script = DRPOScript()
    seen = by_seed(script, {0: 2, 1: 3, 2: 5})
    result = await search(tmp_path, script, depth=2, beam=1, actions=1, judge_samples=3)
    answers = sum(len(c.verdicts) for c in result.candidates)
    assert len(seen) == 3 * answers
    assert sorted({r.sampling.seed for r in seen}) == [0, 1, 2]
    assert {r.sampling.temperature for r in seen} == {SAMPLE_TEMPERATURE}
    for candidate in result.candidates:
        (verdict,) = candidate.verdicts
        assert verdict.samples == [2.0, 3.0, 5.0]
        assert verdict.reward == pytest.approx(10 / 3)
        assert verdict.spread == pytest.approx(stdev([2, 3, 5]))
    assert result.best.path_rewards == [pytest.approx(10 / 3)]


async def test_a_configured_judge_temperature_is_kept_for_its_samples(tmp_path):
    script = DRPOScript()
    seen = by_seed(script, {0: 3, 1: 3})
    await search(tmp_path, script, roles={"judge": RoleConfig(temperature=0.4)}, depth=2, beam=1, actions=1,
                 judge_samples=2)
    assert {r.sampling.temperature for r in seen} == {0.4}


async def test_one_sample_is_the_paper_s_single_call_at_temperature_0(tmp_path):
    script = DRPOScript()
    seen = by_seed(script, {0: 4})
    result = await search(tmp_path, script, depth=2, beam=1, actions=1)
    assert len(seen) == sum(len(c.verdicts) for c in result.candidates)
    assert {(r.sampling.temperature, r.sampling.seed) for r in seen} == {(0.0, 0)}
    verdict = result.candidates[-1].verdicts[0]
    assert verdict.samples == [4.0] and verdict.spread is None and verdict.judges == ["default:s"]


async def test_the_rewriter_learns_from_the_sample_nearest_the_mean(tmp_path):
    script = DRPOScript(propose=lineage)
    by_seed(script, {0: 1, 1: 3, 2: 4})  # mean 2.67: the 3s are nearest
    await search(tmp_path, script, depth=2, beam=1, actions=1, judge_samples=3)
    (rewrite,) = [r.message for r in script.requests if isinstance(r.message, RewriteRequest)]
    assert {s.score for s in rewrite.judgement.values()} == {3}


async def test_a_sample_that_keeps_failing_drops_the_candidate_never_scored_on_the_rest(tmp_path):
    def fail(role, request):  # type: ignore[no-untyped-def]
        judged = request.message
        if isinstance(judged, JudgeRequest) and judged.response.endswith(">1]") and request.sampling.seed % 1000 == 1:
            return TransportFault("down")
        return None

    script = DRPOScript(fail=fail, propose=lineage)
    by_seed(script, {0: 3, 1: 3})
    result = await search(tmp_path, script, depth=2, beam=2, actions=2, judge_samples=2)
    failed = [c for c in result.candidates if c.failure is not None]
    assert [c.prompt.endswith(">1") for c in failed] == [True]
    assert failed[0].verdicts == [] and failed[0].reward is None


# --- panels -------------------------------------------------------------------------------------

PANEL = {"default": BackendConfig(kind="openai", model="m-default"),
         "a": BackendConfig(kind="openai", model="judge-a"), "b": BackendConfig(kind="openai", model="judge-b")}
SCORE_OF = {"judge-a": 2, "judge-b": 5}


def panel_factory(script: DRPOScript, judged_by: list[str]):  # type: ignore[no-untyped-def]
    """Engines by model: the judge models score `SCORE_OF[model]`; everything else is the script's."""

    def build(config, model):  # type: ignore[no-untyped-def]
        def handle(request):  # type: ignore[no-untyped-def]
            if isinstance(request.message, JudgeRequest):
                judged_by.append(model)
                return {a: {"rationale": model, "score": SCORE_OF[model]} for a in request.message.aspects}
            return script.handle(request)

        return ScriptedEngine(handle, model=model)

    return build


async def test_a_panel_judges_every_answer_with_each_member_and_averages_them(tmp_path):
    judged_by: list[str] = []
    result = await search(tmp_path, DRPOScript(), backends=PANEL, roles={"judge": RoleConfig(backends=["a", "b"])},
                          factory=panel_factory(DRPOScript(), judged_by), depth=2, beam=1, actions=1)
    answers = sum(len(c.verdicts) for c in result.candidates)
    assert sorted(judged_by) == ["judge-a"] * answers + ["judge-b"] * answers
    for candidate in result.candidates:
        (verdict,) = candidate.verdicts
        assert verdict.judges == ["a:judge-a", "b:judge-b"] and verdict.samples == [2.0, 5.0]
        assert verdict.reward == 3.5 and verdict.spread == pytest.approx(stdev([2, 5]))


async def test_each_panel_verdict_is_traced_with_its_judge(tmp_path):
    result = await search(tmp_path, DRPOScript(), backends=PANEL, roles={"judge": RoleConfig(backends=["a", "b"])},
                          factory=panel_factory(DRPOScript(), []), depth=2, beam=1, actions=1, judge_samples=2)
    judge_lines = [line for line in result.trace if line.get("agent") == "judge"]
    replies = [line for line in judge_lines if line["direction"] == "reply"]
    answers = sum(len(c.verdicts) for c in result.candidates)
    assert len(replies) == 2 * 2 * answers  # two members x two samples per answer
    by_judge = {(line["judge_backend"], line["judge_sample"]) for line in replies}
    assert by_judge == {("a:judge-a", 0), ("a:judge-a", 1), ("b:judge-b", 0), ("b:judge-b", 1)}
    for line in replies:  # each reply is that judge's own verdict, joined to its request by call id
        (request,) = [r for r in judge_lines if r["call_id"] == line["call_id"] and r["direction"] == "request"]
        assert request["judge_backend"] == line["judge_backend"]
        assert {s["rationale"] for s in line["message"]["scores"].values()} == {line["judge_backend"].split(":")[1]}


def test_a_panel_names_defined_backends_once_and_only_for_the_judge():
    RunConfig(backends=PANEL, roles={"judge": RoleConfig(backends=["a", "b"])})
    with pytest.raises(ValidationError, match=r"\[roles.judge\] backends names 'c', which is not defined"):
        RunConfig(backends=PANEL, roles={"judge": RoleConfig(backends=["a", "c"])})
    with pytest.raises(ValidationError, match=r"\[roles.policy\] backends: only the judge can be a panel"):
        RunConfig(backends=PANEL, roles={"policy": RoleConfig(backends=["a", "b"])})
    with pytest.raises(ValidationError, match="name each panel member once"):
        RoleConfig(backends=["a", "a"])
    with pytest.raises(ValidationError, match="cannot be combined with backend or model"):
        RoleConfig(backends=["a", "b"], model="x")


def test_a_saved_panel_config_loads_again():
    config = RunConfig(backends=PANEL, roles={"judge": RoleConfig(backends=["a", "b"])})
    again = RunConfig.model_validate_json(config.model_dump_json())
    assert again.role("judge").backends == ["a", "b"] and again.role("judge").backend == "a"


async def test_curation_asks_one_judge_once_whatever_the_search_s_samples():
    judged_by: list[str] = []
    config = RunConfig(backends=PANEL, roles={"judge": RoleConfig(backends=["a", "b"])},
                       search=SearchConfig(judge_samples=3))
    pool = BackendPool(config, Ledger(), panel_factory(DRPOScript(), judged_by))
    async with anyio.create_task_group() as background:
        ctx = RunContext(config=config, backends=pool, catalogue=AspectCatalogue.load(),
                         examples=ExamplePool(load_examples(DEFAULT_EXAMPLES)[0]), background=background)
        criteria = CriteriaSelection(query="q", aspects=list(ASPECTS), reasoning="r")
        verdict = await judge_response(ctx, "q", "an answer", criteria, "examples")
    await pool.aclose()
    assert judged_by == ["judge-a"]
    assert verdict.samples == [2.0] and fmean(s.score for s in verdict.scores.values()) == 2.0


async def test_one_judge_asked_once_traces_as_the_paper_s_single_call(tmp_path):
    result = await search(tmp_path, DRPOScript(), depth=2, beam=1, actions=1)
    judge_lines = [line for line in result.trace if line.get("agent") == "judge"]
    assert judge_lines and not any("judge_backend" in line or "judge_sample" in line for line in judge_lines)


async def test_a_panel_s_members_are_built_and_named_before_the_run_and_counted_apart():
    config = RunConfig(backends=PANEL, roles={"judge": RoleConfig(backends=["a", "b"])})
    pool = BackendPool(config, Ledger(), panel_factory(DRPOScript(), []))
    models = pool.models()
    assert models["judge"] == "a:judge-a, b:judge-b" and models["policy"] == "default:m-default"
    assert pool.for_role("judge") is pool.panel("judge")[0][1]  # the first member is the judge role's own stack
    async with anyio.create_task_group() as background:
        ctx = RunContext(config=config, backends=pool, catalogue=AspectCatalogue.load(),
                         examples=ExamplePool(load_examples(DEFAULT_EXAMPLES)[0]), background=background)
        criteria = CriteriaSelection(query="q", aspects=list(ASPECTS), reasoning="r")
        verdict = await judge_response(ctx, "q", "an answer", criteria)
    await pool.aclose()
    assert verdict.samples == [2.0, 5.0]
    by_backend = pool.ledger.by_backend()
    assert by_backend["a:judge-a"].calls == 1 and by_backend["b:judge-b"].calls == 1
    assert pool.ledger.by_role()["judge"].usage.calls == 2
