"""Run folders that are shared or damaged (issue 12, kind 4), through the command line.

One process at a time owns a folder (a lock the OS releases when its owner dies); a new run's
folder is made exclusively; `--force` starts from an empty folder; a resumed run's settings are
sealed by a digest; damaged databases are named, with the way out, before any call is spent; a
torn last log line stays alone; a root that could not be evaluated is never checkpointed.

The engine is the loopback world (tests/drpo_world.py): `world.served` counts every request it
got, so "nothing spent" is a count that did not move. Damaged folders are damaged copies of a
real run, killed with SIGKILL mid-search.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from drpo.cli import main
from drpo.errors import UserInputError
from drpo.session import RunOptions, run_session, write_atomic
from schemas.config import BackendConfig, RunConfig
from tests.drpo.recorded_run import write_run
from tests.drpo_world import DRPOWorld
from tests.graph.test_beam import write_queries
from tests.scripted import DRPOScript

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--backend", "openai", "--model", "world", "--depth", "3", "--beam", "2", "--actions", "2",
         "--max-concurrency", "4"]

pytestmark = pytest.mark.real_engine  # OpenAICompatEngine against the loopback world


def scripted_config() -> RunConfig:
    return RunConfig(backends={"default": BackendConfig(kind="openai", model="s")})


def optimize_argv(out: Path, *extra: str, train: Path) -> list[str]:
    return ["optimize", *SMALL, "--train", str(train), "--out", str(out), *extra]


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as stderr:
        return subprocess.Popen([sys.executable, "run.py", *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr)


def wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def error_line(capsys) -> str:  # type: ignore[no-untyped-def]
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def run_ids(folder: Path) -> set[str]:
    """Every run id the folder's run log names (a folder that mixes runs names two)."""
    ids = set()
    for line in (folder / "run.log").read_text().splitlines():
        try:
            ids.add(json.loads(line).get("run_id"))
        except ValueError:
            continue
    return ids - {None}


def consolidate(folder: Path) -> None:
    """Fold each database's write-ahead log into the file, as a clean close would have: the state
    of a killed run in files that a truncation really damages."""
    for db in folder.glob("*.sqlite"):
        with closing(sqlite3.connect(db)) as conn:  # closed: the last connection removes the -wal file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not list(folder.glob("*-wal"))


@pytest.fixture(scope="module")
def env_base(tmp_path_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("home")
    return {"OPENAI_API_KEY": "unused-key", "DRPO_CACHE_DIR": str(home / "cache"), "_TRAIN": str(write_queries(
        home / "q.txt"))}


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, env_base) -> Path:  # type: ignore[no-untyped-def]
    """A real run killed with SIGKILL mid-search (its databases consolidated)."""
    world = DRPOWorld(delay_s=0.02)
    out = tmp_path_factory.mktemp("killed") / "run"
    with world.serving():
        env = {**os.environ, **env_base, "OPENAI_BASE_URL": world.url}
        run = spawn(optimize_argv(out, "--no-cache", "--no-criteria-cache", train=Path(env_base["_TRAIN"])), env,
                    out.parent / "stderr")
        wait_for(lambda: world.served >= 12 or run.poll() is not None)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    assert not (out / "prompt.txt").exists()
    consolidate(out)
    return out


@pytest.fixture
def world(monkeypatch, env_base):  # type: ignore[no-untyped-def]
    """A loopback world the in-process commands talk to."""
    world = DRPOWorld()
    with world.serving():
        for name, value in {**env_base, "OPENAI_BASE_URL": world.url}.items():
            monkeypatch.setenv(name, value)
        yield world


@pytest.fixture
def copy_of(tmp_path, killed_run):  # type: ignore[no-untyped-def]
    def make(name: str = "run") -> Path:
        return Path(shutil.copytree(killed_run, tmp_path / name))

    return make


def snapshot(folder: Path) -> dict[str, bytes]:
    """The folder's files and their bytes (the lock file aside: a refusal may take the lock)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".drpo-lock"}


# --- one owner at a time ------------------------------------------------------------------------


class GatedWorld(DRPOWorld):
    """A world whose answers past the first `open_for` wait for `gate`: a run holds its folder
    for as long as the test says."""

    def __init__(self, open_for: int) -> None:
        super().__init__()
        self.open_for = open_for
        self.gate = threading.Event()

    def answer(self, body):  # type: ignore[no-untyped-def]
        if self.served > self.open_for:
            self.gate.wait(15)  # a bounded wait: a test that goes wrong fails, never hangs
        return super().answer(body)


@pytest.fixture
def running(tmp_path, monkeypatch, env_base):  # type: ignore[no-untyped-def]
    """An optimize in its own process, in tmp_path/run, held mid-search until the gate opens; the
    in-process commands of the test talk to the same world."""
    world = GatedWorld(open_for=3)
    with world.serving():
        monkeypatch.setenv("OPENAI_BASE_URL", world.url)
        monkeypatch.setenv("DRPO_CACHE_DIR", env_base["DRPO_CACHE_DIR"])
        out = tmp_path / "run"
        run = spawn(optimize_argv(out, "--no-cache", "--no-criteria-cache", train=Path(env_base["_TRAIN"])),
                    {**os.environ}, tmp_path / "running.stderr")
        wait_for(lambda: world.served > world.open_for or run.poll() is not None)
        assert run.poll() is None
        try:
            yield out, run, world
        finally:
            world.gate.set()
            if run.poll() is None:
                run.kill()
            run.wait()


@pytest.mark.parametrize("argv", [
    pytest.param(["--resume"], id="resume"),
    pytest.param(["--force"], id="force-new-run"),
    pytest.param([], id="new-run"),
])
def test_a_second_optimize_on_a_folder_in_use_refuses_and_the_first_finishes_alone(running, argv, capsys, env_base,
                                                                                    tmp_path):
    out, run, world = running
    assert main(optimize_argv(out, "--no-cache", *argv, train=Path(env_base["_TRAIN"]))) == 2
    line = error_line(capsys)
    if argv:  # a new run without --force is refused earlier: the folder is not empty
        assert f"--out {out}: in use by another process (pid {run.pid})" in line
    else:
        assert f"--out {out}: folder is not empty" in line
    world.gate.set()
    assert run.wait(timeout=120) == 0, (tmp_path / "running.stderr").read_text()
    artifact = json.loads((out / "artifact.json").read_text())
    assert run_ids(out) == {artifact["run_id"]} and "run.resume" not in (out / "run.log").read_text()
    assert sum(a["usage"]["calls"] for a in artifact["accounting"]["by_role"].values()) == world.served


@contextmanager
def held(folder: Path) -> Iterator[int]:
    """Another process holding `folder`'s lock, as a running command does; yields its pid."""
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder / ".drpo-lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_curate_and_eval_refuse_a_folder_another_process_owns(tmp_path, world, capsys):
    run_dir = write_run(tmp_path / "run", tmp_path / "train.txt")
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "A held-out question?"}\n')
    for argv, folder in ((["curate", "--out", str(tmp_path / "curated")], tmp_path / "curated"),
                         (["eval", "--artifact", str(run_dir), "--data", str(data)], run_dir / "eval")):
        with held(folder) as pid:
            assert main([*argv, *SMALL[:4], "--force"]) == 2
            assert f"in use by another process (pid {pid})" in error_line(capsys)
        assert [p.name for p in folder.iterdir()] == [".drpo-lock"]  # nothing written, nothing removed
    assert world.served == 0


def test_a_killed_owner_leaves_no_stuck_lock(tmp_path, env_base, capsys, monkeypatch):
    world = DRPOWorld(delay_s=0.02)
    out = tmp_path / "run"
    with world.serving():
        monkeypatch.setenv("OPENAI_BASE_URL", world.url)
        monkeypatch.setenv("DRPO_CACHE_DIR", env_base["DRPO_CACHE_DIR"])
        run = spawn(optimize_argv(out, "--no-cache", train=Path(env_base["_TRAIN"])), {**os.environ},
                    tmp_path / "stderr")
        wait_for(lambda: world.served >= 5 or run.poll() is not None)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        assert main(["optimize", "--out", str(out), "--resume"]) == 0, capsys.readouterr().err
    assert (out / "prompt.txt").exists()


def test_two_new_runs_on_one_out_at_once_one_runs_and_the_other_refuses(tmp_path, env_base):
    world = GatedWorld(open_for=0)  # the winner waits at its first answer until the loser has gone
    out = tmp_path / "shared"
    with world.serving():
        env = {**os.environ, **env_base, "OPENAI_BASE_URL": world.url}
        argv = optimize_argv(out, "--no-cache", "--no-criteria-cache", train=Path(env_base["_TRAIN"]))
        runs = [spawn(argv, env, tmp_path / f"{i}.stderr") for i in range(2)]
        try:
            wait_for(lambda: any(run.poll() is not None for run in runs))
        finally:
            world.gate.set()
        codes = [run.wait(timeout=120) for run in runs]
    assert sorted(codes) == [0, 2]
    refused = (tmp_path / f"{codes.index(2)}.stderr").read_text()
    assert len(refused.strip().splitlines()) == 1 and f"--out {out}" in refused and "Traceback" not in refused
    artifact = json.loads((out / "artifact.json").read_text())
    assert run_ids(out) == {artifact["run_id"]} == {json.loads((out / "run.json").read_text())["run_id"]}


# --- --force starts from an empty folder --------------------------------------------------------


def test_force_into_an_old_runs_folder_leaves_nothing_of_the_old_run(copy_of, world, capsys, tmp_path):
    folder = copy_of()
    (folder / "notes.txt").write_text("mine")
    old_id = json.loads((folder / "run.json").read_text())["run_id"]
    same = ("--no-cache", "--no-criteria-cache", "--depth", "2")  # nothing from a shared cache: calls compare
    assert main(optimize_argv(folder, "--force", *same, train=Path(os.environ["_TRAIN"]))) == 0
    fresh = tmp_path / "fresh"
    assert main(optimize_argv(fresh, *same, train=Path(os.environ["_TRAIN"]))) == 0
    capsys.readouterr()
    forced, alone = (json.loads((f / "artifact.json").read_text()) for f in (folder, fresh))
    assert old_id not in run_ids(folder) and run_ids(folder) == {forced["run_id"]}
    assert forced["levels"] == alone["levels"] and forced["candidates"] == alone["candidates"]
    assert forced["prompt"] == alone["prompt"]
    assert {r: a["usage"]["calls"] for r, a in forced["accounting"]["by_role"].items()} == \
        {r: a["usage"]["calls"] for r, a in alone["accounting"]["by_role"].items()}
    assert all(a["replayed"] == 0 for a in forced["accounting"]["by_role"].values())  # no old journal
    assert (folder / "notes.txt").read_text() == "mine"  # not a file any command writes


def test_force_never_lets_another_command_delete_an_optimize_run(copy_of, world, capsys, tmp_path):
    folder = copy_of()
    before = snapshot(folder)
    assert main(["curate", *SMALL[:4], "--out", str(folder), "--force"]) == 2
    line = error_line(capsys)
    assert f"--out {folder}: holds an optimize run (run.json), which --force would delete" in line
    assert snapshot(folder) == before and world.served == 0


# --- run.json is sealed -------------------------------------------------------------------------


@pytest.mark.parametrize("edit", [
    pytest.param(lambda m: m["config"]["search"].update(beam=5), id="search-setting"),
    pytest.param(lambda m: m["config"].update(budgets={"judge": {"calls": 1000}}), id="budget"),
    pytest.param(lambda m: m.update(embedder="lexical" if m["embedder"] != "lexical" else "auto"), id="embedder"),
    pytest.param(lambda m: m.pop("digest"), id="digest-removed"),
])
def test_an_edited_run_json_is_refused_before_anything_is_spent(copy_of, world, capsys, edit):
    folder = copy_of()
    manifest = json.loads((folder / "run.json").read_text())
    edit(manifest)
    (folder / "run.json").write_text(json.dumps(manifest, indent=2))
    before = snapshot(folder)
    assert main(["optimize", "--out", str(folder), "--resume"]) == 2
    line = error_line(capsys)
    assert str(folder / "run.json") in line and "--force" in line
    assert world.served == 0 and snapshot(folder) == before


def test_a_run_json_rewritten_with_the_same_settings_resumes(copy_of, world, capsys):
    folder = copy_of()
    manifest = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps(manifest, indent=4, sort_keys=True))  # layout only
    assert main(["optimize", "--out", str(folder), "--resume"]) == 0, capsys.readouterr().err


# --- damaged state ------------------------------------------------------------------------------


def truncate(path: Path, keep: float) -> None:
    with open(path, "r+b") as file:
        file.truncate(int(path.stat().st_size * keep))


@pytest.mark.parametrize("name", ["checkpoints.sqlite", "journal.sqlite", "ledger.sqlite"])
@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["half", "empty"])
def test_a_damaged_run_database_is_named_before_any_call_is_spent(copy_of, world, capsys, name, keep):
    folder = copy_of()
    truncate(folder / name, keep)
    before = snapshot(folder)
    assert main(["optimize", "--out", str(folder), "--resume"]) == 2
    line = error_line(capsys)
    if not (name == "checkpoints.sqlite" and keep == 0.0):
        assert f"{folder / name} is damaged" in line
    assert f"--out {folder} --force" in line
    assert world.served == 0 and snapshot(folder) == before


def test_a_run_whose_ledger_is_gone_is_not_resumed_with_a_fresh_budget(copy_of, world, capsys):
    folder = copy_of()
    (folder / "ledger.sqlite").unlink()
    assert main(["optimize", "--out", str(folder), "--resume"]) == 2
    line = error_line(capsys)
    assert "ledger.sqlite is missing or empty" in line and "--force" in line and world.served == 0


def test_the_undamaged_copy_resumes_and_spends(copy_of, world, capsys):
    """The control of the cases above: the same copy, undamaged, resumes and sends calls."""
    folder = copy_of()
    assert main(["optimize", "--out", str(folder), "--resume"]) == 0, capsys.readouterr().err
    assert world.served > 0


@pytest.mark.parametrize(("name", "flag"), [("responses.sqlite", "--no-cache"),
                                            ("criteria.sqlite", "--no-criteria-cache")])
def test_a_damaged_shared_cache_is_named_with_the_way_out(tmp_path, world, capsys, name, flag):
    cache = tmp_path / "cache"
    train = Path(os.environ["_TRAIN"])
    assert main(optimize_argv(tmp_path / "first", "--cache-dir", str(cache), train=train)) == 0
    capsys.readouterr()
    truncate(cache / name, 0.5)
    served, out = world.served, tmp_path / "second"
    assert main(optimize_argv(out, "--cache-dir", str(cache), "--depth", "2", train=train)) == 2
    line = error_line(capsys)
    assert f"{cache / name} is damaged" in line and "delete it" in line and flag in line
    assert world.served == served and not out.exists()
    assert main(optimize_argv(out, "--cache-dir", str(cache), "--depth", "2", flag, train=train)) == 0


def test_a_torn_last_log_line_stays_alone_and_every_new_line_is_whole(copy_of, world, capsys):
    folder = copy_of()
    torn = '{"event": "level.done", "lev'
    for log in ("run.log", "trace.jsonl"):
        with open(folder / log, "a") as file:
            if not (folder / log).read_text().endswith("\n"):
                file.write("\n")  # the kill may have torn a line already: one torn line, this one
            file.write(torn)
    assert main(["optimize", "--out", str(folder), "--resume"]) == 0, capsys.readouterr().err
    for log in ("run.log", "trace.jsonl"):
        lines = (folder / log).read_text().splitlines()
        assert lines.count(torn) == 1
        unreadable = []
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                unreadable.append(line)
        assert unreadable == [torn]


# --- the root is evaluated or the run stops -----------------------------------------------------


def test_a_root_whose_judge_always_fails_is_never_checkpointed(tmp_path, world, capsys):
    train = Path(os.environ["_TRAIN"])
    assert main(optimize_argv(tmp_path / "reference", "--no-cache", train=train)) == 0
    capsys.readouterr()
    original = world.fault_for
    failing = True

    def judge_down(body):  # type: ignore[no-untyped-def]
        if failing and (body.get("response_format") or {}).get("json_schema", {}).get("name") == "judgement":
            return "transport_500"  # every attempt of the root's judgement: a server error
        return original(body)

    world.fault_for = judge_down  # type: ignore[method-assign]
    out = tmp_path / "run"
    assert main(optimize_argv(out, "--no-cache", train=train)) == 1
    line = error_line(capsys)
    assert "the initial prompt could not be evaluated" in line and "--resume" in line
    assert "is the engine up?" in line  # lost at the transport level: said as the outage layer says it
    failing = False
    assert main(["optimize", "--out", str(out), "--resume"]) == 0, capsys.readouterr().err
    assert (out / "prompt.txt").read_text() == (tmp_path / "reference" / "prompt.txt").read_text()
    root = json.loads((out / "artifact.json").read_text())["candidates"][0]
    assert root["node_id"] == "root" and root["failure"] is None and root["verdicts"]


# --- a command that cannot be continued leaves nothing behind -----------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("error", "kept"), [(UserInputError("stopped"), False), (KeyboardInterrupt(), False),
                                             (ZeroDivisionError("a bug"), True)])
async def test_a_discarding_session_that_fails_cleanly_removes_what_it_wrote(tmp_path, error, kept):
    out = tmp_path / "eval"
    options = RunOptions(config=scripted_config(), out=out, cache_dir=tmp_path / "cache", discard_on_failure=True)
    with pytest.raises(type(error)):
        async with run_session(options, engine_factory=DRPOScript().engine):
            write_atomic(out / "summary.json", "{}")
            raise error
    assert out.exists() == kept  # a bug keeps its folder: the error line asks for its run.log


@pytest.mark.anyio
async def test_a_discarding_session_keeps_what_the_folder_held_before(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    options = RunOptions(config=scripted_config(), out=out, cache_dir=tmp_path / "cache", force=True,
                         discard_on_failure=True)
    with pytest.raises(UserInputError):
        async with run_session(options, engine_factory=DRPOScript().engine):
            raise UserInputError("stopped")
    assert sorted(p.name for p in out.iterdir()) == [".drpo-lock", "notes.txt"]


@pytest.mark.anyio
async def test_a_root_whose_judge_keeps_answering_nonsense_says_a_resume_would_replay_it(tmp_path):
    from backends.errors import InvalidOutput
    from drpo.runner import OptimizeOptions, optimize
    from graph.beam import RootNotEvaluated
    from schemas.config import SearchConfig

    script = DRPOScript(fail=lambda role, request: InvalidOutput("not JSON") if role == "judge" else None)
    config = scripted_config().model_copy(update={"search": SearchConfig(depth=2)})
    options = OptimizeOptions(config=config, out=tmp_path / "run", train=write_queries(tmp_path / "q.txt"),
                              cache_dir=tmp_path / "cache")
    with pytest.raises(RootNotEvaluated, match=r"^the initial prompt could not be evaluated \(judge call failed "
                                               r"after 4 attempts.*start over with --force --no-cache\b") as stopped:
        await optimize(options, engine_factory=script.engine)
    assert stopped.value.resumable is False  # for the command line: no "resume with" hint
    assert script.calls["judge"] == 4 and script.calls["rewriter"] == 0  # the search went no further
    with closing(sqlite3.connect(tmp_path / "run" / "checkpoints.sqlite")) as db:
        assert db.execute("SELECT count(*) FROM store WHERE key = 'root'").fetchone()[0] == 0
