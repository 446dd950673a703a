"""The real embedded model, end to end through the command line, on a tiny setting."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine_caps import EMBEDDED_ONE_THREAD, SEARCH_CAPS, caps_toml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.engine

CAPS = EMBEDDED_ONE_THREAD + SEARCH_CAPS.replace("[roles.rewriter]\n", "[roles.rewriter]\ntemperature = 0.8\n")


def test_optimize_with_the_embedded_model_writes_prompt_artifact_and_trace(tmp_path):
    (tmp_path / "caps.toml").write_text(CAPS)
    out = tmp_path / "run"
    command = [sys.executable, "run.py", "optimize", "--depth", "2", "--beam", "2", "--actions", "2", "-k", "1",
               "--seed", "3", "--config", str(tmp_path / "caps.toml"), "--out", str(out)]
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "DRPO_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    prompt = (out / "prompt.txt").read_text().strip()
    artifact = json.loads((out / "artifact.json").read_text())
    assert prompt and prompt == artifact["prompt"].strip()
    assert artifact["seed"] == 3 and len(artifact["query_order"]) == 2
    assert artifact["models"]["judge"].endswith("SmolLM2-135M-Instruct.Q8_0.gguf")
    assert len(artifact["levels"]) == 1 and len(artifact["levels"][0]["candidates"]) >= 1
    roles = artifact["accounting"]["by_role"]
    assert roles["policy"]["usage"]["calls"] >= 2 and roles["judge"]["usage"]["tokens_out"] > 0
    agents = {json.loads(line)["agent"] for line in (out / "trace.jsonl").read_text().splitlines()}
    assert {"criteria", "curator", "policy", "judge", "rewriter"} <= agents
    assert "Optimized system prompt" in done.stdout


CURATION_CAPS = EMBEDDED_ONE_THREAD + "[curation]\niterations = 1\n" + caps_toml(
    criteria=200, judge=220, curator=160, policy=48)


def test_curate_two_seeds_with_the_embedded_model_then_answer_with_the_pool(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join((ROOT / "data" / "seed_examples.jsonl").read_text().splitlines()[:2]) + "\n")
    (tmp_path / "caps.toml").write_text(CURATION_CAPS)
    env = {**__import__("os").environ, "DRPO_CACHE_DIR": str(tmp_path / "cache")}
    curated = tmp_path / "curated"
    done = subprocess.run(
        [sys.executable, "run.py", "curate", "--examples", str(seeds), "--config", str(tmp_path / "caps.toml"),
         "--out", str(curated)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pool = json.loads((curated / "curated.json").read_text())
    assert len(pool["examples"]) == 2
    for example in pool["examples"]:
        assert example["answer"] and example["history"][0]["iteration"] == 0
        assert example["failure"] or example["best_total"] is not None
    assert pool["accounting"]["by_role"]["judge"]["usage"]["calls"] >= 2

    (tmp_path / "prompt.txt").write_text("You are a helpful, honest assistant.")
    answered = subprocess.run(
        [sys.executable, "run.py", "answer", "--prompt-file", str(tmp_path / "prompt.txt"), "--examples", str(curated),
         "-k", "2", "--temperature", "0", "--config", str(tmp_path / "caps.toml"), "What is a Python generator?"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert answered.stdout.strip()
