"""Damaged copies of a real run folder (kinds 4 and 5): a torn, emptied, retyped, deeply nested
or binary `artifact.json` given to `answer`, `eval` and `report`; a damaged eval summary or curated
pool; a run folder whose state is damaged given to `optimize --resume`. Each is exit 2 and one line
that names the file (and the field at fault), no traceback, and nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.commands.checks import assert_error, snapshot
from tests.hostile.commands.conftest import Workspace, write_lines

pytestmark = pytest.mark.real_engine

DEEP = "[" * 100_000 + "]" * 100_000


def edited(**fields: object) -> Callable[[bytes], bytes]:
    return lambda data: json.dumps({**json.loads(data), **fields}).encode()


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "torn": (lambda data: data[: len(data) // 2], "not valid JSON"),
    "empty": (lambda data: b"", "not valid JSON"),
    "null": (lambda data: b"null", "not a valid artifact"),
    "a-list": (lambda data: b"[]", "not a valid artifact"),
    "nested-too-deeply": (lambda data: DEEP.encode(), "nested too deeply"),
    "prompt-a-number": (edited(prompt=5), "prompt"),
    "examples-a-string": (edited(examples="none"), "examples"),
    "candidates-null": (edited(candidates=None), "candidates"),
    "levels-nested": (edited(levels=json.loads("[" * 500 + "]" * 500)), "levels"),
    "not-utf8": (lambda data: b"\xff\xfe" + data, "not UTF-8"),
}
"""How the artifact is damaged, and what the one line must say besides the file's path."""


def argv_for(ws: Workspace, command: str, run: Path, url: str) -> list[str]:
    argv = ws.argv(command, url, run=run)
    if command == "answer":  # --artifact instead of --prompt-file and --examples
        i = argv.index("--prompt-file")
        argv[i:i + 4] = ["--artifact", str(run)]
    return argv


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("command", ["answer", "eval", "report"])
def test_a_damaged_artifact_is_one_line_naming_it_and_nothing_is_written(ws, cli, world, run_copy, command, damage):
    artifact = run_copy / "artifact.json"
    spoil, mention = DAMAGES[damage]
    artifact.write_bytes(spoil(artifact.read_bytes()))
    argv = argv_for(ws, command, run_copy, world.url)
    before = snapshot(ws.root)
    line = assert_error(cli(argv), 2, str(artifact), mention)
    assert "validation error" not in line  # the field at fault, not pydantic's count of them
    assert snapshot(ws.root) == before and world.posts == []


@pytest.mark.parametrize("command", ["answer", "eval", "report"])
def test_an_artifact_json_that_is_a_folder_is_one_line(ws, cli, world, run_copy, command):
    (run_copy / "artifact.json").unlink()
    (run_copy / "artifact.json").mkdir()
    argv = argv_for(ws, command, run_copy, world.url)
    before = snapshot(ws.root)
    assert_error(cli(argv), 2, "artifact.json")
    assert snapshot(ws.root) == before


@pytest.mark.parametrize(("damage", "mention"), [
    pytest.param(lambda text: text[:100], "not valid JSON", id="torn"),
    pytest.param(lambda text: DEEP, "nested too deeply", id="nested-too-deeply"),
    pytest.param(lambda text: json.dumps({**json.loads(text), "configs": 1}), "configs", id="configs-a-number"),
])
def test_a_damaged_eval_summary_stops_the_report_with_one_line(ws, cli, world, run_copy, damage, mention):
    argv = ws.argv("eval", world.url, "--out", str(run_copy / "eval"), run=run_copy)
    assert cli(argv).code == 0
    summary = run_copy / "eval" / "summary.json"
    summary.write_text(damage(summary.read_text()))
    before = snapshot(ws.root)
    assert_error(cli(["report", str(run_copy)]), 2, str(summary), mention)
    assert snapshot(ws.root) == before and not (run_copy / "report.html").exists()


@pytest.mark.parametrize(("damage", "mention"), [
    pytest.param(lambda text: text[:120], "invalid JSON", id="torn"),
    pytest.param(lambda text: DEEP, "nested too deeply", id="nested-too-deeply"),
    pytest.param(lambda text: json.dumps({**json.loads(text), "examples": [{"query": 1}]}), "query",
                 id="an-example-without-text"),
])
@pytest.mark.parametrize("command", ["optimize", "answer"])
def test_a_damaged_curated_pool_given_as_examples_is_one_line(ws, cli, world, command, damage, mention):
    assert cli(ws.argv("curate", world.url, "--out", str(ws.root / "pool"))).code == 0
    pool = ws.root / "pool" / "curated.json"
    pool.write_text(damage(pool.read_text()))
    argv = ws.argv(command, world.url, "--examples", str(ws.root / "pool"))
    before = snapshot(ws.root)
    world.posts.clear()
    assert_error(cli(argv), 2, str(pool), mention)
    assert snapshot(ws.root) == before and world.posts == []


# --- optimize --resume of a damaged run folder ------------------------------------------------------


def halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


RUN_STATE: dict[str, tuple[Callable[[Path], None], str]] = {
    "run.json-torn": (lambda run: halve(run / "run.json"), "run.json"),
    "run.json-config-a-number": (lambda run: (run / "run.json").write_text(
        json.dumps({**json.loads((run / "run.json").read_text()), "config": 3})), "run.json"),
    "run.json-nested-too-deeply": (lambda run: (run / "run.json").write_text(DEEP), "run.json"),
    "run.json-depth-edited": (lambda run: (run / "run.json").write_text(
        (run / "run.json").read_text().replace('"depth": 2', '"depth": 3')), "run.json"),
    "run.json-missing": (lambda run: (run / "run.json").unlink(), "run.json"),
    "checkpoints-overwritten": (lambda run: (run / "checkpoints.sqlite").write_bytes(b"garbage" * 200),
                                "checkpoints.sqlite"),
    "checkpoints-torn": (lambda run: halve(run / "checkpoints.sqlite"), "checkpoints.sqlite"),
    "journal-overwritten": (lambda run: (run / "journal.sqlite").write_bytes(b"garbage" * 200), "journal.sqlite"),
    "ledger-overwritten": (lambda run: (run / "ledger.sqlite").write_bytes(b"garbage" * 200), "ledger.sqlite"),
}
"""How the interrupted run's state is damaged, and the file the one line must name."""


def interrupted(run_copy: Path) -> Path:
    """The copied run as if killed before it wrote its artifacts."""
    for name in ("artifact.json", "prompt.txt"):
        (run_copy / name).unlink()
    return run_copy


@pytest.mark.parametrize("damage", list(RUN_STATE))
def test_resuming_a_damaged_run_folder_is_one_line_naming_the_file_before_any_call(ws, cli, run_copy, damage):
    run = interrupted(run_copy)
    spoil, mention = RUN_STATE[damage]
    spoil(run)
    before = snapshot(ws.root)
    line = assert_error(cli(["optimize", "--out", str(run), "--resume", "--cache-dir", str(ws.cache)]), 2,
                        str(run), mention)
    assert "--force" in line or "start" in line or "restore" in line  # the way out
    assert snapshot(ws.root) == before


def test_a_torn_last_log_line_does_not_stop_a_resume(ws, cli, run_copy):
    run = interrupted(run_copy)
    for log in ("trace.jsonl", "run.log"):
        with open(run / log, "a", encoding="utf-8") as torn:
            torn.write('{"event": "agent.message", "agent": "jud')
    outcome = cli(["optimize", "--out", str(run), "--resume", "--cache-dir", str(ws.cache)])
    assert outcome.code == 0, outcome.err
    assert (run / "prompt.txt").read_text() == (ws.run / "prompt.txt").read_text()
    lines = (run / "trace.jsonl").read_text().splitlines()
    assert sum(not line.endswith("}") for line in lines) == 1  # the torn line stays alone, every new one whole


def test_force_into_an_old_runs_folder_keeps_nothing_of_it(ws, cli, world):
    old = Path(shutil.copytree(ws.run, ws.out))
    (old / "report.html").write_text("<p>the old run's report</p>")
    queries = write_lines(ws.inputs / "other.txt", [f"Another question {i}?" for i in range(4)])
    argv = ws.argv("optimize", world.url, "--force")
    argv[argv.index("--train") + 1] = str(queries)
    outcome = cli(argv)
    assert outcome.code == 0, outcome.err
    artifact = json.loads((ws.out / "artifact.json").read_text())
    assert {q["query"] for q in artifact["query_order"]} <= {f"Another question {i}?" for i in range(4)}
    assert not (ws.out / "report.html").exists()
    trace = (ws.out / "trace.jsonl").read_text()
    assert "Training question number" not in trace  # no line of the old run
