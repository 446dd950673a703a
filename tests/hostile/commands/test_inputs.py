"""Kind 5, inputs, on every command: settings of the wrong shape or type, files nested too deeply,
text no engine can take, too few queries, folders that cannot be written, an empty query. Each is
exit 2 and one line that names the input, before any request is sent and with nothing written
(the test folder is byte-for-byte as it was). Text that only looks like JSON is read as text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.hostile.commands.checks import assert_error, assert_no_traceback, snapshot
from tests.hostile.commands.conftest import ENGINE_COMMANDS, Workspace, backend_toml, write_lines

pytestmark = pytest.mark.real_engine


def refused_before_anything(ws: Workspace, cli, world, argv: list[str],  # type: ignore[no-untyped-def]
                            *mentions: str) -> str:
    """Run `argv`: exit 2, one line naming `mentions`, no request sent, nothing written."""
    before = snapshot(ws.root)
    outcome = cli(argv)
    line = assert_error(outcome, 2, *mentions)
    assert world.posts == [], "a request was sent before the input was refused"
    assert snapshot(ws.root) == before
    return line


# --- settings files -------------------------------------------------------------------------------

WRONG_SHAPES = {
    "roles-not-a-table": ("roles = 3\n", "roles"),
    "a-role-not-a-table": ("[roles]\njudge = 1\n", "roles.judge"),
    "budgets-a-string": ('budgets = "plenty"\n', "budgets"),
    "critics-a-string": ('critics = "length"\n', "critics"),
    "curation-a-number": ("curation = 1\n", "curation"),
    "search-a-list": ("search = [1]\n", "search"),
    "backend-an-array-of-tables": (None, "backends.default"),
}
"""Top-level TOML (before the backend table) and the key the one line must name."""


@pytest.mark.parametrize("shape", list(WRONG_SHAPES))
@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_a_settings_section_of_the_wrong_type_is_one_line(ws, cli, world, command, shape):
    head, key = WRONG_SHAPES[shape]
    config = ws.inputs / "wrong.toml"
    body = backend_toml(world.url)
    config.write_text(body.replace("[backends.default]", "[[backends.default]]") if head is None else head + body)
    refused_before_anything(ws, cli, world, ws.argv(command, world.url, config=config), str(config), key)


BOOLEANS = [
    pytest.param(command, "max_concurrency = true\n", "backends.default.max_concurrency",
                 id=f"{command}-max_concurrency")
    for command in ENGINE_COMMANDS
] + [
    pytest.param("optimize", "[search]\nhistory = true\n", "search.history", id="optimize-history"),
    pytest.param("curate", "[curation]\nseed = true\n", "curation.seed", id="curate-seed"),
    pytest.param("answer", "timeout_s = true\n", "backends.default.timeout_s", id="answer-timeout_s"),
    pytest.param("eval", "[budgets.judge]\ncalls = false\n", "budgets.judge.calls", id="eval-budget-calls"),
    pytest.param("optimize", "max_attempts = 2.5\n", "backends.default.max_attempts", id="optimize-max_attempts-float"),
]


@pytest.mark.parametrize(("command", "setting", "key"), BOOLEANS)
def test_a_boolean_or_fraction_where_a_number_belongs_is_refused_not_taken_as_1(ws, cli, world, command, setting,
                                                                               key):
    config = ws.inputs / "typed.toml"
    name = setting.split("=")[0].split("\n")[-1].strip()
    text = "".join(line for line in backend_toml(world.url).splitlines(keepends=True) if not line.startswith(name))
    config.write_text(text + setting)  # a key of the backend table (the last one), or a table of its own
    refused_before_anything(ws, cli, world, ws.argv(command, world.url, config=config), key)


@pytest.mark.parametrize("nesting", ["array", "inline-table"])
@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_a_settings_file_nested_too_deeply_is_one_line(ws, cli, world, command, nesting):
    config = ws.inputs / "deep.toml"
    deep = "[" * 3000 + "]" * 3000 if nesting == "array" else "{a = " * 3000 + "1" + "}" * 3000
    config.write_text(f"x = {deep}\n{backend_toml(world.url)}")
    refused_before_anything(ws, cli, world, ws.argv(command, world.url, config=config), str(config), "nested")


def not_a_settings_file(ws: Workspace, kind: str) -> tuple[Path, str]:
    """A `--config` path that is no TOML file, and what the one line must call it."""
    if kind == "dev-null":
        return Path(os.devnull), "not a regular file; pass a TOML file"
    path = ws.inputs / "settings"
    if kind == "folder":
        path.mkdir()
        return path, "a folder, not a file; pass a TOML file"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block until a writer came
        return path, "not a regular file; pass a TOML file"
    return path, "no such file; pass a TOML file"


def config_argv(ws: Workspace, command: str, url: str, config: Path) -> list[str]:
    if command == "serve":
        return ["serve", "--artifact", str(ws.run), "--config", str(config), "--port", "0"]
    return ws.argv(command, url, config=config)


@pytest.mark.parametrize("kind", ["dev-null", "folder", "fifo", "missing"])
@pytest.mark.parametrize("command", [*ENGINE_COMMANDS, "serve"])  # every command that takes --config
def test_a_config_path_that_is_no_file_says_what_it_is(ws, cli, world, command, kind):
    config, what = not_a_settings_file(ws, kind)
    refused_before_anything(ws, cli, world, config_argv(ws, command, world.url, config), f"--config {config}: {what}")


PROMPT_FILES = {
    "folder": "a folder, not a file",
    "fifo": "not a regular file",
    "missing": "no such file",
    "not-utf8": "not UTF-8 text",
    "nul": "NUL character",
    "empty": "the file is empty",
}


@pytest.mark.parametrize("kind", sorted(PROMPT_FILES))
def test_a_prompt_file_that_holds_no_prompt_is_one_line(ws, cli, world, kind):
    prompt = ws.prompt
    prompt.unlink()
    if kind == "folder":
        prompt.mkdir()
    elif kind == "fifo":
        os.mkfifo(prompt)  # reading it would block until a writer came
    elif kind == "not-utf8":
        prompt.write_bytes(b"You are \xff helpful.\n")
    elif kind == "nul":
        prompt.write_text("You are\x00 helpful.\n", encoding="utf-8")
    elif kind == "empty":
        prompt.write_text("  \n", encoding="utf-8")
    refused_before_anything(ws, cli, world, ws.argv("answer", world.url), str(prompt), PROMPT_FILES[kind])


# --- data files -----------------------------------------------------------------------------------

DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a": ' * 50_000 + "1" + "}" * 50_000

DEEP_FILES = [
    pytest.param("optimize", "train", DEEP_ARRAY, id="optimize-train"),
    pytest.param("optimize", "examples", DEEP_ARRAY, id="optimize-examples"),
    pytest.param("curate", "examples", DEEP_OBJECT, id="curate-examples"),
    pytest.param("answer", "examples", DEEP_ARRAY, id="answer-examples"),
    pytest.param("eval", "data", DEEP_ARRAY, id="eval-data-array"),
    pytest.param("eval", "data", DEEP_OBJECT, id="eval-data-object"),
]


@pytest.mark.parametrize(("command", "which", "text"), DEEP_FILES)
def test_a_data_file_nested_too_deeply_is_one_line_naming_it(ws, cli, world, command, which, text):
    path: Path = getattr(ws, which)
    path.write_text(text)
    refused_before_anything(ws, cli, world, ws.argv(command, world.url), str(path), "nested too deeply")


UNSENDABLE = [
    pytest.param("optimize", "train", ['{"query": "A fine question?"}', '{"query": "Half \\ud800 a character?"}'],
                 "lone surrogate", id="optimize-train-surrogate"),
    pytest.param("optimize", "train", ['{"query": "A NUL \\u0000 inside?"}', '{"query": "Fine?"}'], "NUL",
                 id="optimize-train-nul"),
    pytest.param("curate", "examples", ['{"query": "Half \\udc00?", "answer": "An answer."}'], "lone surrogate",
                 id="curate-examples-surrogate"),
    pytest.param("answer", "examples", ['{"query": "Fine?", "answer": "Half \\udfff."}'], "lone surrogate",
                 id="answer-examples-surrogate"),
    pytest.param("eval", "data", ['{"id": 1, "instruction": "Half \\ud801 a character?"}'], "lone surrogate",
                 id="eval-data-surrogate"),
]


@pytest.mark.parametrize(("command", "which", "lines", "what"), UNSENDABLE)
def test_text_no_engine_can_take_is_refused_at_its_line_before_the_run(ws, cli, world, command, which, lines, what):
    path: Path = getattr(ws, which)
    write_lines(path, lines)
    refused_before_anything(ws, cli, world, ws.argv(command, world.url), str(path), what)


@pytest.mark.parametrize(("query", "what"), [
    pytest.param("bad \udcff byte", "lone surrogate", id="argv-byte-not-utf8"),  # how Python decodes such argv bytes
    pytest.param("a NUL \x00 inside", "NUL", id="argv-nul"),
    pytest.param("", "query is empty", id="empty"),
    pytest.param("   \n\t", "query is empty", id="blank"),
])
def test_an_answer_query_that_is_empty_or_unsendable_is_one_line(ws, cli, world, query, what):
    argv = ws.argv("answer", world.url)
    argv[-1] = query
    refused_before_anything(ws, cli, world, argv, what)


def test_a_text_file_whose_lines_start_with_a_bracket_is_read_as_queries(ws, cli, world):
    queries = ["[citation needed] Is this claim true?", "[2] What does the second footnote say?",
               "{braces} Are these JSON?", "Plain question four?", "Plain question five?"]
    write_lines(ws.train, queries)
    outcome = cli(ws.argv("optimize", world.url))
    assert outcome.code == 0, outcome.err
    order = [item["query"] for item in json.loads((ws.out / "artifact.json").read_text())["query_order"]]
    assert order and set(order) <= set(queries)


def test_eval_data_as_text_lines_starting_with_a_bracket_is_read_as_items(ws, cli, world):
    data = write_lines(ws.inputs / "held_out.txt", ["[1] Held-out bracketed question?", "[2] Another one?"])
    argv = ws.argv("eval", world.url)
    argv[argv.index("--data") + 1] = str(data)
    outcome = cli(argv)
    assert outcome.code == 0, outcome.err
    rows = [json.loads(line) for line in (ws.out / "scores.jsonl").read_text().splitlines()]
    assert {r["instruction"] for r in rows} == {"[1] Held-out bracketed question?", "[2] Another one?"}


# --- too few queries ------------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_fewer_queries_than_one_level_needs_is_refused(ws, cli, world, dry_run):
    write_lines(ws.train, ["The only question?"])
    argv = ws.argv("optimize", world.url, *(["--dry-run"] if dry_run else []))
    refused_before_anything(ws, cli, world, argv, "--train", "1 queries", "at least 2")


def test_fewer_queries_than_the_depth_runs_but_says_so(ws, cli, world):
    write_lines(ws.train, ["Question one?", "Question two?", "Question three?"])
    outcome = cli(ws.argv("optimize", world.url, "--depth", "5"))
    assert outcome.code == 0, outcome.err
    assert "the search will end early" in outcome.err and "--depth 5" in outcome.err


def test_a_dry_run_with_fewer_queries_than_the_depth_prints_the_projection_and_the_warning(ws, cli, world):
    write_lines(ws.train, ["Question one?", "Question two?", "Question three?"])
    argv = ws.argv("optimize", world.url, "--depth", "5", "--dry-run")
    before = snapshot(ws.root)
    outcome = cli(argv)
    assert outcome.code == 0 and "no skips" in outcome.out and "the search will end early" in outcome.out
    assert snapshot(ws.root) == before and world.posts == [] and world.gets == 0


# --- folders --------------------------------------------------------------------------------------


def bad_folder(ws: Workspace, how: str) -> tuple[Path, str]:
    """A folder path that cannot be written, and what the line must say of it."""
    if how == "dangling-link":
        link = ws.root / "dangling"
        link.symlink_to(ws.root / "nowhere" / "at-all")
        return link, "symbolic link"
    if how == "link-loop":
        loop = ws.root / "loop"
        loop.symlink_to(loop)
        return loop, str(loop)
    if how == "under-a-file":
        (ws.root / "a-file").write_text("not a folder")
        return ws.root / "a-file" / "out", "a-file"
    if how == "is-a-file":
        (ws.root / "a-file").write_text("not a folder")
        return ws.root / "a-file", "not a folder"
    return Path("/sys/drpo-cannot-write-here"), "/sys/drpo-cannot-write-here"  # EPERM even for root


FOLDER_FAULTS = ("dangling-link", "link-loop", "under-a-file", "is-a-file", "unwritable")


@pytest.mark.parametrize("how", FOLDER_FAULTS)
@pytest.mark.parametrize("command", ["optimize", "curate", "eval"])
def test_an_out_folder_that_cannot_be_written_is_one_line(ws, cli, world, command, how):
    path, mention = bad_folder(ws, how)
    argv = ws.argv(command, world.url)
    argv[argv.index("--out") + 1] = str(path)
    outcome_line = refused_before_anything_or_at_claim(ws, cli, world, argv, "--out", mention)
    assert "internal error" not in outcome_line


@pytest.mark.parametrize("how", FOLDER_FAULTS)
@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_a_cache_folder_that_cannot_be_written_is_one_line(ws, cli, world, command, how):
    path, mention = bad_folder(ws, how)
    argv = ws.argv(command, world.url)
    argv[argv.index("--cache-dir") + 1] = str(path)
    refused_before_anything_or_at_claim(ws, cli, world, argv, "--cache-dir", mention)


def refused_before_anything_or_at_claim(ws: Workspace, cli, world, argv: list[str],  # type: ignore[no-untyped-def]
                                        *mentions: str) -> str:
    """As `refused_before_anything`, but the start-up probe may have been sent: a folder that only
    a write can prove unwritable (/sys as root) is found when the command makes it, after the probe
    and before any completion request."""
    before = snapshot(ws.root)
    outcome = cli(argv)
    line = assert_error(outcome, 2, *mentions)
    assert world.posts == [] and snapshot(ws.root) == before
    return line


@pytest.mark.parametrize("how", ["under-a-file", "unwritable", "a-folder"])
def test_a_report_out_that_cannot_be_written_is_one_line_and_no_file(ws, cli, run_copy, how):
    if how == "a-folder":
        target, mention = ws.root / "a-folder", "a folder"
        target.mkdir()
    else:
        folder, mention = bad_folder(ws, how)
        target = folder / "report.html"
    before = snapshot(ws.root)
    assert_error(cli(["report", str(run_copy), "--out", str(target)]), 2, "--out", mention)
    assert snapshot(ws.root) == before


@pytest.mark.parametrize("command", ["curate", "eval"])
def test_an_out_folder_holding_files_is_refused_without_force_and_left_untouched(ws, cli, world, command):
    ws.out.mkdir()
    (ws.out / "notes.txt").write_text("mine")
    refused_before_anything(ws, cli, world, ws.argv(command, world.url), str(ws.out), "--force")


def test_a_toml_file_of_another_program_is_one_line(ws, cli, world):
    """A settings file this program never wrote (a pyproject.toml): its unknown sections, one line."""
    config = ws.inputs / "pyproject.toml"
    config.write_text('[project]\nname = "x"\n[tool.ruff]\nline-length = 120\n')
    outcome = cli(ws.argv("optimize", world.url, config=config))
    assert_no_traceback(outcome)
    assert_error(outcome, 2, "project")
