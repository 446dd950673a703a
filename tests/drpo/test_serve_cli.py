"""`python run.py serve`: bad input is one line and exit code 2 before anything listens, and SIGTERM
drains: the request in flight gets its answer, then the process exits 0."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from agents.embedders import EMBEDDER_NAMES
from drpo.cli import main
from drpo.cli_parser import build_parser
from tests.drpo.test_serve import QUERY, WORLD_KEY, artifacts, read
from tests.drpo_world import DRPOWorld

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["artifacts"]  # fixtures


def engine_file(path: Path, url: str, **extra: str) -> Path:
    fields = "".join(f'{key} = "{value}"\n' for key, value in extra.items())
    path.write_text(f'[backends.default]\nkind = "openai"\nmodel = "base"\nbase_url = "{url}"\n'
                    f'api_key_env = "WORLD_KEY"\nmax_attempts = 1\n{fields}')
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        pytest.param([], "--artifact", id="no-artifact"),
        pytest.param(["--artifact", "nowhere"], "no artifact.json", id="missing-artifact"),
        pytest.param(["--port", "70000"], "--port", id="port-out-of-range"),
        pytest.param(["--client-system", "merge"], "--client-system", id="unknown-policy"),
        pytest.param(["--auth-env", "DRPO_TEST_UNSET_TOKEN"], "not set", id="unset-token"),
        pytest.param(["--auth-env", "DRPO_TEST_SHORT_TOKEN"], "shorter than 16", id="short-token"),
        pytest.param(["--max-concurrent-requests", "0"], "at least 1", id="zero-concurrency"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(artifacts, argv, mentions, capsys, monkeypatch):
    monkeypatch.setenv("DRPO_TEST_SHORT_TOKEN", "short")
    monkeypatch.delenv("DRPO_TEST_UNSET_TOKEN", raising=False)
    artifact = [] if argv[:1] == ["--artifact"] or not argv else ["--artifact", str(artifacts["chat"])]
    assert main(["serve", *artifact, *argv]) == 2
    assert mentions in one_error_line(capsys)


@pytest.mark.parametrize("name", EMBEDDER_NAMES)
def test_serve_takes_every_embedder_name_answer_takes(name):
    """An artifact records its embedder by name (e.g. wordllama-l2-supercat-256); a user who copies
    it from artifact.json into `serve --embedder` must not be refused where `answer` accepts it."""
    parser = build_parser()
    for argv in (["serve", "--artifact", "run"], ["answer", "q", "--artifact", "run"]):
        assert parser.parse_args([*argv, "--embedder", name]).embedder == name


@pytest.mark.real_engine
def test_a_port_in_use_and_a_mode_change_are_refused_before_serving(artifacts, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_KEY", WORLD_KEY)
    with DRPOWorld().serving() as world, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        config = engine_file(tmp_path / "engine.toml", world.url)
        assert main(["serve", "--artifact", str(artifacts["chat"]), "--config", str(config), "--port", port]) == 2
        assert "cannot listen" in one_error_line(capsys)
        chat = engine_file(tmp_path / "chat.toml", world.url, policy_mode="chat")
        assert main(["serve", "--artifact", str(artifacts["completion"]), "--config", str(chat)]) == 2
        assert "optimized in completion mode" in one_error_line(capsys)
        assert world.received == []


def _lines(stream, into: queue.Queue[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        into.put(line)


def _until(lines: queue.Queue[str], pattern: str, seen: list[str], timeout_s: float = 90.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    raise AssertionError(f"no line matching {pattern!r} in {seen}")


@pytest.mark.real_engine
def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(artifacts, tmp_path):
    world = DRPOWorld(delay_s=1.5)
    with world.serving():
        config = engine_file(tmp_path / "engine.toml", world.url)
        env = {**os.environ, "WORLD_KEY": WORLD_KEY, "DRPO_CACHE_DIR": str(tmp_path / "cache")}
        args = [sys.executable, "run.py", "serve", "--artifact", str(artifacts["chat"]), "--config", str(config),
                "--port", "0", "--log-dir", str(tmp_path / "logs")]
        process = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   text=True)
        lines: queue.Queue[str] = queue.Queue()
        seen: list[str] = []
        reader = threading.Thread(target=_lines, args=(process.stderr, lines), daemon=True)
        reader.start()
        try:
            url = _until(lines, r"serve\.listening url=(\S+)", seen).group(1)
            body = json.dumps({"model": f"drpo-{read(artifacts['chat']).run_id}",
                               "messages": [{"role": "user", "content": QUERY}]}).encode()
            answered: list[tuple[int, dict]] = []

            def ask() -> None:
                request = urllib.request.Request(f"{url}/chat/completions", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    answered.append((response.status, json.loads(response.read())))

            asking = threading.Thread(target=ask)
            asking.start()
            deadline = time.monotonic() + 30
            while not world.received and time.monotonic() < deadline:
                time.sleep(0.01)
            assert world.received, "the request never reached the engine"
            process.send_signal(signal.SIGTERM)
            _until(lines, r"serve\.draining", seen)
            asking.join(timeout=30)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    assert code == 0, seen
    [(status, answer)] = answered
    assert status == 200 and answer["choices"][0]["message"]["content"].startswith("ANSWER[")
    assert any("serve.stopped" in line for line in seen) and "Traceback" not in "".join(seen)
    trace = [json.loads(line) for line in (tmp_path / "logs" / "trace.jsonl").read_text().splitlines()]
    assert any(line["event"] == "serve.request" and line["status"] == 200 for line in trace)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=5)
