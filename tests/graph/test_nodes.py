"""The beam graph one node at a time: one state in, one update out.

Most tests put the compiled graph in a state as if the node before had just run
(`aupdate_state(..., as_node=...)`), run exactly the node under test (`interrupt_after`), and
read that node's update from the `updates` stream and the records it wrote from the store. The
nodes reached through `route_level` (`expand`, `finish`) are called as functions with a LangGraph
`Runtime`, since updating state as `evaluate_root` or `keep_top` would run that router without one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore

from agents.curator import ExamplePool
from backends.errors import TransportFault
from backends.ledger import BudgetExhausted, Ledger
from backends.registry import BackendPool
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from graph.beam import build_beam_graph, expand, finish
from graph.context import RunContext
from graph.records import CANDIDATES, LEVELS
from graph.state import BeamNode, Child, Evaluation, ExpandTask, checkpoint_serde
from schemas.catalogue import AspectCatalogue
from schemas.config import BackendConfig, Budget, RunConfig, SearchConfig
from schemas.messages import AspectScore, PolicyRequest
from schemas.records import CandidateRecord, LevelRecord
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio

PREVIOUS = {"evaluate_root": "prefetch_criteria", "keep_top": "expand"}
"""The node whose update leads the graph to the node under test."""
QUERIES = [f"Question number {i}?" for i in range(12)]


@asynccontextmanager
async def context(
    script: DRPOScript, budgets: dict[str, Budget] | None = None, **search: Any
) -> AsyncIterator[RunContext]:
    config = RunConfig(search=SearchConfig(**search), backends={"default": BackendConfig(kind="openai", model="s")},
                       budgets=budgets or {})
    pool = BackendPool(config, Ledger(config.budgets), script.engine)
    async with anyio.create_task_group() as background:
        yield RunContext(config=config, backends=pool, catalogue=AspectCatalogue.load(),
                         examples=ExamplePool(load_examples(DEFAULT_EXAMPLES)[0]), queries=QUERIES,
                         background=background)
        background.cancel_scope.cancel()
    await pool.aclose()


async def node_update(node: str, state: dict[str, Any], ctx: RunContext, store: InMemoryStore) -> list[dict]:
    """The updates `node` returns (one per branch for `expand`) when the graph stands in `state`."""
    graph = build_beam_graph(checkpointer=InMemorySaver(serde=checkpoint_serde()), store=store)
    thread = {"configurable": {"thread_id": "test"}}
    await graph.aupdate_state(thread, state, as_node=PREVIOUS[node])
    updates = []
    async for chunk in graph.astream(None, thread, context=ctx, stream_mode="updates", interrupt_after=[node]):
        updates += [update for name, update in chunk.items() if name == node]
    return updates


def scored(i: int, *rewards: float, parent: str = "root", skipped: bool = False) -> Child:
    node_id = f"L{len(rewards) - 1}.b0.c{i}"
    node = BeamNode(node_id=node_id, parent_id=parent, level=len(rewards) - 1, prompt=f"prompt {i}",
                    history=[f"prompt {i}"], path_rewards=list(rewards))
    return Child(order=(0, i), node_id=node_id, parent_id=parent, node=node, skipped=skipped)


def failed(i: int, level: int = 0) -> Child:
    return Child(order=(0, i), node_id=f"L{level}.b0.c{i}", parent_id="root", failure="judge call failed")


INITIAL = "You are a helpful assistant."
ROOT = BeamNode(node_id="root", level=-1, prompt=INITIAL, history=[INITIAL],
                evaluation=Evaluation(query_index=0, query=QUERIES[0], response="r",
                                      scores={"Clarity": AspectScore(rationale="x", score=2)}, reward=2.0))


async def level_record(store: InMemoryStore, key: str) -> LevelRecord:
    item = await store.aget(LEVELS, key)
    assert item is not None
    return LevelRecord.model_validate(item.value)


async def test_keep_top_keeps_the_selector_s_beam_and_records_the_level():
    store = InMemoryStore()
    # in the order they arrived, not in expansion order
    children = [scored(2, 3, 2), failed(1, level=1), scored(0, 4, 1), scored(3, 1, 3)]
    async with context(DRPOScript(), depth=4, beam=2, actions=4) as ctx:
        (update,) = await node_update("keep_top", {"level": 1, "max_depth": 4, "beam": [ROOT], "children": children},
                                      ctx, store)
    # path means 2.5 and 2.5 (a tie, kept in expansion order) beat 2.0
    assert [n.node_id for n in update["beam"]] == ["L1.b0.c0", "L1.b0.c2"]
    assert (update["level"], update["max_depth"], update["children"], update["levels"]) == (2, 4, None, ["level-1"])
    assert "stopped" not in update
    record = await level_record(store, "level-1")
    assert record.candidates == ["L1.b0.c0", "L1.b0.c1", "L1.b0.c2", "L1.b0.c3"]  # expansion order
    assert record.kept == ["L1.b0.c0", "L1.b0.c2"]
    assert (record.query_indices, record.best_reward, record.mean_reward) == ([2], 3.0, 2.0)


async def test_keep_top_asks_the_configured_selector():
    children = [scored(0, 4, 1), scored(1, 1, 3), scored(2, 3, 2)]
    async with context(DRPOScript(), depth=4, beam=2, selector="best_last") as ctx:
        (update,) = await node_update("keep_top", {"level": 1, "max_depth": 4, "beam": [ROOT], "children": children},
                                      ctx, InMemoryStore())
    assert [n.node_id for n in update["beam"]] == ["L1.b0.c1", "L1.b0.c2"]


async def test_a_skip_raises_the_depth_and_prefetches_the_query_it_adds():
    script = DRPOScript()
    async with context(script, depth=3, max_depth_increase=1, beam=2) as ctx:
        (update,) = await node_update(
            "keep_top", {"level": 0, "max_depth": 3, "beam": [ROOT], "children": [scored(0, 5, skipped=True)]},
            ctx, InMemoryStore())
        with anyio.fail_after(5):
            while not script.calls["criteria"]:
                await anyio.sleep(0.01)
    assert update["max_depth"] == 4
    (request,) = [r for r in script.requests if r.role == "criteria"]
    assert request.message.query == QUERIES[3]  # the block the bump adds

    async with context(DRPOScript(), depth=3, max_depth_increase=1, beam=2) as ctx:  # at +M already: no bump
        (update,) = await node_update(
            "keep_top", {"level": 1, "max_depth": 4, "beam": [ROOT], "children": [scored(0, 5, 5, skipped=True)]},
            ctx, InMemoryStore())
    assert update["max_depth"] == 4


async def test_when_every_candidate_failed_keep_top_stops_with_the_beam_it_had():
    store = InMemoryStore()
    async with context(DRPOScript(), depth=4) as ctx:
        (update,) = await node_update("keep_top", {"level": 0, "max_depth": 4, "beam": [ROOT],
                                                   "children": [failed(0), failed(1)]}, ctx, store)
    assert update["stopped"] == "every candidate of level 0 failed"
    assert "beam" not in update and "level" not in update
    assert (await level_record(store, "level-0")).kept == []


async def test_a_spent_budget_stops_the_search_after_the_level():
    async with context(DRPOScript(), budgets={"judge": Budget(calls=1)}, depth=4) as ctx:
        ctx.backends.ledger.reserve("judge")
        with pytest.raises(BudgetExhausted):
            ctx.backends.ledger.reserve("judge")
        (update,) = await node_update("keep_top", {"level": 0, "max_depth": 4, "beam": [ROOT],
                                                   "children": [scored(0, 3)]}, ctx, InMemoryStore())
    assert [n.node_id for n in update["beam"]] == ["L0.b0.c0"]  # this level's result is kept
    assert update["stopped"] == "judge reached its budget of 1 calls"


async def test_expand_writes_one_record_per_candidate_with_a_verdict_per_query():
    store = InMemoryStore()
    script = DRPOScript(score=lambda prompt, query: 2 if query == QUERIES[3] else 4)

    def fail(role, request):  # type: ignore[no-untyped-def]
        asked = request.message
        down = isinstance(asked, PolicyRequest) and asked.system_prompt.endswith(".1")
        return TransportFault("down", status=503) if down else None

    script.fail = fail
    async with context(script, depth=3, beam=1, actions=2, queries_per_level=2) as ctx:
        update = await expand(ExpandTask(node=ROOT, beam_index=0, level=0), Runtime(context=ctx, store=store))
    good, bad = update["children"]
    assert good.node.path_rewards == [3.0] and good.node.evaluation.query == QUERIES[3]  # the worst answer teaches
    assert bad.node is None and bad.failure
    items = {item.key: CandidateRecord.model_validate(item.value) for item in await store.asearch(CANDIDATES)}
    assert set(items) == {"L0.b0.c0", "L0.b0.c1"}
    record = items["L0.b0.c0"]
    assert [(v.query_index, v.reward) for v in record.verdicts] == [(2, 4.0), (3, 2.0)]  # both kept, not a mean
    assert (record.parent_id, record.level, record.reward, record.path_rewards) == ("root", 0, 3.0, [3.0])
    lost = items["L0.b0.c1"]
    assert lost.prompt == ROOT.prompt + "/1.1" and lost.failure and lost.verdicts == [] and lost.reward is None


async def test_evaluate_root_records_the_root_and_starts_level_zero():
    store = InMemoryStore()
    async with context(DRPOScript(score=lambda p, q: 3), depth=5) as ctx:
        (update,) = await node_update("evaluate_root", {}, ctx, store)
    assert (update["level"], update["max_depth"], [n.node_id for n in update["beam"]]) == (0, 5, ["root"])
    assert update["beam"][0].path_rewards == []  # the root's reward never enters a path
    item = await store.aget(CANDIDATES, "root")
    root = CandidateRecord.model_validate(item.value)
    assert (root.parent_id, root.level, root.reward, [v.query_index for v in root.verdicts]) == (None, -1, 3.0, [0])


async def test_finish_delivers_the_selector_s_pick():
    beam = [scored(0, 1, 3).node, scored(1, 4, 1).node]
    async with context(DRPOScript(), depth=3, beam=2) as ctx:
        update = await finish({"level": 2, "max_depth": 3, "beam": beam}, Runtime(context=ctx, store=InMemoryStore()))
    assert update["best"].node_id == "L1.b0.c1"
