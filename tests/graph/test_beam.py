"""The beam search's rules, run whole on the scripted world (tests/scripted.py): call counts, depth
bumps, selection, failures, concurrency and the trace. Fakes decide from the agents' typed
messages (`LLMRequest.message`), never from prompt text."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import structlog

from backends.errors import InvalidOutput, TransportFault
from drpo.runner import OptimizeOptions, optimize
from schemas.artifact import RunArtifact
from schemas.config import BackendConfig, RunConfig, SearchConfig
from schemas.messages import JudgeRequest, PolicyRequest, RewriteRequest
from tests.in_flight import InFlight
from tests.scripted import DRPOScript, prompt_of

pytestmark = pytest.mark.anyio

INITIAL = "You are a helpful assistant."


def write_queries(path: Path, n: int = 40) -> Path:
    path.write_text("\n".join(f"Question number {i}?" for i in range(n)) + "\n")
    return path


def trace_of(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "trace.jsonl").read_text().splitlines()]


async def run(
    tmp_path: Path, script: DRPOScript, critics: list[str] | None = None, concurrency: int = 16, **search
) -> RunArtifact:
    config = RunConfig(
        search=SearchConfig(**search),
        backends={"default": BackendConfig(kind="openai", model="scripted", max_attempts=2,
                                           max_concurrency=concurrency)},
        critics=critics or [],
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    options = OptimizeOptions(config=config, out=tmp_path / "out", train=write_queries(tmp_path / "q.txt"))
    return await optimize(options, engine_factory=script.engine)


def expected_calls(depth: int, beam: int, actions: int) -> dict[str, int]:
    """drpo-method.md §10 without skips: w0 = 1, c_l = A*w_l, w_(l+1) = min(B, c_l); root adds 1+1+1."""
    width, rewrites, children = 1, 0, 0
    for _ in range(depth - 1):
        rewrites += width
        children += actions * width
        width = min(beam, actions * width)
    return {"rewriter": rewrites, "policy": 1 + children, "judge": 1 + children, "criteria": depth}


@pytest.mark.parametrize(("depth", "beam", "actions"), [(4, 2, 3), (3, 1, 2), (5, 3, 2), (1, 2, 3)])
async def test_call_counts_follow_the_papers_formula(tmp_path, depth, beam, actions):
    artifact = await run(tmp_path, DRPOScript(score=lambda p, q: 3), depth=depth, beam=beam, actions=actions)
    calls = {role: account.usage.calls for role, account in artifact.accounting.by_role.items()}
    expected = {role: n for role, n in expected_calls(depth, beam, actions).items() if n}
    assert calls == expected
    assert len(artifact.levels) == depth - 1


async def test_a_skipping_level_raises_the_depth_once_up_to_m(tmp_path):
    script = DRPOScript(score=lambda p, q: 5)  # all 5s: every node skips its rewrite
    artifact = await run(tmp_path, script, depth=3, max_depth_increase=2, beam=2, actions=3)
    assert [lv.max_depth for lv in artifact.levels] == [4, 5, 5, 5]
    assert [lv.bumped for lv in artifact.levels] == [True, True, False, False]
    assert script.calls["rewriter"] == 0
    candidates = {c.node_id: c for c in artifact.candidates}
    for level in artifact.levels:  # one child, the parent's prompt
        (child,) = [candidates[node_id] for node_id in level.candidates]
        assert child.skipped and child.prompt == INITIAL
    assert artifact.prompt == INITIAL
    assert script.calls["criteria"] == 5  # D + M queries were used, each selected once


LINEAGE_SCORES = {">0": 4, ">1": 1, ">0>0": 1, ">0>1": 1, ">1>0": 3, ">1>1": 3}


def lineage_score(prompt: str, query: str) -> int:
    return LINEAGE_SCORES.get(prompt.removeprefix(INITIAL), 2)


def lineage(message: RewriteRequest, call: int, i: int) -> str:
    return f"{message.prompt}>{i}"  # deterministic names: parent prompt + ">i"


async def test_the_beam_keeps_the_best_path_mean_not_the_best_last_reward(tmp_path):
    artifact = await run(tmp_path, DRPOScript(score=lineage_score, propose=lineage), depth=3, beam=2, actions=2)
    last = artifact.levels[-1]
    # >1>x scored 3 at the last level but their paths average (1+3)/2 = 2 < (4+1)/2 = 2.5 for >0>x.
    assert last.kept == ["L1.b0.c0", "L1.b0.c1"]
    assert artifact.prompt == INITIAL + ">0>0"
    assert artifact.best.rewards == [4.0, 1.0]
    assert artifact.best.score == 2.5


async def test_with_best_last_selected_the_beam_keeps_the_best_last_reward(tmp_path):
    script = DRPOScript(score=lineage_score, propose=lineage)
    artifact = await run(tmp_path, script, depth=3, beam=2, actions=2, selector="best_last")
    assert artifact.config.search.selector == "best_last"
    assert artifact.levels[-1].kept == ["L1.b1.c0", "L1.b1.c1"]  # >1>x: last reward 3 beats >0>x's 1
    assert artifact.prompt == INITIAL + ">1>0"  # the first of the tie, in expansion order
    assert artifact.best.rewards == [1.0, 3.0]
    assert artifact.best.score == 3.0


async def test_a_candidate_whose_judgement_keeps_failing_is_dropped_never_scored(tmp_path):
    def fail(role, request):  # type: ignore[no-untyped-def]
        judged = request.message
        if isinstance(judged, JudgeRequest) and prompt_of(judged.response) == INITIAL + "/1.1":
            return InvalidOutput("not JSON")
        return None

    script = DRPOScript(score=lambda p, q: 3, fail=fail)
    artifact = await run(tmp_path, script, depth=2, beam=2, actions=2)
    level = artifact.levels[0]
    failed = [c for c in artifact.candidates if c.failure is not None]
    assert level.candidates == ["L0.b0.c0", "L0.b0.c1"] and [c.node_id for c in failed] == ["L0.b0.c1"]
    assert failed[0].prompt == INITIAL + "/1.1" and failed[0].verdicts == [] and failed[0].reward is None
    assert level.kept == ["L0.b0.c0"]
    assert artifact.accounting.by_role["judge"].faults == {"invalid_output": 2}
    assert artifact.accounting.by_role["judge"].failed_calls == 1
    assert level.best_reward == level.mean_reward == 3.0  # the failure did not enter as a 0


async def test_when_every_candidate_fails_the_run_stops_with_the_previous_beam(tmp_path):
    def fail(role, request):  # type: ignore[no-untyped-def]
        asked = request.message
        down = isinstance(asked, PolicyRequest) and "/" in asked.system_prompt  # every candidate, not the root
        return TransportFault("down", status=503) if down else None

    script = DRPOScript(score=lambda p, q: 3, fail=fail)
    artifact = await run(tmp_path, script, depth=4, beam=2, actions=2)
    assert artifact.stopped == "every candidate of level 0 failed"
    assert artifact.prompt == INITIAL
    assert len(artifact.levels) == 1


async def test_an_extra_critic_joins_the_judge_and_appears_in_the_trace(tmp_path):
    artifact = await run(tmp_path, DRPOScript(score=lambda p, q: 3), critics=["length"], depth=2, beam=1, actions=1)
    lines = trace_of(tmp_path)
    critic = [line for line in lines if line["agent"] == "length_critic"]
    assert {line["direction"] for line in critic} == {"request", "reply"}
    assert {line["message_type"] for line in critic} == {"LengthRequest", "Judgement"}
    assert "Length" in artifact.best.last_scores  # merged into the verdict the rewriter and the reward see
    assert artifact.best.last_scores["Length"].score == 1  # "ANSWER[...]" is far below 40 words


async def test_the_trace_follows_one_candidate_from_rewrite_to_judgement(tmp_path):
    await run(tmp_path, DRPOScript(score=lambda p, q: 3), depth=2, beam=2, actions=2)
    lines = trace_of(tmp_path)
    run_ids = {line["run_id"] for line in lines}
    assert len(run_ids) == 1
    rewrite = next(line for line in lines if line["agent"] == "rewriter" and line["direction"] == "reply")
    proposed = rewrite["message"]["prompts"][1]
    mine = [line for line in lines if line.get("node_id") == "L0.b0.c1"]
    steps = [(line["agent"], line["direction"]) for line in mine if line["agent"] in ("policy", "judge")]
    assert steps == [("policy", "request"), ("policy", "reply"), ("judge", "request"), ("judge", "reply")]
    policy_request = next(line for line in mine if line["agent"] == "policy")
    assert policy_request["message"]["system_prompt"] == proposed
    assert all(line["level"] == 0 and line["beam"] == 0 and line["candidate"] == 1 for line in mine)
    reply = next(line for line in mine if line["agent"] == "judge" and line["direction"] == "reply")
    assert reply["latency_s"] >= 0 and reply["tokens_out"] > 0


async def test_a_call_s_request_reply_and_fault_lines_share_one_call_id(tmp_path):
    first_try: set[str] = set()

    def fail(role, request):  # type: ignore[no-untyped-def]
        judged = request.message
        if isinstance(judged, JudgeRequest) and prompt_of(judged.response) == INITIAL + "/1.0":
            if judged.query not in first_try:  # the first attempt fails, the retry succeeds
                first_try.add(judged.query)
                return InvalidOutput("not JSON")
        return None

    script = DRPOScript(score=lambda p, q: 3, fail=fail)
    plain, bound = script.handle, []

    def handle(request):  # type: ignore[no-untyped-def]
        bound.append((request.role, structlog.contextvars.get_contextvars().get("call_id")))
        return plain(request)

    script.handle = handle  # type: ignore[method-assign]
    await run(tmp_path, script, depth=2, beam=1, actions=2)
    lines = trace_of(tmp_path)
    calls = [line for line in lines if line["event"] == "agent.message"]
    by_id: dict[str, list[str]] = {}
    for line in calls:
        by_id.setdefault(line["call_id"], []).append(line["direction"])
    assert all(directions == ["request", "reply"] for directions in by_id.values())  # one pair per id
    assert len(by_id) == len(calls) // 2
    # Inside the engine the call's id is bound, so whatever the layers log carries it.
    requested = {(line["agent"], line["call_id"]) for line in calls if line["direction"] == "request"}
    assert set(bound) <= requested and len(bound) == script.calls.total()
    (fault,) = [line for line in lines if line["event"] == "engine.fault"]
    judged = [line for line in calls if line["call_id"] == fault["call_id"]]
    assert [(line["agent"], line["node_id"]) for line in judged] == [("judge", "L0.b0.c0")] * 2


def slow_policy(script: DRPOScript) -> InFlight:
    """Make every policy call take 0.2 s and count how many are in flight at once."""
    in_flight = InFlight()
    plain = script.handle

    async def handle(request):  # type: ignore[no-untyped-def]
        if request.role == "policy":
            await in_flight.hold(0.2)
        return plain(request)

    script.handle = handle  # type: ignore[method-assign]
    return in_flight


async def test_all_generations_of_a_level_are_in_flight_together(tmp_path):
    script = DRPOScript(score=lambda p, q: 3)
    in_flight = slow_policy(script)
    await run(tmp_path, script, depth=3, beam=2, actions=3)
    assert in_flight.peak == 6  # B x A candidates of level 1, all at once


async def test_a_judgement_starts_as_soon_as_its_own_answer_lands(tmp_path):
    script = DRPOScript(score=lambda p, q: 3)
    plain = script.handle
    events: list[str] = []

    async def handler(request):  # type: ignore[no-untyped-def]
        if isinstance(request.message, PolicyRequest) and request.message.system_prompt.endswith("/1.2"):
            await anyio.sleep(0.5)  # one slow candidate
            events.append("slow answer done")
        if request.role == "judge":
            events.append("judge")
        return plain(request)

    script.handle = handler  # type: ignore[method-assign]
    await run(tmp_path, script, depth=2, beam=1, actions=3)
    assert events.index("slow answer done") > 1  # the two other candidates (and the root) were judged first
    assert events[:3] == ["judge", "judge", "judge"]


async def test_the_query_order_is_seeded_and_recorded(tmp_path):
    first = await run(tmp_path / "a", DRPOScript(), depth=3, beam=1, actions=1, seed=7)
    again = await run(tmp_path / "b", DRPOScript(), depth=3, beam=1, actions=1, seed=7)
    other = await run(tmp_path / "c", DRPOScript(), depth=3, beam=1, actions=1, seed=8)
    assert [q.query for q in first.query_order] == [q.query for q in again.query_order]
    assert [q.query for q in first.query_order] != [q.query for q in other.query_order]
    assert len(first.query_order) == 3


@pytest.mark.parametrize(("depth", "beam", "actions", "m"), [(4, 2, 3, 3), (3, 1, 2, 2)])
async def test_minibatch_mode_scores_every_candidate_on_m_queries(tmp_path, depth, beam, actions, m):
    script = DRPOScript(score=lambda p, q: 3)
    artifact = await run(tmp_path, script, depth=depth, beam=beam, actions=actions, queries_per_level=m)
    calls = {role: account.usage.calls for role, account in artifact.accounting.by_role.items()}
    one = expected_calls(depth, beam, actions)
    assert calls == {"rewriter": one["rewriter"], "policy": m * one["policy"], "judge": m * one["judge"],
                     "criteria": m * depth}
    assert len(artifact.query_order) == m * depth
    assert [level.query_indices for level in artifact.levels] == [
        list(range(m * (i + 1), m * (i + 2))) for i in range(depth - 1)
    ]
    for record in artifact.candidates:  # every candidate keeps one verdict per query of its block
        block = list(range(m * (record.level + 1), m * (record.level + 2)))
        assert [v.query_index for v in record.verdicts] == block


async def test_a_minibatch_reward_is_the_mean_and_the_rewriter_sees_the_worst_answer(tmp_path):
    def score(prompt: str, query: str) -> int:
        return {"Question number 17?": 1}.get(query, 4)  # one hard query in the stream

    script = DRPOScript(score=score)
    artifact = await run(tmp_path, script, depth=2, beam=1, actions=1, queries_per_level=4)
    hard = "Question number 17?" in [q.query for q in artifact.query_order[4:8]]
    assert artifact.best.rewards == [(1 + 4 * 3) / 4 if hard else 4.0]
    if hard:
        assert artifact.best.last_query == "Question number 17?"


async def test_minibatch_calls_of_a_level_are_all_in_flight_together(tmp_path):
    script = DRPOScript(score=lambda p, q: 3)
    in_flight = slow_policy(script)
    await run(tmp_path, script, depth=3, beam=2, actions=3, queries_per_level=4, concurrency=64)
    assert in_flight.peak == 24  # 2 x 3 candidates x 4 queries
