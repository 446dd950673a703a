"""`serve --workers N`: N processes on one port share the requests, drain together on SIGTERM,
stop together when one dies, say a failed start once, and hold the limits of one server between them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from drpo.cli import main
from drpo.serve_wire import ServeLimits
from drpo.serve_workers import share
from schemas.config import BackendConfig
from tests.backends.stub_server import serve_loopback
from tests.drpo.test_serve import QUERY, WORLD_KEY, artifacts
from tests.drpo.test_serve_cli import (
    ROOT,
    asked_in_a_thread,
    engine_file,
    one_error_line,
    serve_process,
    served_requests,
)
from tests.drpo_world import DRPOWorld

__all__ = ["artifacts"]  # fixtures

BODY = json.dumps({"messages": [{"role": "user", "content": QUERY}]}).encode()


def ask(url: str) -> int:
    """One request on a connection of its own (the kernel gives each new connection to one worker)."""
    request = urllib.request.Request(f"{url}/chat/completions", data=BODY, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_each_worker_gets_its_share_of_the_limits_rounded_up():
    backend = BackendConfig(kind="openai", model="m", max_concurrency=64, requests_per_minute=100)
    mine, limits = share(backend, ServeLimits(max_concurrent=5), 3)
    assert (mine.max_concurrency, mine.requests_per_minute, mine.tokens_per_minute) == (22, 34, None)
    assert limits.max_concurrent == 2 and limits.max_n == ServeLimits().max_n


def test_workers_need_an_engine_over_http(artifacts, tmp_path, capsys):
    """An in-process engine (the embedded model, vLLM) would be loaded once per worker."""
    argv = ["serve", "--artifact", str(artifacts["chat"]), "--backend", "embedded", "--workers", "2",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    assert "--workers 2" in one_error_line(capsys)


@pytest.mark.real_engine
@pytest.mark.parametrize("stop", ["sigterm", "ctrl_c"])
def test_two_workers_share_the_requests_then_drain_together(artifacts, tmp_path, stop):
    """Ctrl-C in a terminal signals the whole process group: one Ctrl-C must still drain (each
    worker signalled once), not stop at once as a second one does."""
    world = DRPOWorld(delay_s=0.2)
    with world.serving(), serve_process(artifacts["chat"], world.url, tmp_path, "--workers", "2") as served:
        served.until(r"serve\.workers workers=2")
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda: statuses.append(ask(served.url))) for _ in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        world.received.clear()
        slow: list[int] = []
        asking = asked_in_a_thread(served.url, world, lambda url: slow.append(ask(url)))
        if stop == "sigterm":
            served.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(served.process.pid, signal.SIGINT)
        asking.join(timeout=30)
        code = served.process.wait(timeout=30)
    assert statuses == [200] * 24 and slow == [200]  # the one in flight at SIGTERM was answered
    assert code == 0, served.seen
    workers = [line["worker"] for line in served_requests(tmp_path)]
    assert len(workers) == 25 and set(workers) == {0, 1}  # both answered (24 connections, hashed over 2)
    assert sum("serve.stopped" in line for line in served.seen) == 2


@pytest.mark.real_engine
def test_a_worker_that_dies_stops_the_others_with_one_line_and_exit_1(artifacts, tmp_path):
    world = DRPOWorld()
    with world.serving(), serve_process(artifacts["chat"], world.url, tmp_path, "--workers", "2") as served:
        pids = json.loads(served.until(r"serve\.workers workers=2 pids=(\[[\d, ]+\])").group(1))
        os.kill(pids[1], signal.SIGKILL)
        code = served.process.wait(timeout=30)
        with pytest.raises(OSError):
            ask(served.url)  # the other worker is gone too: nothing listens
    errors = [line for line in served.seen if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "worker 1" in errors[0] and "SIGKILL" in errors[0], served.seen
    assert "Traceback" not in "".join(served.seen)


@pytest.mark.real_engine
def test_a_start_that_fails_is_said_once(artifacts, tmp_path):
    """The first worker starts alone: an engine that refuses the key stops the start with one line,
    not one per worker."""

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    with serve_loopback(Refusing) as url:
        config = engine_file(tmp_path / "engine.toml", url)
        env = {**os.environ, "WORLD_KEY": WORLD_KEY, "DRPO_CACHE_DIR": str(tmp_path / "cache")}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "run.py", "serve", "--artifact", str(artifacts["chat"]), "--config",
                               str(config), "--port", "0", "--workers", "3"], check=False, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "key" in errors[0].lower(), done.stderr
    assert "Traceback" not in done.stderr and time.monotonic() - started < 60


@pytest.mark.real_engine
def test_workers_do_not_outlive_a_parent_killed_with_sigkill(artifacts, tmp_path):
    world = DRPOWorld()
    with world.serving(), serve_process(artifacts["chat"], world.url, tmp_path, "--workers", "2") as served:
        pids = json.loads(served.until(r"serve\.workers workers=2 pids=(\[[\d, ]+\])").group(1))
        served.process.kill()
        served.process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids), "a worker kept serving without its parent"
        with pytest.raises(OSError):
            ask(served.url)


def alive(pid: int) -> bool:
    """A process that has not ended (a zombie, ended but not yet reaped by init, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.real_engine
def test_a_port_that_workers_already_hold_is_refused_not_shared(artifacts, tmp_path, capsys):
    """SO_REUSEPORT would let a second `serve --workers` join the first one's port, and the two
    servers would split its connections without a word."""
    world = DRPOWorld()
    with world.serving(), serve_process(artifacts["chat"], world.url, tmp_path, "--workers", "2") as served:
        served.until(r"serve\.workers workers=2")
        port = served.url.rsplit(":", 1)[1].removesuffix("/v1")
        config = engine_file(tmp_path / "second.toml", world.url)
        assert main(["serve", "--artifact", str(artifacts["chat"]), "--config", str(config), "--port", port,
                     "--workers", "2", "--cache-dir", str(tmp_path / "cache")]) == 2
        assert f"--port {port}: cannot listen there" in one_error_line(capsys)
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0
