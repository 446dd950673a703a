"""Validation (graph/validation.py, drpo/held_out.py): held-out queries never reach the search, the
finalists answer them all at once, and the best validation mean is delivered, with its interval
in the artifact.

`search` runs the real beam graph in process on the scripted world, with the held-out queries in
the run's context as the runner gives them; `optimize` runs whole (runner, split, artifact).
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
from backends.errors import EngineRefused, RequestRejected, TransportFault
from backends.ledger import Ledger
from backends.registry import BackendPool, EngineFactory
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from drpo.eval_stats import bootstrap_interval
from drpo.runner import OptimizeOptions, optimize, resume_options
from graph.beam import build_beam_graph
from graph.context import RunContext
from graph.records import read_search
from graph.state import BeamNode
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
HELD_OUT = [f"Held-out question {i}?" for i in range(3)]


@dataclass
class Searched:
    final: dict[str, Any]
    levels: list[LevelRecord]
    candidates: list[CandidateRecord]
    trace: list[dict]

    @property
    def best(self) -> BeamNode:
        return self.final["best"]

    def validated(self) -> dict[str, CandidateRecord]:
        return {c.node_id: c for c in self.candidates if c.validation_verdicts}


async def search(tmp_path: Path, script: DRPOScript, *, held_out: list[str] | tuple[str, ...] = (),
                 backends: dict[str, BackendConfig] | None = None, roles: dict[str, RoleConfig] | None = None,
                 factory: EngineFactory | None = None, **settings: Any) -> Searched:
    """One search, as the runner wires it: the training stream, and held-out queries beside it."""
    config = RunConfig(search=SearchConfig(**settings), roles=roles or {},
                       backends=backends or {"default": BackendConfig(kind="openai", model="s", max_attempts=2)})
    pool = BackendPool(config, Ledger(config.budgets), factory or script.engine)
    store = InMemoryStore()
    tmp_path.mkdir(parents=True, exist_ok=True)
    with run_logs(tmp_path, Redactor()):
        async with anyio.create_task_group() as background:
            ctx = RunContext(config=config, backends=pool, catalogue=AspectCatalogue.load(),
                             examples=ExamplePool(load_examples(DEFAULT_EXAMPLES)[0]), queries=list(STREAM),
                             validation_queries=list(held_out), background=background)
            final = await build_beam_graph(store=store).ainvoke({}, context=ctx)
            background.cancel_scope.cancel()
    await pool.aclose()
    levels, candidates = await read_search(store, final.get("levels", []))
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    return Searched(final, levels, candidates, trace)


def lineage(message: RewriteRequest, call: int, i: int) -> str:
    return f"{message.prompt}>{i}"  # names that do not depend on the order calls arrive in


def shines_on_held_out(good: str) -> Any:
    """The search's judge likes every prompt alike; on held-out queries only `good` shines."""
    def score(prompt: str, query: str) -> int:
        if query.startswith("Held-out"):
            return 5 if prompt == INITIAL + good else 2
        return 3
    return score


async def test_the_deliverable_is_the_best_validation_mean_not_the_search_s_pick(tmp_path):
    plain = await search(tmp_path / "plain", DRPOScript(score=shines_on_held_out(">0>1"), propose=lineage),
                         depth=3, beam=2, actions=2)
    result = await search(tmp_path / "val", DRPOScript(score=shines_on_held_out(">0>1"), propose=lineage),
                          held_out=HELD_OUT, depth=3, beam=2, actions=2, validation=3)
    assert plain.best.node_id == "L1.b0.c0"  # all tied on training: the search keeps its first
    validated = result.validated()
    assert set(validated) == {n.node_id for n in result.final["beam"]}  # the final beam, no more
    assert result.best.prompt == INITIAL + ">0>1" and result.best.node_id != plain.best.node_id
    assert validated[result.best.node_id].validation_mean == 5.0
    (other,) = [c for c in validated.values() if c.node_id != result.best.node_id]
    assert other.validation_mean == 2.0 and [v.query_index for v in other.validation_verdicts] == [0, 1, 2]


async def test_validate_levels_adds_the_best_of_every_level(tmp_path):
    script = DRPOScript(score=shines_on_held_out(">0"), propose=lineage)  # level 0's first child wins validation
    result = await search(tmp_path, script, held_out=HELD_OUT, depth=4, beam=2, actions=2, validation=2,
                          validate_levels=True)
    level_bests = {level.kept[0] for level in result.levels}
    assert set(result.validated()) == level_bests | {n.node_id for n in result.final["beam"]}
    assert result.best.node_id == "L0.b0.c0" and result.best.prompt == INITIAL + ">0"


async def test_every_validation_call_is_in_flight_together(tmp_path):
    script = DRPOScript(score=lambda p, q: 3)
    in_flight, plain = InFlight(), script.handle

    async def handle(request):  # type: ignore[no-untyped-def]
        if isinstance(request.message, PolicyRequest | JudgeRequest) and request.message.query in HELD_OUT:
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
    (record,) = result.validated().values()
    assert [v.query_index for v in record.validation_verdicts] == [0, 2]
    warnings = [line for line in result.trace if line.get("agent") == "judge" and line.get("direction") == "failed"]
    assert [line["validation_query"] for line in warnings] == [1]


async def test_when_every_validation_call_fails_the_search_s_pick_stands(tmp_path):
    def fail(role, request):  # type: ignore[no-untyped-def]
        return RequestRejected("too long") if getattr(request.message, "query", "") in HELD_OUT else None

    plain = await search(tmp_path / "plain", DRPOScript(propose=lineage), depth=3, beam=2, actions=2)
    result = await search(tmp_path / "val", DRPOScript(propose=lineage, fail=fail), held_out=HELD_OUT, depth=3,
                          beam=2, actions=2, validation=3)
    assert result.validated() == {} and result.best.node_id == plain.best.node_id


async def test_without_held_out_queries_none_is_asked_and_the_search_s_pick_stands(tmp_path):
    script = DRPOScript(score=shines_on_held_out(">0>1"), propose=lineage)
    result = await search(tmp_path, script, depth=3, beam=2, actions=2)
    asked = {getattr(r.message, "query", None) for r in script.requests}
    assert not asked & set(HELD_OUT) and result.validated() == {}
    assert result.best.node_id == "L1.b0.c0"


# --- the whole run: the runner's split, the artifact ---------------------------------------------


def write_queries(path: Path, queries: list[str]) -> Path:
    path.write_text("\n".join(queries) + "\n")
    return path


async def run(tmp_path: Path, script: DRPOScript, queries: list[str], **search_settings: Any):  # type: ignore[no-untyped-def]
    config = RunConfig(search=SearchConfig(**search_settings),
                       backends={"default": BackendConfig(kind="openai", model="s", max_attempts=2)})
    tmp_path.mkdir(parents=True, exist_ok=True)
    options = OptimizeOptions(config=config, out=tmp_path / "out", train=write_queries(tmp_path / "q.txt", queries),
                              response_cache=False, criteria_cache=False, cache_dir=tmp_path / "cache")
    return await optimize(options, engine_factory=script.engine)


async def test_validation_queries_never_appear_in_the_training_stream(tmp_path):
    queries = [f"Question number {i}?" for i in range(12)]
    script = DRPOScript(propose=lineage)
    artifact = await run(tmp_path, script, queries, depth=4, max_depth_increase=0, beam=2, actions=2, seed=3,
                         validation=4)
    held = [item.query for item in artifact.validation_queries]
    assert len(held) == 4 and not set(held) & {item.query for item in artifact.query_order}
    search_requests = [r for r in script.requests if not set(held) & {getattr(r.message, "query", None)}]
    asked = [r.message for r in script.requests if getattr(r.message, "query", None) in held]
    assert {type(m) for m in asked} == {CriteriaRequest, PolicyRequest, JudgeRequest}  # never a RewriteRequest
    first_held = next(i for i, r in enumerate(script.requests) if getattr(r.message, "query", None) in held)
    assert all(not isinstance(r.message, RewriteRequest) for r in script.requests[first_held:])  # search over first
    assert len(search_requests) + len(asked) == len(script.requests)
    finalists = {c.prompt for c in artifact.candidates if c.validation_verdicts}
    assert {m.system_prompt for m in asked if isinstance(m, PolicyRequest)} == finalists
    assert len([m for m in asked if isinstance(m, PolicyRequest)]) == len(finalists) * 4  # each prompt once a query


async def test_the_held_out_queries_are_the_last_n_of_the_seeded_order(tmp_path):
    queries = [f"Question number {i}?" for i in range(12)]
    plain = await run(tmp_path / "plain", DRPOScript(propose=lineage), queries, depth=8, max_depth_increase=0,
                      seed=3)
    validated = await run(tmp_path / "val", DRPOScript(propose=lineage), queries, depth=8, max_depth_increase=0,
                          seed=3, validation=4)
    order = [item.query for item in plain.query_order]
    assert [item.query for item in validated.query_order] == order  # the first 8 train either way
    rest = [q for q in queries if q not in order]
    assert sorted(item.query for item in validated.validation_queries) == sorted(rest)


async def test_the_artifact_holds_each_validated_mean_with_its_bootstrap_interval(tmp_path):
    queries = [f"Q{i}?" for i in range(12)]
    script = DRPOScript(score=lambda prompt, query: 2 + int(query[1:-1]) % 3)  # 2, 3 or 4 by query
    artifact = await run(tmp_path, script, queries, depth=2, beam=1, actions=1, validation=3, seed=5)
    (record,) = [c for c in artifact.candidates if c.validation is not None]
    held = [item.query for item in artifact.validation_queries]
    rewards = [v.reward for v in record.validation_verdicts]
    assert rewards == [2.0 + int(q[1:-1]) % 3 for q in held]
    assert record.validation == bootstrap_interval(rewards, samples=2000, seed=5)  # seeded by the run's seed
    assert record.validation.n == 3 and record.validation.low <= record.validation.mean <= record.validation.high
    saved = json.loads((tmp_path / "out" / "artifact.json").read_text())
    (saved_record,) = [c for c in saved["candidates"] if c["validation"] is not None]
    assert saved_record["validation"] == record.validation.model_dump()
    assert artifact.best.node_id == record.node_id


async def test_a_run_stopped_during_validation_resumes_to_the_same_delivery(tmp_path):
    queries = [f"Question number {i}?" for i in range(12)]
    settings = {"depth": 4, "max_depth_increase": 0, "beam": 2, "actions": 2, "validation": 3}

    def script() -> DRPOScript:
        return DRPOScript(score=lambda prompt, query: 2 + len(prompt) % 3, propose=lineage)

    reference = await run(tmp_path / "reference", script(), queries, **settings)

    stopping = script()
    plain = stopping.handle

    def refused_on_held_out(request):  # type: ignore[no-untyped-def]
        if isinstance(request.message, PolicyRequest) and request.message.query in held:
            raise EngineRefused("the key was revoked")  # stops the run, checkpointed, in the validate node
        return plain(request)

    held = [item.query for item in reference.validation_queries]
    stopping.handle = refused_on_held_out  # type: ignore[method-assign]
    with pytest.raises(EngineRefused):
        await run(tmp_path / "stopped", stopping, queries, **settings)
    assert not (tmp_path / "stopped" / "out" / "prompt.txt").exists()
    healthy = script()
    resumed = await optimize(resume_options(tmp_path / "stopped" / "out", cache_dir=tmp_path / "cache"),
                             engine_factory=healthy.engine)
    assert resumed.prompt == reference.prompt and resumed.best.node_id == reference.best.node_id
    assert not any(isinstance(r.message, RewriteRequest) for r in healthy.requests)  # the search is not redone
    assert [c.validation for c in resumed.candidates] == [c.validation for c in reference.candidates]
