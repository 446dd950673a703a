"""Money across kill -9 and `--resume`: budgets hold over the whole run, and the artifact counts
every call the run sent, in every process, against what the engine itself served.

The engine is the loopback world (tests/drpo_world.py), extended here with a request log per
role (the role is the request's schema name, as the world tells roles apart) and a switch that
stops it processing the policy's requests: requests then wait at the engine, unread, as in a
server's queue, while every other role is still answered. A run killed in that state has every
judge answer it was sent in its journal, so its resumption can be compared call for call with an
uninterrupted run under the same budget.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.drpo.test_reliability import Run
from tests.drpo_world import DRPOWorld, _schema
from tests.graph.test_beam import write_queries

pytestmark = pytest.mark.real_engine

ROLES = {None: "policy", "criteria_selection": "criteria", "judgement": "judge", "prompt_rewrite": "rewriter"}
JUDGE_BUDGET = 10
"""One root judgement, then 3 on level 0 (beam 1 x 3 actions) and 6 on level 1 (2 x 3): the budget
runs out exactly at a level's end, so which judgements were made does not depend on timing."""


class LoggingWorld(DRPOWorld):
    """The world with a per-role log of the requests it received and of those it answered."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: Counter[str] = Counter()
        self.hold_policy_after: int | None = None
        """Policy requests past this many answered wait unanswered (the client is killed meanwhile)."""
        self.last_answer = time.monotonic()
        self.release = threading.Event()
        """Set when the test ends: held requests fail, so the server can join its threads."""

    def arrived(self) -> Counter[str]:
        """Requests received, by role (the world's own log of every request, answered or not)."""
        with self.lock:
            return Counter(ROLES[_schema(body)[0]] for _, body in self.received)

    def answer(self, body: dict[str, Any]) -> list[str]:
        role = ROLES[_schema(body)[0]]
        with self.lock:
            held = role == "policy" and self.hold_policy_after is not None \
                and self.answered["policy"] >= self.hold_policy_after
            if not held:
                self.answered[role] += 1
                self.last_answer = time.monotonic()
        if held:
            self.release.wait(600)  # the client is killed meanwhile
            raise ConnectionResetError("held")
        return super().answer(body)


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A LoggingWorld on loopback, and the environment a run against it needs."""
    write_queries(tmp_path / "q.txt")
    logging_world = LoggingWorld()
    with logging_world.serving():
        try:
            yield logging_world, {**os.environ, "OPENAI_BASE_URL": logging_world.url,
                                  "OPENAI_API_KEY": "unused-key", "DRPO_CACHE_DIR": str(tmp_path / "cache")}
        finally:
            logging_world.release.set()


def budgeted(world: LoggingWorld, out: Path, env: dict[str, str], *extra: str) -> Run:
    config = out.parent / "budget.toml"
    config.write_text(f"[budgets.judge]\ncalls = {JUDGE_BUDGET}\n")
    # Enough concurrency that no request waits for a slot: each one reserved is one sent.
    return Run(out, "--config", str(config), "--max-concurrency", "32", *extra, env=env)


def accounts(out: Path) -> dict[str, dict[str, Any]]:
    return json.loads((out / "artifact.json").read_text())["accounting"]["by_role"]


def wait_until(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the run did not get there in time"
        time.sleep(0.005)


def reference_run(world: LoggingWorld, tmp_path: Path, env: dict[str, str]) -> tuple[str, Counter[str]]:
    run = budgeted(world, tmp_path / "reference", env)
    assert run.wait(timeout=120) == 0, run.stderr
    served = Counter(world.answered)
    artifact = json.loads((tmp_path / "reference" / "artifact.json").read_text())
    assert artifact["stopped"] == f"judge reached its budget of {JUDGE_BUDGET} calls"
    assert served["judge"] == JUDGE_BUDGET
    world.received.clear()
    world.answered.clear()
    return (tmp_path / "reference" / "prompt.txt").read_text(), served


def test_a_budgeted_run_killed_and_resumed_spends_its_budget_once_and_delivers_the_same_prompt(tmp_path, world):
    world, env = world
    expected, uninterrupted = reference_run(world, tmp_path, env)

    out = tmp_path / "killed"
    world.hold_policy_after = 1 + 3 + 3  # the root's, level 0's, and half of level 1's
    run = budgeted(world, out, env)
    wait_until(lambda: world.answered["policy"] >= world.hold_policy_after and
               time.monotonic() - world.last_answer > 2.0)  # nothing left to answer but policy requests
    assert world.arrived()["judge"] == world.answered["judge"]  # no judgement in flight
    assert run.poll() is None
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    first = Counter(world.answered)
    held = world.arrived()["policy"] - world.answered["policy"]
    assert 0 < first["judge"] < JUDGE_BUDGET and held > 0 and not (out / "prompt.txt").exists()
    trace = (out / "trace.jsonl").read_text()
    trace_before = len(trace.splitlines())  # a torn last line (killed mid-write) included: it stays alone

    world.hold_policy_after = None
    resumed = budgeted(world, out, env, "--resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr
    assert (out / "prompt.txt").read_text() == expected
    # The budget held over both processes, and the run asked what the uninterrupted one asked.
    assert world.answered["judge"] == JUDGE_BUDGET
    assert world.answered == uninterrupted
    # The artifact counts every call of both processes, as the engine served them, and the
    # answers the resumption took from the journal instead of asking again.
    by_role = accounts(out)
    assert {role: account["usage"]["calls"] for role, account in by_role.items() if account["usage"]["calls"]} \
        == dict(world.answered)
    # ...and every request the engine received, answered or not: those in flight at the kill too.
    assert {role: account["sent"] for role, account in by_role.items() if account["sent"]} == world.arrived()
    replies = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()[trace_before:]]
    answered_free = Counter(r["agent"] for r in replies if r.get("direction") == "reply" and r["calls"] == 0)
    for role in ("policy", "judge", "rewriter"):  # one request per agent call: a reply that cost none was replayed
        assert by_role[role]["replayed"] == answered_free[role] <= first[role]
    assert sum(account["replayed"] for account in by_role.values()) > 0
    assert all(account["faults"] == {} and account["failed_calls"] == 0 for account in by_role.values())


@pytest.mark.parametrize("kill_after", [2, 9])
def test_a_budget_is_never_exceeded_however_the_run_is_killed_and_resumed(tmp_path, world, kill_after):
    """Killed with judgements in flight: those count against the budget too (the engine may have
    answered them), so the engine never serves the judge more than its budget over the run."""
    world, env = world
    out = tmp_path / "killed"
    run = budgeted(world, out, env)
    wait_until(lambda: world.arrived()["judge"] >= kill_after or run.poll() is not None)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    resumed = budgeted(world, out, env, "--resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr
    assert world.arrived()["judge"] <= JUDGE_BUDGET
    with closing(sqlite3.connect(out / "ledger.sqlite")) as book:
        reserved = dict(book.execute("SELECT role, count(*) FROM events WHERE kind = 'reserve' GROUP BY role"))
    assert reserved["judge"] <= JUDGE_BUDGET
    # Every request the engine received was reserved in the run's ledger first, in some process.
    assert all(count <= reserved.get(role, 0) for role, count in world.arrived().items())
    by_role = accounts(out)
    assert all(by_role[role]["usage"]["calls"] <= world.answered[role] for role in world.answered)
    assert {role: account["sent"] for role, account in by_role.items() if account["sent"]} == reserved
