"""The live console: drawn in place on a terminal, plain lines elsewhere, stopped on every way out.

The command-level tests run `run.py` as a subprocess against the loopback world
(tests/drpo_world.py), its stdout and stderr on a pseudo-terminal or on pipes, as a person or a
CI job would see it. The rest drive the feed and the display in process.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from drpo.cli_summary import DEMO_NOTE, optimize_summary
from drpo.console import LiveDisplay, curate_plan, eval_plan, optimize_plan, render, watched
from drpo.console_feed import RunFeed
from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, RunConfig, SearchConfig
from telemetry.redact import Redactor
from tests.drpo_world import DRPOWorld
from tests.graph.test_beam import write_queries
from tests.scripted import DRPOScript

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-NEVER-WRITE-THIS-4321"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
HIDE, SHOW, UP = b"\x1b[?25l", b"\x1b[?25h", b"\x1b[1A"


def plain(output: bytes) -> str:
    return ANSI.sub(b"", output).decode("utf-8", "replace")


def optimize_argv(tmp_path: Path, out: str = "out") -> list[str]:
    return ["optimize", "--backend", "openai", "--model", "world", "--depth", "3", "--beam", "2", "--actions", "2",
            "--max-concurrency", "2", "--no-cache", "--no-criteria-cache", "--train", str(tmp_path / "q.txt"),
            "--out", str(tmp_path / out)]


@pytest.fixture
def world_env(tmp_path):  # type: ignore[no-untyped-def]
    write_queries(tmp_path / "q.txt")
    world = DRPOWorld(delay_s=0.03)  # long enough for several frames
    with world.serving():
        env = {**os.environ, "OPENAI_BASE_URL": world.url, "OPENAI_API_KEY": KEY, "TERM": "xterm-256color",
               "DRPO_CACHE_DIR": str(tmp_path / "cache")}
        yield world, env


def on_a_terminal(argv: list[str], env: dict[str, str], *, until: Callable[[bytes], bool] | None = None,
                  then: int | None = None, timeout: float = 180) -> tuple[int, bytes]:
    """Run `run.py argv` with stdin, stdout and stderr on a 120x40 pseudo-terminal; all it wrote.
    Once `until(output so far)` holds, send it the signal `then`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # A shell that starts jobs in the background (as CI may) leaves SIGINT ignored, which a child
    # inherits; restore the default so Ctrl-C reaches the run as it would in a terminal.
    process = subprocess.Popen([sys.executable, "run.py", *argv], cwd=ROOT, env=env, stdin=slave, stdout=slave,
                               stderr=slave, close_fds=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    os.close(slave)
    output, deadline, sent = b"", time.monotonic() + timeout, False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # the child closed its end: everything is read
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
            if until is not None and then is not None and not sent and until(output):
                process.send_signal(then)
                sent = True
        return process.wait(timeout=30), output
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)


# --- on a terminal and off it -------------------------------------------------------------------


@pytest.mark.real_engine
def test_on_a_terminal_the_display_draws_level_roles_and_eta_in_place_then_the_summary(tmp_path, world_env):
    _, env = world_env
    code, output = on_a_terminal(optimize_argv(tmp_path), env)
    text = plain(output)
    assert code == 0, text[-2000:]
    assert "level 1/2" in text and "level 2/2" in text and "best reward" in text  # depth 3: two levels
    for role in ("criteria", "policy", "judge", "rewriter"):
        assert re.search(rf"^{role}\s+\d+\s+\d+\s+\d+", text, re.MULTILINE), role  # done, in flight, engine calls
    assert "in flight" in text and "ETA" in text
    headlines = set(re.findall(r"(\d+)/(\d+) calls", text))
    assert len(headlines) >= 3 and ("17", "17") in headlines  # redrawn as calls end; 3 + 7 + 7 projected
    assert output.count(UP) > 10  # each frame moves up over the last one: updated in place
    assert output.rfind(SHOW) > output.rfind(HIDE) >= 0  # the cursor is given back
    tail = plain(output[output.rfind(SHOW):])
    assert "Optimized system prompt" in tail and re.search(r"^role\s+sent\s+calls\s+cached", tail, re.MULTILINE)
    assert re.search(r"\d\d:\d\d:\d\d level\.done level=1", text)  # the progress lines still scroll above it
    assert KEY not in text and DEMO_NOTE.strip() not in text


@pytest.mark.real_engine
def test_piped_output_stays_plain_lines(tmp_path, world_env):
    _, env = world_env
    result = subprocess.run([sys.executable, "run.py", *optimize_argv(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"\x1b" not in result.stdout and b"\x1b" not in result.stderr
    lines = result.stderr.decode().splitlines()
    assert [line.split(" ", 2)[1] for line in lines if " level.done " in line] == ["level.done"] * 2
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines)  # every line a log line: no frame
    assert "Optimized system prompt" in result.stdout.decode()


@pytest.mark.real_engine
def test_ctrl_c_stops_the_display_and_gives_the_terminal_back(tmp_path, world_env):
    world, env = world_env
    world.delay_s = 0.2  # slow enough to be interrupted mid-search

    def drawing(output: bytes) -> bool:
        return b"in flight" in output and world.served >= 4

    code, output = on_a_terminal(optimize_argv(tmp_path), env, until=drawing, then=signal.SIGINT)
    text = plain(output)
    assert code == 130, text[-2000:]
    assert output.rfind(SHOW) > output.rfind(HIDE) >= 0
    assert "interrupted" in text.rstrip().splitlines()[-1]
    assert not (tmp_path / "out" / "prompt.txt").exists()


@pytest.mark.real_engine
def test_curate_draws_its_examples_on_a_terminal(tmp_path, world_env):
    _, env = world_env
    argv = ["curate", "--backend", "openai", "--model", "world", "--examples", str(ROOT / "data/seed_examples.jsonl"),
            "--iterations", "1", "--no-cache", "--no-criteria-cache", "--out", str(tmp_path / "pool")]
    code, output = on_a_terminal(argv, env)
    text = plain(output)
    assert code == 0, text[-2000:]
    assert "curate" in text and "examples 10/10" in text and "ETA at most" in text
    assert re.search(r"^curator\s+10\s+0\s+10", text, re.MULTILINE)  # one rewrite per example, all ended
    assert output.rfind(SHOW) > output.rfind(HIDE) >= 0
    assert "curated 10 examples" in plain(output[output.rfind(SHOW):])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("flags", "stream", "term", "shown"),
    [
        pytest.param({}, Terminal(), "xterm", True, id="a-terminal"),
        pytest.param({"quiet": True}, Terminal(), "xterm", False, id="quiet-warnings-only"),
        pytest.param({"verbose": True}, Terminal(), "xterm", False, id="verbose-every-event-as-lines"),
        pytest.param({}, io.StringIO(), "xterm", False, id="a-pipe"),
        pytest.param({}, Terminal(), "dumb", False, id="a-dumb-terminal"),
    ],
)
def test_the_display_is_drawn_only_where_a_person_watches(monkeypatch, flags, stream, term, shown):
    monkeypatch.setenv("TERM", term)
    args = SimpleNamespace(**{"quiet": False, "verbose": False, **flags})
    assert watched(args, stream) is shown


# --- the feed: what the display reads ------------------------------------------------------------


@pytest.mark.anyio
async def test_the_feed_counts_what_the_run_accounts(tmp_path):
    faults = iter(range(1000))

    def fault(role, request):  # type: ignore[no-untyped-def]
        from backends.errors import InvalidOutput

        return InvalidOutput("not JSON") if role == "judge" and next(faults) % 4 == 1 else None

    config = RunConfig(search=SearchConfig(depth=4, beam=2, actions=2),
                       backends={"default": BackendConfig(kind="openai", model="s")})
    options = OptimizeOptions(config=config, out=tmp_path / "out", train=write_queries(tmp_path / "q.txt"),
                              cache_dir=tmp_path / "cache", response_cache=False, criteria_cache=False)
    feed = RunFeed()
    project_logger = logging.getLogger("drpo")
    level = project_logger.level
    with feed.attached(project_logger):
        artifact = await optimize(options, engine_factory=DRPOScript(fail=fault).engine)
    assert feed not in project_logger.handlers and project_logger.level == level
    seen = feed.snapshot()
    accounts = artifact.accounting.by_role
    for role in ("criteria", "policy", "judge", "rewriter"):
        counts = seen.roles[role]
        assert counts.in_flight == 0
        assert (counts.calls, counts.tokens_in, counts.tokens_out) == (
            accounts[role].usage.calls, accounts[role].usage.tokens_in, accounts[role].usage.tokens_out)
        assert dict(counts.faults) == accounts[role].faults
    assert sum(seen.roles["judge"].faults.values()) > 0
    assert seen.roles["policy"].done == seen.roles["judge"].done == 1 + sum(len(lv.candidates) for lv in artifact.levels)
    assert seen.levels_done == len(artifact.levels) == 3 and seen.max_depth == 4
    assert seen.best == max(c.reward for c in artifact.candidates if c.reward is not None)  # the root's included
    outlook = optimize_plan(config.search)(seen)
    assert outlook.where.startswith("level 3/3") and outlook.done == outlook.total == 5 + 11 + 11  # rewriter, policy, judge


def events(feed: RunFeed, *lines: dict) -> None:
    for line in lines:
        feed.observe(line)


def test_the_eta_follows_the_projection_at_the_depth_reached():
    now = [0.0]
    feed = RunFeed(clock=lambda: now[0])
    search = SearchConfig(depth=3, max_depth_increase=1, beam=2, actions=2)
    plan = optimize_plan(search)
    assert plan(feed.snapshot()).total is None  # before the run says how many queries it has
    events(feed, {"event": "run.start", "queries": 40, "depth": 3}, {"event": "root.done", "reward": 2.0})
    before = plan(feed.snapshot())
    assert (before.where, before.total) == ("level 1/2, best reward 2.00", 3 + 7 + 7)
    for _ in range(7):
        events(feed, {"event": "agent.message", "agent": "policy", "direction": "request"},
               {"event": "agent.message", "agent": "policy", "direction": "reply", "calls": 1})
    events(feed, {"event": "level.done", "level": 0, "max_depth": 4, "best": 3.5})  # a skip: one level more
    now[0] = 70.0
    s = feed.snapshot()
    after = plan(s)
    assert after.where == "level 2/3, best reward 3.50" and after.total == 5 + 11 + 11
    assert after.done == 7 and render_text(feed, plan).count("ETA 3:20") == 1  # 20 calls left at 10 s each


def test_curate_and_eval_count_their_own_calls():
    feed = RunFeed(clock=lambda: 0.0)
    events(feed, {"event": "curate.start", "seeds": 4, "iterations": 2}, {"event": "example.done"})
    assert (curate_plan(feed.snapshot()).where, curate_plan(feed.snapshot()).total) == ("examples 1/4", 4 * 5)
    assert curate_plan(feed.snapshot()).bound
    feed = RunFeed(clock=lambda: 0.0)
    events(feed, {"event": "eval.start", "items": 5, "configs": ["drpo", "plain"]},
           {"event": "agent.message", "agent": "judge", "direction": "request"},
           {"event": "agent.message", "agent": "judge", "direction": "reply", "calls": 1})
    outlook = eval_plan(feed.snapshot())
    assert outlook.where.startswith("1/10 answers judged") and (outlook.done, outlook.total) == (1, 20)


def render_text(feed: RunFeed, plan, redactor: Redactor | None = None) -> str:  # type: ignore[no-untyped-def]
    from rich.console import Console

    console = Console(record=True, width=140, file=io.StringIO())
    snapshot = feed.snapshot()
    console.print(render(snapshot, plan(snapshot), (redactor or Redactor()).scrub))
    return console.export_text()


def test_every_text_a_frame_draws_passes_the_runs_redactor():
    secret = "sk-live-abcdefgh12345678"
    feed = RunFeed(clock=lambda: 0.0)
    events(feed, {"event": "agent.message", "agent": f"critic-{secret}", "direction": "request"},
           {"event": "engine.fault", "agent": "judge", "kind": f"rejected {secret}"})
    text = render_text(feed, curate_plan, Redactor([secret]))
    assert secret not in text and "critic-***" in text and "rejected ***" in text


# --- the display: stopped on every way out -------------------------------------------------------


@pytest.mark.parametrize("raised", [RuntimeError("boom"), KeyboardInterrupt()], ids=["an-error", "ctrl-c"])
def test_the_display_stops_and_detaches_however_the_command_ends(raised):
    screen = Terminal()
    project_logger = logging.getLogger("drpo")
    level, stdout, stderr = project_logger.level, sys.stdout, sys.stderr
    display = LiveDisplay(curate_plan, Redactor(), stream=screen, refresh_per_second=50)
    with pytest.raises(type(raised)), display:
        assert display.feed in project_logger.handlers
        time.sleep(0.1)
        raise raised
    assert display.feed not in project_logger.handlers and project_logger.level == level
    assert (sys.stdout, sys.stderr) == (stdout, stderr)  # what it redirected while drawing is given back
    drawn = screen.getvalue().encode()
    assert drawn.rfind(SHOW) > drawn.rfind(HIDE) >= 0 and drawn.count(UP) >= 2
    assert "curate" in plain(drawn.split(SHOW)[-2])  # the last frame stays above the error's line


def test_a_frame_that_cannot_be_drawn_does_not_stop_the_drawing():
    def broken(snapshot):  # type: ignore[no-untyped-def]
        raise ValueError("no")

    display = LiveDisplay(broken, Redactor(), stream=Terminal())
    assert "progress display: ValueError" in str(display.frame())


# --- the demo says what it is -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("backend", "noted"), [(BackendConfig(), True), (BackendConfig(kind="openai", model="m"), False)],
                         ids=["embedded-default", "another-model"])
async def test_a_run_on_the_embedded_default_model_ends_by_saying_what_it_shows(tmp_path, backend, noted):
    config = RunConfig(search=SearchConfig(depth=2, beam=1, actions=1), backends={"default": backend})
    options = OptimizeOptions(config=config, out=tmp_path / "out", train=write_queries(tmp_path / "q.txt"),
                              cache_dir=tmp_path / "cache")
    artifact = await optimize(options, engine_factory=DRPOScript().engine)
    summary = optimize_summary(artifact, options.out)
    assert summary.endswith(DEMO_NOTE) is noted
    if noted:
        assert "135M" in summary and "not a better prompt" in summary and "data/recipes/mistral-base.toml" in summary


@pytest.mark.engine
def test_the_demo_ends_by_pointing_at_the_recipe_for_real_models(tmp_path):
    env = {**os.environ, "DRPO_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(ROOT / "run.py")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=540, check=False)  # runs/ goes under tmp_path
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.rstrip().splitlines()[-4:]
    assert "135M" in last[0] and "not a better prompt" in " ".join(last) and "mistral-base.toml" in last[-1]
