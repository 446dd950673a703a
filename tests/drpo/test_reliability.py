"""Faults never become scores, a killed run resumes to the same prompt, secrets stay out of files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, RunConfig, SearchConfig
from tests.drpo_world import DRPOWorld
from tests.graph.test_beam import write_queries

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.real_engine  # OpenAICompatEngine against the loopback world (tests/drpo_world.py)


@pytest.mark.anyio
async def test_a_run_at_20_percent_faults_completes_and_counts_every_injected_fault(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_KEY", "unused")
    world = DRPOWorld(fault_rate=0.2, seed=1)
    with world.serving():
        backend = BackendConfig(kind="openai", model="world", base_url=world.url, api_key_env="WORLD_KEY",
                                max_attempts=8, max_concurrency=8)
        config = RunConfig(search=SearchConfig(depth=7, beam=2, actions=3), backends={"default": backend})
        options = OptimizeOptions(config=config, out=tmp_path / "run", train=write_queries(tmp_path / "q.txt"),
                                  response_cache=False, criteria_cache=False)
        artifact = await optimize(options)
    observed: dict[str, int] = {}
    for account in artifact.accounting.by_role.values():
        for kind, count in account.faults.items():
            observed[kind] = observed.get(kind, 0) + count
    assert sum(world.injected.values()) >= 10  # enough faults for the comparison to mean something
    assert observed == dict(world.injected)
    assert all(a.failed_calls == 0 for a in artifact.accounting.by_role.values())
    assert len(artifact.levels) == 6 and all(c.failure is None for c in artifact.candidates)
    trace = (tmp_path / "run" / "trace.jsonl").read_text()
    assert trace.count('"engine.fault"') == sum(world.injected.values())


class Run:
    """A CLI run in a subprocess; its output goes to files so a full pipe can never stall it."""

    def __init__(self, out: Path, *extra: str, env: dict[str, str]) -> None:
        command = [sys.executable, "run.py", "optimize", "--backend", "openai", "--model", "world", "--depth", "5",
                   "--beam", "2", "--actions", "3", "--max-concurrency", "4", "--no-cache", "--no-criteria-cache",
                   "--train", str(out.parent / "q.txt"), "--out", str(out), *extra]
        self.log = out.parent / f"{out.name}{'-resumed' if extra else ''}.stderr"
        with open(self.log, "w") as stderr:
            # A shell that starts jobs in the background (as CI may) leaves SIGINT ignored, which a
            # child inherits; restore the default so Ctrl-C reaches the run as it would in a terminal.
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def poll(self) -> int | None:
        return self.process.poll()

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    @property
    def stderr(self) -> str:
        return self.log.read_text()


def cli(world: DRPOWorld, out: Path, *extra: str, env: dict[str, str]) -> Run:
    return Run(out, *extra, env=env)


@pytest.fixture
def world_env(tmp_path):  # type: ignore[no-untyped-def]
    write_queries(tmp_path / "q.txt")
    world = DRPOWorld(delay_s=0.01)  # a run lasts long enough to be interrupted where the test says
    with world.serving():
        env = {**os.environ, "OPENAI_BASE_URL": world.url, "OPENAI_API_KEY": "sk-test-NEVER-WRITE-THIS-1234",
               "DRPO_CACHE_DIR": str(tmp_path / "cache")}
        yield world, env


def test_a_run_killed_at_any_point_resumes_to_the_same_prompt_without_repeating_calls(tmp_path, world_env):
    world, env = world_env
    reference = cli(world, tmp_path / "reference", env=env)
    assert reference.wait(timeout=120) == 0, reference.stderr
    expected, total = (tmp_path / "reference" / "prompt.txt").read_text(), world.served

    for kill_after in (3, total // 3, (2 * total) // 3):
        out = tmp_path / f"killed-{kill_after}"
        world.served = 0
        run = cli(world, out, env=env)
        deadline = time.monotonic() + 60
        while world.served < kill_after and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        assert not (out / "prompt.txt").exists()
        before = world.served
        with sqlite3.connect(out / "journal.sqlite") as journal:
            finished = journal.execute("SELECT count(*) FROM responses").fetchone()[0]
        resumed = cli(world, out, "--resume", env=env)
        assert resumed.wait(timeout=120) == 0, resumed.stderr
        assert (out / "prompt.txt").read_text() == expected
        # Every call that had finished is replayed from the journal; only the rest is sent.
        assert world.served - before == total - finished


def test_the_api_key_appears_in_no_file_the_run_writes(tmp_path, world_env):
    world, env = world_env
    run = cli(world, tmp_path / "run", env=env)
    assert run.wait(timeout=120) == 0, run.stderr
    secret = env["OPENAI_API_KEY"].encode()
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"prompt.txt", "artifact.json", "trace.jsonl", "run.log", "run.json"}
    assert [p.name for p in written if secret in p.read_bytes()] == []
    assert json.loads((tmp_path / "run" / "artifact.json").read_text())["config"]["backends"]["default"][
        "api_key_env"] == "OPENAI_API_KEY"


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, world_env):
    world, env = world_env
    world.delay_s = 0.05
    run = cli(world, tmp_path / "run", env=env)
    while world.served < 5 and run.poll() is None:
        time.sleep(0.001)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=30) == 130
    assert "--resume" in run.stderr
    resumed = cli(world, tmp_path / "run", "--resume", env=env)
    assert resumed.wait(timeout=120) == 0


def test_an_engine_that_goes_down_ends_the_run_with_a_clear_message_and_a_checkpoint(tmp_path, world_env):
    world, env = world_env
    original = world.answer
    world.fault_rate = 0.0

    def down_after_ten(body):  # type: ignore[no-untyped-def]
        if world.served > 10:
            raise ConnectionResetError("down")  # the handler thread dies: the client sees a dropped connection
        return original(body)

    world.answer = down_after_ten  # type: ignore[method-assign]
    run = cli(world, tmp_path / "run", env=env)
    assert run.wait(timeout=120) == 1
    stderr = run.stderr
    assert "is the engine up?" in stderr and "--resume" in stderr and "Traceback" not in stderr
    world.answer = original  # type: ignore[method-assign]
    resumed = cli(world, tmp_path / "run", "--resume", env=env)
    assert resumed.wait(timeout=120) == 0, resumed.stderr


def test_an_unreachable_endpoint_at_start_is_bad_input(tmp_path, monkeypatch, capsys):
    import socket

    from drpo.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    assert main(["optimize", "--backend", "openai", "--model", "m", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach" in err[0] and f":{port}" in err[0]
    assert not (tmp_path / "out").exists()
