"""The embedded engine: llama.cpp's own llama-server as a child process of the run.

Fast tests: a missing or broken build is one line saying how to rebuild (also at the command
line: exit 2, nothing written); slots, threads and concurrency.
Engine tests (marked `engine`; they start the real server that ./setup.sh builds): the child is
gone after a normal end, after Ctrl-C and after SIGKILL of its parent (checked by PID), a port
already in use is handled, the log lands in the run folder, and a judge's structured request is
valid JSON well under its token cap. Their processes and requests are kept small (SmolLM2).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anyio
import pytest

from agents.judge import judge
from backends.errors import EngineConfigError, EngineUnavailable
from backends.ledger import Ledger
from backends import llama_server
from backends.llama_server import LlamaServerEngine, build, layout_for
from backends.llama_server_process import BINARY_ENV, binary_path
from backends.gguf import default_model_path
from backends.registry import backend_concurrency
from schemas.catalogue import AspectCatalogue
from schemas.config import BackendConfig
from schemas.llm import LLMRequest, Message, Sampling
from schemas.messages import JudgeRequest
from tests.stacks import stack

ROOT = Path(__file__).resolve().parents[2]
CLI_ENGINE = ["--backend", "embedded"]
"""The command line's options for this engine (the default)."""
needs_server = pytest.mark.skipif(not binary_path().is_file(), reason="llama-server is not built (./setup.sh)")


# --- a missing or broken build ------------------------------------------------------------------


@pytest.mark.real_engine  # builds the engine, which stops at its binary
def test_a_missing_binary_is_one_line_that_says_how_to_rebuild(monkeypatch, tmp_path):
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "nowhere" / "llama-server"))
    with pytest.raises(EngineConfigError) as caught:
        build(BackendConfig(), None)
    message = str(caught.value)
    assert "\n" not in message and "missing" in message and "scripts/build_llama_server.sh --force" in message
    assert caught.value.exit_code == 2


def fake_binary(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shell script in place of llama-server (`DRPO_LLAMA_SERVER`)."""
    binary = folder / "llama-server"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(0o755)
    monkeypatch.setenv(BINARY_ENV, str(binary))
    return binary


@pytest.mark.real_engine  # builds the engine, which stops at its binary
def test_a_broken_binary_is_one_line_with_its_reason_and_the_rebuild_command(monkeypatch, tmp_path):
    fake_binary(tmp_path, "echo 'error while loading shared libraries: libllama-server-impl.so' >&2\nexit 127",
                monkeypatch)
    with pytest.raises(EngineConfigError) as caught:
        build(BackendConfig(), None)
    message = str(caught.value)
    assert "\n" not in message and "libllama-server-impl.so" in message
    assert "scripts/build_llama_server.sh --force" in message


@pytest.mark.real_engine  # builds the engine, which stops at its binary
def test_a_binary_for_another_machine_is_the_same_line(monkeypatch, tmp_path):
    foreign = tmp_path / "llama-server"
    foreign.write_bytes(b"\x7fELF" + b"\0" * 60)  # not a program this system can start
    foreign.chmod(0o755)
    monkeypatch.setenv(BINARY_ENV, str(foreign))
    with pytest.raises(EngineConfigError, match=r"does not run .*scripts/build_llama_server.sh --force"):
        build(BackendConfig(), None)


@pytest.mark.real_engine  # builds the engine; its servers exit at once
@pytest.mark.anyio
async def test_servers_that_exit_at_start_are_one_error_not_a_group(monkeypatch, tmp_path):
    fake_binary(tmp_path, 'if [ "$1" = "--version" ]; then echo "version: 1 (test)"; exit 0; fi\n'
                          'echo "error: out of memory" >&2\nexit 3', monkeypatch)
    engine = LlamaServerEngine(replicas=2)
    try:
        with pytest.raises(EngineConfigError, match=r"exited with code 3 before it was ready \(error: out of memory"):
            await engine.probe()
    finally:
        await engine.aclose()


@needs_server
def test_a_model_file_it_cannot_load_is_one_line_naming_the_file_not_the_build(tmp_path):
    """A `--model` that is not a GGUF llama.cpp reads: the line names that file (the build is fine)."""
    model = tmp_path / "cut-short.gguf"
    model.write_bytes(b"GGUF" + os.urandom(4096))
    out = tmp_path / "run"
    env = dict(os.environ, DRPO_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "run.py", "optimize", "--demo", *CLI_ENGINE, "--model", str(model),
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() + done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"could not load the model {model}" in lines[0] and "build_llama_server" not in lines[0], lines
    assert not out.exists()


def test_the_command_line_says_it_in_one_line_with_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, **{BINARY_ENV: str(tmp_path / "missing"), "DRPO_CACHE_DIR": str(tmp_path / "cache")})
    done = subprocess.run([sys.executable, "run.py", "optimize", "--demo", *CLI_ENGINE, "--out", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() + done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "scripts/build_llama_server.sh --force" in lines[0], lines
    assert not out.exists()


# --- slots, threads and concurrency -------------------------------------------------------------


def test_one_single_thread_replica_per_core_unless_the_config_says_otherwise(monkeypatch):
    monkeypatch.setattr(llama_server, "usable_cores", lambda: 2)
    assert layout_for(BackendConfig()) == (2, 1, 1)  # (replicas, slots each, threads each)
    assert layout_for(BackendConfig(max_concurrency=1)) == (1, 1, 1)
    assert layout_for(BackendConfig(max_concurrency=5)) == (2, 3, 1)  # at least the requests asked for
    assert layout_for(BackendConfig(n_threads=2)) == (2, 1, 2)
    monkeypatch.setattr(llama_server, "usable_cores", lambda: 32)
    assert layout_for(BackendConfig()) == (8, 1, 4)  # at most MAX_REPLICAS; the cores shared out as threads
    monkeypatch.setattr(llama_server, "usable_cores", lambda: 1)
    assert layout_for(BackendConfig()) == (1, 1, 1)


@pytest.mark.real_engine  # builds the engine, which stops at its binary
def test_the_engines_concurrency_is_every_replicas_slots(monkeypatch, tmp_path):
    fake_binary(tmp_path, "echo 'version: 1 (test)'", monkeypatch)
    monkeypatch.setattr(llama_server, "usable_cores", lambda: 2)
    engine = build(BackendConfig(max_concurrency=6), None)
    assert len(engine.replicas) == 2 and engine.concurrency == 6
    assert backend_concurrency(BackendConfig(max_concurrency=6), engine) == 6


def test_the_backends_concurrency_is_the_engines_slot_count():
    class Slots:
        concurrency = 6

    assert backend_concurrency(BackendConfig(kind="embedded"), Slots()) == 6  # type: ignore[arg-type]
    assert backend_concurrency(BackendConfig(kind="openai", max_concurrency=5, base_urls=["http://a", "http://b"]),
                               object()) == 10  # type: ignore[arg-type]


# --- the real server ----------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def server_children_of(parent: int, within_s: float = 90.0) -> list[int]:
    """The PIDs of the llama-servers that `parent` started, once there are as many as the machine
    gets replicas (found in /proc by parent PID)."""
    expected = layout_for(BackendConfig())[0]
    deadline = time.monotonic() + within_s
    found: list[int] = []
    while time.monotonic() < deadline:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                name, rest = stat.read_text().rsplit(")", 1)
            except (OSError, ValueError):
                continue
            if int(rest.split()[1]) == parent and name.endswith("(llama-server"):
                found.append(int(stat.parent.name))
        if len(found) >= expected:
            return found
        time.sleep(0.1)
    pytest.fail(f"process {parent} started {len(found)} of {expected} llama-servers within {within_s:g} s")




@pytest.fixture
def engine(tmp_path):
    return LlamaServerEngine(slots=2, n_ctx=2048)


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_the_server_runs_in_its_own_group_until_aclose_and_is_gone_after_it(engine, tmp_path):
    await engine.probe()
    pid = engine.pid
    assert pid is not None and alive(pid)
    assert os.getpgid(pid) == pid  # its own process group: a terminal's Ctrl-C reaches the parent only
    engine.log_into(tmp_path)
    await engine.aclose()
    assert not alive(pid)
    assert "listening on" in (tmp_path / "llama-server.log").read_text()


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_calls_in_flight_together_go_to_different_replicas_and_every_replica_stops(tmp_path):
    engine = LlamaServerEngine(replicas=2, n_ctx=1024)
    ledger = Ledger()
    backend = stack(engine, ledger=ledger, max_concurrency=engine.concurrency)
    served: list[int] = []

    async def ask(text: str) -> None:
        request = LLMRequest(role="policy", messages=[Message(role="user", content=text)],
                             sampling=Sampling(max_tokens=24, seed=1))
        assert (await backend.complete(request)).choices[0].text
        served.append(len(served))

    try:
        await engine.probe()
        pids = engine.pids
        assert len(set(pids)) == 2 and all(alive(pid) for pid in pids)
        engine.log_into(tmp_path)
        async with anyio.create_task_group() as group:
            group.start_soon(ask, "Name a colour.")
            group.start_soon(ask, "Name an animal.")
    finally:
        await engine.aclose()
    assert len(served) == 2 and ledger.by_role()["policy"].usage.calls == 2
    assert not any(alive(pid) for pid in pids)
    logs = [tmp_path / "llama-server.log", tmp_path / "llama-server.2.log"]
    assert all("prompt eval time" in log.read_text() for log in logs)  # each replica answered one call


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_a_server_killed_mid_run_is_engine_unavailable_naming_its_log(tmp_path):
    engine = LlamaServerEngine(n_ctx=1024)
    request = LLMRequest(role="policy", messages=[Message(role="user", content="Say hi.")],
                         sampling=Sampling(max_tokens=8, seed=1))
    try:
        await engine.probe()
        engine.log_into(tmp_path)
        os.kill(engine.pid, signal.SIGKILL)
        engine.server.process.wait(10)  # wholly ended (its leader turns zombie before its other threads end)
        with pytest.raises(EngineUnavailable, match=r"llama-server exited with code -9 .*its log: .*llama-server\.log$"):
            await engine.complete(request)
    finally:
        await engine.aclose()


def _run_cli(tmp_path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, DRPO_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.Popen([sys.executable, "run.py", "optimize", "--demo", *CLI_ENGINE, "--out", str(tmp_path / "run")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.engine
@needs_server
def test_the_server_is_gone_after_ctrl_c_of_a_run(tmp_path):
    run = _run_cli(tmp_path)
    pids = server_children_of(run.pid)
    log = tmp_path / "run" / "llama-server.log"
    deadline = time.monotonic() + 120
    while not log.is_file() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # until the run owns its folder: the server is answering its first calls
    assert log.is_file(), run.stderr.read() if run.poll() is not None and run.stderr else "no log"
    run.send_signal(signal.SIGINT)
    assert run.wait(60) != 0
    assert all(gone_within(pid, 10) for pid in pids)
    assert "listening on" in log.read_text()


@pytest.mark.engine
@needs_server
def test_the_server_does_not_outlive_its_parent_killed_with_sigkill(tmp_path):
    run = _run_cli(tmp_path)
    pids = server_children_of(run.pid)
    run.kill()
    run.wait(30)
    assert all(gone_within(pid, 10) for pid in pids)


PARENT = """
import sys, anyio
from backends.llama_server import LlamaServerEngine

async def main():
    engine = LlamaServerEngine(slots=2, n_ctx=1024)
    await engine.probe()
    print(engine.pid, flush=True)
    raise RuntimeError("the run failed without closing its engine")

anyio.run(main)
"""


@pytest.mark.engine
@needs_server
def test_the_server_is_gone_after_an_uncaught_exception_that_never_closed_it(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(PARENT))
    parent = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)
    assert parent.returncode == 1 and "the run failed" in parent.stderr
    assert gone_within(int(parent.stdout.split()[0]), 10)


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_a_port_already_in_use_falls_back_to_a_free_one(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    engine = LlamaServerEngine(slots=2, n_ctx=1024, port=port)
    try:
        await engine.probe()
        assert engine.server.port not in (None, port)
        request = LLMRequest(role="policy", messages=[Message(role="user", content="Say hi.")],
                             sampling=Sampling(max_tokens=8, seed=1))
        assert (await engine.complete(request)).choices[0].text
    finally:
        await engine.aclose()
        taken.close()


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_a_judge_request_is_valid_json_that_stops_before_its_cap(engine):
    catalogue = AspectCatalogue.load()
    aspects = catalogue.names[:2]
    request = JudgeRequest(query="How do I boil an egg?", aspects=aspects, reasoning="cooking advice",
                           response="Put the egg in boiling water for nine minutes, then cool it in cold water.")
    ledger = Ledger()
    try:
        verdict = await judge(request, engine=stack(engine, ledger=ledger, max_concurrency=2), catalogue=catalogue,
                              sampling=Sampling(temperature=0.0, max_tokens=400, seed=7))
    finally:
        await engine.aclose()
    assert set(verdict.scores) == set(aspects)
    account = ledger.by_role()["judge"]
    assert account.faults == {}  # no truncated, no invalid output: one call, valid the first time
    assert account.usage.calls == 1 and 0 < verdict.usage.tokens_out < 400


@pytest.mark.engine
@needs_server
def test_one_engine_serves_loop_after_loop_and_outlives_the_thread_that_started_it():
    """`AlignedModel.answer_sync` runs a loop per call, and the thread that started the server may end."""
    engine = LlamaServerEngine(slots=2, n_ctx=1024)
    request = LLMRequest(role="policy", messages=[Message(role="user", content="Name a fruit.")],
                         sampling=Sampling(max_tokens=6, seed=1))
    replies: list[str] = []

    def ask() -> None:
        replies.append(anyio.run(engine.complete, request).choices[0].text)

    starter = threading.Thread(target=ask)
    starter.start()
    starter.join()
    pid = engine.pid
    assert pid is not None and alive(pid)  # the parent-death signal did not fire with that thread
    ask()
    assert len(replies) == 2 and replies[0] == replies[1] != ""  # the same seed, the same answer
    anyio.run(engine.aclose)
    assert not alive(pid)


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_n_choices_are_n_samples_and_every_ones_tokens_are_counted(engine):
    ledger = Ledger()
    request = LLMRequest(role="rewriter", messages=[Message(role="user", content="Write a long story about a cat.")],
                         sampling=Sampling(max_tokens=8, temperature=1.0, seed=3, n=2))
    try:
        result = await stack(engine, ledger=ledger, max_concurrency=2).complete(request)
    finally:
        await engine.aclose()
    assert len(result.choices) == 2 and result.choices[0].text != result.choices[1].text  # seeds 3 and 4
    assert all(choice.finish_reason == "length" for choice in result.choices)
    assert result.usage.tokens_out == 16  # both samples' tokens (the server's own n counts the first only)
    assert ledger.by_role()["rewriter"].usage.calls == 2
