"""The search's records: what the graph writes to the store and the runner puts in artifact.json."""

from __future__ import annotations

from statistics import fmean

import pytest
from langgraph.store.memory import InMemoryStore

from graph.records import put_candidates, put_level, read_search
from schemas.artifact import RunArtifact
from schemas.records import CandidateRecord, LevelRecord, Verdict
from tests.graph.test_beam import run
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio


def by_query(prompt: str, query: str) -> int:
    return 1 + (len(prompt) + int(query.split()[-1].rstrip("?"))) % 5  # differs per prompt and per query


async def test_the_artifact_holds_every_candidate_with_its_verdicts_and_its_place_in_the_tree(tmp_path):
    artifact = await run(tmp_path, DRPOScript(score=by_query), depth=3, beam=2, actions=2, queries_per_level=2)
    on_disk = RunArtifact.model_validate_json((tmp_path / "out" / "artifact.json").read_text())
    assert on_disk.candidates == artifact.candidates and on_disk.levels == artifact.levels
    assert not (tmp_path / "out" / "levels.jsonl").exists()

    root, *rest = artifact.candidates
    assert (root.node_id, root.parent_id, root.level, root.path_rewards) == ("root", None, -1, [])
    assert [c.node_id for c in rest] == [node_id for level in artifact.levels for node_id in level.candidates]
    records = {c.node_id: c for c in artifact.candidates}
    kept = {-1: ["root"], **{level.level: level.kept for level in artifact.levels}}
    for record in rest:
        assert record.parent_id in kept[record.level - 1]  # children of the previous beam only
        assert [v.query_index for v in record.verdicts] == [2 * record.level + 2, 2 * record.level + 3]
        assert record.reward == fmean(v.reward for v in record.verdicts)
        assert record.path_rewards == [*records[record.parent_id].path_rewards, record.reward]
    assert any(len({v.reward for v in r.verdicts}) > 1 for r in rest)  # a block's rewards are kept one by one
    assert records[artifact.best.node_id].path_rewards == artifact.best.rewards
    assert records[artifact.best.node_id].prompt == artifact.prompt
    for level in artifact.levels:
        rewards = [records[node_id].reward for node_id in level.candidates]
        assert (level.best_reward, level.mean_reward) == (max(rewards), fmean(rewards))


def level(index: int, candidates: list[str], best: float) -> LevelRecord:
    return LevelRecord(level=index, query_indices=[index + 1], max_depth=3, candidates=candidates,
                       kept=candidates[:1], best_reward=best)


def candidate(node_id: str, level_: int, reward: float) -> CandidateRecord:
    return CandidateRecord(node_id=node_id, parent_id=None if level_ < 0 else "root", level=level_, prompt=node_id,
                           verdicts=[Verdict(query_index=level_ + 1, reward=reward)], path_rewards=[reward])


async def test_a_level_run_again_after_a_crash_is_read_once_as_last_written():
    store = InMemoryStore()
    first = [candidate("root", -1, 3.0), candidate("L0.b0.c0", 0, 1.0), candidate("L0.b0.c1", 0, 2.0)]
    await put_candidates(store, first)
    await put_level(store, level(0, ["L0.b0.c0", "L0.b0.c1"], 2.0))
    # The level ran again after a crash, its rewrite asking afresh: one candidate this time.
    await put_candidates(store, [candidate("L0.b0.c0", 0, 4.0)])
    key = await put_level(store, level(0, ["L0.b0.c0"], 4.0))
    levels, candidates = await read_search(store, [key])
    assert [(lv.level, lv.best_reward) for lv in levels] == [(0, 4.0)]
    assert [(c.node_id, c.reward) for c in candidates] == [("root", 3.0), ("L0.b0.c0", 4.0)]  # the stale c1 is not read
