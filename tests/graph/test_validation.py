"""Validation (graph/validation.py): held-out queries never reach the search, the finalists answer
them all at once, and the best validation mean is delivered, with its interval in the records.

`search` runs the real beam graph in process on the scripted world, with the held-out queries in
the run's context as the runner gives them; the trace goes to `tmp/trace.jsonl`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from langgraph.store.memory import InMemoryStore

from agents.curator import ExamplePool
from backends.errors import TransportFault
from backends.ledger import Ledger
from backends.registry import BackendPool, EngineFactory
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from graph.beam import build_beam_graph
from graph.context import RunContext
from graph.records import read_search
from graph.state import BeamNode
from graph.validation import HeldOutError, check_held_out, projected_calls, split_stream
from schemas.catalogue import AspectCatalogue
from schemas.config import BackendConfig, RoleConfig, RunConfig, SearchConfig
from schemas.messages import CriteriaRequest, JudgeRequest, PolicyRequest, RewriteRequest
from schemas.records import CandidateRecord, LevelRecord
from telemetry.logs import run_logs
from telemetry.redact import Redactor
from tests.in_flight import InFlight
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio

INITIAL = "You are a helpful assistant."
STREAM = [f"Question number {i}?" for i in range(20)]


@dataclass
class Searched:
    final: dict[str, Any]
    levels: list[LevelRecord]
    candidates: list[CandidateRecord]
    trace: list[dict]

    @property
    def best(self) -> BeamNode:
        return self.final["best"]

    def record(self, node_id: str) -> CandidateRecord:
        return next(c for c in self.candidates if c.node_id == node_id)


async def search(tmp_path: Path, script: DRPOScript, *, queries: list[str] | None = None, held_out: list[str] = (),
                 backends: dict[str, BackendConfig] | None = None, roles: dict[str, RoleConfig] | None = None,
                 factory: EngineFactory | None = None, **settings: Any) -> Searched:
    """One search, as the runner wires it: training stream in `queries`, held-out ones beside it."""
    config = RunConfig(search=SearchConfig(**settings), roles=roles or {},
                       backends=backends or {"default": BackendConfig(kind="openai", model="s", max_attempts=2)})
    pool = BackendPool(config, Ledger(config.budgets), factory or script.engine)
    store = InMemoryStore()
    tmp_path.mkdir(parents=True, exist_ok=True)
    with run_logs(tmp_path, Redactor()):
        async with anyio.create_task_group() as background:
            ctx = RunContext(config=config, backends=pool, catalogue=AspectCatalogue.load(),
                             examples=ExamplePool(load_examples(DEFAULT_EXAMPLES)[0]), queries=list(queries or STREAM),
                             validation_queries=list(held_out), background=background)
            final = await build_beam_graph(store=store).ainvoke({}, context=ctx)
            background.cancel_scope.cancel()
    await pool.aclose()
    levels, candidates = await read_search(store, final.get("levels", []))
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    return Searched(final, levels, candidates, trace)


# --- the held-out queries -----------------------------------------------------------------------


def test_the_last_n_of_the_seeded_order_are_held_out_and_no_copy_stays_in_training():
    stream = ["a", "b", "c", "d", "b", "e"]  # "b" twice: its earlier copy must leave training too
    training, held = split_stream(stream, 2)
    assert held == ["b", "e"]
    assert training == ["a", "c", "d"]
    assert split_stream(stream, 0) == (stream, [])


def test_holding_out_the_whole_stream_is_one_clear_line_with_exit_code_2():
    with pytest.raises(HeldOutError, match=r"--validate 3: the training stream has only 3 queries") as raised:
        split_stream(["a", "b", "c"], 3)
    assert raised.value.exit_code == 2 and "\n" not in str(raised.value)


def test_a_held_out_file_sharing_a_query_with_training_is_refused():
    check_held_out(["a", "b"], ["c"])
    with pytest.raises(HeldOutError, match=r"--val: 1 held-out queries are also in the training stream \(e.g. 'b'\)"):
        check_held_out(["a", "b"], ["b", "c"])


def lineage(message: RewriteRequest, call: int, i: int) -> str:
    return f"{message.prompt}>{i}"  # names that do not depend on the order calls arrive in


def _score_by_prompt(good: str) -> Any:
    """The search's judge likes every prompt alike; on held-out queries only `good` shines."""
    def score(prompt: str, query: str) -> int:
        if query.startswith("Held-out"):
            return 5 if prompt == INITIAL + good else 2
        return 3
    return score


HELD_OUT = [f"Held-out question {i}?" for i in range(3)]


async def test_validation_queries_never_appear_in_the_training_stream(tmp_path):
    training, held = split_stream(STREAM + HELD_OUT, len(HELD_OUT))
    script = DRPOScript(score=_score_by_prompt(">0>1"), propose=lineage)
    result = await search(tmp_path, script, queries=training, held_out=held, depth=3, beam=2, actions=2, validation=3)
    assert held == HELD_OUT and not set(held) & set(training)
    rewrites = [r.message for r in script.requests if isinstance(r.message, RewriteRequest)]
    assert rewrites and all(m.query not in held for m in rewrites)  # the rewriter never learns from one
    finalists = {c.prompt for c in result.candidates if c.validation is not None}
    answered = [r.message for r in script.requests if isinstance(r.message, PolicyRequest) and r.message.query in held]
    assert {m.system_prompt for m in answered} == finalists  # only the finalists answer held-out queries...
    assert len(answered) == len(finalists) * len(held)  # ...each exactly once per query
    last_search_call = max(i for i, r in enumerate(script.requests) if isinstance(r.message, RewriteRequest))
    first_held = min(i for i, r in enumerate(script.requests) if isinstance(r.message, PolicyRequest)
                     and r.message.query in held)
    assert first_held > last_search_call  # and only once the search is over
    verdicts = [c.verdicts for c in result.candidates]
    assert all(v.query_index < len(training) for vs in verdicts for v in vs)


async def test_the_deliverable_is_the_best_validation_mean_not_the_search_s_pick(tmp_path):
    script = DRPOScript(score=_score_by_prompt(">0>1"), propose=lineage)
    plain = await search(tmp_path / "plain", DRPOScript(score=_score_by_prompt(">0>1"), propose=lineage), depth=3, beam=2, actions=2)
    result = await search(tmp_path / "val", script, held_out=HELD_OUT, depth=3, beam=2, actions=2, validation=3)
    assert plain.best.node_id == "L1.b0.c0"  # all tied on training: the search keeps its first
    validated = {c.node_id: c for c in result.candidates if c.validation is not None}
    assert set(validated) == {n.node_id for n in result.final["beam"]}  # the final beam, no more
    assert result.best.prompt == INITIAL + ">0>1"
    assert result.record(result.best.node_id).validation.mean == 5.0
    assert max(validated.values(), key=lambda c: c.validation.mean).node_id == result.best.node_id
    other = next(c for c in validated.values() if c.node_id != result.best.node_id)
    assert other.validation.mean == 2.0 and [v.query_index for v in other.validation_verdicts] == [0, 1, 2]


async def test_validation_records_carry_a_bootstrap_interval_around_the_mean(tmp_path):
    def score(prompt: str, query: str) -> int:
        return {"Held-out question 0?": 2, "Held-out question 1?": 4, "Held-out question 2?": 3}.get(query, 3)

    result = await search(tmp_path, DRPOScript(score=score), held_out=HELD_OUT, depth=2, beam=1, actions=1,
                          validation=3)
    (record,) = [c for c in result.candidates if c.validation is not None]
    assert record.validation.mean == 3.0 and record.validation.n == 3
    assert 2.0 <= record.validation.low < 3.0 < record.validation.high <= 4.0
    assert [v.reward for v in record.validation_verdicts] == [2.0, 4.0, 3.0]


async def test_validate_levels_adds_the_best_of_every_level(tmp_path):
    script = DRPOScript(score=_score_by_prompt(">0"), propose=lineage)  # the first level's first child wins validation
    result = await search(tmp_path, script, held_out=HELD_OUT, depth=4, beam=2, actions=2, validation=2,
                          validate_levels=True)
    validated = {c.node_id for c in result.candidates if c.validation is not None}
    level_bests = {level.kept[0] for level in result.levels}
    assert validated == level_bests | {n.node_id for n in result.final["beam"]}
    assert result.best.node_id == "L0.b0.c0" and result.best.prompt == INITIAL + ">0"


async def test_every_validation_call_is_in_flight_together(tmp_path):
    script = DRPOScript(score=lambda p, q: 3)
    in_flight, plain = InFlight(), script.handle

    async def handle(request):  # type: ignore[no-untyped-def]
        if isinstance(request.message, PolicyRequest) and request.message.query in HELD_OUT:
            await in_flight.hold(0.2)
        return plain(request)

    script.handle = handle  # type: ignore[method-assign]
    await search(tmp_path, script, held_out=HELD_OUT, depth=3, beam=2, actions=3, validation=3)
    assert in_flight.peak == 2 * 3  # both finalists on all three queries at once


async def test_a_validation_query_that_keeps_failing_is_left_out_never_scored(tmp_path):
    def fail(role, request):  # type: ignore[no-untyped-def]
        judged = request.message
        if isinstance(judged, JudgeRequest) and judged.query == HELD_OUT[1]:
            return TransportFault("down")
        return None

    result = await search(tmp_path, DRPOScript(score=lambda p, q: 3, fail=fail), held_out=HELD_OUT, depth=2,
                          beam=1, actions=1, validation=3)
    (record,) = [c for c in result.candidates if c.validation is not None]
    assert [v.query_index for v in record.validation_verdicts] == [0, 2]
    assert record.validation.n == 2


async def test_without_validation_no_held_out_query_is_asked_and_the_search_s_pick_stands(tmp_path):
    script = DRPOScript(score=_score_by_prompt(">0>1"), propose=lineage)
    result = await search(tmp_path, script, held_out=HELD_OUT, depth=3, beam=2, actions=2)
    asked = {getattr(r.message, "query", None) for r in script.requests
             if isinstance(r.message, PolicyRequest | CriteriaRequest)}
    assert not asked & set(HELD_OUT)
    assert all(c.validation is None for c in result.candidates)
    assert result.best.node_id == "L1.b0.c0"


async def test_validation_spends_no_more_calls_than_projected(tmp_path):
    held = HELD_OUT[:2]
    plain_script, script = DRPOScript(propose=lineage), DRPOScript(propose=lineage)
    plain = await search(tmp_path / "plain", plain_script, depth=3, beam=2, actions=2, judge_samples=2)
    result = await search(tmp_path / "val", script, held_out=held, depth=3, beam=2, actions=2, judge_samples=2,
                          validation=2, validate_levels=True)
    projected = projected_calls(SearchConfig(beam=2, judge_samples=2, validation=2, validate_levels=True),
                                levels=len(result.levels))
    extra = {role: script.calls[role] - plain_script.calls[role] for role in ("criteria", "policy", "judge")}
    finalists = len({c.prompt for c in result.candidates if c.validation is not None})
    assert extra == {"criteria": 2, "policy": 2 * finalists, "judge": 2 * 2 * finalists}
    assert all(extra[role] <= projected[role] for role in extra)
    assert finalists == 3  # the final beam (2) and level 0's best; level 1's best leads the final beam
    assert projected_calls(SearchConfig(), levels=5) == {"criteria": 0, "policy": 0, "judge": 0}
