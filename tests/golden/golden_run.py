"""The golden search: one small, fixed `optimize` run, its recording and what it is compared on.

The search is depth 3 (at most one level more after a skip), beam 2, actions 2, k 1, on the
shipped training queries and seed examples, with the lexical embedder and no response or
criteria cache, so nothing outside this folder changes what the engine is asked. The world that
answers while recording is tests/scripted.py `DRPOScript`, scoring from a hash of (prompt, query)
(`golden_score`) so the beam has real choices and some nodes skip, and naming proposals from their message
(`content_proposals`) so the answers do not depend on the order concurrent calls arrive in.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from backends.protocol import Engine
from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, RunConfig, SearchConfig
from tests.golden.replay import Recording, RecordingEngine, ReplayEngine
from tests.scripted import DRPOScript, content_proposals

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "data"
REPLIES = HERE / "replies.json"
EXPECTED_PROMPT = HERE / "expected_prompt.txt"
EXPECTED_CANDIDATES = HERE / "expected_candidates.json"
RECORD_ENV = "DRPO_RECORD_GOLDEN"

CANDIDATE_FIELDS = ("node_id", "parent_id", "level", "prompt", "skipped", "failure")
"""What a candidate record is compared on, besides its verdicts' query indices and rewards."""


def golden_options(out: Path, cache_dir: Path) -> OptimizeOptions:
    search = SearchConfig(depth=3, max_depth_increase=1, beam=2, actions=2, k=1)
    config = RunConfig(search=search, backends={"default": BackendConfig(kind="openai", model="golden")})
    return OptimizeOptions(
        config=config, out=out, cache_dir=cache_dir, train=DATA / "train_queries.jsonl",
        examples=DATA / "seed_examples.jsonl", embedder="lexical", response_cache=False, criteria_cache=False,
    )


SCORES = (2, 3, 4, 2, 3, 4, 3, 5)
"""Mostly 2-4, so the beam has choices to make; one in eight a 5, whose node skips its rewrite."""


def golden_score(prompt: str, query: str) -> int:
    return SCORES[int(hashlib.sha256(f"{prompt}\x1f{query}".encode()).hexdigest()[:8], 16) % len(SCORES)]


def golden_script() -> DRPOScript:
    return DRPOScript(score=golden_score, propose=content_proposals)


def stable_candidates(artifact: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidate records of `artifact.json`, reduced to what a correct run must reproduce."""
    return [
        {**{name: record.get(name) for name in CANDIDATE_FIELDS},
         "verdicts": [{"query_index": v["query_index"], "reward": v["reward"]} for v in record.get("verdicts", [])]}
        for record in artifact["candidates"]
    ]


def outcome(out: Path) -> tuple[str, list[dict[str, Any]]]:
    """The run's prompt.txt and its stable candidate records."""
    artifact = json.loads((out / "artifact.json").read_text(encoding="utf-8"))
    return (out / "prompt.txt").read_text(encoding="utf-8"), stable_candidates(artifact)


async def run_golden(out: Path, cache_dir: Path, engine: Engine) -> tuple[str, list[dict[str, Any]]]:
    """Run the golden search with every role on `engine`; returns its outcome."""
    await optimize(golden_options(out, cache_dir), engine_factory=lambda config, model: engine)
    return outcome(out)


async def replay(out: Path, cache_dir: Path) -> tuple[ReplayEngine, tuple[str, list[dict[str, Any]]]]:
    engine = ReplayEngine(Recording.load(REPLIES))
    return engine, await run_golden(out, cache_dir, engine)


async def record(out: Path, cache_dir: Path) -> tuple[str, list[dict[str, Any]]]:
    """Run the search on the scripted world and write the replies and the expected files here."""
    recorder = RecordingEngine(golden_script().engine(BackendConfig(kind="openai", model="golden"), "golden"))
    prompt, candidates = await run_golden(out, cache_dir, recorder)
    recorder.recording.save(REPLIES)
    EXPECTED_PROMPT.write_text(prompt, encoding="utf-8")
    EXPECTED_CANDIDATES.write_text(json.dumps(candidates, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return prompt, candidates
