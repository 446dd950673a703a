"""The example-curation loop: acceptance, early stop, round limit, failures, concurrency."""

from __future__ import annotations

import json

import anyio
import pytest

from backends.errors import InvalidOutput
from backends.scripted import schema_instance
from drpo.curate import CurateOptions, curate
from schemas.config import BackendConfig, CurationConfig, RunConfig
from schemas.llm import LLMRequest
from schemas.messages import AnswerRewriteRequest, CriteriaRequest, JudgeRequest

pytestmark = pytest.mark.anyio
ASPECTS = ["Helpfulness", "Clarity", "Depth"]  # max total 15


class CurationScript:
    """Judge scores come from `totals[answer]` (spread over three aspects); rewrites from `rewrites`.
    Every answer is decided from the agent's typed message, never from prompt text."""

    def __init__(self, totals: dict[str, int], rewrites: list[str], failing: set[str] = frozenset()) -> None:
        self.totals = totals
        self.rewrites = list(rewrites)
        self.failing = failing
        self.requests: list[LLMRequest] = []
        self.judging_now = 0
        self.judging_peak = 0
        self.expect_together = 1
        """Hold each judgement (up to 2 s) until this many are in flight, so overlap is not left to timing."""

    def engine(self, config, model):  # type: ignore[no-untyped-def]
        from backends.scripted import ScriptedEngine

        return ScriptedEngine(self.handle, model="scripted")

    async def handle(self, request: LLMRequest):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        message = request.message
        if isinstance(message, CriteriaRequest):
            answer = schema_instance(request.json_schema)
            answer["aspects_selection"] = {"reasoning": "r", "selected_aspects": ASPECTS}
            return answer
        if isinstance(message, AnswerRewriteRequest):
            return {"analysis": "", "thought": "", "new_response": f"<START>\n{self.rewrites.pop(0)}\n<END>"}
        assert isinstance(message, JudgeRequest), message
        answer = message.response
        if answer in self.failing:
            return InvalidOutput("bad")
        self.judging_now += 1
        self.judging_peak = max(self.judging_peak, self.judging_now)
        with anyio.move_on_after(2):
            while self.judging_peak < self.expect_together:
                await anyio.sleep(0.005)
        self.judging_now -= 1
        total = self.totals[answer]
        scores = [total // 3 + (1 if i < total % 3 else 0) for i in range(3)]
        return {name: {"rationale": "r", "score": s} for name, s in zip(ASPECTS, scores)}


def seeds_file(tmp_path, pairs: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(json.dumps({"query": q, "answer": a}) for q, a in pairs))
    return path


async def run(tmp_path, script: CurationScript, pairs, iterations: int = 5, from_best: bool = False):  # type: ignore[no-untyped-def]
    config = RunConfig(backends={"default": BackendConfig(kind="openai", model="s", max_attempts=2)},
                       curation=CurationConfig(iterations=iterations, from_best=from_best))
    options = CurateOptions(config=config, out=tmp_path / "out", examples=seeds_file(tmp_path, pairs))
    return await curate(options, engine_factory=script.engine)


async def test_an_answer_is_accepted_when_its_total_is_at_least_the_best_so_far(tmp_path):
    script = CurationScript({"seed": 10, "worse": 9, "tie": 10, "better": 12, "r4": 11, "r5": 11},
                            ["worse", "tie", "better", "r4", "r5"])
    pool = await run(tmp_path, script, [("q", "seed")])
    example = pool.examples[0]
    assert [(s.answer, s.total, s.accepted) for s in example.history] == [
        ("seed", 10, True), ("worse", 9, False), ("tie", 10, True), ("better", 12, True), ("r4", 11, False),
        ("r5", 11, False),
    ]
    assert (example.answer, example.best_total, example.max_total) == ("better", 12, 15)


async def test_the_loop_stops_early_at_a_perfect_score(tmp_path):
    script = CurationScript({"seed": 10, "perfect": 15}, ["perfect", "never"])
    pool = await run(tmp_path, script, [("q", "seed")])
    assert [s.answer for s in pool.examples[0].history] == ["seed", "perfect"]
    assert script.rewrites == ["never"]


async def test_a_perfect_seed_is_not_rewritten(tmp_path):
    script = CurationScript({"seed": 15}, ["never"])
    pool = await run(tmp_path, script, [("q", "seed")])
    assert len(pool.examples[0].history) == 1
    assert not [r for r in script.requests if r.role == "curator"]


async def test_at_most_n_rounds(tmp_path):
    script = CurationScript({"seed": 3, "a": 4, "b": 5, "c": 6}, ["a", "b", "c"])
    pool = await run(tmp_path, script, [("q", "seed")], iterations=2)
    assert [s.answer for s in pool.examples[0].history] == ["seed", "a", "b"]


@pytest.mark.parametrize(("from_best", "rewritten"), [(False, "worse"), (True, "seed")])
async def test_rewrites_start_from_the_latest_answer_or_with_from_best_the_best(tmp_path, from_best, rewritten):
    script = CurationScript({"seed": 10, "worse": 5, "x": 5}, ["worse", "x"])
    await run(tmp_path, script, [("q", "seed")], iterations=2, from_best=from_best)
    second = [r for r in script.requests if r.role == "curator"][1]
    assert second.message.answer == rewritten


async def test_a_round_whose_judgement_keeps_failing_ends_the_loop_with_the_best_kept(tmp_path):
    script = CurationScript({"seed": 10, "better": 12}, ["better", "broken", "never"], failing={"broken"})
    pool = await run(tmp_path, script, [("q", "seed")])
    example = pool.examples[0]
    assert (example.answer, example.best_total) == ("better", 12)
    assert example.failure and "round 2" in example.failure
    assert all(s.total is not None for s in example.history)  # the failed round was never scored


async def test_every_seed_is_curated_at_once_and_the_pool_is_written(tmp_path):
    pairs = [(f"q{i}", f"s{i}") for i in range(4)]
    script = CurationScript({f"s{i}": 15 for i in range(4)}, [])
    script.expect_together = 4
    pool = await run(tmp_path, script, pairs)
    assert script.judging_peak == 4
    written = json.loads((tmp_path / "out" / "curated.json").read_text())
    assert [e["query"] for e in written["examples"]] == ["q0", "q1", "q2", "q3"]
    assert [e.query for e in pool.examples] == ["q0", "q1", "q2", "q3"]
    judged = [r for r in script.requests if r.role == "judge"]
    assert {r.message.stage for r in judged} == {"examples"}  # the curation persona


async def test_each_seed_s_criteria_are_selected_once_and_used_for_every_round(tmp_path):
    pairs = [("q0", "seed"), ("q1", "seed")]
    script = CurationScript({"seed": 3, "a": 4, "b": 5, "c": 6, "d": 7}, ["a", "b", "c", "d"])
    pool = await run(tmp_path, script, pairs, iterations=2)
    assert all(len(example.history) == 3 for example in pool.examples)  # the seed and two rounds each
    asked = [r.message for r in script.requests if r.role == "criteria"]
    assert sorted(m.query for m in asked) == ["q0", "q1"]
    lines = [json.loads(line) for line in (tmp_path / "out" / "trace.jsonl").read_text().splitlines()]
    selections = [line for line in lines if line.get("agent") == "criteria" and line["direction"] == "request"]
    assert len(selections) == 2  # not one per judgement (six), not even from the cache
    judged = [r.message for r in script.requests if r.role == "judge"]
    assert len(judged) == 6 and all(m.aspects == ASPECTS for m in judged)
