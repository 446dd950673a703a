"""The embedded engine: llama.cpp's own llama-server as a child process of the run.

Fast tests: a missing or broken build is one line saying how to rebuild (also from the command
line: exit 2, nothing written), the GGUF metadata reader, slot sizing. Engine tests (marked
`engine`, they start the real server built by ./setup.sh): the child is gone after a normal
end, Ctrl-C, an uncaught exception and SIGKILL of its parent (checked by PID), a port already
in use is handled, the log lands in the run folder, and a judge's structured request comes back
as valid JSON well under its token cap.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from agents.judge import judge
from backends.errors import EngineConfigError
from backends.ledger import Ledger
from backends.llama_process import BINARY_ENV, binary_path, free_port, slots_for
from backends.llama_server import LlamaServerEngine, build, gguf_string, template_of
from backends.llamacpp import default_model_path
from backends.registry import backend_concurrency
from schemas.catalogue import AspectCatalogue
from schemas.config import BackendConfig
from schemas.llm import LLMRequest, Message, Sampling
from schemas.messages import JudgeRequest
from tests.stacks import stack

ROOT = Path(__file__).resolve().parents[2]
needs_server = pytest.mark.skipif(not binary_path().is_file(), reason="llama-server is not built (./setup.sh)")
engine_test = [pytest.mark.engine, needs_server]


# --- a missing or broken build ------------------------------------------------------------------


def test_a_missing_binary_is_one_line_that_says_how_to_rebuild(monkeypatch, tmp_path):
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "nowhere" / "llama-server"))
    with pytest.raises(EngineConfigError) as caught:
        build(BackendConfig(), None)
    message = str(caught.value)
    assert "\n" not in message and "missing" in message and "scripts/build_llama_server.sh" in message
    assert caught.value.exit_code == 2


def test_a_broken_binary_is_one_line_that_says_how_to_rebuild(monkeypatch, tmp_path):
    broken = tmp_path / "llama-server"
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries: libllama-server-impl.so' >&2\nexit 127\n")
    broken.chmod(0o755)
    monkeypatch.setenv(BINARY_ENV, str(broken))
    with pytest.raises(EngineConfigError) as caught:
        build(BackendConfig(), None)
    message = str(caught.value)
    assert "\n" not in message and "libllama-server-impl.so" in message and "--force" in message


def test_the_command_line_says_it_in_one_line_with_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, **{BINARY_ENV: str(tmp_path / "missing"), "DRPO_CACHE_DIR": str(tmp_path / "cache")})
    done = subprocess.run([sys.executable, "run.py", "optimize", "--demo", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() + done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "scripts/build_llama_server.sh" in lines[0], lines
    assert not out.exists()


# --- what the engine reads and sizes ------------------------------------------------------------


def _gguf(path: Path, pairs: list[tuple[str, int, bytes]]) -> Path:
    """A GGUF header with `pairs` (key, type, packed value) and no tensors."""
    body = b"".join(struct.pack("<Q", len(k)) + k.encode() + struct.pack("<I", kind) + value for k, kind, value in pairs)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs)) + body)
    return path


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


def test_the_shipped_model_has_a_chat_template_that_takes_a_system_message():
    info = template_of(default_model_path())
    assert info.known and info.present and info.accepts_system and info.fingerprint


def test_the_template_is_read_past_other_metadata_and_a_base_model_has_none(tmp_path):
    tokens = struct.pack("<IQ", 8, 2) + _string("a") + _string("bc")
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    chat = _gguf(tmp_path / "chat.gguf", [("general.name", 8, _string("x")), ("tokenizer.ggml.tokens", 9, tokens),
                                          ("general.file_type", 4, struct.pack("<I", 3)),
                                          ("tokenizer.chat_template", 8, _string(template))])
    assert gguf_string(chat, "tokenizer.chat_template") == template
    base = _gguf(tmp_path / "base.gguf", [("general.name", 8, _string("x")), ("general.scores", 9,
                                                                              struct.pack("<IQ", 6, 2) + b"\0" * 8)])
    assert gguf_string(base, "tokenizer.chat_template") is None
    assert template_of(base).known and not template_of(base).present  # `auto` prompts it in completion mode


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    (tmp_path / "x.gguf").write_text("hello")
    with pytest.raises(EngineConfigError, match="not a GGUF"):
        gguf_string(tmp_path / "x.gguf", "tokenizer.chat_template")
    _gguf(tmp_path / "cut.gguf", [("general.name", 8, _string("a model name"))])
    (tmp_path / "cut.gguf").write_bytes((tmp_path / "cut.gguf").read_bytes()[:24 + 8 + 5])  # ends inside the key
    with pytest.raises(EngineConfigError, match="cannot read the metadata"):
        gguf_string(tmp_path / "cut.gguf", "tokenizer.chat_template")


def test_slots_follow_the_machine_or_the_config_and_are_the_backends_concurrency():
    assert slots_for(BackendConfig()) >= 2
    assert slots_for(BackendConfig(max_concurrency=3)) == 3
    assert backend_concurrency(BackendConfig()) == slots_for(BackendConfig())
    assert backend_concurrency(BackendConfig(max_concurrency=5)) == 5


# --- the real server ----------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def engine(tmp_path):
    return LlamaServerEngine(slots=2, n_ctx=2048, log_dir=tmp_path)


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_the_server_runs_until_aclose_and_is_gone_after_it(engine, tmp_path):
    await engine.probe()
    pid = engine.pid
    assert pid is not None and alive(pid)
    assert os.getpgid(pid) == pid  # its own process group: a terminal's Ctrl-C reaches the parent only
    props = await engine.server.props()
    assert props["total_slots"] == 2
    await engine.aclose()
    assert not alive(pid)
    assert "listening on" in (tmp_path / "llama-server.log").read_text()


SCRIPT = """
import os, sys, anyio
from backends.llama_server import LlamaServerEngine

async def main():
    engine = LlamaServerEngine(slots=2, n_ctx=1024)
    try:
        await engine.probe()
        print(engine.pid, flush=True)
        if sys.argv[1] == "raise":
            raise RuntimeError("the run failed")
        await anyio.sleep(300)
    finally:
        if sys.argv[1] != "raise":
            await engine.aclose()

anyio.run(main)
"""


def _start_parent(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(SCRIPT))
    parent = subprocess.Popen([sys.executable, str(script), mode], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = parent.stdout.readline() if parent.stdout else ""
    if not line.strip().isdigit():
        parent.kill()
        pytest.fail(f"the parent script did not start the server: {line!r} {parent.communicate()[1][-2000:]}")
    return parent, int(line)


@pytest.mark.engine
@needs_server
def test_the_server_is_gone_after_ctrl_c(tmp_path):
    parent, pid = _start_parent(tmp_path, "sleep")
    assert alive(pid)
    parent.send_signal(signal.SIGINT)
    parent.wait(30)
    assert gone_within(pid, 10)


@pytest.mark.engine
@needs_server
def test_the_server_is_gone_after_an_uncaught_exception_without_aclose(tmp_path):
    parent, pid = _start_parent(tmp_path, "raise")
    assert parent.wait(30) == 1
    assert gone_within(pid, 10)


@pytest.mark.engine
@needs_server
def test_the_server_does_not_outlive_its_parent_killed_with_sigkill(tmp_path):
    parent, pid = _start_parent(tmp_path, "sleep")
    parent.kill()
    parent.wait(30)
    assert gone_within(pid, 10)


class _Foreign(BaseHTTPRequestHandler):
    """Another HTTP server on the port we wanted: healthy, but not serving our model."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok", "model_path": "/elsewhere.gguf"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
@pytest.mark.parametrize("holder", ["socket", "http"])
async def test_a_port_already_in_use_is_left_for_another(engine, holder):
    if holder == "socket":
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, close = taken.getsockname()[1], taken.close
    else:
        foreign = ThreadingHTTPServer(("127.0.0.1", 0), _Foreign)
        threading.Thread(target=foreign.serve_forever, daemon=True).start()
        port, close = foreign.server_address[1], lambda: (foreign.shutdown(), foreign.server_close())
    offered = iter([port, free_port()])
    engine.server.ports = lambda: next(offered)
    try:
        await engine.probe()
        assert engine.server.port not in (None, port)
        request = LLMRequest(role="policy", messages=[Message(role="user", content="Say hi.")],
                             sampling=Sampling(max_tokens=8, seed=1))
        assert (await engine.complete(request)).choices[0].text
    finally:
        await engine.aclose()
        close()


@pytest.mark.anyio
@pytest.mark.engine
@needs_server
async def test_the_log_moves_into_the_run_folder_named_after_the_start(tmp_path):
    engine = LlamaServerEngine(slots=2, n_ctx=1024)
    await engine.probe()
    temporary = engine.server.log_path
    assert temporary is not None and temporary.is_file()
    engine.log_into(tmp_path)
    await engine.aclose()
    assert "listening on" in (tmp_path / "llama-server.log").read_text()
    assert not temporary.exists()


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
def test_one_engine_serves_one_event_loop_after_another_and_outlives_the_thread_that_started_it():
    """`AlignedModel.answer_sync` runs a loop per call; a thread that started the server may end."""
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
    assert len(replies) == 2 and all(replies)
    anyio.run(engine.aclose)
    assert not alive(pid)
