"""The search's records (schemas/records.py) in the run's record store, one item per record.

The store is LangGraph's (`runtime.store` in a node): the runner gives the graph a SQLite store on
the checkpoint database, tests an in-memory one. Each record is written once, by the node that
produces it — the root's by `evaluate_root`, a candidate's by its `expand` branch, a level's by
`keep_top` — and state keeps only the level keys. A level re-run after a crash writes its records
again under the same keys, so the last write wins and nothing is counted twice.

Reading is the runner's: the level records the final state names, and, through their candidate
ids, every candidate record, the root first. Nothing is parsed from ids or logs.
"""

from __future__ import annotations

from collections.abc import Iterable

from langgraph.store.base import BaseStore, GetOp, PutOp

from schemas.records import CandidateRecord, LevelRecord

CANDIDATES = ("records", "candidates")
LEVELS = ("records", "levels")
ROOT = "root"


def level_key(level: int) -> str:
    return f"level-{level}"


def _value(record: CandidateRecord | LevelRecord) -> dict:
    return record.model_dump(mode="json", exclude={"reward"} if isinstance(record, CandidateRecord) else None)


async def put_candidates(store: BaseStore, records: Iterable[CandidateRecord]) -> None:
    """Write candidate records in one batch (one per candidate of an `expand` branch)."""
    ops = [PutOp(CANDIDATES, record.node_id, _value(record), index=False) for record in records]
    if ops:
        await store.abatch(ops)


async def put_level(store: BaseStore, record: LevelRecord) -> str:
    """Write a level's record; returns the key state keeps."""
    key = level_key(record.level)
    await store.abatch([PutOp(LEVELS, key, _value(record), index=False)])
    return key


async def read_search(store: BaseStore, level_keys: list[str]) -> tuple[list[LevelRecord], list[CandidateRecord]]:
    """The levels named by `level_keys` (in that order) and their candidates: the root first,
    then each level's candidates in expansion order."""
    level_items = await store.abatch([GetOp(LEVELS, key) for key in level_keys])
    levels = [LevelRecord.model_validate(item.value) for item in level_items if item is not None]
    ids = [ROOT, *(node_id for level in levels for node_id in level.candidates)]
    items = await store.abatch([GetOp(CANDIDATES, node_id) for node_id in ids])
    return levels, [CandidateRecord.model_validate(item.value) for item in items if item is not None]
