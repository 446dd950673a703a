"""Every command that samples takes `--seed`, and the seed reaches the samples: the same seed gives
the same output, another seed another sample. Run through `run.py`'s `main` against a loopback
world whose sampled answers depend on the request's seed, as a real sampler's do above
temperature 0 (tests/drpo_world.py answers everything else)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backends.scripted import schema_instance
from drpo.cli import main
from tests.drpo_world import DRPOWorld
from tests.graph.test_beam import write_queries

pytestmark = pytest.mark.real_engine  # OpenAICompatEngine against the loopback world

SEED_ROUND = 1009
"""graph/roles.py `improve_answer`: a curation round's sample is seeded `1009 * seed + round`."""


def schema_name(body: dict[str, Any]) -> str | None:
    return ((body.get("response_format") or {}).get("json_schema") or {}).get("name")


class SamplingWorld(DRPOWorld):
    """The curator's rewrite and the policy's answer name the seed they were sampled with; the
    eval judge's verdict is the smallest valid one."""

    def answer(self, body: dict[str, Any]) -> list[str]:
        name = schema_name(body)
        if name == "answer_rewrite":
            text = f"<START>\nAnswer sampled with seed {body.get('seed')}.\n<END>"
            return [json.dumps({"analysis": "a", "thought": "t", "new_response": text})] * body.get("n", 1)
        if name is not None and name.startswith("eval_"):
            return [json.dumps(schema_instance(body["response_format"]["json_schema"]["schema"]))]
        if name is None:
            return [f"ANSWER sampled with seed {body.get('seed')}"] * body.get("n", 1)
        return super().answer(body)


@pytest.fixture
def world(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    with SamplingWorld().serving() as running:
        monkeypatch.setenv("OPENAI_BASE_URL", running.url)
        monkeypatch.setenv("OPENAI_API_KEY", "unused-key")
        monkeypatch.setenv("DRPO_CACHE_DIR", str(tmp_path / "cache"))
        yield running


def bodies(world: DRPOWorld, name: str | None) -> list[dict[str, Any]]:
    return [body for _, body in world.received if schema_name(body) == name]


ENGINE = ["--backend", "openai", "--model", "world"]


def seeds_file(tmp_path: Path) -> Path:
    path = tmp_path / "seeds.jsonl"
    rows = [{"query": f"How do I do task {i}?", "answer": f"Do task {i} carefully."} for i in range(3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def curated(tmp_path: Path, world: DRPOWorld, out: str, *seed: str) -> tuple[list[dict], set[int]]:
    """The curated examples of `curate --seed ...` into `out`, and the seeds its rewrites were sampled with."""
    world.received.clear()
    code = main(["curate", *ENGINE, "--examples", str(seeds_file(tmp_path)), "--iterations", "2", "--no-cache",
                 "--no-criteria-cache", "--out", str(tmp_path / out), *seed])
    assert code == 0
    pool = json.loads((tmp_path / out / "curated.json").read_text())
    return pool["examples"], {body["seed"] for body in bodies(world, "answer_rewrite")}


def test_curate_with_the_same_seed_writes_the_same_pool_and_another_seed_another(tmp_path, world, capsys):
    first, first_seeds = curated(tmp_path, world, "a", "--seed", "7")
    again, _ = curated(tmp_path, world, "b", "--seed", "7")
    other, other_seeds = curated(tmp_path, world, "c", "--seed", "8")
    _, default_seeds = curated(tmp_path, world, "d")
    assert first == again
    assert first_seeds == {SEED_ROUND * 7 + 1, SEED_ROUND * 7 + 2} and other_seeds == {SEED_ROUND * 8 + 1,
                                                                                        SEED_ROUND * 8 + 2}
    assert default_seeds == {1, 2}  # seed 0: the rounds' seeds of earlier versions, so their caches still hit
    rewritten = [step["answer"] for example in first for step in example["history"][1:]]
    assert rewritten and all(f"seed {SEED_ROUND * 7 + 1}" in a or f"seed {SEED_ROUND * 7 + 2}" in a for a in rewritten)
    assert [e["history"][1:] for e in first] != [e["history"][1:] for e in other]


def test_answer_samples_with_its_seed(tmp_path, world, capsys):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Be helpful.\n")
    common = ["answer", *ENGINE, "--prompt-file", str(prompt), "--examples", str(seeds_file(tmp_path)),
              "--embedder", "lexical", "-k", "1"]
    assert main([*common, "--seed", "5", "How do I do task 1?"]) == 0
    assert main([*common, "How do I do task 2?"]) == 0
    printed = capsys.readouterr().out
    assert [body["seed"] for body in bodies(world, None)] == [5, 0]  # 0: the seed answer always used
    assert "sampled with seed 5" in printed


def test_eval_samples_the_policy_and_draws_the_bootstrap_with_its_seed(tmp_path, world, capsys):
    write_queries(tmp_path / "train.txt")
    run = tmp_path / "run"
    assert main(["optimize", *ENGINE, "--depth", "2", "--beam", "1", "--actions", "1", "--no-cache",
                 "--train", str(tmp_path / "train.txt"), "--out", str(run)]) == 0
    data = tmp_path / "items.txt"
    data.write_text("What is a good breakfast?\nHow do tides work?\n")
    world.received.clear()
    assert main(["eval", *ENGINE, "--data", str(data), "--artifact", str(run), "--bootstrap", "20", "--seed", "11",
                 "--no-cache", "--out", str(tmp_path / "eval")]) == 0
    policy = bodies(world, None)
    assert len(policy) == 4 and {body["seed"] for body in policy} == {11}  # 2 items x (drpo, plain)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["bootstrap"]["seed"] == 11 and summary["sampling"]["seed"] == 11
