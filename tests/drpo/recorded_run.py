"""A finished search written as records (schemas/records.py), for tests of what reads runs back.

The report, the console summary and the eval harness read `artifact.json` only; building one
here, candidate by candidate, lets their tests state exactly which tree they draw without running
a search. Node ids are opaque on purpose (no `L<level>.b<beam>.c<action>` pattern): nothing that
reads a run may parse them.

The tree (beam 2, actions 3, two levels; rewards are the judge's mean on the level's query):

    root ─┬─ n-7f (4) kept ─┬─ n-a1 (5) kept, delivered
          │                 ├─ n-a2 (3)
          │                 └─ n-a3 failed (policy)
          ├─ n-3c (3) kept ─┬─ n-b1 (4) kept, skipped (the parent's prompt)
          │                 ├─ n-b2 (2)
          │                 └─ n-b3 (3)
          └─ n-9e failed (judge)
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from schemas.artifact import Accounting, FinalNode, RunArtifact, TrainItem
from schemas.config import BackendConfig, RunConfig, SearchConfig
from schemas.messages import AspectScore, Example
from schemas.records import CandidateRecord, LevelRecord, Verdict
from schemas.usage import RoleAccount, Usage

INITIAL = "You are a helpful assistant."
QUERIES = [f"Question number {i}?" for i in range(40)]
EXAMPLES = [Example(query=f"Example query {i}?", answer=f"Example answer {i}.") for i in range(5)]
FIRST = f"{INITIAL} Be concrete."
SECOND = f"{INITIAL} Be kind. Answer briefly."
DELIVERED = f"{FIRST} Give one example."

# (id, parent, level, prompt, reward or None, skipped, failure)
TREE = [
    ("root", None, -1, INITIAL, None, False, None),
    ("n-7f", "root", 0, FIRST, 4, False, None),
    ("n-3c", "root", 0, SECOND, 3, False, None),
    ("n-9e", "root", 0, f"{INITIAL} Never refuse.", None, False, "judge call failed after 2 attempts: not JSON"),
    ("n-a1", "n-7f", 1, DELIVERED, 5, False, None),
    ("n-a2", "n-7f", 1, f"{FIRST} Use bullet points.", 3, False, None),
    ("n-a3", "n-7f", 1, f"{FIRST} Write at length.", None, False, "policy call failed after 2 attempts: 503"),
    ("n-b1", "n-3c", 1, SECOND, 4, True, None),
    ("n-b2", "n-3c", 1, f"{SECOND} Avoid detail.", 2, False, None),
    ("n-b3", "n-3c", 1, f"{SECOND} Ask a question back.", 3, False, None),
]
KEPT = {0: ["n-7f", "n-3c"], 1: ["n-a1", "n-b1"]}


def rationale(node_id: str, aspect: str) -> str:
    return f"{aspect} of {node_id}: scripted"


def candidates() -> list[CandidateRecord]:
    records: dict[str, CandidateRecord] = {}
    for node_id, parent, level, prompt, reward, skipped, failure in TREE:
        verdicts = []
        if reward is not None:
            scores = {a: AspectScore(rationale=rationale(node_id, a), score=reward) for a in ("Helpfulness", "Clarity")}
            verdicts = [Verdict(query_index=level + 1, reward=float(reward), scores=scores)]
        above = records[parent].path_rewards if parent is not None else []
        path = [*above, float(reward)] if reward is not None else []
        records[node_id] = CandidateRecord(node_id=node_id, parent_id=parent, level=level, prompt=prompt,
                                           verdicts=verdicts, path_rewards=path, skipped=skipped, failure=failure)
    return list(records.values())


def levels(records: list[CandidateRecord]) -> list[LevelRecord]:
    out = []
    for level in (0, 1):
        mine = [c for c in records if c.level == level]
        rewards = [c.reward for c in mine if c.reward is not None]
        out.append(LevelRecord(level=level, query_indices=[level + 1], max_depth=2 + level, bumped=level == 1,
                               candidates=[c.node_id for c in mine], kept=KEPT[level],
                               best_reward=max(rewards), mean_reward=fmean(rewards)))
    return out


def accounting() -> Accounting:
    by_role = {
        "policy": RoleAccount(usage=Usage(calls=9, tokens_in=900, tokens_out=300, latency_s=4.5), sent=11,
                              faults={"transport": 2}, failed_calls=1),
        "judge": RoleAccount(usage=Usage(calls=9, tokens_in=1800, tokens_out=400, latency_s=6.0),
                             faults={"invalid_output": 2}, failed_calls=1, cache_hits=1),
        "rewriter": RoleAccount(usage=Usage(calls=3, tokens_in=600, tokens_out=500, latency_s=3.0)),
    }
    total = Usage(calls=21, tokens_in=3300, tokens_out=1200, latency_s=13.5)
    return Accounting(total=total, by_role=by_role, by_backend={"default:scripted": total})


def recorded_artifact(train_file: Path, **overrides: object) -> RunArtifact:
    """The tree above as the artifact of a finished run; `train_file` is where its queries live."""
    train_file.write_text("\n".join(QUERIES) + "\n", encoding="utf-8")
    records = candidates()
    best = next(c for c in records if c.node_id == "n-a1")
    fields: dict[str, object] = dict(
        run_id="recorded-run", created_at="2025-01-01T00:00:00+00:00", wall_s=12.5, prompt=best.prompt,
        examples=EXAMPLES, examples_source="examples.jsonl",
        config=RunConfig(search=SearchConfig(depth=2, beam=2, actions=3),
                         backends={"default": BackendConfig(kind="openai", model="s")}),
        models={"policy": "default:scripted", "judge": "default:scripted"}, seed=42, train_file=str(train_file),
        query_order=[TrainItem(query=q, source="file") for q in QUERIES[:3]], levels=levels(records),
        candidates=records,
        best=FinalNode(node_id=best.node_id, prompt=best.prompt, rewards=best.path_rewards,
                       score=fmean(best.path_rewards), last_query=QUERIES[2]),
        accounting=accounting(),
    )
    return RunArtifact.model_validate({**fields, **overrides})


def write_run(folder: Path, train_file: Path, **overrides: object) -> Path:
    """An optimize output folder holding the recorded artifact (and its prompt.txt)."""
    artifact = recorded_artifact(train_file, **overrides)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "artifact.json").write_text(artifact.model_dump_json(indent=2), encoding="utf-8")
    (folder / "prompt.txt").write_text(artifact.prompt + "\n", encoding="utf-8")
    return folder
