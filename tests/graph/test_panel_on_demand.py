"""A judge panel asked on demand (graph/panel_on_demand.py): every candidate judged by the first
member, the rest of the panel asked only for the candidates that can change the beam, their
rewards the panel means, every verdict traced with its judge."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backends.errors import TransportFault
from backends.scripted import ScriptedEngine
from schemas.config import RoleConfig, SearchConfig
from schemas.messages import JudgeRequest
from tests.graph.test_judge_samples import PANEL
from tests.graph.test_validation import INITIAL, lineage, search
from tests.scripted import DRPOScript, prompt_of

pytestmark = pytest.mark.anyio

FIRST = {"0": 4, "1": 3, "2": 2}
"""judge-a's score of a prompt, by its last rewrite's index (the root: 3)."""
SECOND = {"0": 1, "1": 5, "2": 5}
"""judge-b's: it disagrees with judge-a about the first two children."""
TWO = {"judge": RoleConfig(backends=["a", "b"])}


def judges(judged: list[tuple[str, str]], fail_b_on: str | None = None):  # type: ignore[no-untyped-def]
    """Engines by model: judge-a scores `FIRST`, judge-b `SECOND` (by the prompt's last character);
    `judged` collects (model, prompt) of every judge call; judge-b is down for `fail_b_on`."""
    script = DRPOScript(propose=lineage)

    def build(config, model):  # type: ignore[no-untyped-def]
        def handle(request):  # type: ignore[no-untyped-def]
            if not isinstance(request.message, JudgeRequest):
                return script.handle(request)
            prompt = prompt_of(request.message.response)
            judged.append((model, prompt))
            if model == "judge-b" and prompt == fail_b_on:
                return TransportFault("judge-b down")
            value = (FIRST if model == "judge-a" else SECOND).get(prompt[-1], 3)
            return {a: {"rationale": model, "score": value} for a in request.message.aspects}

        return ScriptedEngine(handle, model=model)

    return build


def by_prompt(result):  # type: ignore[no-untyped-def]
    return {c.prompt.removeprefix(INITIAL): c for c in result.candidates if c.level >= 0}


async def test_the_rest_of_the_panel_judges_only_the_k_best_and_their_rewards_are_panel_means(tmp_path):
    judged: list[tuple[str, str]] = []
    result = await search(tmp_path, DRPOScript(), backends=PANEL, roles=TWO, factory=judges(judged),
                          depth=2, beam=2, actions=3, panel_on_demand=2)
    assert sorted(p.removeprefix(INITIAL) for m, p in judged if m == "judge-a") == ["", ">0", ">1", ">2"]
    assert sorted(p.removeprefix(INITIAL) for m, p in judged if m == "judge-b") == [">0", ">1"]  # judge-a's top 2
    records = by_prompt(result)
    for name, samples in ((">0", [4.0, 1.0]), (">1", [3.0, 5.0])):
        (verdict,) = records[name].verdicts
        assert verdict.samples == samples and verdict.judges == ["a:judge-a", "b:judge-b"]
        assert verdict.reward == records[name].reward == records[name].path_rewards[-1] == sum(samples) / 2
    (single,) = records[">2"].verdicts  # far below the cut: judge-a's verdict alone
    assert single.samples == [2.0] and single.judges == ["a:judge-a"] and single.reward == 2.0
    (level,) = result.levels
    assert level.kept == [records[">1"].node_id, records[">0"].node_id]  # by panel means: 4.0 over 2.5
    assert level.best_reward == 4.0
    assert result.best.prompt == INITIAL + ">1"


async def test_a_candidate_that_enters_the_beam_on_its_first_verdict_is_judged_by_the_rest_too(tmp_path):
    judged: list[tuple[str, str]] = []
    result = await search(tmp_path, DRPOScript(), backends=PANEL, roles=TWO, factory=judges(judged),
                          depth=2, beam=2, actions=3, panel_on_demand=1)
    # K = 1 asks judge-b about >0 (4 by judge-a), whose mean 2.5 lets >1 (3 by judge-a alone) into
    # the beam: judge-b is asked about >1 then; >2 stays below the cut and is never asked.
    assert [p.removeprefix(INITIAL) for m, p in judged if m == "judge-b"] == [">0", ">1"]
    (level,) = result.levels
    records = by_prompt(result)
    assert level.kept == [records[">1"].node_id, records[">0"].node_id]
    assert all(len(records[name].verdicts[0].samples) == 2 for name in (">0", ">1"))


async def test_deeper_searches_choose_every_beam_on_full_panel_verdicts_for_fewer_calls(tmp_path):
    judged: list[tuple[str, str]] = []
    result = await search(tmp_path / "od", DRPOScript(), backends=PANEL, roles=TWO, factory=judges(judged),
                          depth=4, beam=2, actions=3, panel_on_demand=2)
    full: list[tuple[str, str]] = []
    await search(tmp_path / "full", DRPOScript(), backends=PANEL, roles=TWO, factory=judges(full),
                 depth=4, beam=2, actions=3)
    records = {c.node_id: c for c in result.candidates}
    for level in result.levels:
        for node_id in level.kept:
            assert records[node_id].verdicts[0].judges == ["a:judge-a", "b:judge-b"]
        partial = [n for n in level.candidates if len(records[n].verdicts[0].samples) == 1]
        assert len(partial) == len(level.candidates) - 2  # K = B = 2 re-judged, and they stayed in the beam
    assert len(judged) < len(full)
    assert sum(m == "judge-a" for m, _ in judged) == sum(m == "judge-a" for m, _ in full)


async def test_every_verdict_is_traced_with_its_judge_and_the_rest_with_its_stage(tmp_path):
    result = await search(tmp_path, DRPOScript(), backends=PANEL, roles=TWO, factory=judges([]),
                          depth=2, beam=2, actions=3, panel_on_demand=2)
    replies = [line for line in result.trace if line.get("agent") == "judge" and line["direction"] == "reply"]
    assert len(replies) == 4 + 2  # judge-a on the root and three children, judge-b on two
    first = [line for line in replies if "judge_stage" not in line]
    rest = [line for line in replies if line.get("judge_stage") == "on_demand"]
    assert {line["judge_backend"] for line in first} == {"a:judge-a"} and len(first) == 4
    assert {line["judge_backend"] for line in rest} == {"b:judge-b"}
    records = by_prompt(result)
    assert sorted(line["node_id"] for line in rest) == sorted(records[n].node_id for n in (">0", ">1"))
    for line in replies:  # each reply is its judge's own verdict
        assert {s["rationale"] for s in line["message"]["scores"].values()} == {line["judge_backend"].split(":")[1]}


async def test_a_rest_call_that_keeps_failing_drops_the_candidate_never_scored_on_one_judge(tmp_path):
    result = await search(tmp_path, DRPOScript(), backends=PANEL, roles=TWO,
                          factory=judges([], fail_b_on=INITIAL + ">0"), depth=2, beam=2, actions=3, panel_on_demand=2)
    records = by_prompt(result)
    assert records[">0"].failure and records[">0"].reward is None and records[">0"].verdicts == []
    (level,) = result.levels
    assert records[">0"].node_id not in level.kept and records[">1"].node_id in level.kept


async def test_with_one_judge_asked_once_there_is_no_rest_and_nothing_changes(tmp_path):
    plain = await search(tmp_path / "plain", DRPOScript(propose=lineage), depth=3, beam=2, actions=2)
    ondemand = await search(tmp_path / "od", DRPOScript(propose=lineage), depth=3, beam=2, actions=2,
                            panel_on_demand=2)
    assert [c.model_dump() for c in ondemand.candidates] == [c.model_dump() for c in plain.candidates]


def test_panel_on_demand_needs_one_query_per_level():
    with pytest.raises(ValidationError, match="panel_on_demand re-judges a candidate's one answer"):
        SearchConfig(panel_on_demand=2, queries_per_level=2)
