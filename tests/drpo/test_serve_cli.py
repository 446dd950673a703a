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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


@dataclass
class Served:
    """`run.py serve` in a child process: its URL and the console lines read so far."""

    process: subprocess.Popen[str]
    url: str
    lines: queue.Queue[str]
    seen: list[str] = field(default_factory=list)

    def until(self, pattern: str) -> re.Match[str]:
        return _until(self.lines, pattern, self.seen)


@contextmanager
def serve_process(artifact: Path, engine_url: str, tmp_path: Path, *flags: str) -> Iterator[Served]:
    """`run.py serve` as a user starts it, over the engine at `engine_url`, with its trace in
    `tmp_path/logs`; every console line is in `seen` once the block ends."""
    config = engine_file(tmp_path / "engine.toml", engine_url)
    env = {**os.environ, "WORLD_KEY": WORLD_KEY, "DRPO_CACHE_DIR": str(tmp_path / "cache")}
    args = [sys.executable, "run.py", "serve", "--artifact", str(artifact), "--config", str(config), "--port", "0",
            "--log-dir", str(tmp_path / "logs"), *flags]
    process = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               start_new_session=True)  # its own process group, as a terminal's Ctrl-C reaches it
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(process.stderr, lines), daemon=True)
    reader.start()
    served = Served(process, "", lines)
    try:
        served.url = served.until(r"serve\.listening url=(\S+)").group(1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        while not lines.empty():
            served.seen.append(lines.get())


def asked_in_a_thread(url: str, world: DRPOWorld, ask: Callable[[str], None]) -> threading.Thread:
    """`ask(url)` running in a thread, once its request has reached the engine."""
    asking = threading.Thread(target=ask, args=(url,))
    asking.start()
    deadline = time.monotonic() + 30
    while not world.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert world.received, "the request never reached the engine"
    return asking


def served_requests(tmp_path: Path) -> list[dict]:
    lines = [json.loads(line) for line in (tmp_path / "logs" / "trace.jsonl").read_text().splitlines()]
    return [line for line in lines if line["event"] == "serve.request"]


@pytest.mark.real_engine
def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(artifacts, tmp_path):
    world = DRPOWorld(delay_s=1.5)
    body = json.dumps({"model": f"drpo-{read(artifacts['chat']).run_id}",
                       "messages": [{"role": "user", "content": QUERY}]}).encode()
    answered: list[tuple[int, dict]] = []

    def ask(url: str) -> None:
        request = urllib.request.Request(f"{url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answered.append((response.status, json.loads(response.read())))

    with world.serving(), serve_process(artifacts["chat"], world.url, tmp_path) as served:
        asking = asked_in_a_thread(served.url, world, ask)
        served.process.send_signal(signal.SIGTERM)
        served.until(r"serve\.draining")
        asking.join(timeout=30)
        code = served.process.wait(timeout=30)
    assert code == 0, served.seen
    [(status, answer)] = answered
    assert status == 200 and answer["choices"][0]["message"]["content"].startswith("ANSWER[")
    assert any("serve.stopped" in line for line in served.seen) and "Traceback" not in "".join(served.seen)
    assert [line["status"] for line in served_requests(tmp_path)] == [200]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{served.url}/models", timeout=5)


@pytest.mark.parametrize(
    ("flags", "mentions"),
    [
        pytest.param(lambda f: ["--log-dir", str(f / "logs")], "--log-dir", id="log-dir-is-a-file"),
        pytest.param(lambda f: ["--log-dir", str(f / "logs" / "deeper")], "is a file, not a folder",
                     id="log-dir-under-a-file"),
        pytest.param(lambda f: ["--cache-dir", str(f / "logs")], "--cache-dir", id="cache-dir-is-a-file"),
        pytest.param(lambda f: ["--shutdown-timeout", "nan"], "--shutdown-timeout", id="shutdown-timeout-nan"),
        pytest.param(lambda f: ["--shutdown-timeout", "inf"], "--shutdown-timeout", id="shutdown-timeout-inf"),
        pytest.param(lambda f: ["--body-timeout", "0"], "--body-timeout", id="body-timeout-zero"),
        pytest.param(lambda f: ["--body-timeout", "nan"], "--body-timeout", id="body-timeout-nan"),
    ],
)
def test_folders_that_cannot_be_folders_and_timeouts_that_are_no_number_are_one_line(artifacts, tmp_path, flags,
                                                                                      mentions, capsys):
    """Where `answer` refuses a cache folder that is a file with one line, `serve` had raised an
    internal error (exit 1) from inside the embedder or the log setup."""
    (tmp_path / "logs").write_text("a file where a folder belongs")
    assert main(["serve", "--artifact", str(artifacts["chat"]), *flags(tmp_path)]) == 2
    assert mentions in one_error_line(capsys)


def test_a_log_dir_whose_run_log_is_a_folder_is_one_line(artifacts, tmp_path, capsys):
    (tmp_path / "logs" / "run.log").mkdir(parents=True)
    config = engine_file(tmp_path / "engine.toml", "http://127.0.0.1:9/v1")
    assert main(["serve", "--artifact", str(artifacts["chat"]), "--config", str(config),
                 "--log-dir", str(tmp_path / "logs")]) == 2
    assert "cannot write its logs" in one_error_line(capsys)


@pytest.mark.real_engine
def test_a_second_signal_while_draining_stops_at_once_without_error_lines(artifacts, tmp_path):
    """SIGTERM, then Ctrl-C while a slow request drains: the default SIGINT handler was back by then,
    so KeyboardInterrupt reached asyncio.run's shutdown and aiohttp's tasks were logged as ERRORs
    (with their source paths); now the request is cancelled, traced, and the process exits 0 at once."""
    world = DRPOWorld(delay_s=5.0)
    body = json.dumps({"messages": [{"role": "user", "content": QUERY}]}).encode()

    def ask(url: str) -> None:
        with pytest.raises(OSError):  # the connection closes without an answer
            urllib.request.urlopen(urllib.request.Request(f"{url}/chat/completions", data=body), timeout=30)

    with world.serving(), serve_process(artifacts["chat"], world.url, tmp_path) as served:
        asking = asked_in_a_thread(served.url, world, ask)
        served.process.send_signal(signal.SIGTERM)
        served.until(r"serve\.draining")
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGINT)
        code = served.process.wait(timeout=30)
        took = time.monotonic() - signalled
        asking.join(timeout=30)
    text = "".join(served.seen)
    assert code == 0 and took < 3.0, served.seen
    assert "serve.stopping_now" in text and "serve.stopped" in text
    assert "ERROR" not in text and "Task" not in text and "Traceback" not in text
    assert [(line["status"], line["error"]) for line in served_requests(tmp_path)] == [(None, "cancelled")]
