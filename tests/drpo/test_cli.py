"""The command line: bad input is one `error:` line on stderr, exit code 2, nothing written, no
model; every other error is one line with its exit code and no traceback; flags reach the config.

Every case here must be decided before an engine is built: the `no_engines` fixture makes
building one fail the test.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import drpo.cli_commands
import drpo.runner
import drpo.session
from backends.errors import EngineRefused, EngineUnavailable
from backends.registry import ENGINES, engine_names
from drpo.cli import main
from drpo.cli_summary import optimize_summary
from drpo.errors import UserInputError
from graph.selectors import selector_names
from schemas.errors import ProjectError
from tests.backends.stub_server import completion, stub  # noqa: F401  (the loopback server fixture)
from tests.drpo.recorded_run import recorded_artifact

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_engines(monkeypatch):
    """Building the backends (and so any engine) is a test failure: bad input must stop before."""

    def refuse(*args, **kwargs):
        raise AssertionError("an engine was about to be built: the input was not rejected during validation")

    monkeypatch.setattr(drpo.session, "BackendPool", refuse)


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("error:") and line[len("error:"):].strip(), line
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return line


# Each case: (argv after `optimize`, files to create in tmp_path, a substring the error must contain).
# "{tmp}" in an argument or an expected substring stands for tmp_path.
BAD_INPUT = [
    pytest.param(["--train", "{tmp}/missing.jsonl"], {}, "{tmp}/missing.jsonl", id="train-missing-file"),
    pytest.param(["--train", "{tmp}/empty.jsonl"], {"empty.jsonl": ""}, "{tmp}/empty.jsonl", id="train-empty-file"),
    pytest.param(
        ["--train", "{tmp}/bad.jsonl"], {"bad.jsonl": '{"query": "fine"}\n{"query": oops}\n'},
        "{tmp}/bad.jsonl:2", id="train-malformed-jsonl-line",
    ),
    pytest.param(
        ["--train", "{tmp}/noquery.jsonl"], {"noquery.jsonl": '{"query": "fine"}\n\n{"text": "where is it"}\n'},
        "{tmp}/noquery.jsonl:3", id="train-record-without-query",
    ),
    pytest.param(
        ["--train", "{tmp}/latin1.txt"], {"latin1.txt": "Caf\u00e9?\n".encode("latin-1")},
        "{tmp}/latin1.txt", id="train-not-utf8",
    ),
    pytest.param(["--backend", "gpt"], {}, "--backend", id="backend-unknown-choice"),
    pytest.param(["--depth", "0"], {}, "--depth", id="depth-zero"),
    pytest.param(["--depth", "-1"], {}, "--depth", id="depth-negative"),
    pytest.param(["--depth", "abc"], {}, "--depth", id="depth-not-a-number"),
    pytest.param(["--depth"], {}, "--depth", id="depth-without-value"),
    pytest.param(["--beam", "0"], {}, "--beam", id="beam-zero"),
    pytest.param(["--actions", "0"], {}, "--actions", id="actions-zero"),
    pytest.param(["-k", "50"], {}, "k=50", id="k-larger-than-example-pool"),
    pytest.param(["-k", "-1"], {}, "search.k", id="k-negative"),
    pytest.param(["--max-depth-increase", "-1"], {}, "max_depth_increase", id="max-depth-increase-negative"),
    pytest.param(["--seed", "x"], {}, "--seed", id="seed-not-a-number"),
    pytest.param(["--config", "{tmp}/absent.toml"], {}, "{tmp}/absent.toml", id="config-missing-file"),
    pytest.param(
        ["--config", "{tmp}/bad.toml"], {"bad.toml": "[search]\ndepth = \n"}, "{tmp}/bad.toml",
        id="config-invalid-toml",
    ),
    pytest.param(
        ["--config", "{tmp}/latin1.toml"], {"latin1.toml": "# caf\u00e9\n[search]\n".encode("latin-1")},
        "{tmp}/latin1.toml", id="config-not-utf8",
    ),
    pytest.param(
        ["--config", "{tmp}/typo.toml"], {"typo.toml": "[search]\ndeepth = 3\n"}, "deepth",
        id="config-unknown-search-key",
    ),
    pytest.param(
        ["--config", "{tmp}/section.toml"], {"section.toml": "[serach]\ndepth = 3\n"}, "serach",
        id="config-unknown-section",
    ),
    pytest.param(
        ["--config", "{tmp}/role.toml"], {"role.toml": "[roles.painter]\nmax_tokens = 10\n"}, "painter",
        id="config-unknown-role",
    ),
    pytest.param(
        ["--config", "{tmp}/bind.toml"], {"bind.toml": '[roles.judge]\nbackend = "remote"\n'}, "remote",
        id="config-role-bound-to-undefined-backend",
    ),
    pytest.param(
        ["--config", "{tmp}/critics.toml"], {"critics.toml": 'critics = ["nope"]\n'}, "nope",
        id="config-unknown-critic",
    ),
    pytest.param(
        ["--config", "{tmp}/temp.toml"], {"temp.toml": "[roles.rewriter]\ntemperature = 9.0\n"}, "temperature",
        id="config-temperature-out-of-range",
    ),
    pytest.param(["--backend", "openai"], {}, "--model", id="openai-without-model"),
    pytest.param(["--examples", "{tmp}/absent.jsonl"], {}, "{tmp}/absent.jsonl", id="examples-missing-file"),
    pytest.param(["--depth", "3", "--bogus"], {}, "--bogus", id="unknown-flag"),
]


@pytest.mark.parametrize(("args", "files", "mention"), BAD_INPUT)
def test_bad_input_prints_one_error_line_and_exits_2(tmp_path, capsys, args, files, mention):
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    argv = ["optimize", *(a.replace("{tmp}", str(tmp_path)) for a in args), "--out", str(out)]

    assert main(argv) == 2

    line = one_error_line(capsys)
    assert mention.replace("{tmp}", str(tmp_path)) in line
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["frobnicate"], id="unknown-subcommand"),
        pytest.param(["optimise", "--depth", "2"], id="misspelt-subcommand"),
    ],
)
def test_unknown_subcommand(tmp_path, capsys, argv):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert repr(argv[0]) in line or argv[0] in line
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder", encoding="utf-8")
    assert main(["optimize", "--out", str(out)]) == 2
    assert str(out) in one_error_line(capsys)
    assert out.read_text(encoding="utf-8") == "not a folder"


def test_non_empty_out_folder_without_force_is_refused_and_left_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "prompt.txt"
    keep.write_text("an earlier run's prompt\n", encoding="utf-8")

    assert main(["optimize", "--depth", "2", "--out", str(out)]) == 2

    line = one_error_line(capsys)
    assert str(out) in line
    assert "--force" in line
    assert [p.name for p in out.iterdir()] == ["prompt.txt"]
    assert keep.read_text(encoding="utf-8") == "an earlier run's prompt\n"


def test_run_py_reports_bad_input_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "run.py", "optimize", "--depth", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "--depth" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"query": "q", "answer": "a"}\n{broken\n', id="malformed-line"),
        pytest.param('{"query": "q"}\n', id="record-without-answer"),
    ],
)
def test_malformed_examples_file_is_a_user_error(tmp_path, capsys, content):
    examples = tmp_path / "examples.jsonl"
    examples.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["optimize", "-k", "1", "--examples", str(examples), "--out", str(out)]) == 2
    assert str(examples) in one_error_line(capsys)
    assert not out.exists()


# --- the error boundary ---------------------------------------------------------------------------


class RefusedKey(ProjectError):
    """A project error of another layer, with its own exit code."""

    exit_code = 3


def run_report_raising(monkeypatch, error_or_factory) -> None:  # type: ignore[no-untyped-def]
    """Make `report` raise what the test gives (a command that fails the way the test needs)."""

    def failing(args, config):  # type: ignore[no-untyped-def]
        raise error_or_factory() if callable(error_or_factory) else error_or_factory

    monkeypatch.setitem(drpo.cli_commands.COMMANDS, "report", failing)


def in_task_group(error: BaseException) -> BaseException:
    """`error` as a command sees it when a task of a task group raised it (an ExceptionGroup)."""

    async def fail() -> None:
        raise error

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fail)

    try:
        anyio.run(run)
    except BaseException as raised:  # noqa: BLE001  (the group anyio made)
        return raised
    raise AssertionError("the task group did not raise")


def stderr_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        pytest.param(RefusedKey("the engine refused the key; export a valid one"), 3,
                     "error: the engine refused the key; export a valid one", id="project-error"),
        pytest.param(UserInputError("--out x: not a folder"), 2, "error: --out x: not a folder", id="bad-input"),
        pytest.param(EngineUnavailable("default:m is down after 3 transport faults"), 1,
                     "error: default:m is down after 3 transport faults", id="engine-down"),
        pytest.param(EngineRefused("the server answered 401 for model m; check OPENAI_API_KEY"), 2,
                     "error: the server answered 401 for model m; check OPENAI_API_KEY", id="engine-refused"),
        pytest.param(RefusedKey("first line\nsecond line"), 3, "error: first line second line", id="multi-line"),
        pytest.param(ValueError("boom"), 1,
                     "internal error: ValueError: boom (a bug; please report it with run.log)", id="bug"),
        pytest.param(KeyError("k"), 1, "internal error: KeyError: 'k' (a bug; please report it with run.log)",
                     id="bug-keyerror"),
        pytest.param(RuntimeError(), 1, "internal error: RuntimeError (a bug; please report it with run.log)",
                     id="bug-without-message"),
        pytest.param(KeyboardInterrupt(), 130, "interrupted", id="ctrl-c"),
    ],
)
@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "in-a-task-group"])
def test_every_error_is_one_line_with_its_exit_code_and_no_traceback(tmp_path, capsys, monkeypatch, error, code,
                                                                    line, grouped):
    raised = in_task_group(error) if grouped else error
    if grouped and not isinstance(error, KeyboardInterrupt):
        assert isinstance(raised, BaseExceptionGroup)  # what the boundary has to see through
    run_report_raising(monkeypatch, raised)
    assert main(["report", str(tmp_path)]) == code
    assert stderr_line(capsys) == line


def test_the_first_project_error_in_a_nested_group_wins_over_the_bugs_beside_it(tmp_path, capsys, monkeypatch):
    nested = ExceptionGroup("outer", [ValueError("side effect"), ExceptionGroup("inner", [RefusedKey("the cause")])])
    run_report_raising(monkeypatch, nested)
    assert main(["report", str(tmp_path)]) == 3
    assert stderr_line(capsys) == "error: the cause"


def test_verbose_shows_an_internal_errors_traceback_but_never_a_project_errors(tmp_path, capsys, monkeypatch):
    run_report_raising(monkeypatch, lambda: ValueError("boom"))
    assert main(["report", str(tmp_path), "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("internal error: ValueError: boom")
    run_report_raising(monkeypatch, lambda: RefusedKey("no key"))
    assert main(["report", str(tmp_path), "--verbose"]) == 3
    assert stderr_line(capsys) == "error: no key"


def test_a_key_in_an_error_message_is_masked_on_the_console(tmp_path, capsys, monkeypatch):
    key = "k3y-that-the-server-echoed-7f9a"
    monkeypatch.setenv("LLM_CRED", key)
    (tmp_path / "remote.toml").write_text('[backends.default]\nkind = "openai"\nmodel = "m"\napi_key_env = "LLM_CRED"\n')
    run_report_raising(monkeypatch, lambda: RefusedKey(f"401: invalid key {key}"))
    assert main(["report", str(tmp_path)]) == 3
    line = stderr_line(capsys)
    assert key not in line and line.startswith("error: 401: invalid key ")
    run_report_raising(monkeypatch, lambda: ValueError(f"unexpected reply for {key}"))
    assert main(["report", str(tmp_path)]) == 1
    assert key not in stderr_line(capsys)


def fake_optimize(error: BaseException | None, *, write_manifest: bool):  # type: ignore[no-untyped-def]
    """An optimize that fails mid-run (after it wrote the run's manifest, or before), or with
    None, is stopped by a real SIGINT as a user's Ctrl-C stops it."""

    async def optimize(options):  # type: ignore[no-untyped-def]
        if write_manifest:
            options.out.mkdir(parents=True, exist_ok=True)
            (options.out / drpo.runner.MANIFEST).write_text(json.dumps({"run_id": options.run_id}))
        if error is None:
            signal.raise_signal(signal.SIGINT)
            await anyio.sleep(5)
            raise AssertionError("SIGINT did not stop the run")
        async with anyio.create_task_group() as tg:  # as the search raises it: from inside a task group
            async def fail() -> None:
                raise error

            tg.start_soon(fail)

    return optimize


@pytest.mark.parametrize(
    ("error", "code", "start"),
    [
        pytest.param(EngineUnavailable("default:m is down"), 1, "error: default:m is down", id="engine-down"),
        pytest.param(EngineRefused("401 for model m; check the key"), 2, "error: 401 for model m", id="refused"),
        pytest.param(None, 130, "interrupted", id="ctrl-c"),
        pytest.param(ZeroDivisionError("x"), 1, "internal error: ZeroDivisionError: x", id="bug"),
    ],
)
def test_a_run_that_stops_mid_way_says_how_to_resume_it(tmp_path, capsys, monkeypatch, error, code, start):
    monkeypatch.setattr(drpo.runner, "optimize", fake_optimize(error, write_manifest=True))
    out = tmp_path / "run"
    assert main(["optimize", "--out", str(out)]) == code
    line = stderr_line(capsys)
    assert line.startswith(start)
    assert line.endswith(f"; the run is checkpointed: resume with `python run.py optimize --out {out} --resume`")


def test_no_resume_hint_for_bad_input_or_a_folder_holding_another_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(drpo.runner, "optimize", fake_optimize(UserInputError("k=9 is too large"), write_manifest=True))
    assert main(["optimize", "--out", str(out)]) == 2
    assert stderr_line(capsys) == "error: k=9 is too large"
    out.mkdir(exist_ok=True)
    (out / drpo.runner.MANIFEST).write_text(json.dumps({"run_id": "an-older-run"}))
    monkeypatch.setattr(drpo.runner, "optimize", fake_optimize(EngineUnavailable("down"), write_manifest=False))
    assert main(["optimize", "--out", str(out), "--force"]) == 1
    assert stderr_line(capsys) == "error: down"


def test_run_py_prints_one_line_for_a_project_error_raised_deep_in_a_command(tmp_path):
    """The real entry point (run.py, sys.exit(main())), in its own process: no traceback on stderr."""
    result = subprocess.run([sys.executable, "run.py", "report", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: report {tmp_path}: no artifact.json there; pass an optimize "
                                          "output folder"]


# --- flags that reach the config ------------------------------------------------------------------


def config_for(argv: list[str]):  # type: ignore[no-untyped-def]
    from drpo.cli_config import build_config
    from drpo.cli_parser import build_parser

    return build_config(build_parser().parse_args(argv))


def test_backend_choices_come_from_the_engine_registry(monkeypatch, capsys):
    monkeypatch.setitem(ENGINES, "toy", "tests.nowhere:build")  # an engine added by one line of registration
    config = config_for(["optimize", "--backend", "toy", "--model", "m"])
    assert (config.backends["default"].kind, config.backends["default"].model) == ("toy", "m")
    assert config_for(["eval", "--data", "d", "--artifact", "a", "--judge-backend", "toy"]) is not None
    assert main(["optimize", "--backend", "gpt"]) == 2
    line = one_error_line(capsys)
    assert all(name in line for name in engine_names())


def test_selector_sets_the_search_rule_and_unknown_rules_are_refused(tmp_path, capsys):
    assert config_for(["optimize"]).search.selector == "paper"
    other = next(name for name in selector_names() if name != "paper")
    assert config_for(["optimize", "--selector", other]).search.selector == other
    assert main(["optimize", "--selector", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "--selector" in one_error_line(capsys)
    (tmp_path / "rule.toml").write_text('[search]\nselector = "nope"\n')
    assert main(["optimize", "--config", str(tmp_path / "rule.toml"), "--out", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys)
    assert "selector" in line and "nope" in line and "paper" in line  # drpo.runner.check_names, as a run checks
    assert not (tmp_path / "o").exists()


def test_curate_takes_a_seed_iterations_and_from_best():
    config = config_for(["curate", "--seed", "7", "--iterations", "2", "--from-best"])
    assert (config.curation.seed, config.curation.iterations, config.curation.from_best) == (7, 2, True)
    assert config_for(["curate"]).curation.seed == 0
    assert config_for(["optimize", "--seed", "5"]).search.seed == 5  # optimize's --seed is the query order's


@pytest.mark.parametrize(
    ("toml", "argv", "mentions"),
    [
        pytest.param("search = 3\n", ["--depth", "2"], "[search] must be a table", id="search-not-a-table"),
        pytest.param('backends = "x"\n', ["--max-concurrency", "3"], "[backends] must be a table",
                     id="backends-not-a-table"),
        pytest.param("[backends]\ndefault = 1\n", ["--model", "m"], "[default] must be a table",
                     id="backend-entry-not-a-table"),
    ],
)
def test_config_sections_of_the_wrong_type_are_one_line(tmp_path, capsys, toml, argv, mentions):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    assert main(["optimize", "--config", str(path), *argv, "--out", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys)
    assert mentions in line and str(path) in line


def test_an_empty_query_is_refused_before_any_model_loads(capsys):
    assert main(["answer", "   ", "--prompt-file", "p.txt", "--examples", "e.jsonl"]) == 2
    assert "query is empty" in one_error_line(capsys)


# --- the summary ------------------------------------------------------------------------------------


def test_the_optimize_summary_counts_each_levels_records(tmp_path):
    artifact = recorded_artifact(tmp_path / "train.txt")
    text = optimize_summary(artifact, tmp_path / "run")
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s+[01]\s", line)]
    assert rows == [["0", "4.00", "3.50", "3", "1", "0"], ["1", "5.00", "3.40", "6", "1", "1"]]
    assert artifact.prompt in text and "score 4.500 on the best path" in text
    assert re.search(r"^policy\s+11\s+9\s+0\s+900\s+300\s+4.5\s+transport=2$", text, re.M)  # sent, replies


# --- answer, against engines that answer, refuse, or keep failing -------------------------------------


@pytest.mark.real_engine
@pytest.mark.parametrize(
    ("reply", "code", "expected"),
    [
        pytest.param((200, {}, completion("Water it when the soil is dry.")), 0, None, id="answers"),
        pytest.param((401, {}, {"error": {"message": "invalid api key"}}), 2, "error: ", id="refuses-the-key"),
        pytest.param((500, {}, {"error": {"message": "server exploded"}}), 1, "error: ", id="keeps-failing"),
    ],
)
def test_answer_prints_the_answer_or_one_line_for_an_engine_that_fails(tmp_path, capsys, monkeypatch, stub, reply,
                                                                     code, expected):
    stub.responder = lambda body: reply
    monkeypatch.setenv("OPENAI_API_KEY", "unused-but-set")
    (tmp_path / "prompt.txt").write_text("You are a helpful assistant.\n")
    (tmp_path / "examples.jsonl").write_text('{"query": "How do I water ferns?", "answer": "Keep the soil moist."}\n')
    (tmp_path / "c.toml").write_text(f'[backends.default]\nbase_url = "{stub.url}"\nmax_attempts = 2\n')
    argv = ["answer", "How do I keep basil alive?", "--prompt-file", str(tmp_path / "prompt.txt"), "--examples",
            str(tmp_path / "examples.jsonl"), "-k", "1", "--backend", "openai", "--model", "m", "--config",
            str(tmp_path / "c.toml"), "--embedder", "lexical", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == code
    if expected is None:
        assert capsys.readouterr().out.strip() == "Water it when the soil is dry."
    else:  # the retried faults are warnings on the console; the outcome is the last line
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert all(" WARNING engine.fault " in line for line in err.splitlines()[:-1]), err
        line = err.splitlines()[-1]
        assert line.startswith(expected) and "internal error" not in line
    assert stub.seen and stub.seen[0].body["model"] == "m"
